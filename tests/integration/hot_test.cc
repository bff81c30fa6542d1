// Hot keys across real nodes: replicated to every node, served locally, consistent after
// every acknowledged write, expiring together, surviving a dead replica, and handed to a node
// that joins (through etcd, or added by /setpeer).
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/cluster.h"
#include "support/etcd.h"
#include "support/process.h"

namespace nexus::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

std::string Get(uint16_t port, const std::string& key) {
  const HttpResult r = Http(port, "GET", "/api/get?key=" + key);
  return r.status == 200 ? r.body : std::to_string(r.status);
}

// (The token is ignored by nodes without --auth-token-file.)
int SetHot(uint16_t port, const std::string& key, const std::string& value,
           const std::string& ttl = "expire=5", const std::string& token = "") {
  return HttpWithHeaders(port, "POST", "/api/set",
                         "key=" + key + "&value=" + value + "&" + ttl + "&hot=true",
                         token.empty() ? std::vector<std::string>{}
                                       : std::vector<std::string>{"Authorization: Bearer " + token})
      .status;
}

TEST(HotKeys, ExpireOnEveryNodeWithTheOwnersDeadline) {
  Cluster c(3, {});
  std::string failure;
  ASSERT_TRUE(c.Start(&failure)) << failure;
  ASSERT_EQ(SetHot(c.node(1).http_port, "flash", "sale", "ttl_ms=1500"), 200);
  for (size_t i = 0; i < c.size(); ++i) {
    // Every node holds a copy: reading it costs no peer call anywhere.
    const double before = MetricSum(c.node(i).http_port, "nexuscache_peer_requests_total");
    EXPECT_EQ(Get(c.node(i).http_port, "flash"), "value=sale\n");
    EXPECT_EQ(MetricSum(c.node(i).http_port, "nexuscache_peer_requests_total"), before);
  }
  double applied = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    applied += MetricSum(c.node(i).http_port, "nexuscache_hot_replicas_applied_total");
  }
  EXPECT_EQ(applied, 2);  // the two nodes that are not the owner
  // TTL 1.5 s plus at most 10% jitter: gone everywhere by 1.65 s (checked with margin).
  std::this_thread::sleep_for(milliseconds(2000));
  for (size_t i = 0; i < c.size(); ++i) EXPECT_EQ(Get(c.node(i).http_port, "flash"), "404");
}

TEST(HotKeys, ConcurrentWritersThroughDifferentNodesConverge) {
  Cluster c(3, {});
  std::string failure;
  ASSERT_TRUE(c.Start(&failure)) << failure;
  std::atomic<bool> stop{false};
  std::atomic<int> failed{0};
  auto writer = [&](size_t node, const std::string& tag) {
    for (int i = 0; !stop.load(); ++i) {
      if (SetHot(c.node(node).http_port, "contended", tag + std::to_string(i)) != 200) ++failed;
    }
  };
  std::thread a(writer, 0, "a"), b(writer, 1, "b");
  std::this_thread::sleep_for(seconds(3));
  stop = true;
  a.join();
  b.join();
  EXPECT_EQ(failed.load(), 0);
  const std::string final0 = Get(c.node(0).http_port, "contended");
  ASSERT_EQ(final0.rfind("value=", 0), 0u) << final0;
  for (size_t i = 1; i < c.size(); ++i) {
    EXPECT_EQ(Get(c.node(i).http_port, "contended"), final0) << c.node(i).name;
  }
}

TEST(HotKeys, ADeadReplicaDoesNotBlockWritesAndSurvivorsAgree) {
  Cluster c(3, {"--peer-timeout-ms", "1000"});
  std::string failure;
  ASSERT_TRUE(c.Start(&failure)) << failure;
  // A key owned by svc1, so the write itself does not need the node that dies.
  const std::string key = KeyOwnedBy(c.node(0).http_port, "svc1", "k");
  std::atomic<bool> stop{false};
  std::atomic<int> failed{0};
  std::atomic<long> slowest_ms{0};
  std::thread writer([&] {
    for (int i = 0; !stop.load(); ++i) {
      const auto start = Clock::now();
      if (SetHot(c.node(0).http_port, key, "v" + std::to_string(i)) != 200) ++failed;
      const long ms = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
      if (ms > slowest_ms.load()) slowest_ms = ms;
    }
  });
  std::this_thread::sleep_for(milliseconds(300));
  c.node(2).process->Signal(SIGKILL);  // a replica dies in the middle of the writes
  std::this_thread::sleep_for(milliseconds(700));
  stop = true;
  writer.join();
  EXPECT_EQ(failed.load(), 0);
  // Each write finishes within the peer deadline (1 s) plus slack, never hangs.
  EXPECT_LT(slowest_ms.load(), 2500);
  const std::string final0 = Get(c.node(0).http_port, key);
  EXPECT_EQ(Get(c.node(1).http_port, key), final0);
  EXPECT_GT(MetricSum(c.node(0).http_port, "nexuscache_hot_replication_failures_total") +
                MetricSum(c.node(1).http_port, "nexuscache_hot_replication_failures_total"),
            0);
}

