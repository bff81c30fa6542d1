#include "common/jitter.h"

#include <algorithm>
#include <limits>

namespace nexus {

Jitter::Jitter(JitterOptions options, uint64_t seed) : options_(options), rng_(seed) {}

int64_t Jitter::MaxFor(int64_t ttl_ms) const {
  if (ttl_ms <= 0 || options_.fraction <= 0 || options_.cap_ms <= 0) return 0;
  const double by_fraction = static_cast<double>(ttl_ms) * options_.fraction;
  if (by_fraction >= static_cast<double>(options_.cap_ms)) return options_.cap_ms;
  return static_cast<int64_t>(by_fraction);
}

int64_t Jitter::Draw(int64_t ttl_ms) {
  const int64_t max = MaxFor(ttl_ms);
  if (max == 0) return 0;
  std::uniform_int_distribution<int64_t> dist(0, max);
  absl::MutexLock lock(&mu_);
  return dist(rng_);
}

UnixMillis Jitter::Deadline(UnixMillis now, int64_t ttl_ms) {
  const int64_t extra = Draw(ttl_ms);
  UnixMillis deadline;
  if (__builtin_add_overflow(now, ttl_ms, &deadline) ||
      __builtin_add_overflow(deadline, extra, &deadline)) {
    return kNoDeadline;
  }
  return deadline;
}

}  // namespace nexus
