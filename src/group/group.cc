#include "group/group.h"

#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

namespace nexus {

namespace {

absl::Status ValidateKey(std::string_view key) {
  if (key.empty()) return absl::InvalidArgumentError("key must not be empty");
  return absl::OkStatus();
}

uint64_t SeedOrRandom(const std::optional<uint64_t>& seed) {
  return seed.has_value() ? *seed : std::random_device{}();
}

}  // namespace

Group::Group(GroupOptions options, std::shared_ptr<Loader> loader,
             std::shared_ptr<PeerPicker> peers, const Clock* clock)
    : options_(std::move(options)),
      clock_(clock),
      loader_(std::move(loader)),
      peers_(peers ? std::move(peers) : std::make_shared<NoPeers>()),
      jitter_(options_.jitter, SeedOrRandom(options_.jitter_seed)),
      main_({.capacity_bytes = options_.cache_bytes, .shard_bits = options_.shard_bits}, clock),
      hot_({.capacity_bytes = options_.hot_cache_bytes, .shard_bits = options_.shard_bits},
           clock) {}

bool Group::LookupLocal(std::string_view key, CachedValue* out) {
  return main_.Get(key, &out->data, &out->deadline) || hot_.Get(key, &out->data, &out->deadline);
}

bool Group::LookupCounted(std::string_view key, CachedValue* out) {
  const bool hit = LookupLocal(key, out);
  (hit ? hits_ : misses_).fetch_add(1, std::memory_order_relaxed);
  return hit;
}

void Group::Get(std::string_view key, ValueCallback done) {
  if (absl::Status s = ValidateKey(key); !s.ok()) return done(s);
  CachedValue hit;
  if (LookupCounted(key, &hit)) return done(std::move(hit));
  Load(key, peers_->PickPeer(key), std::move(done));
}

void Group::GetLocal(std::string_view key, ValueCallback done) {
  if (absl::Status s = ValidateKey(key); !s.ok()) return done(s);
  CachedValue hit;
  if (LookupCounted(key, &hit)) return done(std::move(hit));
  Load(key, nullptr, std::move(done));
}

void Group::Load(std::string_view key, std::shared_ptr<Peer> owner, ValueCallback done) {
  // Loads from the origin and fetches from a peer never share a flight: a forwarded GetLocal
  // joining this node's own peer fetch for the key would wait on itself (a ring that points a
  // key back at us, or two nodes that disagree about the owner, would deadlock until the
  // peer deadline).
  const std::string flight_key = (owner == nullptr ? "L:" : "P:") + std::string(key);
  flight_.Do(
      flight_key,
      [this, key = std::string(key), owner = std::move(owner)](Flight<CachedValue>::Done fd) mutable {
        // A value may have landed while this caller was deciding to load: check again.
        CachedValue hit;
        if (LookupLocal(key, &hit)) return fd(std::move(hit));
        if (owner == nullptr) return LoadFromLoader(key, std::move(fd));
        peer_gets_.fetch_add(1, std::memory_order_relaxed);
        owner->Get(options_.name, key,
                   [this, fd = std::move(fd)](absl::StatusOr<CachedValue> r) mutable {
                     if (!r.ok() && !absl::IsNotFound(r.status())) {
                       peer_errors_.fetch_add(1, std::memory_order_relaxed);
                     }
                     fd(std::move(r));
                   });
      },
      [this, done = std::move(done)](const absl::StatusOr<CachedValue>& r, bool shared) mutable {
        if (shared) deduplicated_.fetch_add(1, std::memory_order_relaxed);
        done(r);
      });
}

void Group::LoadFromLoader(const std::string& key, Flight<CachedValue>::Done fd) {
  if (loader_ == nullptr) return fd(absl::NotFoundError("key not found"));
  loads_.fetch_add(1, std::memory_order_relaxed);
  loader_->Load(key, [this, key, fd = std::move(fd)](absl::StatusOr<std::string> r) mutable {
    if (!r.ok()) {
      if (!absl::IsNotFound(r.status())) load_errors_.fetch_add(1, std::memory_order_relaxed);
      return fd(r.status());
    }
    CachedValue v{.data = std::move(*r),
                  .deadline = jitter_.Deadline(clock_->NowMillis(), options_.default_ttl_ms)};
    // A client's Set that landed while the origin was answering wins over the loaded value,
    // whichever cache it went to. A value too large for a shard is still returned, just not
    // cached.
    CachedValue newer;
    if (hot_.Get(key, &newer.data, &newer.deadline)) return fd(std::move(newer));
    switch (main_.SetIfAbsent(key, v.data, v.deadline, &newer.data, &newer.deadline)) {
      case LruCache::AddResult::kExists:
        return fd(std::move(newer));
      case LruCache::AddResult::kTooLarge:
        return fd(std::move(v));
      case LruCache::AddResult::kInserted:
        break;
    }
    // A hot Set between the check above and the insert: it wins, and the key must live in one
    // cache only.
    if (hot_.Get(key, &newer.data, &newer.deadline)) {
      main_.Erase(key);
      return fd(std::move(newer));
    }
    fd(std::move(v));
  });
}

void Group::Set(std::string_view key, std::string_view value, int64_t ttl_ms, bool hot,
                StatusCallback done) {
  if (absl::Status s = ValidateKey(key); !s.ok()) return done(s);
  if (ttl_ms <= 0) return done(absl::InvalidArgumentError("ttl must be positive"));
  std::shared_ptr<Peer> owner = peers_->PickPeer(key);
  if (owner == nullptr) return done(SetLocal(key, value, ttl_ms, hot));
  // A stale local hot copy must not shadow the owner's new value.
  hot_.Erase(key);
  owner->Set(options_.name, key, value, ttl_ms, hot, std::move(done));
}

absl::Status Group::SetLocal(std::string_view key, std::string_view value, int64_t ttl_ms,
                             bool hot) {
  if (absl::Status s = ValidateKey(key); !s.ok()) return s;
  if (ttl_ms <= 0) return absl::InvalidArgumentError("ttl must be positive");
  return StoreLocal(key, value, jitter_.Deadline(clock_->NowMillis(), ttl_ms), hot);
}

absl::Status Group::StoreLocal(std::string_view key, std::string_view value, UnixMillis deadline,
                               bool hot) {
  if (absl::Status s = ValidateKey(key); !s.ok()) return s;
  ShardedCache& target = hot ? hot_ : main_;
  ShardedCache& other = hot ? main_ : hot_;
  other.Erase(key);
  if (!target.Set(key, value, deadline)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("entry of ", key.size() + value.size(), " bytes does not fit in the ",
                     hot ? "hot" : "main", " cache (", target.capacity(), " bytes)"));
  }
  return absl::OkStatus();
}

