#include "tools/bench/report.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace nexus::bench {

namespace {

double Throughput(const LoadResult& r) {
  return r.measured_seconds > 0 ? r.measured.total() / r.measured_seconds : 0;
}

double Ratio(uint64_t part, uint64_t whole) { return whole == 0 ? 0 : 100.0 * part / whole; }

// 23432.4 -> "23,432"
std::string Thousands(double v) {
  std::string digits = absl::StrFormat("%.0f", v);
  std::string out;
  const int n = static_cast<int>(digits.size());
  for (int i = 0; i < n; ++i) {
    out += digits[i];
    if ((n - i - 1) % 3 == 0 && i != n - 1) out += ',';
  }
  return out;
}

std::vector<std::string> TargetUrls(const LoadOptions& o) {
  std::vector<std::string> urls;
  for (const auto& t : o.targets) urls.push_back(t.url);
  return urls;
}

}  // namespace

std::string FormatLatency(uint64_t nanos) {
  const double ns = static_cast<double>(nanos);
  if (ns < 1e3) return absl::StrFormat("%.0fns", ns);
  if (ns < 1e6) return absl::StrFormat("%.0fµs", ns / 1e3);
  if (ns < 1e9) return absl::StrFormat("%.2fms", ns / 1e6);
  return absl::StrFormat("%.2fs", ns / 1e9);
}

std::string MarkdownHeader() {
  return "| Environment | Throughput | P50 Latency | P95 Latency | P99 Latency | Hit Rate |\n"
         "|---|---|---|---|---|---|\n";
}

std::string MarkdownRow(const std::string& label, const LoadResult& r) {
  return absl::StrCat("| ", label, " | ", Thousands(Throughput(r)), " ops/sec | ",
                      FormatLatency(r.latency.Percentile(0.50)), " | ",
                      FormatLatency(r.latency.Percentile(0.95)), " | ",
                      FormatLatency(r.latency.Percentile(0.99)), " | ",
                      absl::StrFormat("%.0f%%", Ratio(r.measured.hits, r.measured.reads)), " |\n");
}

std::string FormatText(const LoadOptions& o, const LoadResult& r, const std::string& label) {
  const PhaseCounts& m = r.measured;
  std::string s;
  absl::StrAppend(&s, "=== nexus-bench results ===\n");
  absl::StrAppend(&s, "Target(s):       ", absl::StrJoin(TargetUrls(o), ", "), "\n");
  absl::StrAppend(
      &s, absl::StrFormat(
              "Load:            %s, %d connections, %d keys, read ratio %.2f, %zu-byte values%s\n",
              o.rate > 0 ? absl::StrFormat("open loop at %.0f req/s", o.rate) : "closed loop",
              o.concurrency, o.workload.keys, o.workload.read_ratio, o.workload.value_size,
              o.workload.hot ? ", hot writes" : ""));
  absl::StrAppend(
      &s, absl::StrFormat("Duration:        %.1fs (after %.1fs of warmup)\n", r.measured_seconds,
                          std::chrono::duration<double>(o.warmup).count()));
  absl::StrAppend(&s, absl::StrFormat("Total requests:  %d (%d reads, %d writes)\n", m.total(),
                                      m.reads, m.writes));
  absl::StrAppend(&s, absl::StrFormat("Throughput:      %.2f ops/sec\n", Throughput(r)));
  absl::StrAppend(&s, absl::StrFormat("Hit rate:        %.2f%% (%d hits, %d misses)\n",
                                      Ratio(m.hits, m.reads), m.hits, m.misses));
  absl::StrAppend(&s, absl::StrFormat("Error rate:      %.2f%% (%d errors)\n",
                                      Ratio(m.errors, m.total()), m.errors));
  const LatencyHistogram& h = r.latency;
  absl::StrAppend(&s, "Latency avg:     ", FormatLatency(static_cast<uint64_t>(h.mean())), "\n");
  absl::StrAppend(&s, "Latency P50:     ", FormatLatency(h.Percentile(0.50)), "\n");
  absl::StrAppend(&s, "Latency P95:     ", FormatLatency(h.Percentile(0.95)), "\n");
  absl::StrAppend(&s, "Latency P99:     ", FormatLatency(h.Percentile(0.99)), "\n");
  absl::StrAppend(&s, "Latency P99.9:   ", FormatLatency(h.Percentile(0.999)), "\n");
  absl::StrAppend(&s, "Latency max:     ", FormatLatency(h.max()), "\n");
  if (o.rate > 0) {
    absl::StrAppend(
        &s,
        absl::StrFormat(
            "Open loop:       %d requests due in the measured phase, %d still waiting at the end\n",
            r.scheduled, r.never_sent));
  }
  if (r.lost > 0 || r.connect_failures > 0 || r.in_flight_at_end > 0) {
    absl::StrAppend(
        &s, absl::StrFormat(
                "Connections:     %d requests lost to broken connections, %d failed connects, %d "
                "unanswered at the end\n",
                r.lost, r.connect_failures, r.in_flight_at_end));
  }
  for (const auto& e : r.error_samples) absl::StrAppend(&s, "  error: ", e, "\n");
  absl::StrAppend(&s, "\n", MarkdownHeader(), MarkdownRow(label, r));
  return s;
}

nlohmann::json ToJson(const LoadOptions& o, const LoadResult& r, const std::string& label) {
  auto counts = [](const PhaseCounts& c) {
    return nlohmann::json{{"requests", c.total()}, {"reads", c.reads},   {"writes", c.writes},
                          {"hits", c.hits},        {"misses", c.misses}, {"errors", c.errors}};
  };
  auto latency = [](const LatencyHistogram& h) {
    return nlohmann::json{{"count", h.count()},
                          {"avg_us", h.mean() / 1e3},
                          {"p50_us", h.Percentile(0.50) / 1e3},
                          {"p95_us", h.Percentile(0.95) / 1e3},
                          {"p99_us", h.Percentile(0.99) / 1e3},
                          {"p999_us", h.Percentile(0.999) / 1e3},
                          {"max_us", h.max() / 1e3}};
  };
  const PhaseCounts& m = r.measured;
  return {
      {"label", label},
      {"targets", TargetUrls(o)},
      {"concurrency", o.concurrency},
      {"keys", o.workload.keys},
      {"read_ratio", o.workload.read_ratio},
      {"value_size", o.workload.value_size},
      {"hot", o.workload.hot},
      {"rate", o.rate},
      {"warmup_s", std::chrono::duration<double>(o.warmup).count()},
      {"duration_s", r.measured_seconds},
      {"throughput", Throughput(r)},
      {"hit_rate", m.reads == 0 ? 0.0 : static_cast<double>(m.hits) / m.reads},
      {"error_rate", m.total() == 0 ? 0.0 : static_cast<double>(m.errors) / m.total()},
      {"measured", counts(m)},
      {"warmup", counts(r.warmup)},
      {"latency", latency(r.latency)},
      {"read_latency", latency(r.read_latency)},
      {"write_latency", latency(r.write_latency)},
      {"sent", r.sent},
      {"answered", r.answered},
      {"lost", r.lost},
      {"in_flight_at_end", r.in_flight_at_end},
      {"scheduled", r.scheduled},
      {"never_sent", r.never_sent},
      {"connect_failures", r.connect_failures},
      {"errors_seen", r.error_samples},
      {"markdown_row", MarkdownRow(label, r)},
  };
}

}  // namespace nexus::bench
