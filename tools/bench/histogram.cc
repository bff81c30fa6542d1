#include "tools/bench/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace nexus::bench {

namespace {

constexpr int kSubBits = 6;  // 64 sub-buckets per power of two
constexpr uint64_t kSub = uint64_t{1} << kSubBits;
constexpr uint64_t kLinear = kSub * 2;        // values below this have their own bucket
constexpr int kFirstExponent = kSubBits + 1;  // log2(kLinear)
constexpr size_t kBuckets = kLinear + (64 - kFirstExponent) * kSub;

}  // namespace

LatencyHistogram::LatencyHistogram() : counts_(kBuckets, 0) {}

size_t LatencyHistogram::BucketOf(uint64_t v) {
  if (v < kLinear) return static_cast<size_t>(v);
  const int exponent = 63 - std::countl_zero(v);             // >= kFirstExponent
  const uint64_t sub = (v >> (exponent - kSubBits)) - kSub;  // 0..kSub-1
  return kLinear + static_cast<size_t>(exponent - kFirstExponent) * kSub + sub;
}

uint64_t LatencyHistogram::BucketUpperBound(size_t bucket) {
  if (bucket < kLinear) return bucket;
  const size_t above = bucket - kLinear;
  const int exponent = kFirstExponent + static_cast<int>(above / kSub);
  const uint64_t sub = above % kSub;
  const int shift = exponent - kSubBits;
  const uint64_t lower = (kSub + sub) << shift;
  return lower + ((uint64_t{1} << shift) - 1);
}

void LatencyHistogram::Record(uint64_t nanos) {
  ++counts_[BucketOf(nanos)];
  ++count_;
  sum_ += nanos;
  min_ = std::min(min_, nanos);
  max_ = std::max(max_, nanos);
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  for (size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
}

uint64_t LatencyHistogram::Percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  const uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * count_)));
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(BucketUpperBound(i), min(), max_);
  }
  return max_;
}

}  // namespace nexus::bench
