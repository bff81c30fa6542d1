#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "tools/bench/flags.h"
#include "tools/bench/histogram.h"
#include "tools/bench/protocol.h"
#include "tools/bench/report.h"

namespace nexus::bench {
namespace {

using std::chrono::nanoseconds;

TEST(HistogramTest, BucketsAreExactBelow128AndWithin1Of64Above) {
  for (uint64_t v = 0; v < 128; ++v) {
    EXPECT_EQ(LatencyHistogram::BucketUpperBound(LatencyHistogram::BucketOf(v)), v);
  }
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t v = rng() >> (rng() % 64);
    const size_t b = LatencyHistogram::BucketOf(v);
    const uint64_t upper = LatencyHistogram::BucketUpperBound(b);
    ASSERT_GE(upper, v);
    ASSERT_LE(static_cast<double>(upper - v), static_cast<double>(v) / 64.0) << v;
    if (b > 0) {
      ASSERT_LT(LatencyHistogram::BucketUpperBound(b - 1), v) << v;  // buckets tile
    }
  }
  EXPECT_LT(LatencyHistogram::BucketOf(UINT64_MAX), 4000u);
}

TEST(HistogramTest, PercentilesMatchSortedSamples) {
  LatencyHistogram h;
  std::vector<uint64_t> samples;
  std::mt19937_64 rng(1);
  std::lognormal_distribution<double> latency(12.0, 1.0);  // ~160 µs median, long tail
  for (int i = 0; i < 200000; ++i) {
    const auto v = static_cast<uint64_t>(latency(rng));
    samples.push_back(v);
    h.Record(v);
  }
  std::sort(samples.begin(), samples.end());
  for (double q : {0.5, 0.9, 0.95, 0.99, 0.999}) {
    const uint64_t truth = samples[static_cast<size_t>(std::ceil(q * samples.size())) - 1];
    const uint64_t got = h.Percentile(q);
    EXPECT_GE(got, truth) << q;
    EXPECT_LE(static_cast<double>(got - truth), truth / 64.0) << q;
  }
  EXPECT_EQ(h.count(), samples.size());
  EXPECT_EQ(h.min(), samples.front());
  EXPECT_EQ(h.max(), samples.back());
  EXPECT_EQ(h.Percentile(1.0), samples.back());
}

TEST(HistogramTest, MergeEqualsRecordingEverything) {
  LatencyHistogram a, b, all;
  for (uint64_t v = 1; v < 5000; v += 7) {
    (v % 2 ? a : b).Record(v * 1000);
    all.Record(v * 1000);
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.mean(), all.mean());
  EXPECT_EQ(a.min(), all.min());
  EXPECT_EQ(a.max(), all.max());
  EXPECT_EQ(a.Percentile(0.99), all.Percentile(0.99));
  LatencyHistogram empty;
  EXPECT_EQ(empty.Percentile(0.5), 0u);
  EXPECT_EQ(empty.min(), 0u);
}

TEST(FlagsTest, GoDurations) {
  EXPECT_EQ(*ParseGoDuration("30s"), std::chrono::seconds(30));
  EXPECT_EQ(*ParseGoDuration("1m30s"), std::chrono::seconds(90));
  EXPECT_EQ(*ParseGoDuration("500ms"), std::chrono::milliseconds(500));
  EXPECT_EQ(*ParseGoDuration("1.5h"), std::chrono::minutes(90));
  EXPECT_EQ(*ParseGoDuration("250us"), std::chrono::microseconds(250));
  EXPECT_EQ(*ParseGoDuration("0"), nanoseconds(0));
  EXPECT_FALSE(ParseGoDuration("30").ok());  // Go requires a unit
  EXPECT_FALSE(ParseGoDuration("").ok());
  EXPECT_FALSE(ParseGoDuration("5x").ok());
  EXPECT_EQ(FormatGoDuration(std::chrono::seconds(30)), "30s");
  EXPECT_EQ(FormatGoDuration(std::chrono::milliseconds(1500)), "1500ms");
}

TEST(FlagsTest, GoSyntax) {
  std::string url = "http://localhost:9999";
  int concurrency = 50;
  double ratio = 0.8;
  bool json = false;
  nanoseconds duration = std::chrono::seconds(30);
  FlagSet flags("t");
  flags.String("url", &url, "u");
  flags.Int("concurrency", &concurrency, "c");
  flags.Double("read-ratio", &ratio, "r");
  flags.Bool("json", &json, "j");
  flags.Duration("duration", &duration, "d");
  const char* argv[] = {"t", "-duration=5s",    "--concurrency", "8", "-json", "-read-ratio",
                        "1", "--url=http://a:1"};
  bool help = false;
  ASSERT_TRUE(flags.Parse(8, argv, &help).ok());
  EXPECT_FALSE(help);
  EXPECT_EQ(duration, std::chrono::seconds(5));
  EXPECT_EQ(concurrency, 8);
  EXPECT_TRUE(json);
  EXPECT_EQ(ratio, 1.0);
  EXPECT_EQ(url, "http://a:1");
  EXPECT_NE(flags.Usage().find("-concurrency int"), std::string::npos);
  EXPECT_NE(flags.Usage().find("(default 50)"), std::string::npos);  // defaults as registered

  const char* unknown[] = {"t", "-nope"};
  EXPECT_EQ(flags.Parse(2, unknown, &help).message(), "flag provided but not defined: -nope");
  const char* missing[] = {"t", "-url"};
  EXPECT_EQ(flags.Parse(2, missing, &help).message(), "flag needs an argument: -url");
  const char* bad[] = {"t", "-concurrency=lots"};
  EXPECT_EQ(flags.Parse(2, bad, &help).message(),
            "invalid value \"lots\" for flag -concurrency: parse error");
  const char* h[] = {"t", "-h"};
  ASSERT_TRUE(flags.Parse(2, h, &help).ok());
  EXPECT_TRUE(help);
}

TEST(ProtocolTest, Targets) {
  auto t = ParseTarget("http://127.0.0.1:9999/");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->protocol, Protocol::kHttp);
  EXPECT_EQ(t->host, "127.0.0.1");
  EXPECT_EQ(t->port, 9999);
  EXPECT_EQ(ParseTarget("http://localhost")->port, 80);
  EXPECT_EQ(ParseTarget("memcache://127.0.0.1")->port, 11211);
  EXPECT_EQ(ParseTarget("http://[::1]:8080")->host, "::1");
  EXPECT_FALSE(ParseTarget("https://x:1").ok());
  EXPECT_FALSE(ParseTarget("http://x:1/api/get").ok());
  EXPECT_FALSE(ParseTarget("http://x:70000").ok());
  EXPECT_FALSE(ParseTarget("http://:80").ok());
}

