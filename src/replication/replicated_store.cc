#include "replication/replicated_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/trace_log.h"

namespace nexus {

namespace {

// How long the destructor waits for pushes already running (each has the peer deadline).
constexpr auto kDrainPoll = std::chrono::milliseconds(5);
constexpr int kDrainPolls = 2000;
// Registry records are pruned once per this many writes.
constexpr uint64_t kPruneEvery = 256;
// Failed pushes are logged at most once per this interval (the rest are counted).
constexpr int64_t kWarnEveryMs = 1000;
// The shortest life of a tombstone of a ring copy: longer than any push can be in flight.
constexpr int64_t kTombstoneFloorMs = 60'000;

absl::Status TooLarge(std::string_view key, std::string_view value, const char* cache,
                      size_t capacity) {
  return absl::ResourceExhaustedError(absl::StrCat("entry of ", key.size() + value.size(),
                                                   " bytes does not fit in the ", cache, " cache (",
                                                   capacity, " bytes)"));
}

// Raises `value` to at least `to`.
void RaiseTo(std::atomic<uint64_t>& value, uint64_t to) {
  uint64_t now = value.load(std::memory_order_relaxed);
  while (now < to && !value.compare_exchange_weak(now, to, std::memory_order_relaxed)) {
  }
}

// One answer after several calls: `done` runs once Answer and every one of `others` Arrive
// calls happened, with Answer's status (the others' outcomes are not the answer).
class AnswerAfter {
 public:
  AnswerAfter(size_t others, StatusCallback done) : pending_(others + 1), done_(std::move(done)) {}
  void Answer(absl::Status s) {
    answer_ = std::move(s);
    Arrive();
  }
  void Arrive() {
    if (pending_.fetch_sub(1) == 1) done_(std::move(answer_));
  }

 private:
  std::atomic<size_t> pending_;
  absl::Status answer_;
  StatusCallback done_;
};

}  // namespace

// The answer of one write's ring pushes: OK as soon as `required` members (this one included)
// stored it, Unavailable once every push answered and fewer did. Counts under-replicated
// writes (fewer than R copies in the end) and quorum failures. Hands out the substitutes for
// holders that were unreachable (the sloppy quorum): each member beyond the key's holders at
// most once per write.
class ReplicatedStore::Quorum {
 public:
  Quorum(ReplicatedStore* store, std::string key, size_t pushes, StatusCallback done)
      : store_(store),
        key_(std::move(key)),
        required_(std::max<size_t>(store->options_.write_quorum, 1)),
        pending_(pushes),
        done_(std::move(done)) {
    if (required_ == 1) Answer(absl::OkStatus());
    if (pushes == 0) Settle();
  }

  // The members this write was pushed to first (its other holders).
  void Targets(const std::vector<std::shared_ptr<Peer>>& targets) {
    absl::MutexLock lock(&mu_);
    tried_ = targets;
  }

  // The next member in ring order from the key's position that this write has not been pushed
  // to (beyond its holders; also a member that became a holder if the ring changed meanwhile),
  // or null.
  std::shared_ptr<Peer> NextSpare(const absl::Status& failed) {
    absl::MutexLock lock(&mu_);
    if (!spares_) {
      spares_.emplace();
      for (std::shared_ptr<Peer>& m : store_->peers_->PickReplicas(key_, kEveryMember).members) {
        if (m != nullptr && std::find(tried_.begin(), tried_.end(), m) == tried_.end()) {
          spares_->push_back(std::move(m));
        }
      }
    }
    if (next_spare_ >= spares_->size()) return nullptr;
    errors_.append(errors_.empty() ? "" : "; ").append(std::string(failed.message()));
    return (*spares_)[next_spare_++];
  }

  void Record(const absl::Status& s) {
    if (s.ok()) {
      if (stored_.fetch_add(1) + 1 == required_) Answer(absl::OkStatus());
    } else {
      absl::MutexLock lock(&mu_);
      errors_.append(errors_.empty() ? "" : "; ").append(std::string(s.message()));
    }
    if (pending_.fetch_sub(1) == 1) Settle();
  }

 private:
  // Every push answered.
  void Settle() {
    const size_t stored = stored_.load();
    if (stored < store_->options_.replicas) {
      store_->under_replicated_.fetch_add(1, std::memory_order_relaxed);
    }
    if (stored >= required_) return;
    std::string errors;
    {
      absl::MutexLock lock(&mu_);
      errors = errors_.empty() ? "no other member holds the key" : errors_;
    }
    Answer(absl::UnavailableError(absl::StrCat("write of '", key_, "' stored on ", stored, " of ",
                                               required_, " required members: ", errors)));
  }

