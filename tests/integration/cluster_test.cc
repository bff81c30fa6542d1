// Real nexuscache processes on loopback: the seed README flow, owner-only storage, bad input,
// dead peers, process flags and shutdown.
#include "support/cluster.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "support/process.h"
#include "support/wait.h"

namespace nexus::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

uint64_t Items(uint16_t http_port) {
  const HttpResult r = Http(http_port, "GET", "/api/stats");
  return nlohmann::json::parse(r.body)["items"].get<uint64_t>();
}

class ThreeNodes : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string failure;
    ASSERT_TRUE(cluster_.Start(&failure)) << failure;
  }
  Cluster cluster_{3, {"--demo-data"}};
};

TEST_F(ThreeNodes, SeedReadmeFlow) {
  const uint16_t first = cluster_.node(0).http_port;
  HttpResult set = Http(first, "POST", "/api/set", "key=user1&value=John Doe&expire=5&hot=false");
  ASSERT_EQ(set.status, 200) << set.body;
  EXPECT_EQ(set.body, "done\n");
  for (size_t i = 0; i < cluster_.size(); ++i) {
    HttpResult get = Http(cluster_.node(i).http_port, "GET", "/api/get?key=user1");
    EXPECT_EQ(get.status, 200) << cluster_.node(i).name;
    EXPECT_EQ(get.body, "value=John Doe\n") << cluster_.node(i).name;
    EXPECT_EQ(get.headers["content-type"], "application/octet-stream");
  }
  set = Http(first, "POST", "/api/set", "key=popular&value=Hot Data!&expire=5&hot=true");
  ASSERT_EQ(set.status, 200) << set.body;
  for (size_t i : {2, 1}) {
    HttpResult get = Http(cluster_.node(i).http_port, "GET", "/api/get?key=popular");
    EXPECT_EQ(get.status, 200);
    EXPECT_EQ(get.body, "value=Hot Data!\n");
  }
  // The seed's demo store, loaded by the owner.
  for (size_t i = 0; i < cluster_.size(); ++i) {
    EXPECT_EQ(Http(cluster_.node(i).http_port, "GET", "/api/get?key=Tom").body, "value=630\n");
  }
  HttpResult miss = Http(first, "GET", "/api/get?key=nobody");
  EXPECT_EQ(miss.status, 404);
  EXPECT_EQ(miss.body, "key not found\n");
  // Delete through another node; gone everywhere.
  EXPECT_EQ(Http(cluster_.node(1).http_port, "DELETE", "/api/delete?key=user1").status, 200);
  for (size_t i = 0; i < cluster_.size(); ++i) {
    EXPECT_EQ(Http(cluster_.node(i).http_port, "GET", "/api/get?key=user1").status, 404);
  }
}

TEST_F(ThreeNodes, HotKeysAreReplicatedAndServedLocallyAndStayConsistent) {
  // A hot key owned by svc1, written through svc2.
  const std::string key = KeyOwnedBy(cluster_.node(0).http_port, "svc1", "hot");
  ASSERT_EQ(Http(cluster_.node(1).http_port, "POST", "/api/set",
                 "key=" + key + "&value=first&expire=5&hot=true")
                .status,
            200);
  // Every node answers from its own hot cache: no peer call for these reads.
  for (size_t i = 0; i < cluster_.size(); ++i) {
    const uint16_t port = cluster_.node(i).http_port;
    const double before = MetricSum(port, "nexuscache_peer_requests_total");
    for (int r = 0; r < 5; ++r) {
      EXPECT_EQ(Http(port, "GET", "/api/get?key=" + key).body, "value=first\n");
    }
    EXPECT_EQ(MetricSum(port, "nexuscache_peer_requests_total"), before)
        << cluster_.node(i).name << " asked a peer for a replicated key";
  }
  // A later set (not hot) reaches every replica before it is acknowledged...
  ASSERT_EQ(Http(cluster_.node(2).http_port, "POST", "/api/set",
                 "key=" + key + "&value=second&expire=5&hot=false")
                .status,
            200);
  for (size_t i = 0; i < cluster_.size(); ++i) {
    EXPECT_EQ(Http(cluster_.node(i).http_port, "GET", "/api/get?key=" + key).body, "value=second\n")
        << cluster_.node(i).name;
  }
  // ...and so does a delete of a hot key.
  ASSERT_EQ(Http(cluster_.node(1).http_port, "POST", "/api/set",
                 "key=" + key + "&value=third&expire=5&hot=true")
                .status,
            200);
  EXPECT_EQ(Http(cluster_.node(2).http_port, "GET", "/api/get?key=" + key).body, "value=third\n");
  ASSERT_EQ(Http(cluster_.node(2).http_port, "DELETE", "/api/delete?key=" + key).status, 200);
  for (size_t i = 0; i < cluster_.size(); ++i) {
    EXPECT_EQ(Http(cluster_.node(i).http_port, "GET", "/api/get?key=" + key).status, 404)
        << cluster_.node(i).name;
  }
  EXPECT_GE(MetricSum(cluster_.node(0).http_port, "nexuscache_hot_replications_total"), 6);
  EXPECT_EQ(MetricSum(cluster_.node(0).http_port, "nexuscache_hot_replication_failures_total"), 0);
}

