#include "group/group.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <random>
#include <thread>
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
      hot_({.capacity_bytes = options_.hot_cache_bytes, .shard_bits = options_.shard_bits}, clock) {
}

Group::~Group() {
  // Each push has the peer deadline; this only waits for ones that are already running.
  for (int i = 0; i < 2000 && pushes_in_flight_.load(std::memory_order_acquire) > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

bool Group::LookupLocal(std::string_view key, CachedValue* out) {
  if (main_.Get(key, &out->data, &out->deadline)) return true;
  uint64_t version = 0;
  bool tombstone = false;
  return ReadHot(key, &version, &tombstone, out) && !tombstone;
}

std::string Group::EncodeHot(uint64_t version, bool tombstone, std::string_view value) {
  std::string out(9 + value.size(), '\0');
  std::memcpy(out.data(), &version, 8);
  out[8] = tombstone ? 1 : 0;
  std::memcpy(out.data() + 9, value.data(), value.size());
  return out;
}

bool Group::ReadHot(std::string_view key, uint64_t* version, bool* tombstone, CachedValue* out) {
  std::string raw;
  UnixMillis deadline = kNoDeadline;
  if (!hot_.Get(key, &raw, &deadline) || raw.size() < 9) return false;
  std::memcpy(version, raw.data(), 8);
  *tombstone = raw[8] != 0;
  if (out != nullptr) {
    out->data.assign(raw, 9);
    out->deadline = deadline;
  }
  return true;
}

uint64_t Group::NextVersion(uint64_t above) {
  // Monotonic on this node, and close to comparable across owners (the high bits are the
  // wall-clock millisecond), so a new owner after a membership change starts above the old.
  const uint64_t floor = static_cast<uint64_t>(clock_->NowMillis()) << 20;
  uint64_t last = last_version_.load(std::memory_order_relaxed);
  uint64_t next;
  do {
    next = std::max({last + 1, floor, above + 1});
  } while (!last_version_.compare_exchange_weak(last, next, std::memory_order_relaxed));
  return next;
}

void Group::RaiseVersionFloor(uint64_t seen) {
  uint64_t last = last_version_.load(std::memory_order_relaxed);
  while (last < seen &&
         !last_version_.compare_exchange_weak(last, seen, std::memory_order_relaxed)) {
  }
}

void Group::PruneRegistryLocked(UnixMillis now) {
  if (++writes_since_prune_ < 256) return;
  writes_since_prune_ = 0;
  absl::erase_if(hot_registry_, [now](const auto& kv) { return now >= kv.second.deadline; });
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
      [this, key = std::string(key),
       owner = std::move(owner)](Flight<CachedValue>::Done fd) mutable {
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
    uint64_t version = 0;
    bool tombstone = false;
    if (ReadHot(key, &version, &tombstone, &newer) && !tombstone) return fd(std::move(newer));
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
    if (ReadHot(key, &version, &tombstone, &newer) && !tombstone) {
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
  if (owner == nullptr) return SetLocal(key, value, ttl_ms, hot, std::move(done));
  owner->Set(options_.name, key, value, ttl_ms, hot, std::move(done));
}

void Group::SetLocal(std::string_view key, std::string_view value, int64_t ttl_ms, bool hot,
                     StatusCallback done) {
  if (absl::Status s = ValidateKey(key); !s.ok()) return done(s);
  if (ttl_ms <= 0) return done(absl::InvalidArgumentError("ttl must be positive"));
  Write(key, value, jitter_.Deadline(clock_->NowMillis(), ttl_ms), hot, std::move(done));
}

void Group::StoreLocal(std::string_view key, std::string_view value, UnixMillis deadline, bool hot,
                       StatusCallback done) {
  if (absl::Status s = ValidateKey(key); !s.ok()) return done(s);
  Write(key, value, deadline, hot, std::move(done));
}

void Group::Write(std::string_view key, std::string_view value, UnixMillis deadline, bool hot,
                  StatusCallback done) {
  std::optional<Replica> push;
  absl::Status status;
  {
    absl::MutexLock lock(&write_mu_);
    const UnixMillis now = clock_->NowMillis();
    PruneRegistryLocked(now);
    auto it = hot_registry_.find(absl::string_view(key.data(), key.size()));
    const bool tracked = it != hot_registry_.end() && now < it->second.deadline;
    uint64_t above = tracked ? it->second.version : 0;
    uint64_t cached = 0;
    bool tombstone = false;
    if (ReadHot(key, &cached, &tombstone, nullptr)) above = std::max(above, cached);
    const uint64_t version = NextVersion(above);
    if (hot) {
      main_.Erase(key);
      if (hot_.Set(key, EncodeHot(version, false, value), deadline) == StoreResult::kStored) {
        hot_registry_[std::string(key)] = {version, deadline, false};
        push = Replica{.key = std::string(key),
                       .value = std::string(value),
                       .deadline = deadline,
                       .version = version};
      } else {
        status = absl::ResourceExhaustedError(absl::StrCat("entry of ", key.size() + value.size(),
                                                           " bytes does not fit in the hot cache (",
                                                           hot_.capacity(), " bytes)"));
      }
    } else if (main_.Set(key, value, deadline) == StoreResult::kTooLarge) {
      status = absl::ResourceExhaustedError(
          absl::StrCat("entry of ", key.size() + value.size(), " bytes does not fit in the ",
                       "main cache (", main_.capacity(), " bytes)"));
    } else {
      hot_.Erase(key);
      if (tracked) {
        // It is or was recently hot: the replicas must drop their copies before the client
        // hears "done" (also when an earlier removal may still be on its way). The removal
        // lives as long as the longest-lived copy it removes.
        const UnixMillis until = std::max(it->second.deadline, deadline);
        it->second = {version, until, true};
        push =
            Replica{.key = std::string(key), .deadline = until, .version = version, .remove = true};
      }
    }
  }
  // Callbacks never run under write_mu_.
  if (push) return PushToReplicas(std::move(*push), std::move(done));
  done(std::move(status));
}

void Group::PushToReplicas(Replica replica, StatusCallback done) {
  std::vector<std::shared_ptr<Peer>> peers = peers_->OtherPeers();
  if (peers.empty()) return done(absl::OkStatus());
  struct Fanout {
    std::atomic<size_t> pending;
    StatusCallback done;
  };
  auto fanout = std::make_shared<Fanout>();
  fanout->pending = peers.size();
  fanout->done = std::move(done);
  const std::string key = replica.key;
  for (const std::shared_ptr<Peer>& peer : peers) {
    replica_pushes_.fetch_add(1, std::memory_order_relaxed);
    if (replica.remove) replica_invalidations_.fetch_add(1, std::memory_order_relaxed);
    pushes_in_flight_.fetch_add(1, std::memory_order_acq_rel);
    peer->Replicate(options_.name, replica, [this, fanout, key](absl::Status s) {
      if (!s.ok()) {
        replica_failures_.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("group {}: hot key '{}' not replicated: {}", options_.name, key,
                     std::string(s.message()));
      }
      // The write is acknowledged once every replica answered or its call failed (each call
      // has the peer deadline); failed replicas are reported above and in the stats.
      if (fanout->pending.fetch_sub(1) == 1) fanout->done(absl::OkStatus());
      pushes_in_flight_.fetch_sub(1, std::memory_order_acq_rel);  // last use of `this`
    });
  }
}

bool Group::ApplyReplica(const Replica& r) {
  absl::MutexLock lock(&write_mu_);
  uint64_t version = 0;
  bool tombstone = false;
  if (ReadHot(r.key, &version, &tombstone, nullptr) && version >= r.version) {
    replicas_stale_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  RaiseVersionFloor(r.version);
  main_.Erase(r.key);
  // A removal keeps a tombstone with its version until the entry's deadline, so an older push
  // that arrives late cannot bring the value back.
  hot_.Set(r.key, EncodeHot(r.version, r.remove, r.remove ? "" : r.value), r.deadline);
  replicas_applied_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void Group::Delete(std::string_view key, StatusCallback done) {
  if (absl::Status s = ValidateKey(key); !s.ok()) return done(s);
  std::shared_ptr<Peer> owner = peers_->PickPeer(key);
  if (owner == nullptr) return DeleteLocal(key, std::move(done));
  owner->Delete(options_.name, key, std::move(done));
}

void Group::DeleteLocal(std::string_view key, StatusCallback done) {
  std::optional<Replica> push;
  {
    absl::MutexLock lock(&write_mu_);
    const UnixMillis now = clock_->NowMillis();
    main_.Erase(key);
    hot_.Erase(key);
    auto it = hot_registry_.find(absl::string_view(key.data(), key.size()));
    if (it != hot_registry_.end() && now < it->second.deadline) {
      const uint64_t version = NextVersion(it->second.version);
      it->second.version = version;
      it->second.removed = true;
      push = Replica{.key = std::string(key),
                     .deadline = it->second.deadline,
                     .version = version,
                     .remove = true};
    }
  }
  if (push) return PushToReplicas(std::move(*push), std::move(done));
  done(absl::OkStatus());
}

void Group::PushHotTo(const std::shared_ptr<Peer>& peer) {
  std::vector<Replica> owned;
  hot_.ForEachLive([&](std::string_view key, std::string_view raw, UnixMillis deadline) {
    if (raw.size() < 9 || raw[8] != 0) return;  // tombstone
    Replica r{.key = std::string(key), .value = std::string(raw.substr(9)), .deadline = deadline};
    std::memcpy(&r.version, raw.data(), 8);
    owned.push_back(std::move(r));
  });
  size_t pushed = 0;
  for (Replica& r : owned) {
    // Keys this node owns, and keys the newcomer now owns (their old owner may be this node or
    // another old member, and every old member holds them: duplicates are ignored by version).
    const std::shared_ptr<Peer> owner = peers_->PickPeer(r.key);
    if (owner != nullptr && owner != peer) continue;
    ++pushed;
    replica_pushes_.fetch_add(1, std::memory_order_relaxed);
    pushes_in_flight_.fetch_add(1, std::memory_order_acq_rel);
    peer->Replicate(options_.name, r, [this, key = r.key](absl::Status s) {
      if (!s.ok()) {
        replica_failures_.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("group {}: hot key '{}' not pushed to a new member: {}", options_.name, key,
                     std::string(s.message()));
      }
      pushes_in_flight_.fetch_sub(1, std::memory_order_acq_rel);  // last use of `this`
    });
  }
  if (pushed > 0)
    spdlog::info("group {}: pushed {} hot keys to a new member", options_.name, pushed);
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
  s.replica_pushes = replica_pushes_.load(std::memory_order_relaxed);
  s.replica_failures = replica_failures_.load(std::memory_order_relaxed);
  s.replica_invalidations = replica_invalidations_.load(std::memory_order_relaxed);
  s.replicas_applied = replicas_applied_.load(std::memory_order_relaxed);
  s.replicas_stale = replicas_stale_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace nexus