void Group::Delete(std::string_view key, StatusCallback done) {
  if (absl::Status s = ValidateKey(key); !s.ok()) return done(s);
  std::shared_ptr<Peer> owner = peers_->PickPeer(key);
  DeleteLocal(key);
  if (owner == nullptr) return done(absl::OkStatus());
  owner->Delete(options_.name, key, std::move(done));
}

void Group::DeleteLocal(std::string_view key) {
  main_.Erase(key);
  hot_.Erase(key);
}

absl::StatusOr<CachedValue> Group::GetSync(std::string_view key) {
  absl::Notification finished;
  absl::StatusOr<CachedValue> out;
  Get(key, [&](absl::StatusOr<CachedValue> r) {
    out = std::move(r);
    finished.Notify();
  });
  finished.WaitForNotification();
  return out;
}

absl::Status Group::SetSync(std::string_view key, std::string_view value, int64_t ttl_ms,
                            bool hot) {
  absl::Notification finished;
  absl::Status out;
  Set(key, value, ttl_ms, hot, [&](absl::Status s) {
    out = std::move(s);
    finished.Notify();
  });
  finished.WaitForNotification();
  return out;
}

absl::Status Group::DeleteSync(std::string_view key) {
  absl::Notification finished;
  absl::Status out;
  Delete(key, [&](absl::Status s) {
    out = std::move(s);
    finished.Notify();
  });
  finished.WaitForNotification();
  return out;
}

GroupStats Group::stats() const {
  GroupStats s;
  s.main = main_.stats();
  s.hot = hot_.stats();
  s.hits = hits_.load(std::memory_order_relaxed);
  s.misses = misses_.load(std::memory_order_relaxed);
  s.loads = loads_.load(std::memory_order_relaxed);
  s.load_errors = load_errors_.load(std::memory_order_relaxed);
  s.deduplicated = deduplicated_.load(std::memory_order_relaxed);
  s.peer_gets = peer_gets_.load(std::memory_order_relaxed);
  s.peer_errors = peer_errors_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace nexus
