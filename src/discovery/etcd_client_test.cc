// EtcdClient against a REAL etcd (tests/support/etcd.h) on free loopback ports.
#include "discovery/etcd_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "support/certs.h"
#include "support/etcd.h"
#include "support/process.h"
#include "support/wait.h"
#include "tls/context.h"

namespace nexus {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ::testing::ElementsAre;

using testing::WaitFor;

// What a stream's callbacks saw, readable from the test thread.
struct Recorder {
  std::mutex mu;
  std::vector<int64_t> ttls;
  std::vector<WatchEvent> events;
  std::vector<int64_t> header_revisions;
  int done_calls = 0;
  std::optional<absl::Status> done;
  int64_t compact_revision = -1;

  KeepAliveStream::ResponseCallback OnTtl() {
    return [this](int64_t ttl) {
      std::lock_guard<std::mutex> lock(mu);
      ttls.push_back(ttl);
    };
  }
  KeepAliveStream::DoneCallback OnKeepAliveDone() {
    return [this](absl::Status s) {
      std::lock_guard<std::mutex> lock(mu);
      ++done_calls;
      done = std::move(s);
    };
  }
  WatchStream::EventsCallback OnEvents() {
    return [this](const std::vector<WatchEvent>& evs, int64_t rev) {
      std::lock_guard<std::mutex> lock(mu);
      events.insert(events.end(), evs.begin(), evs.end());
      header_revisions.push_back(rev);
    };
  }
  WatchStream::DoneCallback OnWatchDone() {
    return [this](absl::Status s, int64_t compact) {
      std::lock_guard<std::mutex> lock(mu);
      ++done_calls;
      done = std::move(s);
      compact_revision = compact;
    };
  }
  size_t num_ttls() {
    std::lock_guard<std::mutex> lock(mu);
    return ttls.size();
  }
  size_t num_events() {
    std::lock_guard<std::mutex> lock(mu);
    return events.size();
  }
  bool is_done() {
    std::lock_guard<std::mutex> lock(mu);
    return done.has_value();
  }
};

std::string Describe(const WatchEvent& e) {
  return std::string(e.type == WatchEvent::Type::kPut ? "PUT " : "DELETE ") + e.key + "=" +
         e.value + "@" + std::to_string(e.mod_revision);
}

class EtcdClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (testing::EtcdServer::Binary().empty()) return;
    std::string error;
    etcd_ = testing::EtcdServer::Start(20s, &error).release();
    ASSERT_NE(etcd_, nullptr) << error;
  }
  static void TearDownTestSuite() {
    delete etcd_;
    etcd_ = nullptr;
  }
  void SetUp() override {
    if (testing::EtcdServer::Binary().empty()) GTEST_SKIP() << "no etcd binary";
    ASSERT_NE(etcd_, nullptr);
  }

  EtcdClient MakeClient() { return EtcdClient({.endpoints = {etcd_->endpoint()}}); }

  static testing::EtcdServer* etcd_;
};

testing::EtcdServer* EtcdClientTest::etcd_ = nullptr;

