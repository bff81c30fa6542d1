// Handoff of copies on membership changes, with real nexuscache processes and a real etcd on
// loopback: a rolling restart under load keeps the hit rate (R = 1: the leaving node drains to
// the next holders, the restarted one gets its range back), and with R = 2 a kill -9 followed
// by a restart ends with R copies of every key. Each test prints one line of figures.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/cluster.h"
#include "support/etcd.h"
#include "support/process.h"
#include "support/wait.h"

namespace nexus::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using SteadyClock = std::chrono::steady_clock;

constexpr int kKeys = 2000;

std::string Key(int i) { return "item:" + std::to_string(i); }
std::string Value(int i) { return "value-" + std::to_string(i); }

// What readers saw.
struct Reads {
  std::atomic<int64_t> hits{0};     // 200 with the value written
  std::atomic<int64_t> misses{0};   // 404: the key's holder did not have it
  std::atomic<int64_t> errors{0};   // anything else answered (5xx, wrong value)
  std::atomic<int64_t> refused{0};  // no answer from the node asked (then another is asked)
  double HitRate() const {
    const double answered = static_cast<double>(hits + misses + errors);
    return answered == 0 ? 0 : static_cast<double>(hits) / answered;
  }
};

class HandoffCluster : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> args, int lease_ttl = 2) {
    std::string error;
    etcd_ = EtcdServer::Start(seconds(20), &error);
    ASSERT_NE(etcd_, nullptr) << error;
    args.emplace_back("--lease-ttl");
    args.push_back(std::to_string(lease_ttl));
    args.emplace_back("--etcd");
    args.push_back(etcd_->endpoint());
    cluster_ = std::make_unique<Cluster>(3, args, /*static_peers=*/false);
    ASSERT_TRUE(cluster_->Start(&error)) << error;
    ASSERT_TRUE(AllSee(3)) << "the nodes did not find each other";
  }
  void TearDown() override {
    StopReaders();
    cluster_.reset();
    etcd_.reset();
  }

  bool AllSee(double n, const std::vector<size_t>& nodes = {0, 1, 2}) {
    return cluster_->RingsHave(n, nodes);
  }
  // No node has a handoff walk running, and `metric` summed over `nodes` equals `want`. On
  // failure, what each node last showed.
  ::testing::AssertionResult Settles(const std::string& metric, double want,
                                     const std::vector<size_t>& nodes) {
    const bool settled = WaitFor(
        [&] {
          double total = 0;
          for (size_t i : nodes) {
            const uint16_t port = cluster_->node(i).http_port;
            // (-1: a build without handoff, measured with NEXUSCACHE_BIN_UNDER_TEST)
            if (MetricSum(port, "nexuscache_handoff_backlog") > 0) return false;
            total += MetricSum(port, metric);
          }
          return total == want;
        },
        seconds(20), milliseconds(50));
    if (settled) return ::testing::AssertionSuccess();
    ::testing::AssertionResult failure = ::testing::AssertionFailure();
    failure << metric << " did not settle at " << want << "; last seen:";
    for (size_t i : nodes) {
      const uint16_t port = cluster_->node(i).http_port;
      failure << "\n  node " << i << ":";
      for (const char* name :
           {"nexuscache_cache_items", "nexuscache_ring_members", "nexuscache_handoff_backlog",
            "nexuscache_handoff_hints", "nexuscache_handoff_walks_total",
            "nexuscache_handoff_keys_sent_total", "nexuscache_handoff_keys_received_total",
            "nexuscache_handoff_dropped_total", "nexuscache_handoff_send_failures_total"}) {
        failure << " " << (name + sizeof("nexuscache_") - 1) << "=" << MetricSum(port, name);
      }
    }
    for (size_t i : nodes) {
      const std::string log = cluster_->node(i).earlier_logs + cluster_->node(i).process->Log();
      failure << "\n  node " << i << "'s log (end):\n"
              << log.substr(log.size() - std::min<size_t>(log.size(), 6000));
    }
    return failure;
  }
  void WriteAll() {
    for (int i = 0; i < kKeys; ++i) {
      const HttpResult r = Http(cluster_->node(i % 3).http_port, "POST", "/api/set",
                                "key=" + Key(i) + "&value=" + Value(i) + "&expire=600");
      ASSERT_EQ(r.status, 200) << Key(i) << ": " << r.body;
    }
  }
  // Every `step`th key reads its value through each of `nodes`.
  void ExpectEveryKeyReads(const std::vector<size_t>& nodes, int step) {
    for (int i = 0; i < kKeys; i += step) {
      for (size_t n : nodes) {
        EXPECT_EQ(Http(cluster_->node(n).http_port, "GET", "/api/get?key=" + Key(i)).body,
                  "value=" + Value(i) + "\n")
            << "through node " << n;
      }
    }
  }
  // Readers ask the nodes in turn for random keys, skipping node `skip_` (one being
  // restarted: its clients moved away, as a Kubernetes Service's endpoints do).
  void StartReaders(int threads) {
    for (int t = 0; t < threads; ++t) {
      readers_.emplace_back([this, t] {
        std::mt19937 rng(t);
        size_t next = t;
        while (!stop_) {
          const int i = static_cast<int>(rng() % kKeys);
          for (int attempt = 0; attempt < 3; ++attempt) {
            const size_t node = next++ % 3;
            if (static_cast<int>(node) == skip_.load()) continue;
            const HttpResult r = Http(cluster_->node(node).http_port, "GET",
                                      "/api/get?key=" + Key(i), "", seconds(5));
            Reads& into = *phase_.load();
            if (r.status == 0) {
              ++into.refused;
              continue;
            }
            if (r.status == 200 && r.body == "value=" + Value(i) + "\n") {
              ++into.hits;
            } else if (r.status == 404) {
              ++into.misses;
            } else {
              ++into.errors;
            }
            break;
          }
        }
      });
    }
  }
  void StopReaders() {
    stop_ = true;
    for (std::thread& t : readers_) t.join();
    readers_.clear();
  }

  std::unique_ptr<EtcdServer> etcd_;
  std::unique_ptr<Cluster> cluster_;
  std::vector<std::thread> readers_;
  std::atomic<bool> stop_{false};
  std::atomic<int> skip_{-1};
  Reads before_;
  Reads during_;
  std::atomic<Reads*> phase_{&before_};
};

