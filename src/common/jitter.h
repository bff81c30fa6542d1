// TTL jitter: a random extra lifetime drawn once when an entry is written, so that keys written
// together do not all expire (and reload from the origin) in the same instant.
//
// The extra is uniform in [0, MaxFor(ttl)] where MaxFor(ttl) = min(ttl * fraction, cap).
// It is drawn once, by whoever computes the entry's absolute deadline (the owner), and never
// re-drawn on reads: the deadline is stored, not the TTL.
//
// Thread-safety: all methods may be called concurrently (the RNG is behind a mutex).
#pragma once

#include <cstdint>
#include <random>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"

namespace nexus {

struct JitterOptions {
  // Largest extra as a fraction of the TTL. 0 disables jitter.
  double fraction = 0.1;
  // Absolute cap on the extra, in milliseconds (default 3 minutes).
  int64_t cap_ms = 3 * 60 * 1000;
};

class Jitter {
 public:
  // `seed` makes the draws reproducible in tests; production passes a random seed.
  explicit Jitter(JitterOptions options = {}, uint64_t seed = std::random_device{}());

  // The largest extra that may be added to `ttl_ms` (0 for ttl_ms <= 0).
  int64_t MaxFor(int64_t ttl_ms) const;

  // A uniformly drawn extra in [0, MaxFor(ttl_ms)].
  int64_t Draw(int64_t ttl_ms);

  // now + ttl_ms + Draw(ttl_ms), saturating at kNoDeadline. ttl_ms must be > 0.
  UnixMillis Deadline(UnixMillis now, int64_t ttl_ms);

  const JitterOptions& options() const { return options_; }

 private:
  const JitterOptions options_;
  absl::Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nexus