TEST(ProtocolTest, SeedRequests) {
  const Target t = *ParseTarget("http://127.0.0.1:9999");
  std::string out;
  AppendRead(t, 42, out);
  EXPECT_EQ(out, "GET /api/get?key=bench_key_42 HTTP/1.1\r\nHost: 127.0.0.1:9999\r\n\r\n");
  out.clear();
  AppendWrite(t, Workload{.hot = true}, 7, "abc", out);
  EXPECT_EQ(out,
            "POST /api/set HTTP/1.1\r\nHost: 127.0.0.1:9999\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 44\r\n\r\n"
            "key=bench_key_7&value=abc&expire=60&hot=true");
  const Target m = *ParseTarget("memcache://127.0.0.1:11211");
  out.clear();
  AppendWrite(m, Workload{}, 7, "abc", out);
  AppendRead(m, 7, out);
  EXPECT_EQ(out, "set bench_key_7 0 3600 3\r\nabc\r\nget bench_key_7\r\n");
}

TEST(ProtocolTest, HttpRepliesArriveInPieces) {
  const std::string hit =
      "HTTP/1.1 200 OK\r\nServer: nexuscache\r\ncontent-length: 13\r\n\r\nvalue=abcdef\n";
  Reply r;
  for (size_t cut = 0; cut < hit.size(); ++cut) {
    ASSERT_EQ(ParseReply(Protocol::kHttp, true, std::string_view(hit).substr(0, cut), &r), 0)
        << cut;
  }
  ASSERT_EQ(ParseReply(Protocol::kHttp, true, hit + "HTTP/1.1", &r),
            static_cast<ptrdiff_t>(hit.size()));
  EXPECT_EQ(r.outcome, Outcome::kHit);
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.close);

  const std::string miss =
      "HTTP/1.1 404 Not Found\r\nContent-Length: 14\r\nConnection: close\r\n\r\nkey not found\n";
  ASSERT_GT(ParseReply(Protocol::kHttp, true, miss, &r), 0);
  EXPECT_EQ(r.outcome, Outcome::kMiss);
  EXPECT_TRUE(r.close);
  const std::string fail = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
  ASSERT_GT(ParseReply(Protocol::kHttp, true, fail, &r), 0);
  EXPECT_EQ(r.outcome, Outcome::kError);
  const std::string done = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ndone\n";
  ASSERT_GT(ParseReply(Protocol::kHttp, false, done, &r), 0);
  EXPECT_EQ(r.outcome, Outcome::kOk);
  // A 200 whose body is not "value=..." is not a hit (the seed's definition).
  ASSERT_GT(ParseReply(Protocol::kHttp, true, done, &r), 0);
  EXPECT_EQ(r.outcome, Outcome::kError);
  EXPECT_EQ(ParseReply(Protocol::kHttp, true, "SSH-2.0\r\n\r\n", &r), -1);
  EXPECT_EQ(ParseReply(Protocol::kHttp, true, "HTTP/1.1 200 OK\r\n\r\n", &r), -1);  // no length
}

