#include "replication/replicated_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"

namespace nexus {

namespace {

// How long the destructor waits for pushes already running (each has the peer deadline).
constexpr auto kDrainPoll = std::chrono::milliseconds(5);
constexpr int kDrainPolls = 2000;
// Registry records are pruned once per this many writes.
constexpr uint64_t kPruneEvery = 256;

absl::Status TooLarge(std::string_view key, std::string_view value, const char* cache,
                      size_t capacity) {
  return absl::ResourceExhaustedError(absl::StrCat("entry of ", key.size() + value.size(),
                                                   " bytes does not fit in the ", cache, " cache (",
                                                   capacity, " bytes)"));
}

}  // namespace

ReplicatedStore::ReplicatedStore(ReplicatedStoreOptions options, std::shared_ptr<PeerPicker> peers,
                                 const Clock* clock)
    : options_(std::move(options)),
      clock_(clock),
      peers_(std::move(peers)),
      main_({.capacity_bytes = options_.main_bytes, .shard_bits = options_.shard_bits}, clock),
      hot_({.capacity_bytes = options_.hot_bytes, .shard_bits = options_.shard_bits}, clock) {}

ReplicatedStore::~ReplicatedStore() {
  for (int i = 0; i < kDrainPolls && pushes_in_flight_.load(std::memory_order_acquire) > 0; ++i) {
    std::this_thread::sleep_for(kDrainPoll);
  }
}

bool ReplicatedStore::Lookup(std::string_view key, CachedValue* out) {
  return main_.Get(key, &out->data, &out->deadline) || hot_.Get(key, &out->data, &out->deadline);
}

CachedValue ReplicatedStore::Fill(std::string_view key, CachedValue loaded) {
  // A client's Set that landed while the origin was answering wins over the loaded value,
  // whichever cache it went to.
  CachedValue newer;
  if (hot_.Get(key, &newer.data, &newer.deadline)) return newer;
  switch (main_.SetIfAbsent(key, loaded.data, loaded.deadline, &newer.data, &newer.deadline)) {
    case LruCache::AddResult::kExists:
      return newer;
    case LruCache::AddResult::kTooLarge:
      return loaded;
    case LruCache::AddResult::kInserted:
      break;
  }
  // A hot Set between the check above and the insert: it wins, and the key must live in one
  // cache only.
  if (hot_.Get(key, &newer.data, &newer.deadline)) {
    main_.Erase(key);
    return newer;
  }
  return loaded;
}

uint64_t ReplicatedStore::NextVersion(uint64_t above) {
  const uint64_t floor = static_cast<uint64_t>(clock_->NowMillis()) << 20;
  uint64_t last = last_version_.load(std::memory_order_relaxed);
  uint64_t next;
  do {
    next = std::max({last + 1, floor, above + 1});
  } while (!last_version_.compare_exchange_weak(last, next, std::memory_order_relaxed));
  return next;
}

void ReplicatedStore::RaiseVersionFloor(uint64_t seen) {
  uint64_t last = last_version_.load(std::memory_order_relaxed);
  while (last < seen &&
         !last_version_.compare_exchange_weak(last, seen, std::memory_order_relaxed)) {
  }
}

void ReplicatedStore::PruneRegistryLocked(UnixMillis now) {
  if (++writes_since_prune_ < kPruneEvery) return;
  writes_since_prune_ = 0;
  absl::erase_if(registry_, [now](const auto& kv) { return now >= kv.second.deadline; });
}

void ReplicatedStore::Write(std::string_view key, std::string_view value, UnixMillis deadline,
                            bool hot, StatusCallback done) {
  std::optional<Replica> push;
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    const UnixMillis now = clock_->NowMillis();
    PruneRegistryLocked(now);
    auto it = registry_.find(absl::string_view(key.data(), key.size()));
    const bool tracked = it != registry_.end() && now < it->second.deadline;
    uint64_t above = tracked ? it->second.version : 0;
    EntryMeta cached;
    if (hot_.Peek(key, &cached)) above = std::max(above, cached.version);
    const uint64_t version = NextVersion(above);
    if (hot) {
      main_.Erase(key);
      if (hot_.Set(key, value, deadline, {.version = version}) == StoreResult::kStored) {
        registry_[std::string(key)] = {version, deadline, false};
        push = Replica{.key = std::string(key),
                       .value = std::string(value),
                       .deadline = deadline,
                       .version = version};
      } else {
        status = TooLarge(key, value, "hot", hot_.capacity());
      }
    } else if (main_.Set(key, value, deadline) == StoreResult::kTooLarge) {
      status = TooLarge(key, value, "main", main_.capacity());
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
      // Not hot and never was: its replica set is the owner alone (kReplicationFactor), so
      // nothing is pushed.
    }
  }
  if (push) return Push(std::move(*push), std::move(done));
  done(std::move(status));
}