// The same cluster with `--forward grpc`: every forwarded request goes over gRPC.
class ThreeNodesOverGrpc : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string failure;
    ASSERT_TRUE(cluster_.Start(&failure)) << failure;
  }
  Cluster cluster_{3, {"--demo-data", "--forward", "grpc"}};
};

TEST_F(ThreeNodesOverGrpc, ForwardedRequestsGoOverGrpc) {
  int forwarded = 0;
  for (int i = 0; i < 30; ++i) {
    const std::string key = "g" + std::to_string(i);
    const uint16_t port = cluster_.node(i % 3).http_port;
    ASSERT_EQ(Http(port, "POST", "/api/set", "key=" + key + "&value=v&expire=10").status, 200);
    EXPECT_EQ(Http(port, "GET", "/api/get?key=" + key).body, "value=v\n");
    if (OwnerOf(port, key) != cluster_.node(i % 3).name) forwarded += 2;
  }
  double served_http = 0, served_grpc = 0;
  for (size_t i = 0; i < cluster_.size(); ++i) {
    const uint16_t port = cluster_.node(i).http_port;
    served_http += MetricSum(port, R"(nexuscache_peer_requests_served_total{transport="http"})");
    served_grpc += MetricSum(port, R"(nexuscache_peer_requests_served_total{transport="grpc"})");
  }
  EXPECT_GT(forwarded, 0);
  EXPECT_EQ(served_grpc, forwarded);
  EXPECT_EQ(served_http, 0);
}

TEST_F(ThreeNodes, KeysAreStoredOnTheirRingOwnerOnly) {
  std::map<std::string, int> expected;
  int forwarded = 0;
  for (int i = 0; i < 60; ++i) {
    const std::string key = "k" + std::to_string(i);
    const HttpResult r = Http(cluster_.node(i % 3).http_port, "POST", "/api/set",
                              "key=" + key + "&value=v" + std::to_string(i) + "&expire=10");
    ASSERT_EQ(r.status, 200) << r.body;
    // Every node computes the same owner.
    const std::string owner = OwnerOf(cluster_.node(0).http_port, key);
    EXPECT_EQ(owner, OwnerOf(cluster_.node(1).http_port, key));
    EXPECT_EQ(owner, OwnerOf(cluster_.node(2).http_port, key));
    ++expected[owner];
    if (owner != cluster_.node(i % 3).name) ++forwarded;
  }
  // Every set that landed on a non-owner was one call to the owner, counted where it was
  // sent, and served by the owner's HTTP forwarding routes (none over gRPC).
  double peer_calls = 0, served_http = 0, served_grpc = 0;
  for (size_t i = 0; i < cluster_.size(); ++i) {
    const uint16_t port = cluster_.node(i).http_port;
    peer_calls += MetricSum(port, "nexuscache_peer_requests_total");
    served_http += MetricSum(port, R"(nexuscache_peer_requests_served_total{transport="http"})");
    served_grpc += MetricSum(port, R"(nexuscache_peer_requests_served_total{transport="grpc"})");
  }
  EXPECT_EQ(peer_calls, forwarded);
  EXPECT_EQ(served_http, forwarded);
  EXPECT_EQ(served_grpc, 0);
  EXPECT_EQ(expected.size(), 3u) << "60 keys should spread over all three nodes";
  for (size_t i = 0; i < cluster_.size(); ++i) {
    EXPECT_EQ(Items(cluster_.node(i).http_port),
              static_cast<uint64_t>(expected[cluster_.node(i).name]))
        << cluster_.node(i).name;
  }
  const nlohmann::json ring =
      nlohmann::json::parse(Http(cluster_.node(0).http_port, "GET", "/api/ring").body);
  EXPECT_EQ(ring["members"].size(), 3u);
}

