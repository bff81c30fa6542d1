// In-process tests of the peer layer over real gRPC on loopback (ports picked by the kernel).

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "group/group.h"
#include "group/loader.h"
#include "group/registry.h"
#include "http/server.h"
#include "peer/grpc_peer.h"
#include "peer/grpc_server.h"
#include "peer/http_routes.h"
#include "peer/http_wire.h"
#include "peer/ring_picker.h"
#include "peer/status_map.h"
#include "proto/nexuscache.grpc.pb.h"
#include "spdlog/spdlog.h"
#include "support/group_sync.h"
#include "support/process.h"

namespace nexus {
namespace {

using std::chrono::milliseconds;
using testing::DeleteSync;
using testing::GetSync;
using ::testing::HasSubstr;
using testing::SetSync;

std::string Loopback(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

// --- blocking helpers over the async Peer API ---

absl::StatusOr<CachedValue> PeerGet(Peer& peer, std::string_view group, std::string_view key) {
  absl::Notification done;
  absl::StatusOr<CachedValue> out;
  int calls = 0;
  peer.Get(group, key, [&](absl::StatusOr<CachedValue> r) {
    ++calls;
    out = std::move(r);
    done.Notify();
  });
  done.WaitForNotification();
  EXPECT_EQ(calls, 1);
  return out;
}

absl::Status PeerSet(Peer& peer, std::string_view group, std::string_view key,
                     std::string_view value, int64_t ttl_ms, bool hot) {
  absl::Notification done;
  absl::Status out;
  peer.Set(group, key, value, ttl_ms, hot, [&](absl::Status s) {
    out = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  return out;
}

absl::Status PeerDelete(Peer& peer, std::string_view group, std::string_view key) {
  absl::Notification done;
  absl::Status out;
  peer.Delete(group, key, [&](absl::Status s) {
    out = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  return out;
}

// Keys starting with "db-" exist at the origin; everything else is NotFound.
std::shared_ptr<Loader> OriginLoader(std::atomic<int>* loads) {
  return std::make_shared<FunctionLoader>(
      [loads](std::string_view key) -> absl::StatusOr<std::string> {
        if (loads != nullptr) loads->fetch_add(1);
        if (key.substr(0, 3) == "db-") return "loaded:" + std::string(key);
        return absl::NotFoundError("origin has no " + std::string(key));
      });
}

// One node: registry + group "scores" + PeerServer on an ephemeral port.
struct TestNode {
  TestNode(const Clock* clock, std::shared_ptr<Loader> loader,
           std::shared_ptr<PeerPicker> picker = nullptr)
      : owner(&registry, clock),
        server(&owner, PeerServerOptions{.address = "127.0.0.1", .port = 0, .traffic = &traffic}) {
    EXPECT_TRUE(server.Start().ok());
    if (picker != nullptr || loader != nullptr) AddGroup(clock, loader, picker);
  }
  ~TestNode() { server.Stop(milliseconds(0)); }

  void AddGroup(const Clock* clock, std::shared_ptr<Loader> loader,
                std::shared_ptr<PeerPicker> picker) {
    auto g = std::make_unique<Group>(GroupOptions{.name = "scores", .jitter_seed = 7},
                                     std::move(loader), std::move(picker), clock);
    group = g.get();
    ASSERT_TRUE(registry.Add(std::move(g)).ok());
  }

  std::string address() const { return Loopback(server.port()); }

  GroupRegistry registry;  // outlives the server (declared first, destroyed last)
  OwnerService owner;
  PeerTraffic traffic;
  PeerServer server;
  Group* group = nullptr;
};

// Calls to peers that finished, over current and past members.
uint64_t FinishedCalls(const RingPeerPicker& picker) {
  uint64_t total = 0;
  for (const RingPeerPicker::PeerCallCount& c : picker.CallCounts()) total += c.count;
  return total;
}

// --- status_map ---

TEST(StatusMapTest, CodesMapOneToOneAndKeepMessages) {
  for (int c = 0; c <= 16; ++c) {
    const auto code = static_cast<absl::StatusCode>(c);
    EXPECT_EQ(static_cast<int>(ToGrpcCode(code)), c);
    EXPECT_EQ(FromGrpcCode(ToGrpcCode(code)), code);
  }
  grpc::Status g = ToGrpcStatus(absl::NotFoundError("no such group: x"));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(g.error_message(), "no such group: x");
  absl::Status a = FromGrpcStatus(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "big"));
  EXPECT_TRUE(absl::IsResourceExhausted(a));
  EXPECT_EQ(a.message(), "big");
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

TEST(StatusMapTest, TransportErrorsNameThePeer) {
  absl::Status d = FromPeerGrpcStatus(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "x"),
                                      "svc2", "127.0.0.1:8882", milliseconds(500));
  EXPECT_TRUE(absl::IsDeadlineExceeded(d));
  EXPECT_EQ(d.message(), "peer svc2 (127.0.0.1:8882): deadline exceeded after 500 ms");
  absl::Status u =
      FromPeerGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "failed to connect"), "svc2",
                         "127.0.0.1:8882", milliseconds(500));
  EXPECT_TRUE(absl::IsUnavailable(u));
  EXPECT_EQ(u.message(), "peer svc2 (127.0.0.1:8882) unavailable: failed to connect");
  absl::Status n = FromPeerGrpcStatus(grpc::Status(grpc::StatusCode::NOT_FOUND, "key not found"),
                                      "svc2", "127.0.0.1:8882", milliseconds(500));
  EXPECT_TRUE(absl::IsNotFound(n));
  EXPECT_EQ(n.message(), "key not found");
}

// --- GrpcPeer against one PeerServer ---

class GrpcPeerTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  std::atomic<int> loads_{0};
  TestNode node_{&clock_, OriginLoader(&loads_)};
  GrpcPeer peer_{"b", node_.address(), GrpcPeerOptions{.deadline = milliseconds(5000)}};
};

TEST_F(GrpcPeerTest, GetHitReturnsValueAndDeadline) {
  ASSERT_TRUE(SetSync(*node_.group, "k1", "v1", 60'000, false).ok());
  absl::StatusOr<CachedValue> local = GetSync(*node_.group, "k1");
  ASSERT_TRUE(local.ok());
  absl::StatusOr<CachedValue> r = PeerGet(peer_, "scores", "k1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->data, "v1");
  EXPECT_EQ(r->deadline, local->deadline);
  EXPECT_EQ(loads_.load(), 0);
  EXPECT_EQ(peer_.calls(), 1u);
  EXPECT_EQ(peer_.failures(), 0u);
  EXPECT_EQ(node_.traffic.served_grpc.load(), 1u);
}

TEST_F(GrpcPeerTest, GetMissRunsTheLoaderOnTheRemote) {
  absl::StatusOr<CachedValue> r = PeerGet(peer_, "scores", "db-7");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->data, "loaded:db-7");
  EXPECT_EQ(loads_.load(), 1);
  EXPECT_EQ(node_.group->store().main().items(), 1u);
  // Second Get is a hit on the remote.
  r = PeerGet(peer_, "scores", "db-7");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(loads_.load(), 1);
}

TEST_F(GrpcPeerTest, GetOfMissingKeyIsNotFoundAndNotAFailure) {
  absl::StatusOr<CachedValue> r = PeerGet(peer_, "scores", "nope");
  EXPECT_TRUE(absl::IsNotFound(r.status())) << r.status();
  EXPECT_EQ(peer_.calls(), 1u);
  EXPECT_EQ(peer_.failures(), 0u);
}

TEST_F(GrpcPeerTest, UnknownGroupIsNotFoundWithMessage) {
  absl::StatusOr<CachedValue> r = PeerGet(peer_, "players", "k");
  EXPECT_TRUE(absl::IsNotFound(r.status()));
  EXPECT_EQ(r.status().message(), "no such group: players");
  absl::Status s = PeerSet(peer_, "players", "k", "v", 1000, false);
  EXPECT_TRUE(absl::IsNotFound(s));
  EXPECT_EQ(s.message(), "no such group: players");
  s = PeerDelete(peer_, "players", "k");
  EXPECT_TRUE(absl::IsNotFound(s));
}

TEST_F(GrpcPeerTest, EmptyKeyIsInvalidArgument) {
  EXPECT_TRUE(absl::IsInvalidArgument(PeerGet(peer_, "scores", "").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(PeerSet(peer_, "scores", "", "v", 1000, false)));
  EXPECT_TRUE(absl::IsInvalidArgument(PeerDelete(peer_, "scores", "")));
}

TEST_F(GrpcPeerTest, SetWithTtlStoresWithJitteredDeadlineOnTheRemote) {
  const int64_t ttl = 10'000;
  const UnixMillis now = clock_.NowMillis();
  ASSERT_TRUE(PeerSet(peer_, "scores", "s1", "x", ttl, false).ok());
  EXPECT_EQ(node_.group->store().main().items(), 1u);
  EXPECT_EQ(node_.group->store().hot().items(), 0u);
  absl::StatusOr<CachedValue> r = GetSync(*node_.group, "s1");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->data, "x");
  EXPECT_GE(r->deadline, now + ttl);
  EXPECT_LE(r->deadline, now + ttl + ttl / 10);
  // Round trip of the deadline through Get.
  absl::StatusOr<CachedValue> remote = PeerGet(peer_, "scores", "s1");
  ASSERT_TRUE(remote.ok());
  EXPECT_EQ(remote->deadline, r->deadline);
}

TEST_F(GrpcPeerTest, SetHotGoesToTheHotCache) {
  ASSERT_TRUE(PeerSet(peer_, "scores", "h", "x", 10'000, true).ok());
  EXPECT_EQ(node_.group->store().main().items(), 0u);
  EXPECT_EQ(node_.group->store().hot().items(), 1u);
}

TEST_F(GrpcPeerTest, BinaryValuesSurvive) {
  const std::string value("a\0b\xff\x01", 5);
  ASSERT_TRUE(PeerSet(peer_, "scores", "bin", value, 10'000, false).ok());
  absl::StatusOr<CachedValue> r = PeerGet(peer_, "scores", "bin");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->data, value);
}

TEST_F(GrpcPeerTest, DeleteRemovesOnTheRemote) {
  ASSERT_TRUE(SetSync(*node_.group, "d", "v", 60'000, false).ok());
  ASSERT_TRUE(PeerDelete(peer_, "scores", "d").ok());
  std::string value;
  EXPECT_FALSE(node_.group->store().main().Get("d", &value));  // a tombstone is left, no value
  EXPECT_TRUE(absl::IsNotFound(PeerGet(peer_, "scores", "d").status()));
  // Deleting a missing key is fine.
  EXPECT_TRUE(PeerDelete(peer_, "scores", "d").ok());
}

TEST_F(GrpcPeerTest, ManyConcurrentCallsEachCompleteOnce) {
  constexpr int kCalls = 200;
  std::atomic<int> ok{0};
  std::atomic<int> completed{0};
  absl::Notification all_done;
  for (int i = 0; i < kCalls; ++i) {
    peer_.Get("scores", "db-" + std::to_string(i % 20), [&](absl::StatusOr<CachedValue> r) {
      if (r.ok()) ok.fetch_add(1);
      if (completed.fetch_add(1) + 1 == kCalls) all_done.Notify();
    });
  }
  ASSERT_TRUE(all_done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(ok.load(), kCalls);
  EXPECT_EQ(completed.load(), kCalls);
  EXPECT_LE(loads_.load(), kCalls);
  EXPECT_EQ(peer_.calls(), static_cast<uint64_t>(kCalls));
}

// The seed's SetRequest and malformed requests, sent with a raw stub.
class RawSetTest : public GrpcPeerTest {
 protected:
  grpc::Status RawSet(const nexuscachepb::SetRequest& req, nexuscachepb::SetResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    return stub_->Set(&ctx, req, resp);
  }
  std::shared_ptr<grpc::Channel> channel_ =
      grpc::CreateChannel(node_.address(), grpc::InsecureChannelCredentials());
  std::unique_ptr<nexuscachepb::NexusCache::Stub> stub_ =
      nexuscachepb::NexusCache::NewStub(channel_);
};

TEST_F(RawSetTest, SeedStyleExpireIsAbsoluteUnixSeconds) {
  nexuscachepb::SetRequest req;
  req.set_group("scores");
  req.set_key("seed");
  req.set_value("v");
  const int64_t expire = clock_.NowMillis() / 1000 + 120;
  req.set_expire(expire);
  nexuscachepb::SetResponse resp;
  grpc::Status s = RawSet(req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(resp.ok());
  absl::StatusOr<CachedValue> r = GetSync(*node_.group, "seed");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->deadline, expire * 1000);
}

TEST_F(RawSetTest, ExpireInThePastIsInvalidArgument) {
  nexuscachepb::SetRequest req;
  req.set_group("scores");
  req.set_key("old");
  req.set_value("v");
  req.set_expire(clock_.NowMillis() / 1000 - 10);
  nexuscachepb::SetResponse resp;
  grpc::Status s = RawSet(req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("in the past"));
  EXPECT_EQ(node_.group->store().main().items(), 0u);
}

TEST_F(RawSetTest, MissingTtlIsInvalidArgument) {
  nexuscachepb::SetRequest req;
  req.set_group("scores");
  req.set_key("k");
  req.set_value("v");
  nexuscachepb::SetResponse resp;
  grpc::Status s = RawSet(req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "ttl_ms, deadline_ms or expire required");
  EXPECT_TRUE(absl::IsInvalidArgument(FromGrpcStatus(s)));
  // Through GrpcPeer as well: ttl 0 sends nothing usable.
  absl::Status ps = PeerSet(peer_, "scores", "k", "v", 0, false);
  EXPECT_TRUE(absl::IsInvalidArgument(ps)) << ps;
  req.set_ttl_ms(-5);
  EXPECT_EQ(RawSet(req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(RawSetTest, FixedDeadlineIsStoredAsIs) {
  nexuscachepb::SetRequest req;
  req.set_group("scores");
  req.set_key("rep");
  req.set_value("v");
  req.set_deadline_ms(clock_.NowMillis() + 4242);
  req.set_ishot(true);
  nexuscachepb::SetResponse resp;
  ASSERT_TRUE(RawSet(req, &resp).ok());
  EXPECT_EQ(node_.group->store().hot().items(), 1u);
  absl::StatusOr<CachedValue> r = GetSync(*node_.group, "rep");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->deadline, clock_.NowMillis() + 4242);
}

// A loader that parks its callbacks until the test releases them.
class ParkingLoader final : public Loader {
 public:
  void Load(std::string_view key, LoadCallback done) override {
    std::lock_guard<std::mutex> lock(mu_);
    parked_.emplace_back(std::string(key), std::move(done));
    if (parked_.size() == 1) first_.Notify();
  }
  void ReleaseAll() {
    std::vector<std::pair<std::string, LoadCallback>> parked;
    {
      std::lock_guard<std::mutex> lock(mu_);
      parked.swap(parked_);
    }
    for (auto& [key, done] : parked) done("late:" + key);
  }
  absl::Notification first_;

 private:
  std::mutex mu_;
  std::vector<std::pair<std::string, LoadCallback>> parked_;
};

// The owner side is one OwnerService behind both transports: the same request gets the same
// code and message over gRPC and over the /peer/v1 HTTP routes.
class BothTransportsTest : public RawSetTest {
 protected:
  void SetUp() override {
    auto router = std::make_shared<http::Router>();
    InstallPeerRoutes(*router, &node_.owner);
    http_ = std::make_unique<http::Server>(
        http::ServerOptions{.address = "127.0.0.1", .port = 0, .threads = 1}, router);
    ASSERT_TRUE(http_->Start().ok());
  }
  void TearDown() override { http_->Stop(milliseconds(0)); }

  struct Request {
    std::string op;  // get, set, delete, replicate
    std::string group = "scores";
    std::string key = "k";
    std::string value = "v";
    int64_t ttl_ms = 0, deadline_ms = 0, expire = 0;
    uint64_t version = 0;  // replicate
    bool ring = false;     // replicate
    bool handoff = false;  // replicate
  };
  // "<absl code> <message>" (the message is empty on success).
  std::string OverGrpc(const Request& r) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::Status s;
    if (r.op == "get") {
      nexuscachepb::Request req;
      req.set_group(r.group);
      req.set_key(r.key);
      nexuscachepb::Response resp;
      s = stub_->Get(&ctx, req, &resp);
    } else if (r.op == "set") {
      nexuscachepb::SetRequest req;
      req.set_group(r.group);
      req.set_key(r.key);
      req.set_value(r.value);
      req.set_ttl_ms(r.ttl_ms);
      req.set_deadline_ms(r.deadline_ms);
      req.set_expire(r.expire);
      nexuscachepb::SetResponse resp;
      s = stub_->Set(&ctx, req, &resp);
    } else if (r.op == "replicate") {
      nexuscachepb::ReplicateRequest req;
      req.set_group(r.group);
      req.set_key(r.key);
      req.set_value(r.value);
      req.set_deadline_ms(r.deadline_ms);
      req.set_version(r.version);
      req.set_ring(r.ring);
      req.set_handoff(r.handoff);
      nexuscachepb::ReplicateResponse resp;
      s = stub_->Replicate(&ctx, req, &resp);
    } else {
      nexuscachepb::DeleteRequest req;
      req.set_group(r.group);
      req.set_key(r.key);
      nexuscachepb::DeleteResponse resp;
      s = stub_->Delete(&ctx, req, &resp);
    }
    const absl::Status a = FromGrpcStatus(s);
    return std::to_string(static_cast<int>(a.code())) + " " + std::string(a.message());
  }
  std::string OverHttp(const Request& r) {
    std::string target = r.op == "get"         ? std::string(peerwire::kGetPath)
                         : r.op == "set"       ? std::string(peerwire::kSetPath)
                         : r.op == "replicate" ? std::string(peerwire::kReplicatePath)
                                               : std::string(peerwire::kDeletePath);
    target += "?group=" + r.group + "&key=" + r.key;
    if (r.op == "replicate") {
      target += "&deadline_ms=" + std::to_string(r.deadline_ms) +
                "&version=" + std::to_string(r.version) + (r.ring ? "&ring=1" : "&ring=0") +
                (r.handoff ? "&handoff=1" : "");
    }
    if (r.op == "set") {
      for (auto [name, v] : {std::pair{"ttl_ms", r.ttl_ms}, std::pair{"deadline_ms", r.deadline_ms},
                             std::pair{"expire", r.expire}}) {
        if (v != 0) target += std::string("&") + name + "=" + std::to_string(v);
      }
    }
    const testing::HttpResult answer =
        testing::Http(http_->port(), r.op == "get" ? "GET" : "POST", target,
                      r.op == "set" || r.op == "replicate" ? r.value : "", milliseconds(5000),
                      "application/octet-stream");
    std::string header(peerwire::kStatusHeader);
    std::transform(header.begin(), header.end(), header.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    const auto code = answer.headers.find(header);
    if (code == answer.headers.end()) return "bad: " + answer.error + " " + answer.body;
    // A successful get carries the value as its body; compare statuses only.
    return code->second + " " + (code->second == "0" ? "" : answer.body);
  }

  std::unique_ptr<http::Server> http_;
};

TEST_F(BothTransportsTest, EveryRequestGetsTheSameAnswer) {
  const int64_t now = clock_.NowMillis();
  const std::vector<std::pair<Request, std::string>> cases = {
      {{.op = "set", .ttl_ms = 60'000}, "0 "},
      {{.op = "set", .deadline_ms = now + 60'000}, "0 "},
      {{.op = "set", .expire = now / 1000 + 60}, "0 "},
      {{.op = "set"}, "3 ttl_ms, deadline_ms or expire required"},
      {{.op = "set", .ttl_ms = -1}, "3 ttl_ms, deadline_ms and expire must not be negative"},
      {{.op = "set", .expire = now / 1000 - 10},
       "3 expire " + std::to_string(now / 1000 - 10) + " (unix seconds) is in the past (now " +
           std::to_string(now / 1000) + ")"},
      {{.op = "set", .group = "", .ttl_ms = 1}, "3 a group name is required"},
      {{.op = "set", .group = "nope", .ttl_ms = 1}, "5 no such group: nope"},
      {{.op = "set", .key = "", .ttl_ms = 1}, "3 a non-empty key is required"},
      {{.op = "get"}, "0 "},
      {{.op = "get", .key = ""}, "3 a non-empty key is required"},
      {{.op = "get", .group = "nope"}, "5 no such group: nope"},
      {{.op = "delete", .key = ""}, "3 a non-empty key is required"},
      {{.op = "delete", .group = ""}, "3 a group name is required"},
      {{.op = "delete"}, "0 "},
      {{.op = "replicate", .key = "r", .deadline_ms = now + 60'000, .version = 5}, "0 "},
      {{.op = "replicate", .key = "q", .version = 7, .ring = true}, "0 "},
      {{.op = "replicate", .key = "h", .version = 9, .ring = true, .handoff = true}, "0 "},
      {{.op = "replicate", .version = 0}, "3 a replica needs a version"},
      {{.op = "replicate", .key = "", .version = 1}, "3 a non-empty key is required"},
      {{.op = "replicate", .group = "nope", .version = 1}, "5 no such group: nope"},
  };
  for (const auto& [request, want] : cases) {
    EXPECT_EQ(OverGrpc(request), want) << request.op;
    EXPECT_EQ(OverHttp(request), want) << request.op;
  }
  // The pushes landed where they belong, through either transport: a hot copy and a ring copy.
  std::string value;
  EXPECT_TRUE(node_.group->store().hot().Get("r", &value));
  EXPECT_TRUE(node_.group->store().main().Get("q", &value));
  // A handed-over copy is a ring copy, counted apart (once per transport; the second is stale).
  EXPECT_TRUE(node_.group->store().main().Get("h", &value));
  EXPECT_EQ(node_.group->store().stats().handoff_received, 1u);
}

TEST_F(BothTransportsTest, AReplicateRouteWithoutIntegersIsRefused) {
  const testing::HttpResult r =
      testing::Http(http_->port(), "POST",
                    std::string(peerwire::kReplicatePath) + "?group=scores&key=k&version=x", "v",
                    milliseconds(5000), "application/octet-stream");
  EXPECT_EQ(r.headers.at("x-nexus-status"), "3");
  EXPECT_EQ(r.body, "deadline_ms and version must be integers");
}

TEST(PeerServerTest, AsyncLoadCompletesTheCallLater) {
  FakeClock clock;
  auto loader = std::make_shared<ParkingLoader>();
  TestNode node(&clock, loader);
  GrpcPeer peer("b", node.address());
  absl::Notification done;
  absl::StatusOr<CachedValue> out;
  peer.Get("scores", "slow", [&](absl::StatusOr<CachedValue> r) {
    out = std::move(r);
    done.Notify();
  });
  ASSERT_TRUE(loader->first_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_FALSE(done.HasBeenNotified());
  loader->ReleaseAll();  // completes on this thread, not a gRPC thread
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->data, "late:slow");
}

TEST(PeerServerTest, StopDoesNotWaitForeverForAStuckLoad) {
  FakeClock clock;
  auto loader = std::make_shared<ParkingLoader>();
  TestNode node(&clock, loader);
  GrpcPeer peer("b", node.address(), GrpcPeerOptions{.deadline = milliseconds(10'000)});
  absl::Notification done;
  absl::Status status;
  peer.Get("scores", "stuck", [&](absl::StatusOr<CachedValue> r) {
    status = r.status();
    done.Notify();
  });
  ASSERT_TRUE(loader->first_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  const auto start = std::chrono::steady_clock::now();
  node.server.Stop(milliseconds(100));
  const auto stop_ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(stop_ms, 3000);
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_FALSE(status.ok());
  // The late load result must be dropped without touching the finished call.
  loader->ReleaseAll();
  EXPECT_EQ(node.group->store().main().items(), 1u);  // but it is cached
}

TEST(PeerServerTest, StartOnAPortInUseFailsClearly) {
  GroupRegistry registry;
  OwnerService owner(&registry, &SystemClock::Get());
  PeerServer first(&owner, PeerServerOptions{.address = "127.0.0.1", .port = 0});
  ASSERT_TRUE(first.Start().ok());
  PeerServer second(&owner, PeerServerOptions{.address = "127.0.0.1", .port = first.port()});
  absl::Status s = second.Start();
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_EQ(s.message(), "grpc: cannot listen on 127.0.0.1:" + std::to_string(first.port()) +
                             " (address in use?)");
  EXPECT_EQ(second.port(), 0);
  second.Stop(milliseconds(0));  // harmless when not started
  EXPECT_TRUE(absl::IsFailedPrecondition(first.Start()));
  first.Stop(milliseconds(100));
  first.Stop(milliseconds(100));  // idempotent
}

// --- dead peers ---

// A TCP socket bound on loopback. listen=false: bound but not listening, so connections are
// refused (and nobody else can take the port meanwhile). listen=true: a thread accepts
// connections and never reads from or writes to them (a hung peer).
class RawSocket {
 public:
  explicit RawSocket(bool listen) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_GE(fd_, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
    if (listen) {
      EXPECT_EQ(::listen(fd_, 16), 0);
      acceptor_ = std::thread([this] { AcceptLoop(); });
    }
  }
  ~RawSocket() {
    stop_.store(true);
    if (acceptor_.joinable()) acceptor_.join();
    for (int fd : accepted_) ::close(fd);
    ::close(fd_);
  }
  uint16_t port() const { return port_; }
  int accepted() const { return accepted_count_.load(); }

 private:
  void AcceptLoop() {
    while (!stop_.load()) {
      pollfd p{.fd = fd_, .events = POLLIN, .revents = 0};
      if (::poll(&p, 1, 20) > 0) {
        int fd = ::accept(fd_, nullptr, nullptr);
        if (fd >= 0) {
          accepted_.push_back(fd);
          accepted_count_.fetch_add(1);
        }
      }
    }
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_count_{0};
  std::vector<int> accepted_;  // only the acceptor thread touches it until it is joined
  std::thread acceptor_;
};

int64_t ElapsedMs(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - since).count();
}

TEST(DeadPeerTest, RefusedConnectionFailsFastAndNamesThePeer) {
  RawSocket refused(/*listen=*/false);
  const std::string address = Loopback(refused.port());
  GrpcPeer peer("svc2", address, GrpcPeerOptions{.deadline = milliseconds(2000)});
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<CachedValue> r = PeerGet(peer, "scores", "k");
    const int64_t ms = ElapsedMs(start);
    std::printf("refused peer: call %d failed after %lld ms: %s\n", i, static_cast<long long>(ms),
                r.status().ToString().c_str());
    EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("peer svc2 (" + address + ")"));
    EXPECT_LT(ms, 1000);
  }
  const auto start = std::chrono::steady_clock::now();
  absl::Status s = PeerSet(peer, "scores", "k", "v", 1000, false);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_LT(ElapsedMs(start), 1000);
  EXPECT_EQ(peer.calls(), 4u);
  EXPECT_EQ(peer.failures(), 4u);
}

TEST(DeadPeerTest, HungPeerFailsWithDeadlineExceededAfterTheDeadline) {
  RawSocket hung(/*listen=*/true);
  const std::string address = Loopback(hung.port());
  {
    GrpcPeer peer("svc2", address, GrpcPeerOptions{.deadline = milliseconds(300)});
    for (int i = 0; i < 2; ++i) {
      const auto start = std::chrono::steady_clock::now();
      absl::StatusOr<CachedValue> r = PeerGet(peer, "scores", "k");
      const int64_t ms = ElapsedMs(start);
      std::printf("hung peer: call %d failed after %lld ms: %s\n", i, static_cast<long long>(ms),
                  r.status().ToString().c_str());
      EXPECT_TRUE(absl::IsDeadlineExceeded(r.status())) << r.status();
      EXPECT_EQ(r.status().message(),
                "peer svc2 (" + address + "): deadline exceeded after 300 ms");
      EXPECT_GE(ms, 250);
      EXPECT_LT(ms, 1500);
    }
    EXPECT_EQ(peer.failures(), 2u);
  }
  EXPECT_GE(hung.accepted(), 1);
}

TEST(DeadPeerTest, PeerThatComesBackIsReachedAgain) {
  FakeClock clock;
  uint16_t port = 0;
  {
    TestNode node(&clock, OriginLoader(nullptr));
    port = node.server.port();
  }
  GrpcPeer peer(
      "b", Loopback(port),
      GrpcPeerOptions{.deadline = milliseconds(1000), .max_reconnect_backoff = milliseconds(200)});
  EXPECT_TRUE(absl::IsUnavailable(PeerGet(peer, "scores", "db-1").status()));
  GroupRegistry registry;
  OwnerService owner(&registry, &clock);
  PeerServer server(&owner, PeerServerOptions{.address = "127.0.0.1", .port = port});
  if (!server.Start().ok()) GTEST_SKIP() << "port " << port << " was taken meanwhile";
  ASSERT_TRUE(registry
                  .Add(std::make_unique<Group>(GroupOptions{.name = "scores"},
                                               OriginLoader(nullptr), nullptr, &clock))
                  .ok());
  // The channel is in backoff; within a couple of seconds it must reconnect.
  absl::StatusOr<CachedValue> r;
  const auto start = std::chrono::steady_clock::now();
  do {
    r = PeerGet(peer, "scores", "db-1");
    if (!r.ok()) std::this_thread::sleep_for(milliseconds(50));
  } while (!r.ok() && ElapsedMs(start) < 5000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->data, "loaded:db-1");
  server.Stop(milliseconds(0));
}

// --- RingPeerPicker ---

// A key whose owner (as `picker` sees it) is `owner`.
std::string KeyOwnedBy(const RingPeerPicker& picker, const std::string& owner, int skip = 0) {
  for (int i = 0; i < 100'000; ++i) {
    std::string key = "key-" + std::to_string(i);
    if (picker.OwnerOf(key) == owner && skip-- == 0) return key;
  }
  ADD_FAILURE() << "no key owned by " << owner;
  return "";
}

TEST(RingPeerPickerTest, SelfIsAlwaysAMemberAndNeverRemoved) {
  RingPeerPicker picker("a", "127.0.0.1:1");
  EXPECT_EQ(picker.self(), "a");
  EXPECT_EQ(picker.Members(),
            (std::vector<std::pair<std::string, std::string>>{{"a", "127.0.0.1:1"}}));
  const uint64_t gen = picker.generation();
  EXPECT_FALSE(picker.RemoveMember("a"));
  EXPECT_FALSE(picker.AddMember("a", "127.0.0.1:999"));
  EXPECT_EQ(picker.generation(), gen);
  EXPECT_EQ(picker.PickPeer("anything"), nullptr);
  picker.SetMembers({{"b", "127.0.0.1:2"}});  // self not listed: still kept
  EXPECT_EQ(picker.Members(), (std::vector<std::pair<std::string, std::string>>{
                                  {"a", "127.0.0.1:1"}, {"b", "127.0.0.1:2"}}));
  picker.SetMembers(std::map<std::string, std::string>{});
  EXPECT_EQ(picker.Members().size(), 1u);
  EXPECT_EQ(picker.OwnerOf("x"), "a");
}

TEST(RingPeerPickerTest, ReplicaSetsFollowTheRingWithTheirGeneration) {
  RingPeerPicker picker("a", "127.0.0.1:1");
  picker.SetMembers({{"b", "127.0.0.1:2"}, {"c", "127.0.0.1:3"}});
  for (int i = 0; i < 200; ++i) {
    const std::string key = "k" + std::to_string(i);
    const ReplicaSet one = picker.PickReplicas(key, 1);
    ASSERT_EQ(one.members.size(), 1u);
    EXPECT_EQ(one.members[0], picker.PickPeer(key));  // n = 1 is today's owner
    EXPECT_EQ(one.generation, picker.generation());
    const ReplicaSet all = picker.PickReplicas(key, kEveryMember);  // the 3 members
    ASSERT_EQ(all.members.size(), 3u);
    EXPECT_EQ(all.members[0], one.members[0]);
    // Every member exactly once; this node (a null entry) among them.
    EXPECT_EQ(std::count(all.members.begin(), all.members.end(), nullptr), 1);
    EXPECT_NE(all.members[0], all.members[1]);
    EXPECT_NE(all.members[1], all.members[2]);
    EXPECT_NE(all.members[0], all.members[2]);
  }
  EXPECT_TRUE(picker.PickReplicas("k", 0).members.empty());
}

TEST(RingPeerPickerTest, AddMemberIsIdempotentAndReplacesOnNewAddress) {
  RingPeerPicker picker("a", "127.0.0.1:1");
  EXPECT_TRUE(picker.AddMember("b", "127.0.0.1:2"));
  const uint64_t gen = picker.generation();
  EXPECT_FALSE(picker.AddMember("b", "127.0.0.1:2"));
  EXPECT_EQ(picker.generation(), gen);

  const std::string key = KeyOwnedBy(picker, "b");
  std::shared_ptr<Peer> before = picker.PickPeer(key);
  ASSERT_NE(before, nullptr);
  EXPECT_EQ(static_cast<RemotePeer*>(before.get())->grpc()->address(), "127.0.0.1:2");

  EXPECT_TRUE(picker.AddMember("b", "127.0.0.1:3"));
  EXPECT_EQ(picker.generation(), gen);  // same member set, same owners
  std::shared_ptr<Peer> after = picker.PickPeer(key);
  ASSERT_NE(after, nullptr);
  EXPECT_NE(after, before);
  EXPECT_EQ(static_cast<RemotePeer*>(after.get())->grpc()->address(), "127.0.0.1:3");
  EXPECT_EQ(static_cast<RemotePeer*>(after.get())->name(), "b");
}

TEST(RingPeerPickerTest, MembersThatLeftAreRememberedAndTheFirstToLeaveIsForgottenFirst) {
  RingPeerPicker picker("a", "127.0.0.1:1");
  ASSERT_TRUE(picker.AddMember("zz", "10.0.0.9:1", "10.0.0.9:2"));
  ASSERT_TRUE(picker.RemoveMember("zz"));
  const std::optional<MemberInfo> zz = picker.KnownMember("zz");
  ASSERT_TRUE(zz.has_value());
  EXPECT_EQ(zz->grpc, "10.0.0.9:1");
  EXPECT_EQ(zz->http, "10.0.0.9:2");
  // kMaxRemembered more leave, each sorted before "zz": "zz" left first and is forgotten.
  for (size_t i = 0; i < RingPeerPicker::kMaxRemembered; ++i) {
    const std::string name = "m" + std::to_string(10000 + i);
    ASSERT_TRUE(picker.AddMember(name, "10.0.1.1:" + std::to_string(i + 1)));
    ASSERT_TRUE(picker.RemoveMember(name));
  }
  EXPECT_FALSE(picker.KnownMember("zz").has_value());
  EXPECT_TRUE(picker.KnownMember("m10000").has_value());
  EXPECT_EQ(picker.KnownMember("m10001")->grpc, "10.0.1.1:2");
}

TEST(RingPeerPickerTest, TheObserverHearsOfEveryChangeBeforeAndAfterTheRingChanges) {
  RingPeerPicker picker("a", "127.0.0.1:1");
  struct Recorder final : RingPeerPicker::Observer {
    RingPeerPicker* picker = nullptr;
    std::vector<std::string> events;
    void MembersChanging() override {
      events.push_back("changing at generation " + std::to_string(picker->generation()));
    }
    void MembersChanged(const std::vector<RingPeerPicker::Joined>& joined) override {
      std::string e = "changed at generation " + std::to_string(picker->generation()) + ":";
      for (const auto& j : joined) {
        e += " " + j.name + (j.restarted ? " (restarted)" : "") + (j.client ? "" : " no client");
      }
      events.push_back(e);
    }
  } recorder;
  recorder.picker = &picker;
  picker.set_observer(&recorder);
  const uint64_t g = picker.generation();
  const auto at = [g](uint64_t plus) { return std::to_string(g + plus); };
  EXPECT_TRUE(picker.AddMember("b", "127.0.0.1:2"));   // the seed's /setpeer
  EXPECT_FALSE(picker.AddMember("b", "127.0.0.1:2"));  // no change: told, nobody joined
  EXPECT_TRUE(picker.AddMember("b", "127.0.0.1:3"));   // moved: a new client
  picker.SetMembers(std::map<std::string, MemberInfo>{
      // etcd: c joins, b restarts
      {"b", {.grpc = "127.0.0.1:3", .incarnation = "7"}},
      {"c", {.grpc = "127.0.0.1:4"}}});
  EXPECT_FALSE(picker.AddMember("a", "127.0.0.1:9"));  // self: not a change, not told
  EXPECT_EQ(recorder.events, (std::vector<std::string>{
                                 "changing at generation " + at(0),
                                 "changed at generation " + at(1) + ": b",
                                 "changing at generation " + at(1),
                                 "changed at generation " + at(1) + ":",
                                 "changing at generation " + at(1),
                                 "changed at generation " + at(1) + ": b",
                                 "changing at generation " + at(1),
                                 "changed at generation " + at(2) + ": b (restarted) c",
                             }));
  picker.set_observer(nullptr);
}

TEST(RingPeerPickerTest, HttpAddressesAreKeptUnlessForwardingIsGrpcOnly) {
  RingPeerPicker picker("a", "127.0.0.1:1");
  picker.SetMembers(std::map<std::string, MemberInfo>{
      {"b", {.grpc = "127.0.0.1:2", .http = "127.0.0.1:9992"}}, {"c", {.grpc = "127.0.0.1:3"}}});
  auto b = std::static_pointer_cast<RemotePeer>(picker.PickPeer(KeyOwnedBy(picker, "b")));
  auto c = std::static_pointer_cast<RemotePeer>(picker.PickPeer(KeyOwnedBy(picker, "c")));
  EXPECT_TRUE(b->forwards_over_http());
  EXPECT_EQ(b->http_address(), "127.0.0.1:9992");
  EXPECT_FALSE(c->forwards_over_http());
  // A new HTTP address alone replaces the client (no generation bump: same owners).
  const uint64_t gen = picker.generation();
  EXPECT_TRUE(picker.AddMember("b", "127.0.0.1:2", "127.0.0.1:9993"));
  EXPECT_EQ(picker.generation(), gen);
  // /setpeer names no HTTP address: the known one stays.
  EXPECT_FALSE(picker.AddMember("b", "127.0.0.1:2"));
  auto b2 = std::static_pointer_cast<RemotePeer>(picker.PickPeer(KeyOwnedBy(picker, "b")));
  EXPECT_EQ(b2->http_address(), "127.0.0.1:9993");

  RingPickerOptions grpc_only;
  grpc_only.forward_over_http = false;
  RingPeerPicker g("a", "127.0.0.1:1", grpc_only);
  g.AddMember("b", "127.0.0.1:2", "127.0.0.1:9992");
  auto gb = std::static_pointer_cast<RemotePeer>(g.PickPeer(KeyOwnedBy(g, "b")));
  EXPECT_FALSE(gb->forwards_over_http());
}

TEST(RingPeerPickerTest, ClientsAreReusedPerMember) {
  RingPeerPicker picker("a", "127.0.0.1:1");
  picker.SetMembers({{"b", "127.0.0.1:2"}, {"c", "127.0.0.1:3"}});
  const std::string k1 = KeyOwnedBy(picker, "b", 0);
  const std::string k2 = KeyOwnedBy(picker, "b", 1);
  ASSERT_NE(k1, k2);
  std::shared_ptr<Peer> p1 = picker.PickPeer(k1);
  ASSERT_NE(p1, nullptr);
  EXPECT_EQ(picker.PickPeer(k1), p1);
  EXPECT_EQ(picker.PickPeer(k2), p1);
  std::shared_ptr<Peer> pc = picker.PickPeer(KeyOwnedBy(picker, "c"));
  ASSERT_NE(pc, nullptr);
  EXPECT_NE(pc, p1);
  EXPECT_EQ(picker.PickPeer(KeyOwnedBy(picker, "a")), nullptr);
}

TEST(RingPeerPickerTest, SetMembersReplacesMembershipInOneGeneration) {
  RingPeerPicker picker("a", "127.0.0.1:1");
  picker.SetMembers({{"b", "127.0.0.1:2"}, {"c", "127.0.0.1:3"}});
  const uint64_t gen = picker.generation();
  std::weak_ptr<Peer> b_client = picker.PickPeer(KeyOwnedBy(picker, "b"));
  std::shared_ptr<Peer> c_client = picker.PickPeer(KeyOwnedBy(picker, "c"));
  ASSERT_FALSE(b_client.expired());

  picker.SetMembers({{"c", "127.0.0.1:3"}, {"d", "127.0.0.1:4"}, {"a", "ignored:0"}});
  EXPECT_EQ(picker.generation(), gen + 1);
  EXPECT_EQ(picker.Members(),
            (std::vector<std::pair<std::string, std::string>>{
                {"a", "127.0.0.1:1"}, {"c", "127.0.0.1:3"}, {"d", "127.0.0.1:4"}}));
  EXPECT_TRUE(b_client.expired());                                // dropped
  EXPECT_EQ(picker.PickPeer(KeyOwnedBy(picker, "c")), c_client);  // kept
  for (int i = 0; i < 1000; ++i) {
    EXPECT_NE(picker.OwnerOf("k" + std::to_string(i)), "b");
  }

  picker.SetMembers({{"c", "127.0.0.1:3"}, {"d", "127.0.0.1:4"}});
  EXPECT_EQ(picker.generation(), gen + 1);  // unchanged set: no bump
  EXPECT_TRUE(picker.RemoveMember("d"));
  EXPECT_FALSE(picker.RemoveMember("d"));
  EXPECT_EQ(picker.generation(), gen + 2);
}

TEST(RingPeerPickerTest, AMemberBackWithANewIncarnationIsReportedAsRestarted) {
  RingPeerPicker picker("a", "127.0.0.1:1");
  using Members = std::map<std::string, MemberInfo>;
  std::vector<RingPeerPicker::Joined> joined =
      picker.SetMembers(Members{{"b", {.grpc = "127.0.0.1:2", .incarnation = "1"}}});
  ASSERT_EQ(joined.size(), 1u);
  EXPECT_EQ(joined[0].name, "b");
  EXPECT_FALSE(joined[0].restarted);
  const uint64_t gen = picker.generation();
  EXPECT_TRUE(picker.SetMembers(Members{{"b", {.grpc = "127.0.0.1:2", .incarnation = "1"}}})
                  .empty());  // nothing new
  joined = picker.SetMembers(Members{{"b", {.grpc = "127.0.0.1:2", .incarnation = "2"}}});
  ASSERT_EQ(joined.size(), 1u);
  EXPECT_TRUE(joined[0].restarted);
  EXPECT_NE(joined[0].client, nullptr);
  EXPECT_EQ(picker.generation(), gen);  // the ring is the same
  // A new address is a move, not a restart.
  joined = picker.SetMembers(Members{{"b", {.grpc = "127.0.0.1:3", .incarnation = "2"}}});
  ASSERT_EQ(joined.size(), 1u);
  EXPECT_FALSE(joined[0].restarted);
  // /setpeer does not know incarnations: the same address keeps the one known.
  EXPECT_FALSE(picker.AddMember("b", "127.0.0.1:3"));
}

TEST(RingPeerPickerTest, ConcurrentPicksDuringMembershipChanges) {
  const spdlog::level::level_enum level = spdlog::get_level();
  spdlog::set_level(spdlog::level::warn);  // membership changes log at info
  RingPeerPicker picker("a", "127.0.0.1:1");
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      int i = 0;
      while (!stop.load()) {
        std::string key = "k" + std::to_string(t) + "-" + std::to_string(i++);
        std::shared_ptr<Peer> p = picker.PickPeer(key);
        if (p != nullptr) {
          EXPECT_NE(static_cast<RemotePeer*>(p.get())->name(), "a");
        }
      }
    });
  }
  for (int round = 0; round < 200; ++round) {
    picker.SetMembers({{"b", "127.0.0.1:2"}, {"c", "127.0.0.1:3"}});
    picker.AddMember("d", "127.0.0.1:4");
    picker.RemoveMember("b");
    picker.SetMembers(std::map<std::string, std::string>{});
  }
  stop.store(true);
  for (auto& t : readers) t.join();
  spdlog::set_level(level);
}

// --- two nodes forwarding through Group + RingPeerPicker ---

class TwoNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_ = std::make_unique<TestNode>(&clock_, nullptr);
    b_ = std::make_unique<TestNode>(&clock_, nullptr);
    picker_a_ = std::make_shared<RingPeerPicker>("a", a_->address());
    picker_b_ = std::make_shared<RingPeerPicker>("b", b_->address());
    picker_a_->AddMember("b", b_->address());
    picker_b_->AddMember("a", a_->address());
    a_->AddGroup(&clock_, OriginLoader(&loads_a_), picker_a_);
    b_->AddGroup(&clock_, OriginLoader(&loads_b_), picker_b_);
  }
  void TearDown() override {
    // Servers stop before the groups they serve are destroyed (TestNode member order).
    a_.reset();
    b_.reset();
  }

  FakeClock clock_;
  std::atomic<int> loads_a_{0};
  std::atomic<int> loads_b_{0};
  std::unique_ptr<TestNode> a_;
  std::unique_ptr<TestNode> b_;
  std::shared_ptr<RingPeerPicker> picker_a_;
  std::shared_ptr<RingPeerPicker> picker_b_;
};

TEST_F(TwoNodeTest, BothNodesAgreeOnOwners) {
  for (int i = 0; i < 200; ++i) {
    const std::string key = "k" + std::to_string(i);
    EXPECT_EQ(picker_a_->OwnerOf(key), picker_b_->OwnerOf(key));
  }
}

TEST_F(TwoNodeTest, SetAndGetAreForwardedToTheOwnerWhichAloneStores) {
  const std::string key = KeyOwnedBy(*picker_a_, "b");
  ASSERT_TRUE(SetSync(*a_->group, key, "v-b", 60'000, false).ok());
  EXPECT_EQ(a_->group->store().main().items(), 0u);
  EXPECT_EQ(a_->group->store().hot().items(), 0u);
  EXPECT_EQ(b_->group->store().main().items(), 1u);

  absl::StatusOr<CachedValue> r = GetSync(*a_->group, key);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->data, "v-b");
  EXPECT_EQ(a_->group->store().main().items(), 0u);  // the forwarder does not keep a copy
  EXPECT_EQ(a_->group->stats().peer_gets, 1u);
  EXPECT_GE(FinishedCalls(*picker_a_), 2u);

  // A key a owns stays on a.
  const std::string mine = KeyOwnedBy(*picker_a_, "a");
  ASSERT_TRUE(SetSync(*a_->group, mine, "v-a", 60'000, false).ok());
  EXPECT_EQ(a_->group->store().main().items(), 1u);
  EXPECT_EQ(b_->group->store().main().items(), 1u);
  r = GetSync(*b_->group, mine);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->data, "v-a");
}

TEST_F(TwoNodeTest, MissIsLoadedOnTheOwnerOnly) {
  std::string owned_by_b;  // a key the origin has ("db-" prefix) and b owns
  for (int i = 0; owned_by_b.empty(); ++i) {
    std::string k = "db-" + std::to_string(i);
    if (picker_a_->OwnerOf(k) == "b") owned_by_b = k;
  }
  absl::StatusOr<CachedValue> r = GetSync(*a_->group, owned_by_b);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->data, "loaded:" + owned_by_b);
  EXPECT_EQ(loads_a_.load(), 0);
  EXPECT_EQ(loads_b_.load(), 1);
  EXPECT_EQ(b_->group->store().main().items(), 1u);
  EXPECT_EQ(a_->group->store().main().items(), 0u);
  // A key nobody has: NotFound, 404-worthy, from the owner.
  EXPECT_TRUE(absl::IsNotFound(GetSync(*a_->group, KeyOwnedBy(*picker_a_, "b")).status()));
}

TEST_F(TwoNodeTest, DeleteIsForwarded) {
  const std::string key = KeyOwnedBy(*picker_a_, "b");
  ASSERT_TRUE(SetSync(*b_->group, key, "v", 60'000, false).ok());
  EXPECT_EQ(b_->group->store().main().items(), 1u);
  ASSERT_TRUE(DeleteSync(*a_->group, key).ok());
  std::string value;
  EXPECT_FALSE(b_->group->store().main().Get(key, &value));
}

TEST_F(TwoNodeTest, OwnerDownIsAnErrorNamingIt) {
  const std::string key = KeyOwnedBy(*picker_a_, "b");
  const std::string b_address = b_->address();
  b_->server.Stop(milliseconds(0));
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<CachedValue> r = GetSync(*a_->group, key);
  EXPECT_LT(ElapsedMs(start), 2000);
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("peer b (" + b_address + ")"));
  // Once b leaves the ring, a owns the key.
  EXPECT_TRUE(picker_a_->RemoveMember("b"));
  EXPECT_EQ(picker_a_->PickPeer(key), nullptr);
  EXPECT_GE(FinishedCalls(*picker_a_), 1u);  // calls of the dropped client still count
}

}  // namespace
}  // namespace nexus