TEST_F(HandoffCluster, ARollingRestartKeepsTheHitRateWithOneReplica) {
  ASSERT_NO_FATAL_FAILURE(Start({"--replicas", "1"}));
  ASSERT_NO_FATAL_FAILURE(WriteAll());
  StartReaders(2);
  ASSERT_TRUE(WaitFor([&] { return before_.hits + before_.misses >= 2000; }, seconds(30)));
  phase_ = &during_;
  const auto start = SteadyClock::now();
  for (size_t i = 0; i < 3; ++i) {
    // SIGTERM: the node drains its copies to their next holders, leaves, exits; it comes back
    // empty and gets its range back from them.
    skip_ = static_cast<int>(i);
    cluster_->node(i).process->Signal(SIGTERM);
    int code = -1;
    ASSERT_TRUE(cluster_->node(i).process->WaitExit(seconds(30), &code));
    EXPECT_EQ(code, 0) << cluster_->node(i).process->Log();
    std::string error;
    ASSERT_TRUE(cluster_->Restart(i, &error)) << error;
    ASSERT_TRUE(AllSee(3));
    skip_ = -1;
    EXPECT_TRUE(Settles(R"(nexuscache_cache_items)", kKeys, {0, 1, 2}))
        << "copies did not settle at one per key";
  }
  const double seconds_taken = std::chrono::duration<double>(SteadyClock::now() - start).count();
  StopReaders();
  std::printf(
      "rolling restart, R=1, %d keys: %.1f s; hit rate before %.4f (%lld reads), during %.4f "
      "(%lld hits, %lld misses, %lld errors, %lld refused)\n",
      kKeys, seconds_taken, before_.HitRate(),
      static_cast<long long>(before_.hits + before_.misses), during_.HitRate(),
      static_cast<long long>(during_.hits.load()), static_cast<long long>(during_.misses.load()),
      static_cast<long long>(during_.errors.load()),
      static_cast<long long>(during_.refused.load()));
  EXPECT_EQ(before_.HitRate(), 1.0);
  EXPECT_GE(during_.HitRate(), 0.95 * before_.HitRate());
  EXPECT_EQ(during_.errors, 0);
  // Every key survived all three restarts.
  ExpectEveryKeyReads({0, 1, 2}, 7);
}