  void Answer(absl::Status s) {
    if (answered_.exchange(true)) return;
    if (!s.ok()) store_->quorum_failures_.fetch_add(1, std::memory_order_relaxed);
    if (done_) done_(std::move(s));
  }

  ReplicatedStore* const store_;
  const std::string key_;
  const size_t required_;
  std::atomic<size_t> pending_;
  std::atomic<size_t> stored_{1};  // this node's copy
  std::atomic<bool> answered_{false};
  absl::Mutex mu_;
  std::string errors_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Peer>> tried_ ABSL_GUARDED_BY(mu_);
  std::optional<std::vector<std::shared_ptr<Peer>>> spares_ ABSL_GUARDED_BY(mu_);
  size_t next_spare_ ABSL_GUARDED_BY(mu_) = 0;
  StatusCallback done_;
};

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

bool ReplicatedStore::Lookup(std::string_view key, CachedValue* out, bool held_only) {
  if (main_.Get(key, &out->data, &out->deadline) &&
      (!held_only || !verify_holders_.load(std::memory_order_acquire) || Servable(key))) {
    return true;
  }
  return hot_.Get(key, &out->data, &out->deadline);
}

bool ReplicatedStore::Deleted(std::string_view key) {
  EntryMeta meta;
  return main_.Peek(key, &meta) && meta.tombstone;
}

bool ReplicatedStore::Servable(std::string_view key) {
  if (const std::shared_ptr<const RingSnapshot> from = reading_from()) {
    const std::string_view self = peers_->SelfName();
    for (std::string_view name : from->Successors(key, options_.replicas)) {
      if (name == self) return true;
    }
    return false;
  }
  return peers_->Holds(key, options_.replicas);
}

void ReplicatedStore::BeginTransition(std::shared_ptr<const RingSnapshot> from, bool replace) {
  verify_holders_.store(true, std::memory_order_release);
  if (from == nullptr) return;
  {
    absl::MutexLock lock(&transition_mu_);
    // (Once reads follow the current ring again, the running transition's ring has settled:
    // a copy written since went to the current holders, and reading from the older ring
    // would ask members that stopped taking the key's writes.)
    if (transition_from_ == nullptr || replace ||
        !reading_former_.load(std::memory_order_acquire)) {
      transition_from_ = std::move(from);
    }
  }
  in_transition_.store(true, std::memory_order_release);
  reading_former_.store(true, std::memory_order_release);
}

void ReplicatedStore::EndTransition() {
  absl::MutexLock lock(&transition_mu_);
  transition_from_ = nullptr;
  in_transition_.store(false, std::memory_order_release);
  reading_former_.store(false, std::memory_order_release);
}

std::shared_ptr<const RingSnapshot> ReplicatedStore::reading_from() const {
  return reading_former_.load(std::memory_order_acquire) ? transition_from() : nullptr;
}

std::shared_ptr<const RingSnapshot> ReplicatedStore::transition_from() const {
  if (!in_transition()) return nullptr;
  absl::MutexLock lock(&transition_mu_);
  return transition_from_;
}

std::shared_ptr<Peer> ReplicatedStore::ReadTarget(std::string_view key) {
  if (const std::shared_ptr<const RingSnapshot> from = reading_from()) {
    const std::string_view self = peers_->SelfName();
    for (std::string_view name : from->Successors(key, options_.replicas)) {
      if (name == self) return nullptr;
      if (std::shared_ptr<Peer> member = peers_->PeerNamed(name)) return member;
    }
  }
  return peers_->PickPeer(key);
}

std::vector<std::shared_ptr<Peer>> ReplicatedStore::FormerHolders(
    std::string_view key, const std::vector<std::shared_ptr<Peer>>& except) {
  std::vector<std::shared_ptr<Peer>> former;
  const std::shared_ptr<const RingSnapshot> from = transition_from();
  if (from == nullptr) return former;
  const std::string_view self = peers_->SelfName();
  for (std::string_view name : from->Successors(key, options_.replicas)) {
    if (name == self) continue;
    std::shared_ptr<Peer> member = peers_->PeerNamed(name);
    if (member != nullptr && std::find(except.begin(), except.end(), member) == except.end()) {
      former.push_back(std::move(member));
    }
  }
  return former;
}

CachedValue ReplicatedStore::Fill(std::string_view key, CachedValue loaded) {
  // A client's Set that landed while the origin was answering wins over the loaded value,
  // whichever cache it went to.
  CachedValue newer;
  if (hot_.Get(key, &newer.data, &newer.deadline)) return newer;
  std::optional<Replica> push;
  {
    // The version and the store happen under the write lock, so a concurrent write always
    // carries a higher version than a fill it overwrites.
    absl::MutexLock lock(&mu_);
    const EntryMeta meta{.version = NextVersion()};
    switch (
        main_.SetIfAbsent(key, loaded.data, loaded.deadline, &newer.data, &newer.deadline, meta)) {
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
    if (pushes_ring_copies()) {
      push = Replica{.key = std::string(key),
                     .value = loaded.data,
                     .deadline = loaded.deadline,
                     .version = meta.version,
                     .ring = true};
    }
  }
  NoteIfStray(key);
  if (push) PushRing(std::move(*push), nullptr);
  return loaded;
}

namespace {

// A version for the trace log (common/trace_log.h): "<ms>.<sequence>".
std::string V(uint64_t version) { return absl::StrCat(version >> 20, ".", version & 0xFFFFF); }

}  // namespace

UnixMillis ReplicatedStore::TombstoneDeadline(UnixMillis copy_deadline, UnixMillis now) const {
  return std::max(copy_deadline, now + kTombstoneFloorMs);
}

uint64_t ReplicatedStore::NextVersion(uint64_t above) {
  const uint64_t floor = static_cast<uint64_t>(clock_->NowMillis()) << kVersionClockShift;
  uint64_t last = last_version_.load(std::memory_order_relaxed);
  uint64_t next;
  do {
    next = std::max({last + 1, floor, above + 1});
  } while (!last_version_.compare_exchange_weak(last, next, std::memory_order_relaxed));
  return next;
}

void ReplicatedStore::RaiseVersionFloor(uint64_t seen) { RaiseTo(last_version_, seen); }

void ReplicatedStore::PruneRegistryLocked(UnixMillis now) {
  if (++writes_since_prune_ < kPruneEvery) return;
  writes_since_prune_ = 0;
  absl::erase_if(registry_, [now](const auto& kv) { return now >= kv.second.deadline; });
}

void ReplicatedStore::Write(std::string_view key, std::string_view value, UnixMillis deadline,
                            bool hot, StatusCallback done) {
  std::optional<Replica> hot_push;   // to every member's hot cache
  std::optional<Replica> ring_push;  // to the key's other replicas' main caches
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
    // (Every version stored here went through NextVersion or RaiseVersionFloor, so this is a
    // belt for copies pushed by other primaries; with R = 1 there are none but handed-over
    // ones, which raised the floor too.)
    if (replicated() && main_.Peek(key, &cached)) above = std::max(above, cached.version);
    const uint64_t version = NextVersion(above);
    if (TraceLogOn()) spdlog::trace("write '{}' v{} '{}'", key, V(version), value);
    if (hot) {
      main_.Erase(key);
      if (hot_.Set(key, value, deadline, {.version = version}) == StoreResult::kStored) {
        registry_[std::string(key)] = {version, deadline, false};
        // Every member gets the hot copy, and applying it drops the member's plain copy (a
        // ring copy older than it is refused afterwards), so no ring push is needed.
        hot_push = Replica{.key = std::string(key),
                           .value = std::string(value),
                           .deadline = deadline,
                           .version = version};
      } else {
        status = TooLarge(key, value, "hot", hot_.capacity());
      }
    } else if (main_.Set(key, value, deadline, {.version = version}) == StoreResult::kTooLarge) {
      status = TooLarge(key, value, "main", main_.capacity());
    } else {
      hot_.Erase(key);
      if (tracked) {
        // It is or was recently hot: the replicas must drop their copies before the client
        // hears "done" (also when an earlier removal may still be on its way). The removal
        // lives as long as the longest-lived copy it removes.
        const UnixMillis until = std::max(it->second.deadline, deadline);
        it->second = {version, until, true};
        hot_push =
            Replica{.key = std::string(key), .deadline = until, .version = version, .remove = true};
      }
      if (pushes_ring_copies()) {
        ring_push = Replica{.key = std::string(key),
                            .value = std::string(value),
                            .deadline = deadline,
                            .version = version,
                            .ring = true};
      }
    }
  }
  // Callbacks never run under mu_.
  if (!status.ok()) return done(std::move(status));
  if (!hot) NoteIfStray(key);
  Finish(std::move(hot_push), std::move(ring_push), std::move(done));
}

void ReplicatedStore::Remove(std::string_view key, StatusCallback done) {
  std::optional<Replica> hot_push;
  std::optional<Replica> ring_push;
  {
    absl::MutexLock lock(&mu_);
    const UnixMillis now = clock_->NowMillis();
    // A tombstone, so that an older copy pushed by an earlier primary or handed over on a
    // membership change cannot bring the key back.
    EntryMeta cached;
    UnixMillis copy_deadline = 0;
    const uint64_t above = main_.Peek(key, &cached, &copy_deadline) ? cached.version : 0;
    const uint64_t version = NextVersion(above);
    if (TraceLogOn()) spdlog::trace("delete '{}' v{}", key, V(version));
    const UnixMillis until = TombstoneDeadline(copy_deadline, now);
    main_.Set(key, "", until, {.version = version, .tombstone = true});
    if (pushes_ring_copies()) {
      ring_push = Replica{.key = std::string(key),
                          .deadline = until,
                          .version = version,
                          .remove = true,
                          .ring = true};
    }
    hot_.Erase(key);
    auto it = registry_.find(absl::string_view(key.data(), key.size()));
    if (it != registry_.end() && now < it->second.deadline) {
      const uint64_t version = NextVersion(it->second.version);
      it->second.version = version;
      it->second.removed = true;
      hot_push = Replica{.key = std::string(key),
                         .deadline = it->second.deadline,
                         .version = version,
                         .remove = true};
    }
  }
  NoteIfStray(key);
  Finish(std::move(hot_push), std::move(ring_push), std::move(done));
}

void ReplicatedStore::Finish(std::optional<Replica> hot_push, std::optional<Replica> ring_push,
                             StatusCallback done) {
  if (!hot_push && !ring_push) return done(absl::OkStatus());
  if (!hot_push) return PushRing(std::move(*ring_push), std::move(done));
  if (!ring_push) return Push(std::move(*hot_push), std::move(done));
  // Both: the answer waits for the hot fan-out and the ring quorum, and is the ring's.
  auto join = std::make_shared<AnswerAfter>(1, std::move(done));
  Push(std::move(*hot_push), [join](absl::Status) { join->Arrive(); });
  PushRing(std::move(*ring_push), [join](absl::Status s) { join->Answer(std::move(s)); });
}

std::vector<std::shared_ptr<Peer>> ReplicatedStore::OtherHolders(std::string_view key, size_t n) {
  std::vector<std::shared_ptr<Peer>> others;
  for (std::shared_ptr<Peer>& member : peers_->PickReplicas(key, n).members) {
    if (member != nullptr) others.push_back(std::move(member));
  }
  return others;
}

void ReplicatedStore::Push(Replica replica, StatusCallback done) {
  // Changes pushed are those of keys that are or were hot: their replica set is every member.
  const std::vector<std::shared_ptr<Peer>> targets = OtherHolders(replica.key, kEveryMember);
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
    PushOne(peer, replica, [fanout](const absl::Status&) {
      if (fanout->pending.fetch_sub(1) == 1) fanout->done(absl::OkStatus());
    });
  }
}