TEST(ProtocolTest, MemcacheReplies) {
  Reply r;
  const std::string value = "VALUE bench_key_1 0 3\r\nabc\r\nEND\r\n";
  for (size_t cut = 0; cut < value.size(); ++cut) {
    ASSERT_EQ(ParseReply(Protocol::kMemcache, true, std::string_view(value).substr(0, cut), &r), 0)
        << cut;
  }
  ASSERT_EQ(ParseReply(Protocol::kMemcache, true, value, &r), static_cast<ptrdiff_t>(value.size()));
  EXPECT_EQ(r.outcome, Outcome::kHit);
  ASSERT_EQ(ParseReply(Protocol::kMemcache, true, "END\r\n", &r), 5);
  EXPECT_EQ(r.outcome, Outcome::kMiss);
  ASSERT_EQ(ParseReply(Protocol::kMemcache, false, "STORED\r\n", &r), 8);
  EXPECT_EQ(r.outcome, Outcome::kOk);
  ASSERT_GT(ParseReply(Protocol::kMemcache, false, "SERVER_ERROR out of memory\r\n", &r), 0);
  EXPECT_EQ(r.outcome, Outcome::kError);
}

TEST(ReportTest, SeedStyleLatenciesAndRow) {
  EXPECT_EQ(FormatLatency(713'000), "713µs");
  EXPECT_EQ(FormatLatency(1'810'000), "1.81ms");
  EXPECT_EQ(FormatLatency(3'670'000), "3.67ms");
  EXPECT_EQ(FormatLatency(2'500'000'000), "2.50s");
  LoadResult r;
  r.measured_seconds = 10;
  r.measured.reads = 200'000;
  r.measured.writes = 34'320;
  r.measured.hits = 200'000;
  for (int i = 0; i < 100; ++i) r.latency.Record(700'000);
  EXPECT_EQ(MarkdownRow("M4", r), "| M4 | 23,432 ops/sec | 700µs | 700µs | 700µs | 100% |\n");
}

}  // namespace
}  // namespace nexus::bench