TEST_F(ThreeNodes, DeadPeerGivesAQuickGatewayErrorNotAHang) {
  // Find a key owned by svc3, then kill svc3 hard.
  const std::string key = KeyOwnedBy(cluster_.node(0).http_port, "svc3", "dead");
  cluster_.node(2).process->Signal(SIGKILL);
  ASSERT_TRUE(cluster_.node(2).process->WaitExit(seconds(5), nullptr));
  const auto start = std::chrono::steady_clock::now();
  const HttpResult r =
      Http(cluster_.node(0).http_port, "GET", "/api/get?key=" + key, "", seconds(10));
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(r.status == 502 || r.status == 503) << r.status << " " << r.body;
  EXPECT_NE(r.body.find("svc3"), std::string::npos) << r.body;
  EXPECT_LT(took, seconds(3));
  EXPECT_EQ(Http(cluster_.node(0).http_port, "GET", "/healthz").status, 200);
  // Keys owned by the survivors are unaffected.
  const std::string alive = KeyOwnedBy(cluster_.node(0).http_port, "svc2", "alive");
  EXPECT_EQ(
      Http(cluster_.node(0).http_port, "POST", "/api/set", "key=" + alive + "&value=x&expire=1")
          .status,
      200);
  EXPECT_EQ(Http(cluster_.node(0).http_port, "GET", "/api/get?key=" + alive).body, "value=x\n");
}

TEST_F(ThreeNodes, ClusterViewGathersEveryMembersMetrics) {
  for (int i = 0; i < 5; ++i) Http(cluster_.node(1).http_port, "GET", "/api/get?key=Tom");
  const HttpResult r = Http(cluster_.node(0).http_port, "GET", "/api/cluster");
  ASSERT_EQ(r.status, 200) << r.body;
  const nlohmann::json j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["self"], "svc1");
  ASSERT_EQ(j["nodes"].size(), 3u) << r.body;
  for (size_t i = 0; i < 3; ++i) {
    const nlohmann::json& node = j["nodes"][i];
    EXPECT_EQ(node["name"], "svc" + std::to_string(i + 1));
    EXPECT_EQ(node["self"], i == 0);
    ASSERT_TRUE(node["ok"].get<bool>()) << node.dump();
  }
  // svc2's numbers are svc2's own: the 5 GETs it answered (no other traffic reached it).
  const std::string svc2 = j["nodes"][1]["metrics"].get<std::string>();
  EXPECT_EQ(MetricSumIn(svc2, "nexuscache_requests_total"), 5);
  EXPECT_EQ(MetricSumIn(svc2, "nexuscache_requests_total"),
            MetricSum(cluster_.node(1).http_port, "nexuscache_requests_total"));

  // A dead member is reported as down, quickly, and the others still answer.
  cluster_.node(2).process->Signal(SIGKILL);
  ASSERT_TRUE(cluster_.node(2).process->WaitExit(seconds(5), nullptr));
  const auto start = std::chrono::steady_clock::now();
  const HttpResult after = Http(cluster_.node(0).http_port, "GET", "/api/cluster");
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(3));
  ASSERT_EQ(after.status, 200);
  const nlohmann::json k = nlohmann::json::parse(after.body);
  ASSERT_EQ(k["nodes"].size(), 3u);
  EXPECT_TRUE(k["nodes"][1]["ok"].get<bool>());
  EXPECT_FALSE(k["nodes"][2]["ok"].get<bool>());
  EXPECT_NE(k["nodes"][2]["error"].get<std::string>().find("svc3"), std::string::npos)
      << k["nodes"][2].dump();
}

class OneNode : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string failure;
    ASSERT_TRUE(cluster_.Start(&failure)) << failure;
    port_ = cluster_.node(0).http_port;
  }
  Cluster cluster_{1, {"--demo-data", "--max-value-bytes", "1024"}};
  uint16_t port_ = 0;
};

struct BadInput {
  std::string name, method, target, body;
  int status;
  std::string response;
};