void ReplicatedStore::PushRing(Replica replica, StatusCallback done) {
  // The other members of the key's replica set. (This node may not be among them when the ring
  // changed under the write: its copy still counts, it serves reads until the ring settles.)
  const std::vector<std::shared_ptr<Peer>> targets = OtherHolders(replica.key, options_.replicas);
  // In a transition, also the holders under the ring before it (readers whose ring is that
  // one read from them): the answer waits for them too, but they do not count toward W.
  const std::vector<std::shared_ptr<Peer>> former = FormerHolders(replica.key, targets);
  auto shared = std::make_shared<const Replica>(std::move(replica));
  if (!former.empty() && done) {
    auto join = std::make_shared<AnswerAfter>(former.size(), std::move(done));
    done = [join](absl::Status s) { join->Answer(std::move(s)); };
    for (const std::shared_ptr<Peer>& peer : former) {
      PushOne(peer, *shared, [join](const absl::Status&) { join->Arrive(); });
    }
  } else {
    for (const std::shared_ptr<Peer>& peer : former) PushOne(peer, *shared, nullptr);
  }
  auto quorum = std::make_shared<Quorum>(this, shared->key, targets.size(), std::move(done));
  quorum->Targets(targets);
  for (const std::shared_ptr<Peer>& peer : targets) PushCounted(quorum, peer, shared);
}

