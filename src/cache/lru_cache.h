// LruCache: a single-threaded, byte-bounded LRU map from key to value with absolute deadlines.
//
// What it is for: the storage core of one cache shard. ShardedCache adds the locking.
//
// Memory: each entry is one malloc'd block (32-byte header, the 8-byte version if the entry has
// one, then key and value; memcached's optional CAS field is the model). `bytes()` charges
// what the process really pays: every block at glibc's chunk size (request + 8, rounded up to
// 16, at least 32) plus the hash index's slot and control bytes. When `bytes()` exceeds
// `capacity()` the least recently used entries are dropped until it fits again.
//
// Expiry: deadlines are absolute (`UnixMillis`) and never extended by reads (no sliding
// expiry). An expired entry is dropped when it is next looked up (lazy expiry, like
// memcached's items.c) and also by `SweepExpired`, which examines a bounded number of entries
// per call from a cursor that cycles through the whole list, so entries nobody reads are
// reclaimed too (memcached's crawler, Redis's sampled active expiry).
//
// Metadata: an entry may carry a version (the owner's order of changes to the key, compared by
// replicas) and be a tombstone (a removal remembered until its deadline, so an older change
// that arrives late cannot bring the key back). Both live in the entry header, never in the
// value bytes. Reads of values (Get, SetIfAbsent) treat tombstones as absent; Peek and
// ForEachLive see them.
//
// Removal callback: called for entries dropped by eviction or expiry (not for Erase or
// overwrite), before the memory is freed. It must not call back into the cache.
//
// Thread-safety: none. One thread at a time (ShardedCache holds a mutex per LruCache).
// Invariants: bytes() == sum of ChargeFor(entry) + index bytes; bytes() <= capacity() after
// every mutating call unless the index alone exceeds the capacity (then the cache is empty).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_set.h"
#include "common/clock.h"
#include "common/hash.h"

namespace nexus {

// A key with its precomputed 64-bit hash (nexus::HashBytes), so the sharded wrapper hashes a
// key once for both shard selection and the shard's index.
struct KeyRef {
  std::string_view key;
  uint64_t hash;
};

KeyRef MakeKeyRef(std::string_view key);

// What an entry carries besides its value and deadline. version 0 = unversioned (costs no
// bytes); a tombstone has an empty value.
struct EntryMeta {
  uint64_t version = 0;
  bool tombstone = false;

  friend bool operator==(const EntryMeta&, const EntryMeta&) = default;
};

// One live entry, as ForEachLive shows it (views into the cache: valid during the call only).
struct EntryView {
  std::string_view key;
  std::string_view value;
  UnixMillis deadline;
  EntryMeta meta;
};

enum class RemovalReason { kEvicted, kExpired };

using RemovalCallback =
    std::function<void(std::string_view key, std::string_view value, RemovalReason reason)>;

struct CacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;       // includes lookups that found only an expired entry
  uint64_t evictions = 0;    // dropped to make room (LRU)
  uint64_t expirations = 0;  // dropped because the deadline passed (lazily, swept or evicted)
  uint64_t items = 0;        // entries, tombstones included
  uint64_t tombstones = 0;   // of them: removals remembered until their deadline
  uint64_t bytes = 0;

  CacheStats& operator+=(const CacheStats& o);
};

struct SweepResult {
  size_t examined = 0;
  size_t expired = 0;
};

// What a store did. kTooLarge: the entry alone cannot fit in the capacity, so nothing was
// stored (and any old value of the key was dropped). An admission policy will add kRejected.
enum class StoreResult { kStored, kTooLarge };

class LruCache {
 public:
  LruCache(size_t capacity_bytes, const Clock* clock, RemovalCallback on_remove = nullptr);
  ~LruCache();
  LruCache(const LruCache&) = delete;
  LruCache& operator=(const LruCache&) = delete;

  // On a live hit copies the value (and deadline, metadata, if asked) out, marks the entry most
  // recently used and returns true. An expired entry is dropped and counts as a miss; a
  // tombstone counts as a miss and stays.
  bool Get(KeyRef key, std::string* value, UnixMillis* deadline = nullptr,
           EntryMeta* meta = nullptr);

  // The metadata of a live entry, tombstones included, without copying the value, counting or
  // touching the LRU order (and its deadline, if asked). False if there is no live entry.
  bool Peek(KeyRef key, EntryMeta* meta, UnixMillis* deadline = nullptr);

  // Inserts or replaces.
  StoreResult Set(KeyRef key, std::string_view value, UnixMillis deadline, EntryMeta meta = {});

  // Inserts only if the key has no live value (kInserted; a tombstone is replaced); otherwise
  // leaves it alone and copies the live value and deadline out like Get (kExists). kTooLarge:
  // nothing stored. For read-through loads, so a value loaded from the origin never overwrites
  // one a client set while the load was running.
  enum class AddResult { kInserted, kExists, kTooLarge };
  AddResult SetIfAbsent(KeyRef key, std::string_view value, UnixMillis deadline,
                        std::string* existing, UnixMillis* existing_deadline = nullptr,
                        EntryMeta meta = {});

