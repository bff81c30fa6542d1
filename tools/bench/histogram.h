// LatencyHistogram: every latency of a load run, recorded without sampling, in log-linear
// buckets (HdrHistogram's layout): exact below 128 ns, then 64 linear sub-buckets per power of
// two, so any reported percentile is within 1/64 (1.6%) of the true sample, from nanoseconds to
// hours, in a fixed 30 KiB. Min, max, count and sum are exact.
//
// Thread-safety: none; each load thread records into its own and they are merged at the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace nexus::bench {

class LatencyHistogram {
 public:
  LatencyHistogram();

  void Record(uint64_t nanos);
  void Merge(const LatencyHistogram& other);

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ == 0 ? 0 : min_; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ == 0 ? 0 : static_cast<double>(sum_) / count_; }

  // The smallest recorded value v such that at least q * count() samples are <= v, reported as
  // the upper bound of its bucket (never above max()). q in [0, 1]; 0 when empty.
  uint64_t Percentile(double q) const;

  // Bucket layout, exposed for tests.
  static size_t BucketOf(uint64_t nanos);
  static uint64_t BucketUpperBound(size_t bucket);

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
};

}  // namespace nexus::bench
