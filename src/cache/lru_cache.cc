#include "cache/lru_cache.h"

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <cstring>
#include <new>

#include "common/hash.h"

namespace nexus {

KeyRef MakeKeyRef(std::string_view key) { return {key, HashBytes(key)}; }

CacheStats& CacheStats::operator+=(const CacheStats& o) {
  hits += o.hits;
  misses += o.misses;
  evictions += o.evictions;
  expirations += o.expirations;
  items += o.items;
  tombstones += o.tombstones;
  bytes += o.bytes;
  return *this;
}

namespace {

constexpr size_t kHeaderSize = 32;
constexpr size_t kVersionSize = 8;
// Keys are bounded by the header's 30-bit size field (a node's --max-key-bytes is far below).
constexpr size_t kMaxKeySize = (size_t{1} << 30) - 1;

// glibc malloc: a chunk holds the request plus an 8-byte size word, rounded up to 16 bytes,
// and is never smaller than 32 bytes.
size_t ChunkSize(size_t request) {
  const size_t chunk = (request + 8 + 15) & ~size_t{15};
  return chunk < 32 ? 32 : chunk;
}

}  // namespace

size_t LruCache::ChargeFor(size_t key_size, size_t value_size, bool versioned) {
  return ChunkSize(kHeaderSize + (versioned ? kVersionSize : 0) + key_size + value_size);
}

EntryMeta LruCache::Entry::meta() {
  EntryMeta m{.tombstone = tombstone != 0};
  if (versioned) std::memcpy(&m.version, this + 1, kVersionSize);
  return m;
}

size_t LruCache::IndexBytes() const {
  const size_t cap = index_.capacity();
  if (cap == 0) return 0;
  // One pointer slot per bucket, one control byte per bucket plus a group's worth of clones,
  // and the allocation's own chunk rounding.
  return ChunkSize(cap * sizeof(Entry*) + cap + 1 + 16);
}

LruCache::LruCache(size_t capacity_bytes, const Clock* clock, RemovalCallback on_remove)
    : capacity_(capacity_bytes), clock_(clock), on_remove_(std::move(on_remove)) {
  static_assert(sizeof(Entry) == kHeaderSize);
  sentinel_.prev = sentinel_.next = head();
  sentinel_.deadline = kNoDeadline;
  sentinel_.key_size = 0;
  sentinel_.versioned = sentinel_.tombstone = 0;
  sentinel_.value_size = 0;
  cursors_[0] = head();
  for (int i = 1; i <= kMaxCrawls; ++i) cursors_[i] = nullptr;
}

LruCache::~LruCache() { Clear(); }

void LruCache::Clear() {
  for (Entry* e = head()->next; e != head();) {
    Entry* next = e->next;
    std::free(e);
    e = next;
  }
  head()->prev = head()->next = head();
  // The sweep restarts; open crawls are finished (there is nothing left to visit).
  for (Entry*& cursor : cursors_) {
    if (cursor != nullptr) cursor = head();
  }
  index_.clear();
  entry_bytes_ = 0;
}

void LruCache::Unlink(Entry* e) {
  // Cursors walk from the LRU end toward the MRU end (following prev).
  for (Entry*& cursor : cursors_) {
    if (cursor == e) cursor = e->prev;
  }
  e->prev->next = e->next;
  e->next->prev = e->prev;
}

void LruCache::PushFront(Entry* e) {
  e->next = head()->next;
  e->prev = head();
  head()->next->prev = e;
  head()->next = e;
}

void LruCache::Remove(Entry* e, Index::iterator it) {
  Unlink(e);
  index_.erase(it);
  entry_bytes_ -= e->charge();
  tombstones_ -= e->tombstone;
  std::free(e);
}

void LruCache::Drop(Entry* e, RemovalReason reason) {
  if (reason == RemovalReason::kExpired) {
    ++expirations_;
  } else {
    ++evictions_;
  }
  if (on_remove_) on_remove_(e->key(), e->value(), reason);
  Remove(e, index_.find(e));
}

void LruCache::EvictToFit() {
  const UnixMillis now = clock_->NowMillis();
  while (bytes() > capacity_ && head()->prev != head()) {
    Entry* victim = head()->prev;
    Drop(victim, now >= victim->deadline ? RemovalReason::kExpired : RemovalReason::kEvicted);
  }
}

bool LruCache::Get(KeyRef key, std::string* value, UnixMillis* deadline, EntryMeta* meta) {
  auto it = index_.find(key);
  if (it == index_.end()) {
    ++misses_;
    return false;
  }
  Entry* e = *it;
  if (clock_->NowMillis() >= e->deadline) {
    ++misses_;
    ++expirations_;
    if (on_remove_) on_remove_(e->key(), e->value(), RemovalReason::kExpired);
    Remove(e, it);
    return false;
  }
  if (e->tombstone) {
    ++misses_;
    return false;
  }
  ++hits_;
  if (head()->next != e) {
    Unlink(e);
    PushFront(e);
  }
  if (value != nullptr) value->assign(e->value());
  if (deadline != nullptr) *deadline = e->deadline;
  if (meta != nullptr) *meta = e->meta();
  return true;
}

bool LruCache::Peek(KeyRef key, EntryMeta* meta, UnixMillis* deadline) {
  auto it = index_.find(key);
  if (it == index_.end() || clock_->NowMillis() >= (*it)->deadline) return false;
  *meta = (*it)->meta();
  if (deadline != nullptr) *deadline = (*it)->deadline;
  return true;
}

StoreResult LruCache::Set(KeyRef key, std::string_view value, UnixMillis deadline, EntryMeta meta) {
  const bool versioned = meta.version != 0;
  const size_t charge = ChargeFor(key.key.size(), value.size(), versioned);
  auto it = index_.find(key);
  if (it != index_.end()) {
    Entry* old = *it;
    if (value.size() <= old->value_size && old->versioned == versioned && old->charge() == charge &&
        charge <= capacity_) {
      // Fits in the block as allocated, with the same layout, and is charged the same: rewrite
      // in place, no allocation. (Only shrinking: the block's usable size beyond what was
      // requested is glibc's business, not ours.)
      if (!value.empty()) std::memcpy(old->data() + old->key_size, value.data(), value.size());
      old->value_size = static_cast<uint32_t>(value.size());
      old->deadline = deadline;
      tombstones_ += static_cast<size_t>(meta.tombstone) - old->tombstone;
      old->tombstone = meta.tombstone;
      if (versioned) std::memcpy(old + 1, &meta.version, kVersionSize);
      if (head()->next != old) {
        Unlink(old);
        PushFront(old);
      }
      return StoreResult::kStored;
    }
    Remove(old, it);
  }
  if (charge > capacity_ || key.key.size() > kMaxKeySize || value.size() > UINT32_MAX) {
    return StoreResult::kTooLarge;
  }
  auto* e = static_cast<Entry*>(
      std::malloc(kHeaderSize + (versioned ? kVersionSize : 0) + key.key.size() + value.size()));
  if (e == nullptr) throw std::bad_alloc();
  e->deadline = deadline;
  e->key_size = static_cast<uint32_t>(key.key.size());
  e->versioned = versioned;
  e->tombstone = meta.tombstone;
  e->value_size = static_cast<uint32_t>(value.size());
  if (versioned) std::memcpy(e + 1, &meta.version, kVersionSize);
  // (An empty view may have a null data(), which memcpy must not be given even for 0 bytes.)
  if (!key.key.empty()) std::memcpy(e->data(), key.key.data(), key.key.size());
  if (!value.empty()) std::memcpy(e->data() + key.key.size(), value.data(), value.size());
  index_.insert(e);
  PushFront(e);
  entry_bytes_ += charge;
  tombstones_ += e->tombstone;
  EvictToFit();
  // The new entry is the most recently used: eviction takes it only if it alone is too large.
  return index_.contains(key) ? StoreResult::kStored : StoreResult::kTooLarge;
}

LruCache::AddResult LruCache::SetIfAbsent(KeyRef key, std::string_view value, UnixMillis deadline,
                                          std::string* existing, UnixMillis* existing_deadline,
                                          EntryMeta meta) {
  auto it = index_.find(key);
  if (it != index_.end()) {
    Entry* e = *it;
    if (clock_->NowMillis() >= e->deadline) {
      Drop(e, RemovalReason::kExpired);
    } else if (!e->tombstone) {
      if (existing != nullptr) existing->assign(e->value());
      if (existing_deadline != nullptr) *existing_deadline = e->deadline;
      return AddResult::kExists;
    }
  }
  return Set(key, value, deadline, meta) == StoreResult::kStored ? AddResult::kInserted
                                                                 : AddResult::kTooLarge;
}

bool LruCache::Erase(KeyRef key) {
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  Remove(*it, it);
  return true;
}

SweepResult LruCache::SweepExpired(size_t max_entries) {
  SweepResult result;
  if (head()->next == head()) return result;
  const UnixMillis now = clock_->NowMillis();
  const size_t limit = std::min(max_entries, index_.size());
  while (result.examined < limit && head()->next != head()) {
    Entry*& cursor = cursors_[0];
    if (cursor == head()) cursor = head()->prev;  // wrap around to the LRU end
    Entry* e = cursor;
    cursor = e->prev;
    ++result.examined;
    if (now >= e->deadline) {
      ++result.expired;
      Drop(e, RemovalReason::kExpired);
    }
  }
  return result;
}

int LruCache::OpenCrawl() {
  for (int i = 1; i <= kMaxCrawls; ++i) {
    if (cursors_[i] == nullptr) {
      cursors_[i] = head()->prev;  // the LRU end (head() itself when empty: nothing to visit)
      return i;
    }
  }
  return -1;
}

bool LruCache::CrawlStep(int crawl, size_t max_entries,
                         const std::function<void(const EntryView&)>& fn) {
  assert(crawl >= 1 && crawl <= kMaxCrawls && cursors_[crawl] != nullptr);
  Entry*& cursor = cursors_[crawl];
  const UnixMillis now = clock_->NowMillis();
  for (size_t examined = 0; examined < max_entries && cursor != head(); ++examined) {
    Entry* e = cursor;
    cursor = e->prev;
    if (now >= e->deadline) continue;
    fn({e->key(), e->value(), e->deadline, e->meta()});
  }
  return cursor != head();
}

void LruCache::CloseCrawl(int crawl) {
  if (crawl >= 1 && crawl <= kMaxCrawls) cursors_[crawl] = nullptr;
}

void LruCache::ForEachLive(const std::function<void(const EntryView&)>& fn) {
  const UnixMillis now = clock_->NowMillis();
  for (Entry* e = head()->next; e != head(); e = e->next) {
    if (now < e->deadline) fn({e->key(), e->value(), e->deadline, e->meta()});
  }
}

CacheStats LruCache::stats() const {
  CacheStats s;
  s.hits = hits_;
  s.misses = misses_;
  s.evictions = evictions_;
  s.expirations = expirations_;
  s.items = items();
  s.tombstones = tombstones_;
  s.bytes = bytes();
  return s;
}

}  // namespace nexus
