#include "metrics/metrics.h"

#include <gtest/gtest.h>

namespace nexus::metrics {
namespace {

TEST(MetricsTest, RendersCountersHistogramsAndGauges) {
  Registry r;
  auto* requests = r.AddCounter("nexuscache_requests_total", "Requests.", {"op", "status"});
  requests->With({"get", "hit"})->Inc();
  requests->With({"get", "hit"})->Inc(2);
  requests->With({"set", "ok"})->Inc();
  auto* latency =
      r.AddHistogram("nexuscache_request_duration_seconds", "Latency.", {"op"}, {0.001, 0.01});
  latency->With({"get"})->Observe(0.0005);
  latency->With({"get"})->Observe(0.005);
  latency->With({"get"})->Observe(5);
  r.AddGauge("nexuscache_cache_size_bytes", "Bytes.", [] { return 1234.0; });
  const std::string text = r.Render();
  EXPECT_NE(text.find("# TYPE nexuscache_requests_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("nexuscache_requests_total{op=\"get\",status=\"hit\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("nexuscache_requests_total{op=\"set\",status=\"ok\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("nexuscache_request_duration_seconds_bucket{op=\"get\",le=\"0.001\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("nexuscache_request_duration_seconds_bucket{op=\"get\",le=\"0.01\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("nexuscache_request_duration_seconds_bucket{op=\"get\",le=\"+Inf\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("nexuscache_request_duration_seconds_count{op=\"get\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("nexuscache_request_duration_seconds_sum{op=\"get\"} 5.0055"),
            std::string::npos);
  EXPECT_NE(
      text.find("# TYPE nexuscache_cache_size_bytes gauge\nnexuscache_cache_size_bytes 1234\n"),
      std::string::npos);
}

TEST(MetricsTest, CollectorsRenderLabelledSamples) {
  Registry r;
  r.AddCollector("nexuscache_cache_size_bytes", "Bytes.", "gauge", {"cache"}, [] {
    return Registry::Samples{{{"main"}, 100}, {{"hot"}, 7}};
  });
  const std::string text = r.Render();
  EXPECT_NE(text.find("# TYPE nexuscache_cache_size_bytes gauge\n"
                      "nexuscache_cache_size_bytes{cache=\"main\"} 100\n"
                      "nexuscache_cache_size_bytes{cache=\"hot\"} 7\n"),
            std::string::npos)
      << text;
}

TEST(MetricsTest, HistogramBucketsAreCumulativeAndBoundsInclusive) {
  const std::vector<double> bounds = Registry::LatencyBounds();
  ASSERT_EQ(bounds.front(), 0.00005);
  ASSERT_EQ(bounds.back(), 1.0);
  Histogram h(&bounds);
  h.Observe(0.00005);  // exactly on a bound: counted in it (le = less or equal)
  h.Observe(0.0003);
  h.Observe(2.0);  // above every bound: only in +Inf
  const std::vector<uint64_t> c = h.CumulativeCounts();
  EXPECT_EQ(c[0], 1u);      // le 0.00005
  EXPECT_EQ(c[2], 1u);      // le 0.00025
  EXPECT_EQ(c[3], 2u);      // le 0.0005
  EXPECT_EQ(c.back(), 2u);  // le 1
  EXPECT_EQ(h.count(), 3u);
  EXPECT_NEAR(h.sum(), 2.00035, 1e-6);
}

TEST(MetricsTest, EscapesLabelValuesAndFormatsSpecialValues) {
  EXPECT_EQ(EscapeLabel("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(FormatValue(1.5), "1.5");
  EXPECT_EQ(FormatValue(3), "3");
  EXPECT_EQ(FormatValue(1.0 / 0.0), "+Inf");
}

}  // namespace
}  // namespace nexus::metrics
