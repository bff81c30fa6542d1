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
  auto* latency = r.AddHistogram("nexuscache_request_duration_seconds", "Latency.", {"op"},
                                 {0.001, 0.01});
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
  EXPECT_NE(text.find("# TYPE nexuscache_cache_size_bytes gauge\nnexuscache_cache_size_bytes 1234\n"),
            std::string::npos);
}

TEST(MetricsTest, EscapesLabelValuesAndFormatsSpecialValues) {
  EXPECT_EQ(EscapeLabel("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(FormatValue(1.5), "1.5");
  EXPECT_EQ(FormatValue(3), "3");
  EXPECT_EQ(FormatValue(1.0 / 0.0), "+Inf");
}

}  // namespace
}  // namespace nexus::metrics
