// ShardedCache: the thread-safe cache a node serves from. N independent LruCache shards (N a
// power of two), each behind its own absl::Mutex; a key's shard is chosen by the top bits of
// its XXH3 hash (the shard's index uses the low bits, so the two stay independent).
//
// The byte budget is split evenly across shards, so eviction is per shard (like leveldb's
// ShardedLRUCache): with keys spread by a good hash, the whole cache evicts approximately in
// LRU order. Small budgets get fewer shards (each shard keeps at least kMinShardBytes) so a
// tiny cache still holds its keys.
//
// Thread-safety: every method may be called from any thread. The removal callback runs with a
// shard lock held: it must be quick and must not call back into this cache.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "cache/lru_cache.h"
#include "common/clock.h"

namespace nexus {

struct ShardedCacheOptions {
  // Total byte budget across shards (entries + index, as LruCache charges them).
  size_t capacity_bytes = 64 << 20;
  // Requested shard count is 2^shard_bits (default 16), lowered while a shard would get less
  // than kMinShardBytes.
  int shard_bits = 4;
  RemovalCallback on_remove;
};

class ShardedCache {
 public:
  static constexpr size_t kMinShardBytes = 64 << 10;

  ShardedCache(ShardedCacheOptions options, const Clock* clock);
  ShardedCache(const ShardedCache&) = delete;
  ShardedCache& operator=(const ShardedCache&) = delete;

  // As LruCache's (entry metadata, tombstones and their semantics are described there).
  bool Get(std::string_view key, std::string* value, UnixMillis* deadline = nullptr,
           EntryMeta* meta = nullptr);
  bool Peek(std::string_view key, EntryMeta* meta, UnixMillis* deadline = nullptr);
  StoreResult Set(std::string_view key, std::string_view value, UnixMillis deadline,
                  EntryMeta meta = {});
  LruCache::AddResult SetIfAbsent(std::string_view key, std::string_view value, UnixMillis deadline,
                                  std::string* existing, UnixMillis* existing_deadline = nullptr,
                                  EntryMeta meta = {});
  bool Erase(std::string_view key);

  // Runs one bounded sweep step (at most `max_entries_per_shard` entries) on every shard.
  SweepResult SweepExpired(size_t max_entries_per_shard);
  // One bounded sweep step on shard `shard`.
  SweepResult SweepShard(size_t shard, size_t max_entries);

  void Clear();
  // Calls fn for every live entry, one shard at a time (under that shard's lock: fn must be
  // quick and must not call back into this cache).
  void ForEachLive(const std::function<void(const EntryView&)>& fn);

  // A crawl over every shard, one after another (LruCache's crawls: bounded steps, each under
  // one shard's lock, a cursor per shard that entry removals never invalidate). For walks that
  // must not hold a lock for long or copy the whole cache (handoff of ranges to new members).
  // Not thread-safe itself (one walker); the cache must outlive it.
  class Crawl {
   public:
    explicit Crawl(ShardedCache* cache) : cache_(cache) {}
    ~Crawl();
    Crawl(const Crawl&) = delete;
    Crawl& operator=(const Crawl&) = delete;
    // Examines up to `max_entries` entries of the current shard and calls fn for the live ones
    // (tombstones included; under the shard lock: fn must be quick and must not call back into
    // the cache). False once every shard has been walked, or when a shard had no free crawl
    // slot (ok() is then false).
    bool Step(size_t max_entries, const std::function<void(const EntryView&)>& fn);
    bool ok() const { return ok_; }

   private:
    ShardedCache* const cache_;
    size_t shard_ = 0;
    int id_ = -1;  // the open crawl of shard_, or -1
    bool ok_ = true;
  };

  CacheStats stats() const;
  size_t bytes() const;
  size_t items() const;
  size_t capacity() const { return capacity_; }
  size_t shard_count() const { return shard_count_; }
  size_t ShardOf(std::string_view key) const;

 private:
  struct alignas(64) Shard {
    Shard(size_t bytes, const Clock* clock, RemovalCallback cb)
        : lru(bytes, clock, std::move(cb)) {}
    mutable absl::Mutex mu;
    LruCache lru ABSL_GUARDED_BY(mu);
  };

  size_t ShardIndex(uint64_t hash) const {
    return shard_bits_ == 0 ? 0 : static_cast<size_t>(hash >> (64 - shard_bits_));
  }

  const size_t capacity_;
  int shard_bits_;
  size_t shard_count_;
  std::unique_ptr<std::unique_ptr<Shard>[]> shards_;
};

}  // namespace nexus