TEST(HotKeys, SurviveTheDeathOfTheirOwner) {
  Cluster c(3, {});
  std::string failure;
  ASSERT_TRUE(c.Start(&failure)) << failure;
  const std::string key = KeyOwnedBy(c.node(0).http_port, "svc3", "k");
  ASSERT_EQ(SetHot(c.node(0).http_port, key, "kept"), 200);
  c.node(2).process->Signal(SIGKILL);
  ASSERT_TRUE(c.node(2).process->WaitExit(seconds(5), nullptr));
  // The owner is gone (and still in the static ring); the replicas answer on their own.
  EXPECT_EQ(Get(c.node(0).http_port, key), "value=kept\n");
  EXPECT_EQ(Get(c.node(1).http_port, key), "value=kept\n");
}

TEST(HotKeys, ANodeAddedWithSetPeerReceivesTheHotSet) {
  // Static membership (the seed's flow): svc3 starts alone and the others learn of it by
  // /setpeer; each pushes the hot keys it owns as it adds the member, as on an etcd join.
  // (Adding a new member by /setpeer needs the admin role.)
  const std::string tokens = WriteTempFile("hot-tokens", "admin boss\n");
  Cluster c(2, {"--auth-token-file", tokens, "--cluster-secret-file", ClusterSecretFile()});
  std::string error;
  ASSERT_TRUE(c.Start(&error)) << error;
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(SetHot(c.node(i % 2).http_port, "hot" + std::to_string(i), "x" + std::to_string(i),
                     "expire=5", "boss"),
              200);
  }
  const int added = c.AddNode(&error);
  ASSERT_GE(added, 0) << error;
  const uint16_t port = c.node(added).http_port;
  auto hot_items = [port] {
    return nlohmann::json::parse(Http(port, "GET", "/api/stats").body)["hot_items"].get<int>();
  };
  ASSERT_EQ(hot_items(), 0);
  for (int i = 0; i < 2; ++i) {
    const HttpResult r =
        HttpWithHeaders(c.node(i).http_port, "POST", "/setpeer",
                        "peer=svc3&addr=127.0.0.1:" + std::to_string(c.node(added).grpc_port),
                        {"Authorization: Bearer boss"});
    ASSERT_EQ(r.status, 200) << r.body;
  }
  const auto deadline = Clock::now() + seconds(10);
  while (Clock::now() < deadline && hot_items() != 10) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  ASSERT_EQ(hot_items(), 10);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(Get(port, "hot" + std::to_string(i)), "value=x" + std::to_string(i) + "\n");
  }
}

TEST(HotKeys, ANodeThatJoinsThroughEtcdReceivesTheHotSet) {
  std::string error;
  auto etcd = EtcdServer::Start(seconds(20), &error);
  ASSERT_NE(etcd, nullptr) << error;
  Cluster c(3, {"--etcd", etcd->endpoint(), "--lease-ttl", "2"}, /*static_peers=*/false);
  ASSERT_TRUE(c.Start(&error)) << error;
  // Wait until all three see all three (writes must reach the owner every node agrees on).
  auto ring_complete = [&](uint16_t port) {
    const std::string ring = Http(port, "GET", "/api/ring").body;
    return ring.find("\"svc1\"") != std::string::npos &&
           ring.find("\"svc2\"") != std::string::npos && ring.find("\"svc3\"") != std::string::npos;
  };
  const auto give_up = Clock::now() + seconds(10);
  while (Clock::now() < give_up &&
         !(ring_complete(c.node(0).http_port) && ring_complete(c.node(1).http_port) &&
           ring_complete(c.node(2).http_port))) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(SetHot(c.node(i % 3).http_port, "hot" + std::to_string(i), "x" + std::to_string(i)),
              200);
  }
  const int added = c.AddNode(&error);
  ASSERT_GE(added, 0) << error;
  const uint16_t port = c.node(added).http_port;
  // The owners push their hot keys to the newcomer as soon as they see it join.
  const auto deadline = Clock::now() + seconds(10);
  int hot_items = 0;
  while (Clock::now() < deadline) {
    hot_items = nlohmann::json::parse(Http(port, "GET", "/api/stats").body)["hot_items"];
    if (hot_items == 10) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  ASSERT_EQ(hot_items, 10);
  // Gets forwarded to peers (the newcomer's own pushes to members it learns of meanwhile are
  // Replicate calls and do not count).
  auto peer_gets = [port] {
    const std::string text = "\n" + Http(port, "GET", "/metrics").body;
    double total = 0;
    for (size_t at = text.find("\nnexuscache_peer_requests_total{"); at != std::string::npos;
         at = text.find("\nnexuscache_peer_requests_total{", at + 1)) {
      const std::string line = text.substr(at + 1, text.find('\n', at + 1) - at - 1);
      if (line.find("op=\"get\"") != std::string::npos) {
        total += std::stod(line.substr(line.rfind(' ') + 1));
      }
    }
    return total;
  };
  const double before = peer_gets();
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(Get(port, "hot" + std::to_string(i)), "value=x" + std::to_string(i) + "\n");
  }
  EXPECT_EQ(peer_gets(), before);
  c.node(0).process->Signal(SIGTERM);  // nodes go before etcd
}

}  // namespace
}  // namespace nexus::testing