TEST(EtcdPrefixRangeEndTest, FollowsEtcdsRule) {
  EXPECT_EQ(EtcdPrefixRangeEnd("/nodes/"), "/nodes0");
  EXPECT_EQ(EtcdPrefixRangeEnd("a"), "b");
  EXPECT_EQ(EtcdPrefixRangeEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(EtcdPrefixRangeEnd(std::string("\xff\xff", 2)), std::string(1, '\0'));
  EXPECT_EQ(EtcdPrefixRangeEnd(""), std::string(1, '\0'));
}

TEST_F(EtcdClientTest, GrantPutRangeRevoke) {
  EtcdClient client = MakeClient();
  absl::StatusOr<LeaseGrant> lease = client.Grant(10);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_NE(lease->id, 0);
  EXPECT_EQ(lease->ttl_seconds, 10);

  absl::StatusOr<int64_t> rev = client.Put("/t1/node-a", "10.0.0.1:8888", lease->id);
  ASSERT_TRUE(rev.ok()) << rev.status();
  EXPECT_GT(*rev, 0);
  ASSERT_TRUE(client.Put("/t1x", "outside the prefix").ok());

  absl::StatusOr<RangeResult> range = client.RangePrefix("/t1/");
  ASSERT_TRUE(range.ok()) << range.status();
  ASSERT_EQ(range->kvs.size(), 1u);
  EXPECT_EQ(range->kvs[0].key, "/t1/node-a");
  EXPECT_EQ(range->kvs[0].value, "10.0.0.1:8888");
  EXPECT_EQ(range->kvs[0].mod_revision, *rev);
  EXPECT_EQ(range->kvs[0].create_revision, *rev);
  EXPECT_EQ(range->kvs[0].lease, lease->id);
  EXPECT_GE(range->revision, *rev + 1);  // the put of /t1x came after

  // Overwrite: mod_revision moves, create_revision stays.
  absl::StatusOr<int64_t> rev2 = client.Put("/t1/node-a", "10.0.0.1:9999", lease->id);
  ASSERT_TRUE(rev2.ok());
  range = client.RangePrefix("/t1/");
  ASSERT_TRUE(range.ok());
  ASSERT_EQ(range->kvs.size(), 1u);
  EXPECT_EQ(range->kvs[0].mod_revision, *rev2);
  EXPECT_EQ(range->kvs[0].create_revision, *rev);

  ASSERT_TRUE(client.Revoke(lease->id).ok());
  range = client.RangePrefix("/t1/");
  ASSERT_TRUE(range.ok());
  EXPECT_TRUE(range->kvs.empty());
  EXPECT_TRUE(absl::IsNotFound(client.Revoke(lease->id))) << client.Revoke(lease->id);

  ASSERT_TRUE(client.Delete("/t1x").ok());
  ASSERT_TRUE(client.Delete("/t1x").ok());  // deleting nothing is fine
  range = client.RangePrefix("/t1");
  ASSERT_TRUE(range.ok());
  EXPECT_TRUE(range->kvs.empty());
}

TEST_F(EtcdClientTest, KeepAliveReportsTtlAndStopsPromptly) {
  EtcdClient client = MakeClient();
  absl::StatusOr<LeaseGrant> lease = client.Grant(5);
  ASSERT_TRUE(lease.ok()) << lease.status();

  Recorder rec;
  auto stream = client.KeepAlive(lease->id, 200ms, rec.OnTtl(), rec.OnKeepAliveDone());
  EXPECT_EQ(stream->lease_id(), lease->id);
  EXPECT_EQ(stream->endpoint(), etcd_->endpoint());
  ASSERT_TRUE(WaitFor([&] { return rec.num_ttls() >= 3; }, 5s)) << rec.num_ttls();
  {
    std::lock_guard<std::mutex> lock(rec.mu);
    for (int64_t ttl : rec.ttls) EXPECT_EQ(ttl, 5);
    EXPECT_FALSE(rec.done.has_value());
  }
  const auto t0 = Clock::now();
  stream->Stop();
  EXPECT_LT(Clock::now() - t0, 1s);
  ASSERT_TRUE(rec.done.has_value());
  EXPECT_TRUE(absl::IsCancelled(*rec.done)) << *rec.done;
  stream->Stop();  // idempotent
  stream.reset();
  EXPECT_EQ(rec.done_calls, 1);
  EXPECT_TRUE(client.Revoke(lease->id).ok());
}

TEST_F(EtcdClientTest, KeepAliveOfARevokedLeaseEndsWithNotFound) {
  EtcdClient client = MakeClient();
  absl::StatusOr<LeaseGrant> lease = client.Grant(5);
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(client.Revoke(lease->id).ok());
  Recorder rec;
  auto stream = client.KeepAlive(lease->id, 100ms, rec.OnTtl(), rec.OnKeepAliveDone());
  ASSERT_TRUE(WaitFor([&] { return rec.is_done(); }, 5s));
  std::lock_guard<std::mutex> lock(rec.mu);
  EXPECT_TRUE(absl::IsNotFound(*rec.done)) << *rec.done;
  ASSERT_FALSE(rec.ttls.empty());
  EXPECT_LE(rec.ttls.back(), 0);
}

TEST_F(EtcdClientTest, KeepAliveWithLongIntervalStopsWithoutWaitingForTheTick) {
  EtcdClient client = MakeClient();
  absl::StatusOr<LeaseGrant> lease = client.Grant(30);
  ASSERT_TRUE(lease.ok());
  Recorder rec;
  auto stream =
      client.KeepAlive(lease->id, std::chrono::hours(1), rec.OnTtl(), rec.OnKeepAliveDone());
  ASSERT_TRUE(WaitFor([&] { return rec.num_ttls() >= 1; }, 5s));  // the first one is immediate
  const auto t0 = Clock::now();
  stream.reset();  // the destructor stops
  EXPECT_LT(Clock::now() - t0, 1s);
  EXPECT_EQ(rec.done_calls, 1);
  EXPECT_TRUE(client.Revoke(lease->id).ok());
}

TEST_F(EtcdClientTest, WatchFromRevisionSeesPutAndDeleteInOrder) {
  EtcdClient client = MakeClient();
  absl::StatusOr<int64_t> base = client.Put("/t3/a", "1");
  ASSERT_TRUE(base.ok());
  // History before the watch starts: replayed from start_revision = base + 1.
  absl::StatusOr<int64_t> put_b = client.Put("/t3/b", "2");
  ASSERT_TRUE(put_b.ok());
  ASSERT_TRUE(client.Delete("/t3/b").ok());
  ASSERT_TRUE(client.Put("/t3x", "not in the prefix").ok());

  Recorder rec;
  auto watch = client.WatchPrefix("/t3/", *base + 1, rec.OnEvents(), rec.OnWatchDone());
  ASSERT_TRUE(WaitFor([&] { return rec.num_events() >= 2; }, 5s));
  // A live event after the watch is established.
  absl::StatusOr<int64_t> put_c = client.Put("/t3/c", "3");
  ASSERT_TRUE(put_c.ok());
  ASSERT_TRUE(WaitFor([&] { return rec.num_events() >= 3; }, 5s));

  watch->Stop();
  std::lock_guard<std::mutex> lock(rec.mu);
  std::vector<std::string> seen;
  for (const WatchEvent& e : rec.events) seen.push_back(Describe(e));
  EXPECT_THAT(seen, ElementsAre("PUT /t3/b=2@" + std::to_string(*put_b),
                                "DELETE /t3/b=@" + std::to_string(*put_b + 1),
                                "PUT /t3/c=3@" + std::to_string(*put_c)));
  ASSERT_FALSE(rec.header_revisions.empty());
  EXPECT_EQ(rec.header_revisions.back(), *put_c);
  EXPECT_EQ(rec.done_calls, 1);
  EXPECT_TRUE(absl::IsCancelled(*rec.done)) << *rec.done;
  EXPECT_EQ(rec.compact_revision, 0);
}

TEST_F(EtcdClientTest, WatchStopsPromptlyWithNoEvents) {
  EtcdClient client = MakeClient();
  Recorder rec;
  auto watch = client.WatchPrefix("/t4-nothing/", 0, rec.OnEvents(), rec.OnWatchDone());
  std::this_thread::sleep_for(100ms);
  const auto t0 = Clock::now();
  watch.reset();
  EXPECT_LT(Clock::now() - t0, 1s);
  EXPECT_EQ(rec.done_calls, 1);
  EXPECT_EQ(rec.num_events(), 0u);
}

TEST_F(EtcdClientTest, WatchFromACompactedRevisionReportsOutOfRange) {
  EtcdClient client = MakeClient();
  absl::StatusOr<int64_t> r1 = client.Put("/t5/k", "1");
  ASSERT_TRUE(r1.ok());
  ASSERT_TRUE(client.Put("/t5/k", "2").ok());
  absl::StatusOr<int64_t> r3 = client.Put("/t5/k", "3");
  ASSERT_TRUE(r3.ok());
  ASSERT_TRUE(client.Compact(*r3).ok());

  Recorder rec;
  auto watch = client.WatchPrefix("/t5/", *r1, rec.OnEvents(), rec.OnWatchDone());
  ASSERT_TRUE(WaitFor([&] { return rec.is_done(); }, 5s));
  std::lock_guard<std::mutex> lock(rec.mu);
  EXPECT_TRUE(absl::IsOutOfRange(*rec.done)) << *rec.done;
  EXPECT_EQ(rec.compact_revision, *r3);
  EXPECT_TRUE(rec.events.empty());
  EXPECT_EQ(rec.done_calls, 1);
}

TEST_F(EtcdClientTest, LeaseThatIsNotKeptAliveExpires) {
  EtcdClient client = MakeClient();
  absl::StatusOr<LeaseGrant> lease = client.Grant(2);
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->ttl_seconds, 2);
  ASSERT_TRUE(client.Put("/t6/ephemeral", "x", lease->id).ok());
  const auto t0 = Clock::now();
  ASSERT_TRUE(WaitFor(
      [&] {
        absl::StatusOr<RangeResult> r = client.RangePrefix("/t6/");
        return r.ok() && r->kvs.empty();
      },
      10s));
  const auto elapsed = Clock::now() - t0;
  EXPECT_GT(elapsed, 1s);  // not before (about) its TTL
  EXPECT_LT(elapsed, 6s);
}