void ReplicatedStore::Remove(std::string_view key, StatusCallback done) {
  std::optional<Replica> push;
  {
    absl::MutexLock lock(&mu_);
    const UnixMillis now = clock_->NowMillis();
    main_.Erase(key);
    hot_.Erase(key);
    auto it = registry_.find(absl::string_view(key.data(), key.size()));
    if (it != registry_.end() && now < it->second.deadline) {
      const uint64_t version = NextVersion(it->second.version);
      it->second.version = version;
      it->second.removed = true;
      push = Replica{.key = std::string(key),
                     .deadline = it->second.deadline,
                     .version = version,
                     .remove = true};
    }
  }
  if (push) return Push(std::move(*push), std::move(done));
  done(absl::OkStatus());
}

void ReplicatedStore::Push(Replica replica, StatusCallback done) {
  // Changes pushed are those of keys that are or were hot: their replica set is every member.
  std::vector<std::shared_ptr<Peer>> targets;
  for (std::shared_ptr<Peer>& member : peers_->PickReplicas(replica.key, kEveryMember).members) {
    if (member != nullptr) targets.push_back(std::move(member));
  }
  if (targets.empty()) return done(absl::OkStatus());
  struct Fanout {
    std::atomic<size_t> pending;
    StatusCallback done;
  };
  auto fanout = std::make_shared<Fanout>();
  fanout->pending = targets.size();
  fanout->done = std::move(done);
  if (replica.remove) invalidations_.fetch_add(targets.size(), std::memory_order_relaxed);
  for (const std::shared_ptr<Peer>& peer : targets) {
    // The write is acknowledged once every replica answered or its call failed (each call has
    // the peer deadline); failed replicas are reported and counted by PushOne.
    PushOne(peer, replica, [fanout] {
      if (fanout->pending.fetch_sub(1) == 1) fanout->done(absl::OkStatus());
    });
  }
}

void ReplicatedStore::PushOne(const std::shared_ptr<Peer>& peer, const Replica& replica,
                              absl::AnyInvocable<void()> done) {
  pushes_.fetch_add(1, std::memory_order_relaxed);
  pushes_in_flight_.fetch_add(1, std::memory_order_acq_rel);
  peer->Replicate(options_.group, replica,
                  [this, key = replica.key, done = std::move(done)](absl::Status s) mutable {
                    if (!s.ok()) {
                      failures_.fetch_add(1, std::memory_order_relaxed);
                      spdlog::warn("group {}: hot key '{}' not replicated: {}", options_.group, key,
                                   std::string(s.message()));
                    }
                    if (done) done();
                    pushes_in_flight_.fetch_sub(1, std::memory_order_acq_rel);  // last use
                  });
}

bool ReplicatedStore::Apply(const Replica& r) {
  absl::MutexLock lock(&mu_);
  EntryMeta have;
  if (hot_.Peek(r.key, &have) && have.version >= r.version) {
    stale_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  RaiseVersionFloor(r.version);
  main_.Erase(r.key);
  // A removal keeps a tombstone with its version until the entry's deadline, so an older push
  // that arrives late cannot bring the value back.
  hot_.Set(r.key, r.remove ? "" : r.value, r.deadline,
           {.version = r.version, .tombstone = r.remove});
  applied_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void ReplicatedStore::PushTo(const std::shared_ptr<Peer>& joined) {
  std::vector<Replica> owned;
  hot_.ForEachLive([&](const EntryView& e) {
    if (e.meta.tombstone) return;
    owned.push_back({.key = std::string(e.key),
                     .value = std::string(e.value),
                     .deadline = e.deadline,
                     .version = e.meta.version});
  });
  size_t pushed = 0;
  for (const Replica& r : owned) {
    // Keys this node owns, and keys the newcomer now owns (their old owner may be this node or
    // another old member, and every old member holds them: duplicates are ignored by version).
    const std::shared_ptr<Peer> owner = peers_->PickPeer(r.key);
    if (owner != nullptr && owner != joined) continue;
    ++pushed;
    PushOne(joined, r, nullptr);
  }
  if (pushed > 0) {
    spdlog::info("group {}: pushed {} hot keys to a new member", options_.group, pushed);
  }
}

ReplicationStats ReplicatedStore::stats() const {
  return {.pushes = pushes_.load(std::memory_order_relaxed),
          .failures = failures_.load(std::memory_order_relaxed),
          .invalidations = invalidations_.load(std::memory_order_relaxed),
          .applied = applied_.load(std::memory_order_relaxed),
          .stale = stale_.load(std::memory_order_relaxed)};
}

}  // namespace nexus