  // Removes the key; true if it was present (expired or not).
  bool Erase(KeyRef key);

  // Examines at most `max_entries` entries from the sweep cursor and drops the expired ones.
  SweepResult SweepExpired(size_t max_entries);

  // Crawls (memcached's crawler; the expiry sweep above is one that cycles): a walk over every
  // entry from the LRU end to the MRU end, a bounded step at a time, each with its own cursor.
  // Removing entries never invalidates a cursor. An entry added, read or rewritten meanwhile
  // moves to the MRU end and is visited (again) later in the same walk, so a walk sees every
  // entry that was present when it started and lived until the walk reached it.
  static constexpr int kMaxCrawls = 3;
  // A new crawl positioned at the LRU end, or -1 when kMaxCrawls are open.
  int OpenCrawl();
  // Examines up to `max_entries` entries from the crawl's cursor on and calls fn for the live
  // ones (tombstones included); false once the walk has reached the MRU end. fn must not call
  // back into the cache.
  bool CrawlStep(int crawl, size_t max_entries, const std::function<void(const EntryView&)>& fn);
  void CloseCrawl(int crawl);

  void Clear();

  // Calls fn for every live entry (tombstones included), MRU first. fn must not call back into
  // the cache.
  void ForEachLive(const std::function<void(const EntryView&)>& fn);

  size_t capacity() const { return capacity_; }
  size_t bytes() const { return entry_bytes_ + IndexBytes(); }
  size_t items() const { return index_.size(); }
  CacheStats stats() const;

  // Bytes charged for one entry with these key and value sizes (its malloc chunk); a versioned
  // entry (meta.version != 0) carries 8 bytes more.
  static size_t ChargeFor(size_t key_size, size_t value_size, bool versioned = false);
  // Bytes the hash index occupies now (slots + control bytes); grows with rehashes.
  size_t IndexBytes() const;

 private:
  // Header of one malloc'd block; the version (if `versioned`), the key bytes and then the
  // value bytes follow it.
  struct Entry {
    Entry* prev;
    Entry* next;
    UnixMillis deadline;
    uint32_t key_size : 30;
    uint32_t versioned : 1;
    uint32_t tombstone : 1;
    uint32_t value_size;

    char* data() { return reinterpret_cast<char*>(this + 1) + (versioned ? 8 : 0); }
    std::string_view key() { return {data(), key_size}; }
    std::string_view value() { return {data() + key_size, value_size}; }
    EntryMeta meta();
    size_t charge() { return ChargeFor(key_size, value_size, versioned); }
  };
  // The index stores entry pointers but is probed with a KeyRef whose hash is precomputed.
  struct EntryHash {
    using is_transparent = void;
    size_t operator()(const KeyRef& k) const { return k.hash; }
    size_t operator()(Entry* e) const { return HashBytes(e->key()); }
  };
  struct EntryEq {
    using is_transparent = void;
    bool operator()(Entry* a, Entry* b) const { return a == b; }
    bool operator()(Entry* a, const KeyRef& k) const { return a->key() == k.key; }
    bool operator()(const KeyRef& k, Entry* a) const { return a->key() == k.key; }
  };
  using Index = absl::flat_hash_set<Entry*, EntryHash, EntryEq>;

  void Unlink(Entry* e);
  void PushFront(Entry* e);
  // Unlinks, unindexes and frees `e`, keeping the cursors valid.
  void Remove(Entry* e, Index::iterator it);
  void Drop(Entry* e, RemovalReason reason);
  void EvictToFit();

  Entry* head() { return &sentinel_; }

  // Member order is cache-line layout. ShardedCache puts its mutex right before this object;
  // the fields written by every Get (the list head and the hit/miss counters) share that
  // mutex's cache line, and the read-mostly index header and configuration sit on their own
  // line, so a Get on another core does not have to re-fetch them.
  Entry sentinel_;  // sentinel_.next is the MRU entry, sentinel_.prev the LRU entry
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;

  // Next entry each walk examines, following prev: [0] is SweepExpired's (head() = restart at
  // the LRU end), [1..kMaxCrawls] the open crawls' (head() = walk finished, null = slot free).
  Entry* cursors_[1 + kMaxCrawls];
  size_t entry_bytes_ = 0;
  size_t tombstones_ = 0;  // entries with the tombstone flag (CacheStats::tombstones)
  uint64_t evictions_ = 0;
  uint64_t expirations_ = 0;

  alignas(64) Index index_;
  const size_t capacity_;
  const Clock* const clock_;
  const RemovalCallback on_remove_;
};

}  // namespace nexus
