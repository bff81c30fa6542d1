// Prometheus metrics, hand-written (no Prometheus C++ client ships in Debian):
// counters and histograms with label values, gauges read through callbacks at scrape time, and
// the text exposition format (version 0.0.4).
//
// Usage: create the families once at startup, keep the returned pointers, and on the hot path
// call `family->With({"get", "hit"})->Inc()` or better cache the child pointer.
// Thread-safety: every method may be called concurrently. Children are never deleted while the
// registry lives, so cached child pointers stay valid. Counter and histogram updates are
// lock-free (relaxed atomics); creating a new label combination takes a mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace nexus::metrics {

class Counter {
 public:
  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Histogram {
 public:
  // `bounds`: ascending upper bounds, without +Inf.
  explicit Histogram(const std::vector<double>* bounds);
  void Observe(double v);
  // Cumulative counts per bound (the +Inf bucket is count()).
  std::vector<uint64_t> CumulativeCounts() const;
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const;

 private:
  const std::vector<double>* bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // per bound, not cumulative
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_micro_{0};  // sum in millionths, so it can be an integer atomic
};

template <typename T>
class Family {
 public:
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::function<std::unique_ptr<T>()> make)
      : name_(std::move(name)),
        help_(std::move(help)),
        label_names_(std::move(label_names)),
        make_(std::move(make)) {}

  // The child for these label values (in label_names order), created on first use.
  T* With(const std::vector<std::string>& label_values) {
    absl::MutexLock lock(&mu_);
    auto& child = children_[label_values];
    if (!child) child = make_();
    return child.get();
  }

  template <typename Fn>
  void ForEach(Fn fn) const {
    absl::MutexLock lock(&mu_);
    for (const auto& [labels, child] : children_) fn(labels, *child);
  }

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

 private:
  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const std::function<std::unique_ptr<T>()> make_;
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_ ABSL_GUARDED_BY(mu_);
};

class Registry {
 public:
  Family<Counter>* AddCounter(std::string name, std::string help,
                              std::vector<std::string> label_names = {});
  Family<Histogram>* AddHistogram(std::string name, std::string help,
                                  std::vector<std::string> label_names, std::vector<double> bounds);
  // A gauge whose value is read when the registry is rendered. `fn` must be thread-safe.
  void AddGauge(std::string name, std::string help, std::function<double()> fn);
  // A counter whose value is read at render time (for counts kept elsewhere, e.g. cache stats).
  void AddCounterFn(std::string name, std::string help, std::function<double()> fn);

  // Labelled samples read at render time: {label values (in label_names order), value}.
  using Samples = std::vector<std::pair<std::vector<std::string>, double>>;
  // `type` is "counter" or "gauge".
  void AddCollector(std::string name, std::string help, std::string type,
                    std::vector<std::string> label_names, std::function<Samples()> fn);

  // Prometheus text exposition format 0.0.4.
  std::string Render() const;

  // Latency buckets in seconds, 50 µs .. 1 s.
  static std::vector<double> LatencyBounds();

 private:
  struct FnMetric {
    std::string name, help, type;
    std::vector<std::string> label_names;
    std::function<Samples()> fn;
  };
  struct HistogramFamily {
    std::vector<double> bounds;
    std::unique_ptr<Family<Histogram>> family;
  };
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Family<Counter>>> counters_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<HistogramFamily>> histograms_ ABSL_GUARDED_BY(mu_);
  std::vector<FnMetric> fns_ ABSL_GUARDED_BY(mu_);
};

// Registers the process's own metrics (resident memory) on `registry`.
void ExportProcessMetrics(Registry& registry);

// Formats a sample value the way Prometheus expects (integers without exponent, +Inf, NaN).
std::string FormatValue(double v);
// Escapes a label value (backslash, double quote, newline).
std::string EscapeLabel(const std::string& v);

}  // namespace nexus::metrics