TEST_F(OneNode, BadInputGetsItsDocumentedAnswerAndTheNodeKeepsServing) {
  const std::string big_key(251, 'k');
  const std::string big_value(1025, 'v');
  const std::vector<BadInput> cases = {
      {"expire missing", "POST", "/api/set", "key=a&value=b", 400,
       "Please set expire time correctly, unit: minutes\n"},
      {"expire not a number", "POST", "/api/set", "key=a&value=b&expire=ten", 400,
       "Please set expire time correctly, unit: minutes\n"},
      {"expire zero", "POST", "/api/set", "key=a&value=b&expire=0", 400,
       "Expire time error, unit is minutes, max 4320 minutes (3 days)\n"},
      {"expire too large", "POST", "/api/set", "key=a&value=b&expire=4321", 400,
       "Expire time error, unit is minutes, max 4320 minutes (3 days)\n"},
      {"bad hot", "POST", "/api/set", "key=a&value=b&expire=5&hot=yes", 400,
       "Invalid Param \"hot\"\n"},
      {"empty key", "POST", "/api/set", "key=&value=b&expire=5", 400, "key is required\n"},
      {"oversize key", "POST", "/api/set", "key=" + big_key + "&value=b&expire=5", 413,
       "key longer than 250 bytes\n"},
      {"oversize value", "POST", "/api/set", "key=a&value=" + big_value + "&expire=5", 413,
       "value longer than 1024 bytes\n"},
      {"get without key", "GET", "/api/get", "", 400, "key is required\n"},
      {"empty peer", "POST", "/setpeer", "peer=", 400, "peer is not allow empty!\n"},
      {"unknown path", "GET", "/nope", "", 404, "404 page not found\n"},
      {"wrong method", "GET", "/api/set", "", 405, "method not allowed\n"},
      {"unknown group", "GET", "/api/get?key=a&group=nope", "", 404, "no such group: nope\n"},
  };
  for (const BadInput& c : cases) {
    const HttpResult r = Http(port_, c.method, c.target, c.body);
    EXPECT_EQ(r.status, c.status) << c.name << ": " << r.body;
    EXPECT_EQ(r.body, c.response) << c.name;
  }
  // Malformed HTTP: 400 and the connection closes.
  const HttpResult malformed = ParseResponse(RawExchange(port_, "BLAH\r\n\r\n"));
  EXPECT_EQ(malformed.status, 400);
  // A body larger than the HTTP limit: 413 and close.
  const std::string huge(8 << 20, 'x');
  const HttpResult too_big = Http(port_, "POST", "/api/set", "key=a&expire=5&value=" + huge);
  EXPECT_EQ(too_big.status, 413);
  // A client that disconnects mid-request.
  RawExchange(port_, "POST /api/set HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nkey=a",
              milliseconds(200), /*half_close=*/true);
  // Still serving, and nothing bad was stored.
  EXPECT_EQ(Http(port_, "GET", "/healthz").status, 200);
  EXPECT_EQ(Http(port_, "GET", "/api/get?key=a").status, 404);
  ASSERT_EQ(Http(port_, "POST", "/api/set", "key=a&value=fine&expire=5").status, 200);
  EXPECT_EQ(Http(port_, "GET", "/api/get?key=a").body, "value=fine\n");
}

TEST_F(OneNode, SetPeerIsIdempotentAndStatsAndMetricsAnswer) {
  ASSERT_EQ(Http(port_, "POST", "/api/set", "key=m&value=1&expire=5").status, 200);
  Http(port_, "GET", "/api/get?key=Tom");
  const nlohmann::json stats = nlohmann::json::parse(Http(port_, "GET", "/api/stats").body);
  EXPECT_EQ(stats["items"].get<int>(), 2);  // m, and Tom from the demo loader
  EXPECT_EQ(stats["loads"].get<int>(), 1);
  // Without tokens /setpeer re-adds only known members (auth_test covers the rest): this
  // node itself, a no-op, however often.
  for (int i = 0; i < 2; ++i) {
    const HttpResult r = Http(port_, "POST", "/setpeer", "peer=svc1");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "set peer svc1 successful\n");
  }
  EXPECT_EQ(Http(port_, "POST", "/setpeer", "peer=svc9").status, 403);
  const nlohmann::json ring = nlohmann::json::parse(Http(port_, "GET", "/api/ring").body);
  EXPECT_EQ(ring["members"].size(), 1u);
  EXPECT_EQ(ring["generation"].get<int>(), 1);  // the initial membership only
  const std::string metrics = Http(port_, "GET", "/metrics").body;
  EXPECT_NE(metrics.find(R"(nexuscache_requests_total{protocol="http",op="set",status="ok"})"),
            std::string::npos);
  EXPECT_NE(metrics.find(R"(nexuscache_request_duration_seconds_bucket{protocol="http",op="get")"),
            std::string::npos);
  EXPECT_NE(metrics.find("nexuscache_cache_size_bytes{cache=\"main\"} "), std::string::npos);
  EXPECT_NE(metrics.find("nexuscache_cache_size_bytes{cache=\"hot\"} "), std::string::npos);
  EXPECT_NE(metrics.find("nexuscache_peer_requests_total "), std::string::npos);
}

