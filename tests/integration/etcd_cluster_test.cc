// Membership through a real etcd: nodes register, find each other, drop the dead, rejoin, and
// survive an etcd outage. Lease TTL 2 s to keep the test short (the default is 5 s).
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "support/cluster.h"
#include "support/etcd.h"
#include "support/process.h"
#include "support/wait.h"

namespace nexus::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr int kLeaseTtl = 2;

std::set<std::string> RingOf(uint16_t http_port) {
  const HttpResult r = Http(http_port, "GET", "/api/ring", "", milliseconds(1000));
  std::set<std::string> names;
  if (r.status != 200) return names;
  const nlohmann::json ring = nlohmann::json::parse(r.body);  // must outlive the loop
  for (const auto& m : ring["members"]) {
    names.insert(m["name"].get<std::string>());
  }
  return names;
}

class EtcdCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    etcd_ = EtcdServer::Start(seconds(20), &error);
    ASSERT_NE(etcd_, nullptr) << error;
    cluster_ = std::make_unique<Cluster>(
        3,
        std::vector<std::string>{"--etcd", etcd_->endpoint(), "--lease-ttl",
                                 std::to_string(kLeaseTtl), "--demo-data"},
        /*static_peers=*/false);
    ASSERT_TRUE(cluster_->Start(&error)) << error;
    ASSERT_TRUE(AllSee({"svc1", "svc2", "svc3"}, seconds(10)))
        << Http(cluster_->node(0).http_port, "GET", "/api/ring").body;
  }
  void TearDown() override {
    cluster_.reset();  // nodes first, while etcd can still take their lease revocations
    etcd_.reset();
  }

  // Every running node's ring is exactly `members` within `timeout`.
  bool AllSee(const std::set<std::string>& members, milliseconds timeout,
              const std::set<size_t>& skip = {}) {
    return WaitUntil(
               [&] {
                 for (size_t i = 0; i < cluster_->size(); ++i) {
                   if (skip.count(i) == 0 && RingOf(cluster_->node(i).http_port) != members) {
                     return false;
                   }
                 }
                 return true;
               },
               timeout)
        .has_value();
  }

  std::unique_ptr<EtcdServer> etcd_;
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(EtcdCluster, NodesConvergeAndAFourthJoins) {
  std::string error;
  ASSERT_GE(cluster_->AddNode(&error), 0) << error;
  EXPECT_TRUE(AllSee({"svc1", "svc2", "svc3", "svc4"}, seconds(10)));
  // The seed flow works across the dynamic cluster.
  ASSERT_EQ(
      Http(cluster_->node(0).http_port, "POST", "/api/set", "key=user1&value=John Doe&expire=5")
          .status,
      200);
  for (size_t i = 0; i < cluster_->size(); ++i) {
    EXPECT_EQ(Http(cluster_->node(i).http_port, "GET", "/api/get?key=user1").body,
              "value=John Doe\n");
  }
  const std::string metrics = Http(cluster_->node(0).http_port, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("\nnexuscache_ring_members 4\n"), std::string::npos) << metrics;
}

TEST_F(EtcdCluster, KilledNodeLeavesWithinTheLeaseTtlAndRejoinsOnRestart) {
  // Keys owned by svc3, written before it dies.
  std::vector<std::string> keys;
  for (int i = 0; keys.size() < 5; ++i) {
    const std::string k = "k" + std::to_string(i);
    if (OwnerOf(cluster_->node(0).http_port, k) == "svc3") keys.push_back(k);
  }
  for (const std::string& k : keys) {
    ASSERT_EQ(
        Http(cluster_->node(0).http_port, "POST", "/api/set", "key=" + k + "&value=v&expire=5")
            .status,
        200);
  }
  cluster_->node(2).process->Signal(SIGKILL);
  const auto gone = WaitUntil(
      [&] {
        return RingOf(cluster_->node(0).http_port) == std::set<std::string>{"svc1", "svc2"} &&
               RingOf(cluster_->node(1).http_port) == std::set<std::string>{"svc1", "svc2"};
      },
      seconds(15));
  ASSERT_TRUE(gone.has_value()) << "svc3 never left the rings";
  std::printf("svc3 left every ring %lld ms after kill -9 (lease TTL %d s)\n",
              static_cast<long long>(gone->count()), kLeaseTtl);
  // Measured 2.3-2.4 s here (within TTL + 1 s, the target); the assertion leaves another
  // second for a loaded CI machine, where etcd's 500 ms expiry tick and our polling add up.
  EXPECT_LE(gone->count(), (kLeaseTtl + 2) * 1000);

  // Its keys now belong to survivors: 404 (with R = 1 the data died with it), or the value
  // written when the write came while svc3 had just joined (in that transition its writes
  // also went to the holder under the ring without it); never a 5xx, never a hang.
  for (size_t n : {0, 1}) {
    for (const std::string& k : keys) {
      const HttpResult r = Http(cluster_->node(n).http_port, "GET", "/api/get?key=" + k);
      EXPECT_TRUE(r.status == 404 || (r.status == 200 && r.body == "value=v\n"))
          << k << ": " << r.status << " " << r.body;
    }
    for (const char* k : {"Tom", "Jack", "Sam"}) {
      EXPECT_EQ(Http(cluster_->node(n).http_port, "GET", std::string("/api/get?key=") + k).status,
                200);
    }
  }

  std::string error;
  ASSERT_TRUE(cluster_->Restart(2, &error)) << error;
  EXPECT_TRUE(AllSee({"svc1", "svc2", "svc3"}, seconds(10)));
}