TEST_F(HandoffCluster, AKilledNodeIsReReplicatedAndARestartEndsWithRCopies) {
  ASSERT_NO_FATAL_FAILURE(Start({"--replicas", "2"}));
  ASSERT_NO_FATAL_FAILURE(WriteAll());
  ASSERT_TRUE(Settles("nexuscache_cache_items", 2 * kKeys, {0, 1, 2}));
  const auto killed = SteadyClock::now();
  cluster_->node(2).process->Signal(SIGKILL);
  // The survivors learn of the death when its lease expires, then copy what it held so that
  // each key again has two copies: both survivors hold every key.
  ASSERT_TRUE(AllSee(2, {0, 1}));
  ASSERT_TRUE(Settles("nexuscache_cache_items", 2 * kKeys, {0, 1}))
      << "the survivors did not restore two copies";
  const double healed = std::chrono::duration<double>(SteadyClock::now() - killed).count();
  std::string error;
  ASSERT_TRUE(cluster_->Restart(2, &error)) << error;
  ASSERT_TRUE(AllSee(3));
  ASSERT_TRUE(Settles("nexuscache_cache_items", 2 * kKeys, {0, 1, 2}))
      << "the restarted node did not get its ranges back";
  const double received =
      MetricSum(cluster_->node(2).http_port, "nexuscache_handoff_keys_received_total");
  std::printf(
      "kill -9 + restart, R=2, %d keys: two copies again %.1f s after the kill (lease TTL 2 s); "
      "the restarted node received %.0f copies\n",
      kKeys, healed, received);
  EXPECT_GT(received, kKeys / 3);
  // Each node holds at most one copy of a key: 2 x keys copies in all, and every key readable
  // from every node.
  ExpectEveryKeyReads({0, 1, 2}, 5);
}

TEST_F(HandoffCluster, ANodeBackWithinItsLeaseTtlGetsItsCopiesAgain) {
  // kill -9 and an immediate restart (a crashed pod that Kubernetes restarts at once): the
  // others never see it leave, only its new incarnation.
  ASSERT_NO_FATAL_FAILURE(Start({"--replicas", "2"}, /*lease_ttl=*/30));
  ASSERT_NO_FATAL_FAILURE(WriteAll());
  ASSERT_TRUE(Settles("nexuscache_cache_items", 2 * kKeys, {0, 1, 2}));
  const double generation = MetricSum(cluster_->node(0).http_port, "nexuscache_ring_generation");
  const auto killed = SteadyClock::now();
  std::string error;
  ASSERT_TRUE(cluster_->Restart(2, &error)) << error;  // SIGKILL, then start again
  ASSERT_TRUE(Settles("nexuscache_cache_items", 2 * kKeys, {0, 1, 2}))
      << "the restarted node did not get its copies back";
  const double healed = std::chrono::duration<double>(SteadyClock::now() - killed).count();
  EXPECT_EQ(MetricSum(cluster_->node(0).http_port, "nexuscache_ring_generation"), generation)
      << "the ring changed: the restart was not within the lease";
  const double received =
      MetricSum(cluster_->node(2).http_port, "nexuscache_handoff_keys_received_total");
  std::printf(
      "kill -9 + immediate restart, R=2, %d keys, lease TTL 30 s: two copies again %.1f s after "
      "the kill; the restarted node received %.0f copies\n",
      kKeys, healed, received);
  EXPECT_GT(received, kKeys / 3);
  ExpectEveryKeyReads({2}, 5);
}

}  // namespace
}  // namespace nexus::testing