TEST_F(EtcdClientTest, FailsOverPastADeadEndpoint) {
  const std::string dead = "127.0.0.1:" + std::to_string(testing::FreePort());
  EtcdClient client({.endpoints = {dead, "http://" + etcd_->endpoint()}});
  EXPECT_EQ(client.current_endpoint(), dead);

  auto t0 = Clock::now();
  absl::StatusOr<LeaseGrant> lease = client.Grant(10);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_LT(Clock::now() - t0, 2s);  // refused at once, not after the deadline
  EXPECT_EQ(client.current_endpoint(), etcd_->endpoint());

  for (int i = 0; i < 5; ++i) {
    t0 = Clock::now();
    ASSERT_TRUE(client.Put("/t7/k", std::to_string(i), lease->id).ok());
    absl::StatusOr<RangeResult> r = client.RangePrefix("/t7/");
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->kvs.size(), 1u);
    EXPECT_LT(Clock::now() - t0, 500ms);  // the good endpoint is remembered
  }

  // Streams start on the reachable endpoint.
  Recorder rec;
  auto keepalive = client.KeepAlive(lease->id, 200ms, rec.OnTtl(), rec.OnKeepAliveDone());
  EXPECT_EQ(keepalive->endpoint(), etcd_->endpoint());
  ASSERT_TRUE(WaitFor([&] { return rec.num_ttls() >= 1; }, 5s));
  t0 = Clock::now();
  keepalive.reset();
  EXPECT_LT(Clock::now() - t0, 500ms);
  t0 = Clock::now();
  ASSERT_TRUE(client.Revoke(lease->id).ok());
  EXPECT_LT(Clock::now() - t0, 500ms);

  // Only dead endpoints: UNAVAILABLE, fast, naming the endpoint; streams end at once.
  const std::string dead2 = "127.0.0.1:" + std::to_string(testing::FreePort());
  EtcdClient nowhere({.endpoints = {dead, dead2}});
  t0 = Clock::now();

  absl::StatusOr<LeaseGrant> none = nowhere.Grant(10);
  EXPECT_TRUE(absl::IsUnavailable(none.status())) << none.status();
  EXPECT_THAT(std::string(none.status().message()), ::testing::HasSubstr("127.0.0.1:"));
  EXPECT_LT(Clock::now() - t0, 500ms);  // refused twice, no deadline waited
  Recorder nowhere_rec;
  auto watch = nowhere.WatchPrefix("/x/", 0, nowhere_rec.OnEvents(), nowhere_rec.OnWatchDone());
  ASSERT_TRUE(WaitFor([&] { return nowhere_rec.is_done(); }, 5s));
  EXPECT_TRUE(absl::IsUnavailable(*nowhere_rec.done)) << *nowhere_rec.done;

  EtcdClient empty(EtcdClientOptions{});
  EXPECT_TRUE(absl::IsFailedPrecondition(empty.Put("k", "v").status()));
}