void ReplicatedStore::PushCounted(const std::shared_ptr<Quorum>& quorum,
                                  const std::shared_ptr<Peer>& peer,
                                  const std::shared_ptr<const Replica>& replica) {
  PushOne(peer, *replica, [this, quorum, replica](const absl::Status& s) {
    // An unreachable holder is replaced for this write by the next member beyond the holders
    // (a sloppy quorum): it keeps the copy as a stray, a hint, and hands it to the holders
    // when they answer again (replication/handoff.h).
    if (IsUnreachable(s)) {
      if (std::shared_ptr<Peer> spare = quorum->NextSpare(s)) {
        substitutes_.fetch_add(1, std::memory_order_relaxed);
        return PushCounted(quorum, spare, replica);
      }
    }
    quorum->Record(s);
  });
}

void ReplicatedStore::PushOne(const std::shared_ptr<Peer>& peer, const Replica& replica,
                              absl::AnyInvocable<void(const absl::Status&)> done) {
  (replica.ring ? ring_pushes_ : pushes_).fetch_add(1, std::memory_order_relaxed);
  pushes_in_flight_.fetch_add(1, std::memory_order_acq_rel);
  peer->Replicate(options_.group, replica,
                  [this, key = replica.key, ring = replica.ring,
                   done = std::move(done)](absl::Status s) mutable {
                    if (!s.ok()) {
                      (ring ? ring_failures_ : failures_).fetch_add(1, std::memory_order_relaxed);
                      WarnPushFailed(ring, key, s);
                    }
                    if (done) done(s);
                    pushes_in_flight_.fetch_sub(1, std::memory_order_acq_rel);  // last use
                  });
}