TEST_F(EtcdCluster, NodesKeepServingThroughAnEtcdOutageAndReRegister) {
  etcd_->Pause();
  const auto outage_end = Clock::now() + seconds(10);
  int requests = 0;
  while (Clock::now() < outage_end) {
    for (size_t n = 0; n < cluster_->size(); ++n) {
      const HttpResult r = Http(cluster_->node(n).http_port, "GET", "/api/get?key=Tom");
      ASSERT_EQ(r.status, 200) << "during the outage: " << r.body;
      ++requests;
    }
    std::this_thread::sleep_for(milliseconds(200));
  }
  EXPECT_TRUE(AllSee({"svc1", "svc2", "svc3"}, milliseconds(100)));  // the last known ring
  // 10 s is past every lease: no node may be sure the others still route its keys to it, so
  // none takes writes as a primary (reads went on above).
  const HttpResult refused =
      Http(cluster_->node(0).http_port, "POST", "/api/set", "key=Tom&value=1&expire=60");
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_NE(refused.body.find("does not hold its etcd lease"), std::string::npos) << refused.body;
  std::string error;
  ASSERT_TRUE(etcd_->Resume(seconds(20), &error)) << error;
  // etcd restores the old leases on restart, but their keepalive streams died with the
  // outage: the keys survive a full TTL after the restart only if every node registered
  // again (new lease, new put, new keepalive stream). Checked at 2x the lease TTL.
  auto registered = [&] {
    const HttpResult r =
        Http(etcd_->client_port(), "POST", "/v3/kv/range",
             R"({"key":"L25leHVzY2FjaGUvbm9kZXMv","range_end":"L25leHVzY2FjaGUvbm9kZXMw"})",
             milliseconds(1000), "application/json");
    return r.status == 200 && r.body.find("\"count\":\"3\"") != std::string::npos;
  };
  std::this_thread::sleep_for(seconds(2 * kLeaseTtl));
  EXPECT_TRUE(registered()) << "nodes are not registered 2x the lease TTL after etcd returned";
  EXPECT_TRUE(AllSee({"svc1", "svc2", "svc3"}, seconds(5)));
  EXPECT_GT(requests, 0);
  // Registered again: writes are taken again.
  for (size_t n = 0; n < cluster_->size(); ++n) {
    EXPECT_EQ(Http(cluster_->node(n).http_port, "POST", "/api/set",
                   "key=k" + std::to_string(n) + "&value=1&expire=60")
                  .status,
              200);
  }
}

TEST_F(EtcdCluster, GracefulStopLeavesEveryRingAtOnce) {
  cluster_->node(1).process->Signal(SIGTERM);
  const auto gone = WaitUntil(
      [&] {
        return RingOf(cluster_->node(0).http_port) == std::set<std::string>{"svc1", "svc3"} &&
               RingOf(cluster_->node(2).http_port) == std::set<std::string>{"svc1", "svc3"};
      },
      seconds(10));
  ASSERT_TRUE(gone.has_value());
  std::printf("svc2 left every ring %lld ms after SIGTERM\n",
              static_cast<long long>(gone->count()));
  EXPECT_LE(gone->count(), 1000);
  int code = -1;
  ASSERT_TRUE(cluster_->node(1).process->WaitExit(seconds(10), &code));
  EXPECT_EQ(code, 0);
}

TEST(EtcdStartup, NodeStartedWhileEtcdIsDownServesAndRegistersWhenItReturns) {
  std::string error;
  auto etcd = EtcdServer::Start(seconds(20), &error);
  ASSERT_NE(etcd, nullptr) << error;
  etcd->Pause();
  Cluster one(1,
              {"--etcd", etcd->endpoint(), "--lease-ttl", std::to_string(kLeaseTtl), "--demo-data"},
              /*static_peers=*/false);
  ASSERT_TRUE(one.Start(&error)) << error;
  EXPECT_EQ(Http(one.node(0).http_port, "GET", "/api/get?key=Tom").body, "value=630\n");
  // The registration attempt fails once its etcd deadline passes, which may be after the node
  // already serves.
  EXPECT_TRUE(WaitUntil(
                  [&] {
                    return one.node(0).process->Log().find("cannot register with etcd at " +
                                                           etcd->endpoint()) != std::string::npos;
                  },
                  seconds(10))
                  .has_value())
      << one.node(0).process->Log();
  ASSERT_TRUE(etcd->Resume(seconds(20), &error)) << error;
  const auto registered = WaitUntil(
      [&] {
        return one.node(0).process->Log().find("discovery: registered /nexuscache/nodes/svc1") !=
               std::string::npos;
      },
      seconds(2 * kLeaseTtl));
  EXPECT_TRUE(registered.has_value()) << one.node(0).process->Log();
}

}  // namespace
}  // namespace nexus::testing
