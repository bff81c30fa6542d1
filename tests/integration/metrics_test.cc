// Every number true: exact counter movements after a known sequence of requests, the live
// output accepted by promtool, and a real Prometheus scraping a 3-node cluster.
#include <gtest/gtest.h>
#include <signal.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/cluster.h"
#include "support/process.h"

namespace nexus::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// The value of one exact sample line (`name{labels}`), or -1.
double Sample(const std::string& metrics, const std::string& series) {
  const size_t pos = ("\n" + metrics).find("\n" + series + " ");
  if (pos == std::string::npos) return -1;
  return std::stod(metrics.substr(pos + series.size() + 1));
}

class MetricsCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string failure;
    ASSERT_TRUE(cluster_.Start(&failure)) << failure;
  }
  Cluster cluster_{3, {"--demo-data"}};
};

TEST_F(MetricsCluster, CountersMoveByExactlyTheExpectedAmounts) {
  const uint16_t port = cluster_.node(0).http_port;
  const std::string a = KeyOwnedBy(port, "svc1", "a"), b = KeyOwnedBy(port, "svc1", "b");
  const std::string remote = KeyOwnedBy(port, "svc2", "r");
  ASSERT_EQ(Http(port, "POST", "/api/set", "key=" + a + "&value=1&expire=5").status, 200);
  ASSERT_EQ(Http(port, "POST", "/api/set", "key=" + b + "&value=2&expire=5").status, 200);
  ASSERT_EQ(Http(port, "POST", "/api/set", "key=" + remote + "&value=3&expire=5").status, 200);
  ASSERT_EQ(Http(port, "GET", "/api/get?key=" + a).status, 200);
  ASSERT_EQ(Http(port, "GET", "/api/get?key=" + b).status, 200);
  ASSERT_EQ(Http(port, "GET", "/api/get?key=" + remote).status, 200);
  const std::string missing = KeyOwnedBy(port, "svc1", "nobody");
  ASSERT_EQ(Http(port, "GET", "/api/get?key=" + missing).status, 404);
  ASSERT_EQ(Http(port, "DELETE", "/api/delete?key=" + b).status, 200);
  ASSERT_EQ(Http(port, "POST", "/api/set", "key=x&value=1&expire=0").status, 400);

  const std::string m = Http(port, "GET", "/metrics").body;
  EXPECT_EQ(Sample(m, R"(nexuscache_requests_total{protocol="http",op="set",status="ok"})"), 3)
      << m;
  EXPECT_EQ(Sample(m, R"(nexuscache_requests_total{protocol="http",op="set",status="error"})"), 1);
  EXPECT_EQ(Sample(m, R"(nexuscache_requests_total{protocol="http",op="get",status="hit"})"), 3);
  EXPECT_EQ(Sample(m, R"(nexuscache_requests_total{protocol="http",op="get",status="miss"})"), 1);
  EXPECT_EQ(Sample(m, R"(nexuscache_requests_total{protocol="http",op="delete",status="ok"})"), 1);
  EXPECT_EQ(Sample(m, R"(nexuscache_request_duration_seconds_count{protocol="http",op="get"})"), 4);
  EXPECT_EQ(
      Sample(m,
             R"(nexuscache_request_duration_seconds_bucket{protocol="http",op="get",le="+Inf"})"),
      4);
  // a, and b's tombstone (a delete is remembered for a minute so a late copy cannot revive it).
  EXPECT_EQ(Sample(m, R"(nexuscache_cache_items{cache="main"})"), 2);
  EXPECT_EQ(Sample(m, "nexuscache_cache_hits_total"), 2);    // a, b from the local cache
  EXPECT_EQ(Sample(m, "nexuscache_cache_misses_total"), 2);  // remote (forwarded), missing
  EXPECT_EQ(Sample(m, "nexuscache_loads_total"), 1);         // missing, from the demo loader
  EXPECT_EQ(Sample(m, "nexuscache_load_errors_total"), 0);   // not found is not an error
  EXPECT_EQ(Sample(m, R"(nexuscache_peer_requests_total{peer="svc2",op="set",status="ok"})"), 1);
  EXPECT_EQ(Sample(m, R"(nexuscache_peer_requests_total{peer="svc2",op="get",status="hit"})"), 1);
  EXPECT_EQ(Sample(m, "nexuscache_ring_members"), 3);
  EXPECT_GT(Sample(m, "nexuscache_process_resident_memory_bytes"), 1 << 20);
  EXPECT_GT(Sample(m, R"(nexuscache_cache_size_bytes{cache="main"})"), 0);
}