// Streams report a dead etcd (no Stop needed) and may outlive their client.
TEST(EtcdClientCrashTest, StreamsEndWhenEtcdDies) {
  if (testing::EtcdServer::Binary().empty()) GTEST_SKIP() << "no etcd binary";
  std::string error;
  std::unique_ptr<testing::EtcdServer> etcd = testing::EtcdServer::Start(20s, &error);
  ASSERT_NE(etcd, nullptr) << error;
  Recorder ka, w;
  std::unique_ptr<KeepAliveStream> keepalive;
  std::unique_ptr<WatchStream> watch;
  {
    EtcdClient client({.endpoints = {etcd->endpoint()}});
    absl::StatusOr<LeaseGrant> lease = client.Grant(10);
    ASSERT_TRUE(lease.ok()) << lease.status();
    keepalive = client.KeepAlive(lease->id, 100ms, ka.OnTtl(), ka.OnKeepAliveDone());
    watch = client.WatchPrefix("/crash/", 0, w.OnEvents(), w.OnWatchDone());
    ASSERT_TRUE(WaitFor([&] { return ka.num_ttls() >= 1; }, 5s));
    ASSERT_TRUE(client.Put("/crash/k", "v").ok());
    ASSERT_TRUE(WaitFor([&] { return w.num_events() >= 1; }, 5s));
  }  // the client is gone; the streams keep their channel

  etcd->Kill();
  ASSERT_TRUE(WaitFor([&] { return ka.is_done() && w.is_done(); }, 10s));
  {
    std::lock_guard<std::mutex> lock(ka.mu);
    EXPECT_FALSE(ka.done->ok());
    EXPECT_FALSE(absl::IsCancelled(*ka.done)) << *ka.done;
  }
  {
    std::lock_guard<std::mutex> lock(w.mu);
    EXPECT_FALSE(w.done->ok());
    EXPECT_FALSE(absl::IsCancelled(*w.done)) << *w.done;
  }
  keepalive.reset();
  watch.reset();
  EXPECT_EQ(ka.done_calls, 1);
  EXPECT_EQ(w.done_calls, 1);
}

