#include "cache/sharded_cache.h"

#include <algorithm>

namespace nexus {

ShardedCache::ShardedCache(ShardedCacheOptions options, const Clock* clock)
    : capacity_(options.capacity_bytes) {
  int bits = std::clamp(options.shard_bits, 0, 16);
  while (bits > 0 && (capacity_ >> bits) < kMinShardBytes) --bits;
  shard_bits_ = bits;
  shard_count_ = size_t{1} << bits;
  shards_ = std::make_unique<std::unique_ptr<Shard>[]>(shard_count_);
  const size_t per_shard = capacity_ / shard_count_;
  for (size_t i = 0; i < shard_count_; ++i) {
    // The remainder of the division goes to shard 0 so the shards add up to the budget.
    const size_t bytes = per_shard + (i == 0 ? capacity_ % shard_count_ : 0);
    shards_[i] = std::make_unique<Shard>(bytes, clock, options.on_remove);
  }
}

size_t ShardedCache::ShardOf(std::string_view key) const {
  return ShardIndex(MakeKeyRef(key).hash);
}

bool ShardedCache::Get(std::string_view key, std::string* value, UnixMillis* deadline,
                       EntryMeta* meta) {
  const KeyRef ref = MakeKeyRef(key);
  Shard& s = *shards_[ShardIndex(ref.hash)];
  absl::MutexLock lock(&s.mu);
  return s.lru.Get(ref, value, deadline, meta);
}

bool ShardedCache::Peek(std::string_view key, EntryMeta* meta) {
  const KeyRef ref = MakeKeyRef(key);
  Shard& s = *shards_[ShardIndex(ref.hash)];
  absl::MutexLock lock(&s.mu);
  return s.lru.Peek(ref, meta);
}

StoreResult ShardedCache::Set(std::string_view key, std::string_view value, UnixMillis deadline,
                              EntryMeta meta) {
  const KeyRef ref = MakeKeyRef(key);
  Shard& s = *shards_[ShardIndex(ref.hash)];
  absl::MutexLock lock(&s.mu);
  return s.lru.Set(ref, value, deadline, meta);
}

LruCache::AddResult ShardedCache::SetIfAbsent(std::string_view key, std::string_view value,
                                              UnixMillis deadline, std::string* existing,
                                              UnixMillis* existing_deadline, EntryMeta meta) {
  const KeyRef ref = MakeKeyRef(key);
  Shard& s = *shards_[ShardIndex(ref.hash)];
  absl::MutexLock lock(&s.mu);
  return s.lru.SetIfAbsent(ref, value, deadline, existing, existing_deadline, meta);
}

bool ShardedCache::Erase(std::string_view key) {
  const KeyRef ref = MakeKeyRef(key);
  Shard& s = *shards_[ShardIndex(ref.hash)];
  absl::MutexLock lock(&s.mu);
  return s.lru.Erase(ref);
}

SweepResult ShardedCache::SweepShard(size_t shard, size_t max_entries) {
  Shard& s = *shards_[shard];
  absl::MutexLock lock(&s.mu);
  return s.lru.SweepExpired(max_entries);
}

SweepResult ShardedCache::SweepExpired(size_t max_entries_per_shard) {
  SweepResult total;
  for (size_t i = 0; i < shard_count_; ++i) {
    const SweepResult r = SweepShard(i, max_entries_per_shard);
    total.examined += r.examined;
    total.expired += r.expired;
  }
  return total;
}

void ShardedCache::ForEachLive(const std::function<void(const EntryView&)>& fn) {
  for (size_t i = 0; i < shard_count_; ++i) {
    absl::MutexLock lock(&shards_[i]->mu);
    shards_[i]->lru.ForEachLive(fn);
  }
}

void ShardedCache::Clear() {
  for (size_t i = 0; i < shard_count_; ++i) {
    absl::MutexLock lock(&shards_[i]->mu);
    shards_[i]->lru.Clear();
  }
}

CacheStats ShardedCache::stats() const {
  CacheStats total;
  for (size_t i = 0; i < shard_count_; ++i) {
    absl::MutexLock lock(&shards_[i]->mu);
    total += shards_[i]->lru.stats();
  }
  return total;
}

size_t ShardedCache::bytes() const {
  size_t total = 0;
  for (size_t i = 0; i < shard_count_; ++i) {
    absl::MutexLock lock(&shards_[i]->mu);
    total += shards_[i]->lru.bytes();
  }
  return total;
}

size_t ShardedCache::items() const {
  size_t total = 0;
  for (size_t i = 0; i < shard_count_; ++i) {
    absl::MutexLock lock(&shards_[i]->mu);
    total += shards_[i]->lru.items();
  }
  return total;
}

}  // namespace nexus
