// Clock: the one source of "now" for everything that expires.
//
// Deadlines in nexuscache are absolute Unix times in milliseconds (`UnixMillis`), so they mean
// the same thing on every node and survive being shipped over the wire. Code that needs the time
// takes a `Clock&`; tests inject `FakeClock` and move time by hand instead of sleeping.
//
// Thread-safety: every Clock here may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>

namespace nexus {

using UnixMillis = int64_t;

// Deadline of an entry that never expires. An entry is expired iff now >= deadline.
inline constexpr UnixMillis kNoDeadline = std::numeric_limits<int64_t>::max();

class Clock {
 public:
  virtual ~Clock() = default;
  // Current wall-clock time as Unix milliseconds.
  virtual UnixMillis NowMillis() const = 0;
};

// Wall clock (std::chrono::system_clock). Deadlines are compared across nodes, so this is the
// real time of day, not a monotonic clock.
class SystemClock final : public Clock {
 public:
  UnixMillis NowMillis() const override;
  // A process-wide instance; stateless, so sharing it is safe.
  static SystemClock& Get();
};

// A clock that only moves when told to. For tests.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(UnixMillis start = 1'700'000'000'000) : now_(start) {}
  UnixMillis NowMillis() const override { return now_.load(std::memory_order_acquire); }
  void Set(UnixMillis t) { now_.store(t, std::memory_order_release); }
  void Advance(int64_t ms) { now_.fetch_add(ms, std::memory_order_acq_rel); }

 private:
  std::atomic<UnixMillis> now_;
};

}  // namespace nexus