TEST_F(EtcdClientTest, AUserForAnEtcdWithoutAuthIsNotNeeded) {
  // (etcd answers Authenticate with "authentication is not enabled": calls go without a token.)
  EtcdClient client(
      {.endpoints = {etcd_->endpoint()}, .credentials = {.user = "nexus", .password = "unused"}});
  absl::StatusOr<int64_t> put = client.Put("/t9/a", "1");
  EXPECT_TRUE(put.ok()) << put.status();
  Recorder rec;
  auto watch = client.WatchPrefix("/t9/", 0, rec.OnEvents(), rec.OnWatchDone());
  ASSERT_TRUE(client.Put("/t9/b", "2").ok());
  EXPECT_TRUE(WaitFor([&] { return rec.num_events() >= 1; }, 5s));
  watch->Stop();
}

// A secured etcd through the real client: TLS with a client certificate required (etcd's
// --client-cert-auth), and user/password auth with a token that expires.
std::string Pem(const std::string& path) {
  absl::StatusOr<std::string> pem = tls::ReadPem("test", path);
  EXPECT_TRUE(pem.ok()) << pem.status();
  return pem.ok() ? *pem : "";
}

TEST(EtcdClientSecurityTest, TlsWithAClientCertificate) {
  if (testing::EtcdServer::Binary().empty()) GTEST_SKIP() << "no etcd binary";
  const std::string certs = testing::MakeCerts("etcd-tls", {"etcd", "node"}, 365, "127.0.0.1");
  const testing::EtcdSecurity security{.cert = certs + "/etcd.pem",
                                       .key = certs + "/etcd.key",
                                       .ca = certs + "/ca.pem",
                                       .client_cert_auth = true};
  std::string error;
  std::unique_ptr<testing::EtcdServer> etcd =
      testing::EtcdServer::Start(20s, &error, nullptr, &security);
  ASSERT_NE(etcd, nullptr) << error;
  const std::string endpoint = "https://" + etcd->endpoint();

  EtcdClient client({.endpoints = {endpoint},
                     .credentials = {.ca_pem = Pem(certs + "/ca.pem"),
                                     .cert_pem = Pem(certs + "/node.pem"),
                                     .key_pem = Pem(certs + "/node.key")}});
  Recorder rec;
  auto watch = client.WatchPrefix("/s1/", 0, rec.OnEvents(), rec.OnWatchDone());
  ASSERT_TRUE(client.Put("/s1/a", "1").ok());
  absl::StatusOr<RangeResult> range = client.RangePrefix("/s1/");
  ASSERT_TRUE(range.ok()) << range.status();
  ASSERT_EQ(range->kvs.size(), 1u);
  EXPECT_TRUE(WaitFor([&] { return rec.num_events() >= 1; }, 5s)) << "the watch runs over TLS";
  watch->Stop();

  // Without a client certificate, or in plaintext, etcd refuses the connection.
  EtcdClient no_cert({.endpoints = {endpoint},
                      .unary_timeout = 1s,
                      .credentials = {.ca_pem = Pem(certs + "/ca.pem")}});
  EXPECT_TRUE(absl::IsUnavailable(no_cert.Put("/s1/b", "2").status()));
  EtcdClient plain({.endpoints = {etcd->endpoint()}, .unary_timeout = 1s});
  EXPECT_FALSE(plain.Put("/s1/b", "2").ok());
  range = client.RangePrefix("/s1/");
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(range->kvs.size(), 1u);
}