TEST_F(MetricsCluster, PromtoolAcceptsTheLiveOutput) {
  const uint16_t port = cluster_.node(0).http_port;
  Http(port, "GET", "/api/get?key=Tom");
  Http(port, "POST", "/api/set", "key=k&value=v&expire=5&hot=true");
  const std::string path = TempDir() + "/metrics.txt";
  {
    std::ofstream out(path);
    out << Http(port, "GET", "/metrics").body;
  }
  const std::string log = TempDir() + "/promtool.log";
  auto promtool = Process::Start({"/bin/sh", "-c", "promtool check metrics < " + path}, {}, log);
  int code = -1;
  ASSERT_TRUE(promtool->WaitExit(seconds(30), &code));
  EXPECT_EQ(code, 0) << promtool->Log();
}

TEST_F(MetricsCluster, ARealPrometheusScrapesEveryNode) {
  const uint16_t prom_port = FreePort();
  const std::string dir = TempDir() + "/prometheus-" + std::to_string(prom_port);
  std::filesystem::create_directories(dir);
  {
    std::ofstream cfg(dir + "/prometheus.yml");
    cfg << "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: nexuscache\n"
           "    static_configs:\n      - targets: [";
    for (size_t i = 0; i < cluster_.size(); ++i) {
      cfg << (i ? ", " : "") << "\"127.0.0.1:" << cluster_.node(i).http_port << "\"";
    }
    cfg << "]\n";
  }
  auto prometheus =
      Process::Start({"/usr/bin/prometheus", "--config.file=" + dir + "/prometheus.yml",
                      "--storage.tsdb.path=" + dir + "/data",
                      "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)},
                     {}, dir + "/prometheus.log");
  ASSERT_NE(prometheus, nullptr);
  int up = 0;
  std::string last;
  const auto give_up = std::chrono::steady_clock::now() + seconds(40);
  while (std::chrono::steady_clock::now() < give_up && up < 3) {
    std::this_thread::sleep_for(milliseconds(500));
    const HttpResult r = Http(prom_port, "GET", "/api/v1/query?query=up", "", seconds(2));
    last = std::to_string(r.status) + " " + r.body + r.error;
    if (r.status != 200) continue;
    up = 0;
    const nlohmann::json answer = nlohmann::json::parse(r.body);  // must outlive the loop
    for (const auto& result : answer["data"]["result"]) {
      if (result["value"][1].get<std::string>() == "1") ++up;
    }
  }
  EXPECT_EQ(up, 3) << last;
  prometheus->Signal(SIGTERM);
  prometheus->WaitExit(seconds(10), nullptr);
}

TEST_F(MetricsCluster, GrafanaDashboardOnlyUsesMetricsWeExport) {
  std::ifstream in(std::string(NEXUS_SOURCE_DIR) + "/deploy/grafana/dashboards/nexuscache.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json dashboard = nlohmann::json::parse(in);  // must parse: valid JSON
  const std::string exported = Http(cluster_.node(0).http_port, "GET", "/metrics").body;
  int exprs = 0;
  for (const auto& panel : dashboard["panels"]) {
    ASSERT_TRUE(panel.contains("targets")) << panel["title"];
    for (const auto& target : panel["targets"]) {
      const std::string expr = target["expr"].get<std::string>();
      ++exprs;
      // Every "nexuscache_[a-z_]+" in the expression (no std::regex: g++ 12 under ASan warns
      // inside <regex>).
      for (size_t pos = expr.find("nexuscache_"); pos != std::string::npos;
           pos = expr.find("nexuscache_", pos + 1)) {
        size_t end = pos;
        while (end < expr.size() &&
               (std::islower(static_cast<unsigned char>(expr[end])) || expr[end] == '_')) {
          ++end;
        }
        std::string name = expr.substr(pos, end - pos);
        pos = end - 1;
        for (const char* suffix : {"_bucket", "_sum", "_count"}) {
          const std::string s(suffix);
          if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0 &&
              exported.find("# TYPE " + name.substr(0, name.size() - s.size()) + " histogram") !=
                  std::string::npos) {
            name = name.substr(0, name.size() - s.size());
          }
        }
        EXPECT_NE(exported.find("# TYPE " + name + " "), std::string::npos)
            << "panel '" << panel["title"].get<std::string>() << "' uses " << name;
      }
    }
  }
  EXPECT_GE(exprs, 10);
}

}  // namespace
}  // namespace nexus::testing
