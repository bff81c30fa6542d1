// ExpirySweeper: a background thread that reclaims expired entries nobody reads.
//
// Every `interval` it sweeps each shard of the caches it was given, examining at most
// `entries_per_step` entries per shard per step (the shard lock is held for one step only, so
// request latency is bounded). Like Redis's active expiry, a shard whose step found more than
// `repeat_threshold` of its sample expired is swept again at once, until the step budget
// `max_steps_per_tick` is spent; so a burst of expirations is reclaimed quickly and a cache
// with nothing expired costs one short step per shard per interval.
//
// Thread-safety: the caches must outlive the sweeper. The destructor stops and joins the
// thread. RunOnce() may be called from any thread (tests call it without starting the thread).
#pragma once

#include <chrono>
#include <cstddef>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "cache/sharded_cache.h"

namespace nexus {

struct ExpirySweeperOptions {
  std::chrono::milliseconds interval{100};
  size_t entries_per_step = 64;
  double repeat_threshold = 0.25;
  size_t max_steps_per_tick = 16;
};

class ExpirySweeper {
 public:
  ExpirySweeper(std::vector<ShardedCache*> caches, ExpirySweeperOptions options = {});
  ~ExpirySweeper();
  ExpirySweeper(const ExpirySweeper&) = delete;
  ExpirySweeper& operator=(const ExpirySweeper&) = delete;

  // Starts the background thread (idempotent).
  void Start();
  // Stops and joins it (idempotent).
  void Stop();

  // One tick over every shard of every cache; returns what it examined and dropped.
  SweepResult RunOnce();

 private:
  void Loop();

  const std::vector<ShardedCache*> caches_;
  const ExpirySweeperOptions options_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace nexus