TEST(EtcdClientSecurityTest, UserPasswordAuthRenewsAnExpiredTokenAndNamesARefusal) {
  if (testing::EtcdServer::Binary().empty()) GTEST_SKIP() << "no etcd binary";
  const testing::EtcdSecurity security{.auth_token_ttl = 1};
  std::string error;
  std::unique_ptr<testing::EtcdServer> etcd =
      testing::EtcdServer::Start(20s, &error, nullptr, &security);
  ASSERT_NE(etcd, nullptr) << error;
  ASSERT_TRUE(etcd->EnableAuth("nexus", "s3cret-pw", "/nexuscache/", &error)) << error;

  EtcdClient client(
      {.endpoints = {etcd->endpoint()}, .credentials = {.user = "nexus", .password = "s3cret-pw"}});
  absl::StatusOr<LeaseGrant> lease = client.Grant(10);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(client.Put("/nexuscache/nodes/a", "1", lease->id).ok());
  Recorder rec;
  auto watch = client.WatchPrefix("/nexuscache/", 0, rec.OnEvents(), rec.OnWatchDone());
  ASSERT_TRUE(client.Put("/nexuscache/nodes/b", "2").ok());
  EXPECT_TRUE(WaitFor([&] { return rec.num_events() >= 1; }, 5s)) << "the watch has the token";
  // Outside the role's prefix: refused by etcd's permissions.
  EXPECT_TRUE(absl::IsPermissionDenied(client.Put("/elsewhere", "x").status()));
  // The token lives 1 s unused; after that the next call authenticates again by itself.
  std::this_thread::sleep_for(2500ms);
  absl::StatusOr<int64_t> after = client.Put("/nexuscache/nodes/c", "3");
  EXPECT_TRUE(after.ok()) << after.status();
  watch->Stop();

  EtcdClient wrong(
      {.endpoints = {etcd->endpoint()}, .credentials = {.user = "nexus", .password = "not-it"}});
  const absl::Status refused = wrong.Put("/nexuscache/nodes/d", "4").status();
  EXPECT_TRUE(absl::IsInvalidArgument(refused)) << refused;
  EXPECT_THAT(std::string(refused.message()),
              ::testing::HasSubstr("Authenticate: etcdserver: authentication failed"));
  EtcdClient anonymous({.endpoints = {etcd->endpoint()}});
  EXPECT_FALSE(anonymous.Put("/nexuscache/nodes/d", "4").ok());
}

}  // namespace
}  // namespace nexus
