// HTTP forwarding between real servers on loopback (peer/forwarder.h, remote_peer.h,
// http_routes.h): an owner serving the forwarding routes on an http::Server and the gRPC
// service on a PeerServer, and a front http::Server whose handlers call a RemotePeer on their
// loop thread, as the node's API does.

#include "peer/forwarder.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "group/group.h"
#include "group/loader.h"
#include "group/registry.h"
#include "http/connection.h"
#include "http/server.h"
#include "io/connection.h"
#include "io/event_loops.h"
#include "io/loop.h"
#include "peer/grpc_server.h"
#include "peer/http_routes.h"
#include "peer/http_wire.h"
#include "peer/remote_peer.h"
#include "support/process.h"
#include "support/wait.h"

namespace nexus {
namespace {

using testing::FreePort;
using testing::ListenLoopback;
using testing::WaitFor;

using std::chrono::milliseconds;
using ::testing::HasSubstr;

std::string Loopback(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

// A listening socket that never accepts: connections complete (the kernel's backlog) and
// requests are never answered.
struct Blackhole {
  Blackhole() { fd = ListenLoopback(&port); }
  ~Blackhole() { ::close(fd); }
  int fd;
  uint16_t port;
};

// A stand-in owner on a raw socket: reads one request per connection, writes `answer` and
// closes at once (the answer and the FIN arrive together).
class AnswerAndClose {
 public:
  explicit AnswerAndClose(std::string answer) : answer_(std::move(answer)) {
    fd_ = ListenLoopback(&port_);
    thread_ = std::thread([this] {
      for (;;) {
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;  // shut down
        std::string in;
        char buf[4096];
        for (ssize_t n;
             in.find("\r\n\r\n") == std::string::npos && (n = ::recv(c, buf, sizeof buf, 0)) > 0;) {
          in.append(buf, n);
        }
        accepted_++;  // before answering: the test reads it once it has the answer
        // Corked, the answer leaves with the FIN in one segment when the socket closes, so
        // the forwarder sees both in one event however the threads are scheduled.
        const int one = 1;
        ::setsockopt(c, IPPROTO_TCP, TCP_CORK, &one, sizeof one);
        ::send(c, answer_.data(), answer_.size(), MSG_NOSIGNAL);
        ::close(c);
      }
    });
  }
  ~AnswerAndClose() {
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }
  int accepted() const { return accepted_.load(); }

 private:
  const std::string answer_;
  int fd_;
  uint16_t port_;
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

// One request on a fresh connection: "<status> <body>".
std::string Fetch(uint16_t port, std::string_view method, std::string_view target,
                  std::string_view body = {}) {
  const testing::HttpResult r =
      testing::Http(port, std::string(method), std::string(target), std::string(body),
                    std::chrono::milliseconds(5000), "application/octet-stream");
  if (r.status == 0) return "no answer: " + r.error;
  return std::to_string(r.status) + " " + r.body;
}

// The origin of the owner's group: "db-*" keys exist, "slow-*" keys are answered only by
// ReleaseSlow() (from the test's thread, as a real origin answers from its client's thread),
// everything else is NotFound.
class TestLoader final : public Loader {
 public:
  void Load(std::string_view key, LoadCallback done) override {
    loads.fetch_add(1);
    if (key.substr(0, 5) == "slow-") {
      std::lock_guard<std::mutex> lock(mu_);
      parked_.emplace_back(std::string(key), std::move(done));
      return;
    }
    if (key.substr(0, 3) == "db-") return done("loaded:" + std::string(key));
    done(absl::NotFoundError("origin has no " + std::string(key)));
  }
  void ReleaseSlow() {
    std::vector<std::pair<std::string, LoadCallback>> parked;
    {
      std::lock_guard<std::mutex> lock(mu_);
      parked.swap(parked_);
    }
    for (auto& [key, done] : parked) done("slow:" + key);
  }
  std::atomic<int> loads{0};

 private:
  std::mutex mu_;
  std::vector<std::pair<std::string, LoadCallback>> parked_;
};

// The owner: group "scores" over a TestLoader, the forwarding routes on HTTP, and the gRPC
// service for fallbacks.
struct Owner {
  Owner() : grpc(&owner, PeerServerOptions{.address = "127.0.0.1", .port = 0}) {
    auto g = std::make_unique<Group>(GroupOptions{.name = "scores", .jitter_seed = 7}, loader,
                                     nullptr, &SystemClock::Get());
    group = g.get();
    EXPECT_TRUE(registry.Add(std::move(g)).ok());
    auto router = std::make_shared<http::Router>();
    InstallPeerRoutes(*router, &owner);
    http = std::make_unique<http::Server>(
        http::ServerOptions{.address = "127.0.0.1", .port = 0, .threads = 2}, router);
    EXPECT_TRUE(http->Start().ok());
    EXPECT_TRUE(grpc.Start().ok());
  }
  ~Owner() {
    loader->ReleaseSlow();
    http->Stop(milliseconds(0));
    grpc.Stop(milliseconds(0));
  }
  std::string http_address() const { return Loopback(http->port()); }
  std::string grpc_address() const { return Loopback(grpc.port()); }
  int loads() const { return loader->loads.load(); }
  bool Stored(const std::string& key, std::string* value) {
    return group->store().main().Get(key, value);
  }

  std::shared_ptr<TestLoader> loader = std::make_shared<TestLoader>();
  GroupRegistry registry;
  OwnerService owner{&registry, &SystemClock::Get()};
  Group* group = nullptr;
  PeerServer grpc;
  std::unique_ptr<http::Server> http;
};

// Renders a forwarded call's outcome as "<absl code> <value or message>".
std::string Outcome(const absl::Status& s) {
  return std::to_string(static_cast<int>(s.code())) + " " + std::string(s.message());
}
std::string Outcome(const absl::StatusOr<CachedValue>& r) {
  return r.ok() ? "0 " + r->data : Outcome(r.status());
}

// The front: an HTTP server with one loop whose handlers forward through `peer`.
//   GET  /get?key=K           -> peer->Get        POST /set?key=K (body = value) -> peer->Set
//   POST /delete?key=K        -> peer->Delete     GET  /conns -> the loop's forwarder connections
//   GET  /peek?key=K          -> peer->Peek
class Front {
 public:
  explicit Front(std::shared_ptr<RemotePeer> peer) : peer_(std::move(peer)) {
    auto router = std::make_shared<http::Router>();
    router->Handle("GET", "/get", [this](http::Request&& req, http::Responder respond) {
      ++handled_;
      const std::string group = req.Param("group") ? *req.Param("group") : "scores";
      peer_->Get(group, *req.Param("key"),
                 [this, respond = std::move(respond)](absl::StatusOr<CachedValue> r) mutable {
                   if (io::Loop::Current() == nullptr) off_loop_callbacks_++;
                   respond(http::Text(200, Outcome(r)));
                 });
    });
    router->Handle("GET", "/peek", [this](http::Request&& req, http::Responder respond) {
      peer_->Peek("scores", *req.Param("key"),
                  [respond = std::move(respond)](absl::StatusOr<CachedValue> r) mutable {
                    respond(http::Text(200, Outcome(r)));
                  });
    });
    router->Handle("POST", "/set", [this](http::Request&& req, http::Responder respond) {
      peer_->Set("scores", *req.Param("key"), req.body, 60'000, false,
                 [respond = std::move(respond)](absl::Status s) mutable {
                   respond(http::Text(200, Outcome(s)));
                 });
    });
    router->Handle("POST", "/delete", [this](http::Request&& req, http::Responder respond) {
      peer_->Delete("scores", *req.Param("key"),
                    [respond = std::move(respond)](absl::Status s) mutable {
                      respond(http::Text(200, Outcome(s)));
                    });
    });
    router->Handle("GET", "/conns", [](http::Request&&, http::Responder respond) {
      respond(http::Text(200, std::to_string(Forwarder::Current()->connections())));
    });
    server_ = std::make_unique<http::Server>(
        http::ServerOptions{.address = "127.0.0.1", .port = 0, .threads = 1}, router);
    EXPECT_TRUE(server_->Start().ok());
  }
  ~Front() { server_->Stop(milliseconds(0)); }

  // "<http status> <absl code> <value or message>"
  std::string Get(std::string_view key_encoded) {
    return Fetch(server_->port(), "GET", "/get?key=" + std::string(key_encoded));
  }
  std::string Set(std::string_view key_encoded, std::string_view value) {
    return Fetch(server_->port(), "POST", "/set?key=" + std::string(key_encoded), value);
  }
  std::string Delete(std::string_view key_encoded) {
    return Fetch(server_->port(), "POST", "/delete?key=" + std::string(key_encoded));
  }
  std::string Peek(std::string_view key_encoded) {
    return Fetch(server_->port(), "GET", "/peek?key=" + std::string(key_encoded));
  }
  std::string Conns() { return Fetch(server_->port(), "GET", "/conns"); }
  http::Server& server() { return *server_; }
  int off_loop_callbacks() const { return off_loop_callbacks_.load(); }

 private:
  std::shared_ptr<RemotePeer> peer_;
  std::atomic<int> handled_{0};
  std::atomic<int> off_loop_callbacks_{0};
  std::unique_ptr<http::Server> server_;
};

uint64_t Count(const RemotePeer& p, std::string_view op, std::string_view status) {
  for (const auto& c : p.CallCounts()) {
    if (c.op == op && c.status == status) return c.count;
  }
  return 0;
}

GrpcPeerOptions Deadline(milliseconds d) {
  GrpcPeerOptions o;
  o.deadline = d;
  return o;
}

// A second client protocol on the same loops (test-only): "get KEY\n" is answered with the
// forwarded Get's "<absl code> <value or message>\n", "conns\n" with the loop's forwarder
// connections. It is a codec on io::Connection calling a RemotePeer, like the HTTP API.
class LineConnection final : public io::Connection {
 public:
  LineConnection(io::Loop* loop, std::string remote, std::shared_ptr<RemotePeer> peer)
      : io::Connection(loop, std::move(remote)), peer_(std::move(peer)) {}

  void OnReady(uint32_t) override {
    for (;;) {
      const size_t nl = input().find('\n');
      if (nl != std::string_view::npos && !waiting_) {
        const std::string line(input().substr(0, nl));
        Consume(nl + 1);
        Handle(line);
        continue;
      }
      if (waiting_ || !readable()) break;
      const ReadResult r = ReadSome();
      if (r == ReadResult::kEof || r == ReadResult::kError) return Close();
      if (r == ReadResult::kDrained) break;
    }
    if (Flush() != 0) Close();
  }
  void OnDrain() override {
    if (!waiting_) Close();
  }

 private:
  void Handle(const std::string& line) {
    if (line == "conns") {
      output() += std::to_string(Forwarder::Current()->connections()) + "\n";
      return;
    }
    if (line.rfind("get ", 0) != 0) {
      output() += "unknown command\n";
      return;
    }
    waiting_ = true;
    // The answer names this connection by id, on this loop: it may come from another thread
    // (a gRPC fallback), and the connection may be gone by then.
    peer_->Get("scores", line.substr(4),
               [loop = &loop(), mailbox = loop().mailbox(),
                id = id()](absl::StatusOr<CachedValue> r) mutable {
                 auto deliver = [loop, id, text = Outcome(r)] {
                   if (io::Connection* c = loop->FindConnection(id); c != nullptr) {
                     static_cast<LineConnection*>(c)->Answer(text);
                   }
                 };
                 if (io::Loop::Current() == loop) return deliver();
                 mailbox->Post(std::move(deliver));
               });
  }
  void Answer(const std::string& text) {
    waiting_ = false;
    output() += text + "\n";
    OnReady(0);  // serve the next pipelined line
  }

  const std::shared_ptr<RemotePeer> peer_;
  bool waiting_ = false;
};

using LineConnections = io::ConnectionsOf<LineConnection, std::shared_ptr<RemotePeer>>;

// Sends `lines` on a new connection to `port` and reads until `answers` lines came back.
std::string LineExchange(uint16_t port, const std::string& lines, int answers) {
  testing::LineClient client(port);
  if (!client.connected() || !client.Send(lines)) return "";
  return client.ReadLines(answers);
}

TEST(ForwarderTest, ASecondProtocolOnTheSameLoopsSharesTheForwarderPools) {
  Owner owner;
  auto peer = std::make_shared<RemotePeer>("b", owner.grpc_address(), owner.http_address());
  // One loop serving HTTP (the API-like routes) and the line protocol.
  auto router = std::make_shared<http::Router>();
  router->Handle("GET", "/get", [peer](http::Request&& req, http::Responder respond) {
    peer->Get("scores", *req.Param("key"),
              [respond = std::move(respond)](absl::StatusOr<CachedValue> r) mutable {
                respond(http::Text(200, Outcome(r)));
              });
  });
  io::EventLoops loops(1, "front");
  absl::StatusOr<uint16_t> http_port =
      loops.Listen("127.0.0.1", 0, http::HttpConnections({}, router));
  absl::StatusOr<uint16_t> line_port =
      loops.Listen("127.0.0.1", 0, std::make_shared<LineConnections>(peer));
  ASSERT_TRUE(http_port.ok() && line_port.ok());
  ASSERT_TRUE(loops.Start().ok());

  EXPECT_EQ(Fetch(*http_port, "GET", "/get?key=db-1"), "200 0 loaded:db-1");
  // Pipelined lines, answered in order; a hit, a miss and a load, forwarded over HTTP on the
  // connection the HTTP request opened: the loop still has exactly one.
  EXPECT_EQ(LineExchange(*line_port, "get db-1\nget nothing\nget db-2\nconns\n", 4),
            "0 loaded:db-1\n5 origin has no nothing\n0 loaded:db-2\n1\n");
  EXPECT_EQ(LineExchange(*line_port, "bogus\n", 1), "unknown command\n");
  EXPECT_EQ(peer->grpc()->calls(), 0u);
  EXPECT_EQ(Count(*peer, "get", "hit"), 3u);
  loops.Stop(milliseconds(1000));
}

TEST(ForwarderTest, GetSetDeleteGoOverHttpFromTheLoop) {
  Owner owner;
  auto peer = std::make_shared<RemotePeer>("b", owner.grpc_address(), owner.http_address());
  ASSERT_TRUE(peer->forwards_over_http());
  Front front(peer);

  // A key and a value with bytes that need escaping (key) or framing (value).
  const std::string key = "a b/\xc3\xbc%+&=?#";
  const std::string key_encoded = "a%20b%2F%C3%BC%25%2B%26%3D%3F%23";
  const std::string value("v\0\r\n\r\nHTTP/1.1 200 OK\r\n", 24);
  EXPECT_EQ(front.Set(key_encoded, value), "200 0 ");
  std::string stored;
  ASSERT_TRUE(owner.Stored(key, &stored));
  EXPECT_EQ(stored, value);
  EXPECT_EQ(front.Get(key_encoded), "200 0 " + value);
  EXPECT_EQ(front.Delete(key_encoded), "200 0 ");
  EXPECT_FALSE(owner.Stored(key, &stored));
  EXPECT_EQ(front.Get(key_encoded), "200 5 origin has no " + key);

  // A miss and a loader value come from the owner, with its code and message.
  EXPECT_EQ(front.Get("nothing"), "200 5 origin has no nothing");
  EXPECT_EQ(front.Get("db-1"), "200 0 loaded:db-1");
  EXPECT_EQ(owner.loads(), 3);  // the Get after the Delete, nothing, db-1
  // An unknown group is the owner's NotFound too.
  EXPECT_EQ(Fetch(front.server().port(), "GET", "/get?key=x&group=nope"),
            "200 5 no such group: nope");

  // Everything went over HTTP, and the callbacks ran on the loop.
  EXPECT_EQ(peer->grpc()->calls(), 0u);
  EXPECT_EQ(front.off_loop_callbacks(), 0);
  EXPECT_EQ(Count(*peer, "set", "ok"), 1u);
  EXPECT_EQ(Count(*peer, "delete", "ok"), 1u);
  EXPECT_EQ(Count(*peer, "get", "hit"), 2u);
  EXPECT_EQ(Count(*peer, "get", "miss"), 3u);
  EXPECT_EQ(peer->calls(), 7u);
  EXPECT_EQ(front.Conns(), "200 1");  // one keep-alive connection served them all
}

TEST(ForwarderTest, CallsOffTheLoopUseGrpc) {
  Owner owner;
  RemotePeer peer("b", owner.grpc_address(), owner.http_address());
  std::promise<absl::StatusOr<CachedValue>> got;
  peer.Get("scores", "db-7", [&](absl::StatusOr<CachedValue> r) { got.set_value(std::move(r)); });
  EXPECT_EQ(Outcome(got.get_future().get()), "0 loaded:db-7");
  EXPECT_EQ(peer.grpc()->calls(), 1u);
}

TEST(ForwarderTest, ConcurrentRequestsArePipelinedAndAnsweredInOrder) {
  Owner owner;
  auto peer = std::make_shared<RemotePeer>("b", owner.grpc_address(), owner.http_address());
  Front front(peer);
  constexpr int kClients = 16, kEach = 40;
  std::vector<std::thread> clients;
  std::atomic<int> wrong{0};
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < kEach; ++i) {
        const std::string key = "db-" + std::to_string(c) + "-" + std::to_string(i % 5);
        if (front.Get(key) != "200 0 loaded:" + key) wrong++;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(peer->grpc()->calls(), 0u);
  EXPECT_EQ(Count(*peer, "get", "hit"), static_cast<uint64_t>(kClients * kEach));
  const std::string conns = front.Conns();
  EXPECT_GE(conns, "200 1");
  EXPECT_LE(conns, "200 " + std::to_string(Forwarder::kMaxConnections));
}

TEST(ForwarderTest, ASlowLoadDoesNotHoldUpHitsBehindIt) {
  Owner owner;
  auto peer = std::make_shared<RemotePeer>("b", owner.grpc_address(), owner.http_address());
  Front front(peer);
  ASSERT_EQ(front.Get("db-warm"), "200 0 loaded:db-warm");  // opens the first connection
  auto slow = std::async(std::launch::async, [&] { return front.Get("slow-1"); });
  ASSERT_TRUE(
      WaitFor([&] { return owner.loads() == 2; }));  // db-warm, then slow-1 reached the owner
  // Once the slow request has waited longer than kStallAfter, new requests avoid its
  // connection.
  std::this_thread::sleep_for(Forwarder::kStallAfter * 5);
  EXPECT_EQ(front.Get("db-warm"), "200 0 loaded:db-warm");  // answered while slow-1 loads
  EXPECT_EQ(slow.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
  owner.loader->ReleaseSlow();
  EXPECT_EQ(slow.get(), "200 0 slow:slow-1");
  EXPECT_EQ(front.Conns(), "200 2");
}

TEST(ForwarderTest, RefusedHttpIsRetriedOverGrpc) {
  Owner owner;
  auto peer = std::make_shared<RemotePeer>("b", owner.grpc_address(), Loopback(FreePort()));
  Front front(peer);
  EXPECT_EQ(front.Get("db-1"), "200 0 loaded:db-1");
  EXPECT_EQ(front.Set("k", "v"), "200 0 ");
  EXPECT_EQ(front.Delete("k"), "200 0 ");
  EXPECT_EQ(peer->grpc()->calls(), 3u);
  EXPECT_EQ(Count(*peer, "get", "error"), 1u);  // the HTTP attempt
  EXPECT_EQ(Count(*peer, "get", "hit"), 1u);    // the gRPC retry
  EXPECT_TRUE(peer->forwards_over_http());      // a refused connection may be a restart
}

TEST(ForwarderTest, DeadOwnerIsUnavailableNamingIt) {
  const std::string http = Loopback(FreePort());
  auto peer = std::make_shared<RemotePeer>("b", Loopback(FreePort()), http);
  Front front(peer);
  // 14 = Unavailable, from the gRPC retry.
  EXPECT_THAT(front.Get("db-1"), ::testing::StartsWith("200 14 peer b ("));
  EXPECT_EQ(peer->grpc()->calls(), 1u);
}

TEST(ForwarderTest, AnOwnerThatNeverAnswersTimesOutWithoutRetry) {
  Owner owner;  // serves gRPC: a retry would succeed, so a success here would be a bug
  Blackhole hole;
  auto peer = std::make_shared<RemotePeer>("b", owner.grpc_address(), Loopback(hole.port),
                                           Deadline(milliseconds(300)));
  Front front(peer);
  EXPECT_EQ(front.Get("db-1"),
            "200 4 peer b (" + Loopback(hole.port) + "): deadline exceeded after 300 ms");
  EXPECT_EQ(peer->grpc()->calls(), 0u);
  EXPECT_EQ(front.Conns(), "200 0");  // the stuck connection was closed
}

TEST(ForwarderTest, PeeksHaveConnectionsOfTheirOwnAndHalfTheDeadline) {
  // A member answers a peek at once; a forwarded Get may wait at its primary for one (on the
  // other side of the same pair of nodes), so peeks must not queue behind Gets, and a hung
  // member's peek must fail while the caller's own deadline still leaves time for the next
  // holder.
  Owner owner;
  Blackhole hole;
  auto peer = std::make_shared<RemotePeer>("b", owner.grpc_address(), Loopback(hole.port),
                                           Deadline(milliseconds(300)));
  Front front(peer);
  EXPECT_EQ(front.Peek("db-1"),
            "200 4 peer b (" + Loopback(hole.port) + "): deadline exceeded after 150 ms");
  auto live = std::make_shared<RemotePeer>("b", owner.grpc_address(), owner.http_address());
  Front to_owner(live);
  EXPECT_EQ(to_owner.Get("db-1"), "200 0 loaded:db-1");
  EXPECT_EQ(to_owner.Conns(), "200 1");
  EXPECT_EQ(to_owner.Peek("db-1"), "200 0 loaded:db-1");
  EXPECT_EQ(to_owner.Conns(), "200 2");  // not on the Get's connection
}

TEST(ForwarderTest, APeerWithoutTheRoutesIsReachedOverGrpcFromThenOn) {
  Owner owner;
  // An HTTP server of "an older version": no forwarding routes, so 404 "404 page not found".
  http::Server old(http::ServerOptions{.address = "127.0.0.1", .port = 0, .threads = 1},
                   std::make_shared<http::Router>());
  ASSERT_TRUE(old.Start().ok());
  auto peer = std::make_shared<RemotePeer>("b", owner.grpc_address(), Loopback(old.port()));
  Front front(peer);
  EXPECT_EQ(front.Get("db-1"), "200 0 loaded:db-1");  // not taken for a miss
  EXPECT_FALSE(peer->forwards_over_http());
  EXPECT_EQ(front.Get("db-2"), "200 0 loaded:db-2");
  EXPECT_EQ(peer->grpc()->calls(), 2u);
  old.Stop(milliseconds(0));
}

TEST(ForwarderTest, AMemberUpgradedToServeTheRoutesIsForwardedToOverHttpAgain) {
  Owner owner;
  // The member's HTTP port answers like an older version (a router without the forwarding
  // routes: plain 404) until `upgraded`, then serves the forwarding routes.
  std::atomic<bool> upgraded{false};
  auto old_version = std::make_shared<http::Router>();
  auto routes = std::make_shared<http::Router>();
  InstallPeerRoutes(*routes, &owner.owner);
  auto router = std::make_shared<http::Router>();
  for (const auto& [method, path] :
       {std::pair{"GET", peerwire::kGetPath}, std::pair{"POST", peerwire::kSetPath},
        std::pair{"POST", peerwire::kDeletePath}}) {
    router->Handle(
        method, std::string(path),
        [&upgraded, old_version, routes](http::Request&& req, http::Responder respond) {
          (upgraded.load() ? routes : old_version)->Dispatch(std::move(req), std::move(respond));
        });
  }
  http::Server member(http::ServerOptions{.address = "127.0.0.1", .port = 0, .threads = 1}, router);
  ASSERT_TRUE(member.Start().ok());
  const milliseconds retry_after(200);
  auto peer = std::make_shared<RemotePeer>("b", owner.grpc_address(), Loopback(member.port()),
                                           GrpcPeerOptions{}, retry_after);
  Front front(peer);

  EXPECT_EQ(front.Get("db-1"), "200 0 loaded:db-1");  // 404 over HTTP, then served over gRPC
  EXPECT_FALSE(peer->forwards_over_http());
  EXPECT_EQ(peer->grpc()->calls(), 1u);

  // Still the old version when HTTP is tried again: gRPC again, for another interval.
  ASSERT_TRUE(WaitFor([&] { return peer->forwards_over_http(); }));
  EXPECT_EQ(front.Get("db-2"), "200 0 loaded:db-2");
  EXPECT_FALSE(peer->forwards_over_http());
  EXPECT_EQ(peer->grpc()->calls(), 2u);

  // Upgraded: the next try after the interval is answered over HTTP, and HTTP stays on.
  upgraded = true;
  ASSERT_TRUE(WaitFor([&] { return peer->forwards_over_http(); }));
  EXPECT_EQ(front.Get("db-3"), "200 0 loaded:db-3");
  EXPECT_EQ(front.Set("k", "v"), "200 0 ");
  EXPECT_TRUE(peer->forwards_over_http());
  EXPECT_EQ(peer->grpc()->calls(), 2u);
  std::string stored;
  EXPECT_TRUE(owner.Stored("k", &stored));
  // Over HTTP: two 404s (errors), then a hit and a set; over gRPC: two hits.
  EXPECT_EQ(Count(*peer, "get", "error"), 2u);
  EXPECT_EQ(Count(*peer, "get", "hit"), 3u);
  EXPECT_EQ(Count(*peer, "set", "ok"), 1u);
  member.Stop(milliseconds(0));
}

TEST(ForwarderTest, StoppingTheFrontAnswersPendingForwards) {
  Owner owner;
  auto peer = std::make_shared<RemotePeer>("b", owner.grpc_address(), owner.http_address());
  auto front = std::make_unique<Front>(peer);
  auto slow = std::async(std::launch::async, [&] { return front->Get("slow-2"); });
  ASSERT_TRUE(WaitFor([&] { return owner.loads() == 1; }));
  front->server().Stop(milliseconds(0));  // the loop ends with the forward still pending
  // The client sees its connection close; the forward's callback ran (no leak under ASan).
  EXPECT_THAT(slow.get(), HasSubstr("no answer"));
  EXPECT_EQ(Count(*peer, "get", "error"), 1u);
  front.reset();
}

TEST(ForwarderTest, AnAnswerArrivingWithTheFinIsReadAndTheConnectionDropped) {
  AnswerAndClose owner("HTTP/1.1 200 OK\r\nX-Nexus-Status: 0\r\nContent-Length: 4\r\n\r\nfake");
  auto peer = std::make_shared<RemotePeer>("b", Loopback(FreePort()), Loopback(owner.port()));
  Front front(peer);
  for (int i = 0; i < 3; ++i) {
    // Each time the closed connection is noticed with the answer, so the next call opens a
    // new one instead of writing into the dead one (which would fail and go to gRPC).
    EXPECT_EQ(front.Get("k"), "200 0 fake");
  }
  EXPECT_EQ(owner.accepted(), 3);
  EXPECT_EQ(Count(*peer, "get", "error"), 0u);
  EXPECT_EQ(peer->grpc()->calls(), 0u);
}

// Found by fuzz/peer_answer_fuzz: Beast reserved the whole Content-Length before the limit
// (std::bad_alloc, the node ended).
TEST(ForwarderTest, AnAnswerClaimingAHugeBodyFailsWithoutReservingIt) {
  AnswerAndClose owner(
      "HTTP/1.1 200 OK\r\nX-Nexus-Status: 0\r\nContent-Length: 8888888888888880\r\n\r\nabc");
  auto peer = std::make_shared<RemotePeer>("b", Loopback(FreePort()), Loopback(owner.port()));
  Front front(peer);
  EXPECT_THAT(front.Get("k"), HasSubstr("answered more than"));
  EXPECT_EQ(peer->grpc()->calls(), 0u);
}

TEST(ForwarderTest, AnOwnerRejectingTheRequestIsNotMistakenForAnOlderVersion) {
  Owner owner;
  // The owner's HTTP server accepts smaller bodies than this value: 413 without X-Nexus-Status.
  auto router = std::make_shared<http::Router>();
  InstallPeerRoutes(*router, &owner.owner);
  http::Server small(
      http::ServerOptions{.address = "127.0.0.1", .port = 0, .threads = 1, .max_body_bytes = 64},
      router);
  ASSERT_TRUE(small.Start().ok());
  auto peer = std::make_shared<RemotePeer>("b", owner.grpc_address(), Loopback(small.port()));
  Front front(peer);
  const std::string got = front.Set("k", std::string(100, 'x'));
  EXPECT_THAT(got, ::testing::StartsWith("200 8 peer b (" + Loopback(small.port()) +
                                         ") answered HTTP 413: request body too large"));
  EXPECT_TRUE(peer->forwards_over_http());
  EXPECT_EQ(front.Set("k", "small"), "200 0 ");
  EXPECT_EQ(peer->grpc()->calls(), 0u);
  small.Stop(milliseconds(0));
}

TEST(ForwarderTest, WhenEveryConnectionIsBusyWithASlowLoadCallsGoOverGrpc) {
  Owner owner;
  auto peer = std::make_shared<RemotePeer>("b", owner.grpc_address(), owner.http_address());
  Front front(peer);
  std::vector<std::future<std::string>> slow;
  for (int i = 0; i < Forwarder::kMaxConnections; ++i) {
    slow.push_back(std::async(std::launch::async,
                              [&front, i] { return front.Get("slow-" + std::to_string(i)); }));
    // Each one stalls its connection once it reached the owner, so the next opens another.
    ASSERT_TRUE(WaitFor([&] { return owner.loads() == i + 1; }));
    std::this_thread::sleep_for(Forwarder::kStallAfter * 5);
  }
  EXPECT_EQ(front.Conns(), "200 " + std::to_string(Forwarder::kMaxConnections));
  // Once they have all waited longer than kDivertAfter, new calls go over gRPC.
  std::this_thread::sleep_for(Forwarder::kDivertAfter + milliseconds(50));
  EXPECT_EQ(front.Get("db-1"), "200 0 loaded:db-1");  // not queued behind a slow load
  EXPECT_EQ(peer->grpc()->calls(), 1u);
  owner.loader->ReleaseSlow();
  for (int i = 0; i < Forwarder::kMaxConnections; ++i) {
    EXPECT_EQ(slow[i].get(), "200 0 slow:slow-" + std::to_string(i));
  }
}

TEST(ForwarderTest, HostNamesAreNotResolvedOnTheLoop) {
  RemotePeer named("b", "127.0.0.1:1", "some-host:9999");
  EXPECT_FALSE(named.forwards_over_http());
  RemotePeer none("b", "127.0.0.1:1", "");
  EXPECT_FALSE(none.forwards_over_http());
  RemotePeer v6("b", "[::1]:1", "[::1]:9999");
  EXPECT_TRUE(v6.forwards_over_http());
}

}  // namespace
}  // namespace nexus
