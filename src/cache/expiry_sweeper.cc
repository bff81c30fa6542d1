#include "cache/expiry_sweeper.h"

#include "absl/time/time.h"

namespace nexus {

ExpirySweeper::ExpirySweeper(std::vector<ShardedCache*> caches, ExpirySweeperOptions options)
    : caches_(std::move(caches)), options_(options) {}

ExpirySweeper::~ExpirySweeper() { Stop(); }

void ExpirySweeper::Start() {
  if (thread_.joinable()) return;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = false;
  }
  thread_ = std::thread([this] { Loop(); });
}

void ExpirySweeper::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

SweepResult ExpirySweeper::RunOnce() {
  SweepResult total;
  for (ShardedCache* cache : caches_) {
    for (size_t shard = 0; shard < cache->shard_count(); ++shard) {
      for (size_t step = 0; step < options_.max_steps_per_tick; ++step) {
        const SweepResult r = cache->SweepShard(shard, options_.entries_per_step);
        total.examined += r.examined;
        total.expired += r.expired;
        if (r.examined == 0 ||
            static_cast<double>(r.expired) <= options_.repeat_threshold * r.examined) {
          break;
        }
      }
    }
  }
  return total;
}

void ExpirySweeper::Loop() {
  const absl::Duration interval = absl::FromChrono(options_.interval);
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval);
    if (stopping_) break;
    mu_.Unlock();
    RunOnce();
    mu_.Lock();
  }
}

}  // namespace nexus
