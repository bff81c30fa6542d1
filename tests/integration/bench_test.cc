// nexus-bench against real servers: its counts agree with what the nodes counted, the open
// loop sends exactly the requested rate, the memcached protocol works against a real
// memcached, and bad flags or a dead target fail clearly.
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>

#include "support/cluster.h"
#include "support/process.h"

namespace nexus::testing {
namespace {

using std::chrono::seconds;

struct BenchRun {
  int code = -1;
  std::string output;
  nlohmann::json json;  // parsed when the output is JSON
};

BenchRun RunBench(std::vector<std::string> args, seconds timeout = seconds(60)) {
  args.insert(args.begin(), NEXUS_BENCH_BIN);
  BenchRun run;
  static std::atomic<int> runs{0};  // one log file per run
  auto p = Process::Start(args, {}, TempDir() + "/bench-" + std::to_string(++runs) + ".log");
  if (p == nullptr || !p->WaitExit(timeout, &run.code)) return run;
  run.output = p->Log();
  if (const size_t brace = run.output.find('{'); brace != std::string::npos) {
    run.json = nlohmann::json::parse(run.output.substr(brace), nullptr, false);
  }
  return run;
}

double TotalRequests(Cluster& cluster) {
  double total = 0;
  for (size_t i = 0; i < cluster.size(); ++i) {
    total += MetricSum(cluster.node(i).http_port, "nexuscache_requests_total");
  }
  return total;
}

TEST(NexusBench, CountsAgreeWithTheNodesAndEveryKeyHits) {
  Cluster cluster(3, {});
  std::string failure;
  ASSERT_TRUE(cluster.Start(&failure)) << failure;
  std::string urls;
  for (size_t i = 0; i < cluster.size(); ++i) {
    urls += (i ? "," : "") + std::string("http://127.0.0.1:") +
            std::to_string(cluster.node(i).http_port);
  }
  const BenchRun run = RunBench({"-urls", urls, "-duration", "2s", "-warmup", "1s", "-concurrency",
                                 "9", "-keys", "20", "-json"});
  ASSERT_EQ(run.code, 0) << run.output;
  const nlohmann::json& j = run.json;
  ASSERT_TRUE(j.is_object()) << run.output;
  EXPECT_EQ(j["targets"].size(), 3u);
  EXPECT_GT(j["measured"]["requests"].get<uint64_t>(), 0u) << run.output;
  EXPECT_EQ(j["measured"]["errors"], 0) << run.output;
  EXPECT_EQ(j["lost"], 0);
  EXPECT_EQ(j["in_flight_at_end"], 0);
  EXPECT_EQ(j["answered"], j["sent"]);
  // The measured phase is what the summary reports: reads + writes, and every read after the
  // warmup finds its key (20 keys are all written within the first second).
  const auto& m = j["measured"];
  EXPECT_EQ(m["requests"].get<uint64_t>(),
            m["reads"].get<uint64_t>() + m["writes"].get<uint64_t>());
  EXPECT_GT(j["hit_rate"].get<double>(), 0.99) << run.output;
  EXPECT_EQ(j["latency"]["count"], m["requests"]);
  EXPECT_LE(j["latency"]["p50_us"].get<double>(), j["latency"]["p99_us"].get<double>());
  EXPECT_LE(j["latency"]["p99_us"].get<double>(), j["latency"]["max_us"].get<double>());
  // Every request the bench sent was answered by exactly one node's HTTP API.
  EXPECT_EQ(TotalRequests(cluster), j["sent"].get<double>());
  EXPECT_NE(j["markdown_row"].get<std::string>().find(" ops/sec | "), std::string::npos);
}

TEST(NexusBench, OpenLoopSendsTheRateAskedFor) {
  Cluster cluster(1, {});
  std::string failure;
  ASSERT_TRUE(cluster.Start(&failure)) << failure;
  const BenchRun run =
      RunBench({"-url", "http://127.0.0.1:" + std::to_string(cluster.node(0).http_port), "-rate",
                "400", "-duration", "2s", "-warmup", "0s", "-concurrency", "4", "-json"});
  ASSERT_EQ(run.code, 0) << run.output;
  const nlohmann::json& j = run.json;
  // 400/s for 2 s is 800 requests due, whatever the latency; each was sent or is counted as
  // still waiting.
  EXPECT_NEAR(j["scheduled"].get<double>(), 800, 1) << run.output;
  EXPECT_EQ(j["sent"].get<uint64_t>() + j["never_sent"].get<uint64_t>(),
            j["scheduled"].get<uint64_t>());
  EXPECT_EQ(j["measured"]["errors"], 0);
}

TEST(NexusBench, SpeaksMemcachedToARealMemcached) {
  const uint16_t port = FreePort();
  auto memcached = Process::Start({"/usr/bin/memcached", "-l", "127.0.0.1", "-p",
                                   std::to_string(port), "-U", "0", "-m", "64", "-u", "root"},
                                  {}, TempDir() + "/memcached.log");
  ASSERT_NE(memcached, nullptr);
  BenchRun run;
  for (int attempt = 0; attempt < 50; ++attempt) {  // until memcached listens
    run = RunBench({"-url", "memcache://127.0.0.1:" + std::to_string(port), "-duration", "1s",
                    "-warmup", "500ms", "-concurrency", "4", "-keys", "10", "-json"});
    if (run.code != 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(run.code, 0) << run.output << memcached->Log();
  EXPECT_GT(run.json["measured"]["requests"].get<uint64_t>(), 0u);
  EXPECT_EQ(run.json["measured"]["errors"], 0) << run.output;
  EXPECT_GT(run.json["hit_rate"].get<double>(), 0.99) << run.output;
}

TEST(NexusBench, BadFlagsAndDeadTargetsFailClearly) {
  BenchRun bad = RunBench({"-concurrency", "lots"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.output.find("invalid value \"lots\" for flag -concurrency"), std::string::npos)
      << bad.output;
  EXPECT_NE(bad.output.find("Usage of nexus-bench"), std::string::npos);
  EXPECT_EQ(RunBench({"-read-ratio", "1.5"}).code, 2);
  EXPECT_EQ(RunBench({"-url", "https://example.com"}).code, 2);

  const uint16_t nobody = FreePort();
  BenchRun dead =
      RunBench({"-url", "http://127.0.0.1:" + std::to_string(nobody), "-duration", "1s"});
  EXPECT_EQ(dead.code, 1);
  EXPECT_NE(dead.output.find("cannot connect to http://127.0.0.1:" + std::to_string(nobody)),
            std::string::npos)
      << dead.output;
}

}  // namespace
}  // namespace nexus::testing
