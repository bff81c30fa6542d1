#include "metrics/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace nexus::metrics {

Histogram::Histogram(const std::vector<double>* bounds)
    : bounds_(bounds), buckets_(new std::atomic<uint64_t>[bounds->size()]) {
  for (size_t i = 0; i < bounds_->size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  const auto it = std::lower_bound(bounds_->begin(), bounds_->end(), v);
  if (it != bounds_->end()) buckets_[it - bounds_->begin()].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  if (v > 0) sum_micro_.fetch_add(static_cast<uint64_t>(v * 1e6), std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> out(bounds_->size());
  uint64_t running = 0;
  for (size_t i = 0; i < bounds_->size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    out[i] = running;
  }
  return out;
}

double Histogram::sum() const {
  return static_cast<double>(sum_micro_.load(std::memory_order_relaxed)) / 1e6;
}

Family<Counter>* Registry::AddCounter(std::string name, std::string help,
                                      std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  counters_.push_back(
      std::make_unique<Family<Counter>>(std::move(name), std::move(help), std::move(label_names),
                                        [] { return std::make_unique<Counter>(); }));
  return counters_.back().get();
}

Family<Histogram>* Registry::AddHistogram(std::string name, std::string help,
                                          std::vector<std::string> label_names,
                                          std::vector<double> bounds) {
  absl::MutexLock lock(&mu_);
  auto h = std::make_unique<HistogramFamily>();
  h->bounds = std::move(bounds);
  const std::vector<double>* b = &h->bounds;
  h->family =
      std::make_unique<Family<Histogram>>(std::move(name), std::move(help), std::move(label_names),
                                          [b] { return std::make_unique<Histogram>(b); });
  histograms_.push_back(std::move(h));
  return histograms_.back()->family.get();
}

void Registry::AddGauge(std::string name, std::string help, std::function<double()> fn) {
  AddCollector(std::move(name), std::move(help), "gauge", {}, [fn = std::move(fn)] {
    return Samples{{{}, fn()}};
  });
}

void Registry::AddCounterFn(std::string name, std::string help, std::function<double()> fn) {
  AddCollector(std::move(name), std::move(help), "counter", {}, [fn = std::move(fn)] {
    return Samples{{{}, fn()}};
  });
}

void Registry::AddCollector(std::string name, std::string help, std::string type,
                            std::vector<std::string> label_names, std::function<Samples()> fn) {
  absl::MutexLock lock(&mu_);
  fns_.push_back(
      {std::move(name), std::move(help), std::move(type), std::move(label_names), std::move(fn)});
}

std::vector<double> Registry::LatencyBounds() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
          0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1};
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  // The shortest representation that reads back as the same double.
  char buf[32];
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

std::string EscapeLabel(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

std::string Labels(const std::vector<std::string>& names, const std::vector<std::string>& values,
                   const std::string& extra = "") {
  std::string out;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    if (!out.empty()) out += ',';
    out += names[i] + "=\"" + EscapeLabel(values[i]) + "\"";
  }
  if (!extra.empty()) {
    if (!out.empty()) out += ',';
    out += extra;
  }
  return out.empty() ? "" : "{" + out + "}";
}

void Header(std::ostringstream& out, const std::string& name, const std::string& help,
            const char* type) {
  out << "# HELP " << name << ' ' << help << '\n' << "# TYPE " << name << ' ' << type << '\n';
}

}  // namespace

std::string Registry::Render() const {
  std::ostringstream out;
  absl::MutexLock lock(&mu_);
  for (const auto& family : counters_) {
    Header(out, family->name(), family->help(), "counter");
    family->ForEach([&](const std::vector<std::string>& labels, const Counter& c) {
      out << family->name() << Labels(family->label_names(), labels) << ' ' << c.value() << '\n';
    });
  }
  for (const auto& h : histograms_) {
    const auto& f = *h->family;
    Header(out, f.name(), f.help(), "histogram");
    f.ForEach([&](const std::vector<std::string>& labels, const Histogram& hist) {
      const std::vector<uint64_t> cumulative = hist.CumulativeCounts();
      const uint64_t count = hist.count();
      for (size_t i = 0; i < h->bounds.size(); ++i) {
        out << f.name() << "_bucket"
            << Labels(f.label_names(), labels, "le=\"" + FormatValue(h->bounds[i]) + "\"") << ' '
            << std::min(cumulative[i], count) << '\n';
      }
      out << f.name() << "_bucket" << Labels(f.label_names(), labels, "le=\"+Inf\"") << ' ' << count
          << '\n';
      out << f.name() << "_sum" << Labels(f.label_names(), labels) << ' ' << FormatValue(hist.sum())
          << '\n';
      out << f.name() << "_count" << Labels(f.label_names(), labels) << ' ' << count << '\n';
    });
  }
  for (const auto& m : fns_) {
    Header(out, m.name, m.help, m.type.c_str());
    for (const auto& [labels, value] : m.fn()) {
      out << m.name << Labels(m.label_names, labels) << ' ' << FormatValue(value) << '\n';
    }
  }
  return out.str();
}

void ExportProcessMetrics(Registry& registry) {
  registry.AddGauge("nexuscache_process_resident_memory_bytes", "Resident memory of this process.",
                    [] {
                      std::ifstream statm("/proc/self/statm");
                      double size = 0, resident = 0;
                      statm >> size >> resident;
                      return resident * static_cast<double>(sysconf(_SC_PAGESIZE));
                    });
}

}  // namespace nexus::metrics
