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

bool ShardedCache::Peek(std::string_view key, EntryMeta* meta, UnixMillis* deadline) {
  const KeyRef ref = MakeKeyRef(key);
  Shard& s = *shards_[ShardIndex(ref.hash)];
  absl::MutexLock lock(&s.mu);
  return s.lru.Peek(ref, meta, deadline);
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

ShardedCache::Crawl::~Crawl() {
  if (id_ < 0) return;
  Shard& s = *cache_->shards_[shard_];
  absl::MutexLock lock(&s.mu);
  s.lru.CloseCrawl(id_);
}

bool ShardedCache::Crawl::Step(size_t max_entries,
                               const std::function<void(const EntryView&)>& fn) {
  while (ok_ && shard_ < cache_->shard_count_) {
    Shard& s = *cache_->shards_[shard_];
    absl::MutexLock lock(&s.mu);
    if (id_ < 0 && (id_ = s.lru.OpenCrawl()) < 0) {
      ok_ = false;
      break;
    }
    if (s.lru.CrawlStep(id_, max_entries, fn)) return true;
    // This shard is walked: close its crawl and go on with the next one at the next step.
    s.lru.CloseCrawl(id_);
    id_ = -1;
    ++shard_;
    return shard_ < cache_->shard_count_;
  }
  return false;
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