void ReplicatedStore::WarnPushFailed(bool ring, const std::string& key, const absl::Status& s) {
  // A dead member fails every push until the ring drops it: one line per interval, with the
  // count of the ones not logged.
  const int64_t now = clock_->NowMillis();
  int64_t last = last_warning_ms_.load(std::memory_order_relaxed);
  if (now - last < kWarnEveryMs ||
      !last_warning_ms_.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
    unlogged_failures_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const uint64_t unlogged = unlogged_failures_.exchange(0, std::memory_order_relaxed);
  spdlog::warn("group {}: {} '{}' not replicated: {}{}", options_.group, ring ? "key" : "hot key",
               key, std::string(s.message()),
               unlogged == 0 ? std::string()
                             : absl::StrCat(" (and ", unlogged,
                                            " more failed pushes since the "
                                            "last report)"));
}

bool ReplicatedStore::Apply(const Replica& r) {
  {
    absl::MutexLock lock(&mu_);
    // The newest version in either cache wins: a late ring copy must not shadow a newer hot
    // copy (reads look in the main cache first), nor a late hot copy replace a newer ring copy.
    EntryMeta have;
    ShardedCache& cache = r.ring ? main_ : hot_;
    if ((main_.Peek(r.key, &have) && have.version >= r.version) ||
        (hot_.Peek(r.key, &have) && have.version >= r.version)) {
      stale_.fetch_add(1, std::memory_order_relaxed);
      if (TraceLogOn()) {
        spdlog::trace("apply '{}' v{} refused: have v{}", r.key, V(r.version), V(have.version));
      }
      return false;
    }
    if (TraceLogOn()) {
      spdlog::trace("apply '{}' v{} '{}'{}{}{}", r.key, V(r.version), r.value,
                    r.remove ? " (delete)" : "", r.ring ? " ring" : " hot",
                    r.handoff ? " handoff" : "");
    }
    RaiseVersionFloor(r.version);
    // A hot copy replaces a plain one (a key lives in one cache); a ring copy leaves a hot copy
    // alone: its owner removes hot copies itself.
    if (!r.ring) main_.Erase(r.key);
    // A removal keeps a tombstone with its version until the entry's deadline, so an older push
    // that arrives late cannot bring the value back.
    cache.Set(r.key, r.remove ? "" : r.value, r.deadline,
              {.version = r.version, .tombstone = r.remove});
  }
  if (r.handoff) {
    handoff_received_.fetch_add(1, std::memory_order_relaxed);
    handoff_received_bytes_.fetch_add(r.key.size() + r.value.size(), std::memory_order_relaxed);
    const std::shared_ptr<const RingSnapshot> ring = peers_->Ring();
    if (!peers_->Holds(r.key, options_.replicas)) {
      // Early: served once this node holds the key, not before (writes go elsewhere till then).
      early_copies_.fetch_add(1, std::memory_order_acq_rel);
      verify_holders_.store(true, std::memory_order_release);
      absl::MutexLock lock(&early_mu_);
      if (early_waiting_.size() < kMaxStrays || early_waiting_.contains(r.key)) {
        early_waiting_[r.key] = ring == nullptr ? 0 : ring->generation();
        early_waiting_any_.store(true, std::memory_order_release);
      }
    }
  } else {
    (r.ring ? ring_applied_ : applied_).fetch_add(1, std::memory_order_relaxed);
    // A ring copy from a primary whose ring differs from ours (handed-over copies not held
    // here are early copies, above: kept, not handed on).
    if (r.ring) NoteIfStray(r.key);
  }
  return true;
}

void ReplicatedStore::NoteIfStray(std::string_view key) {
  if (peers_->Holds(key, options_.replicas)) return;
  strays_noted_.fetch_add(1, std::memory_order_relaxed);
  absl::MutexLock lock(&strays_mu_);
  if (strays_.size() < kMaxStrays) {
    strays_.emplace_back(key);
  } else {
    strays_overflowed_ = true;
  }
  verify_holders_.store(true, std::memory_order_release);
}

bool ReplicatedStore::EarlyCopyWaits(std::string_view key, uint64_t generation) {
  if (!early_waiting_any_.load(std::memory_order_acquire)) return false;
  absl::MutexLock lock(&early_mu_);
  const auto it = early_waiting_.find(absl::string_view(key.data(), key.size()));
  return it != early_waiting_.end() && it->second >= generation;
}

void ReplicatedStore::EarlyCopiesPlaced(uint64_t mark, uint64_t generation) {
  {
    absl::MutexLock lock(&early_mu_);
    absl::erase_if(early_waiting_, [&](const auto& e) { return e.second < generation; });
    early_waiting_any_.store(!early_waiting_.empty(), std::memory_order_release);
    if (!early_waiting_.empty()) return;  // not all placed yet
  }
  RaiseTo(early_copies_placed_, mark);
}

bool ReplicatedStore::StopVerifyingHolders() {
  absl::MutexLock lock(&strays_mu_);
  if (!strays_.empty() || strays_overflowed_) return false;
  if (early_copies_placed_.load(std::memory_order_acquire) < EarlyCopiesMark()) return false;
  verify_holders_.store(false, std::memory_order_release);
  return true;
}

std::vector<std::string> ReplicatedStore::TakeStrays(bool* overflowed) {
  absl::MutexLock lock(&strays_mu_);
  *overflowed = strays_overflowed_;
  strays_overflowed_ = false;
  return std::exchange(strays_, {});
}

std::optional<Replica> ReplicatedStore::HandoffCopy(std::string_view key) {
  Replica r{.key = std::string(key), .ring = true, .handoff = true};
  EntryMeta meta;
  if (!main_.Peek(key, &meta, &r.deadline)) return std::nullopt;
  if (meta.tombstone) {
    r.remove = true;
  } else if (!main_.Get(key, &r.value, &r.deadline, &meta)) {
    return std::nullopt;
  }
  r.version = meta.version;
  if (r.version == 0) return std::nullopt;  // written before entries carried versions
  return r;
}

bool ReplicatedStore::EraseIfVersion(std::string_view key, uint64_t version) {
  absl::MutexLock lock(&mu_);
  EntryMeta have;
  if (!main_.Peek(key, &have) || have.version != version) return false;
  if (TraceLogOn()) spdlog::trace("drop '{}' v{}", key, V(version));
  return main_.Erase(key);
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
          .stale = stale_.load(std::memory_order_relaxed),
          .ring_pushes = ring_pushes_.load(std::memory_order_relaxed),
          .ring_failures = ring_failures_.load(std::memory_order_relaxed),
          .ring_applied = ring_applied_.load(std::memory_order_relaxed),
          .under_replicated = under_replicated_.load(std::memory_order_relaxed),
          .quorum_failures = quorum_failures_.load(std::memory_order_relaxed),
          .handoff_received = handoff_received_.load(std::memory_order_relaxed),
          .handoff_received_bytes = handoff_received_bytes_.load(std::memory_order_relaxed),
          .strays = strays_noted_.load(std::memory_order_relaxed),
          .substitutes = substitutes_.load(std::memory_order_relaxed)};
}

}  // namespace nexus