TEST(ProcessTest, BadFlagsExitTwoAndABusyPortFailsClearly) {
  const std::string log = TempDir() + "/flags.log";
  auto bad = Process::Start({NexusBinary(), "--name", "x", "--port", "notaport"}, {}, log);
  int code = -1;
  ASSERT_TRUE(bad->WaitExit(seconds(10), &code));
  EXPECT_EQ(code, 2);
  EXPECT_NE(bad->Log().find("usage: nexuscache"), std::string::npos);

  Cluster one(1, {});
  std::string failure;
  ASSERT_TRUE(one.Start(&failure)) << failure;
  const std::string log2 = TempDir() + "/busy.log";
  auto busy = Process::Start(
      {NexusBinary(), "--name", "y", "--bind", "127.0.0.1", "--port", std::to_string(FreePort()),
       "--http-port", std::to_string(one.node(0).http_port)},
      {}, log2);
  ASSERT_TRUE(busy->WaitExit(seconds(10), &code));
  EXPECT_NE(code, 0);
  EXPECT_NE(busy->Log().find(std::to_string(one.node(0).http_port)), std::string::npos)
      << busy->Log();
}

TEST_F(OneNode, DashboardIsOneSelfContainedPage) {
  const HttpResult r = Http(port_, "GET", "/dashboard");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.headers.at("content-type"), "text/html; charset=utf-8");
  EXPECT_NE(r.body.find("<title>nexuscache dashboard</title>"), std::string::npos);
  // Everything inline: no external script, stylesheet or CDN.
  EXPECT_EQ(r.body.find("http://"), std::string::npos);
  EXPECT_EQ(r.body.find("https://"), std::string::npos);
  EXPECT_EQ(r.body.find("src="), std::string::npos);
  // It reads only this node's /api/cluster (which gathers the other members' metrics).
  EXPECT_NE(r.body.find("fetch(\"/api/cluster\")"), std::string::npos);
  EXPECT_EQ(Http(port_, "GET", "/api/cluster").status, 200);
}

TEST(ProcessTest, MetricsPortServesOnlyMetrics) {
  const uint16_t metrics_port = FreePort();
  Cluster one(1, {"--metrics-port", std::to_string(metrics_port)});
  std::string failure;
  ASSERT_TRUE(one.Start(&failure)) << failure;
  // The metrics listener starts just after the API's, which is what Start waited for.
  HttpResult m;
  EXPECT_TRUE(WaitFor([&] { return (m = Http(metrics_port, "GET", "/metrics")).status == 200; },
                      std::chrono::seconds(5), std::chrono::milliseconds(10)));
  EXPECT_NE(m.body.find("# TYPE nexuscache_requests_total counter"), std::string::npos);
  EXPECT_EQ(Http(metrics_port, "GET", "/api/get?key=a").status, 404);
  EXPECT_EQ(Http(metrics_port, "GET", "/api/get?key=a").body, "404 page not found\n");
}

TEST(ProcessTest, SigtermStopsCleanly) {
  Cluster one(1, {"--demo-data"});
  std::string failure;
  ASSERT_TRUE(one.Start(&failure)) << failure;
  one.node(0).process->Signal(SIGTERM);
  int code = -1;
  ASSERT_TRUE(one.node(0).process->WaitExit(seconds(10), &code));
  EXPECT_EQ(code, 0) << one.node(0).process->Log();
}

}  // namespace
}  // namespace nexus::testing
