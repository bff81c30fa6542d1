// ReplicatedStore: one group's copies of keys on this node, and the replication of their
// changes to the other members that hold copies.
//
// What it holds: the main cache (the keys this node owns, and values it fetched or loaded for
// them) and the hot cache (its own byte budget) for keys replicated to every member. A key
// lives in exactly one of the two caches of a node. Group does the reading, the singleflight,
// the routing to owners and the loader; this class does everything that keeps copies
// consistent: versions, tombstones, the registry of hot keys, the fan-out of changes to a key's
// replica set, applying changes pushed by owners, and pushing hot keys to a member that joins.
//
// Replica sets: a key's copies live on its replica set (PeerPicker::PickReplicas). A hot key's
// set is every member (kEveryMember): the owner pushes each change to all others' hot caches.
// Any other key's set is its `replicas` (R) ring successors: the primary (the owner) stores in
// its main cache and pushes the change to the other R-1 members' main caches (ring copies);
// with R = 1 (the seed's behaviour) nothing is pushed. A write is acknowledged once
// `write_quorum` (W) members stored it, this one included; the pushes still running go on in
// the background, and a write that reached fewer than R members is counted
// (under_replicated). Fewer than W: Unavailable, naming how many stored it (the members that
// did keep it: a failed write may be partly applied, as in any quorum system). A value the
// loader returned is stored on the members the same way, without waiting for them.
// A holder that is unreachable (IsUnreachable: refused, broken, timed out) is replaced for
// that write by the next member on the ring beyond the holders (Dynamo's sloppy quorum): the
// substitute stores the copy, which is a stray there (a hint), and its Handoff hands it to the
// holders once they answer; the substitute's copy counts toward W.
//
// Versions: the owner gives every change a version, monotonic on this node and close to
// comparable across owners: max(previous + 1, now_ms << 20, any version seen from another
// owner + 1), so a new owner after a membership change starts above the old. Replicas keep the
// highest version they have seen: an older push (reordered, retried) never replaces a newer
// one, and a removal leaves a tombstone with its version until the copy's deadline so an older
// push cannot resurrect the key. Versions and the tombstone flag live in the cache entry header
// (cache/lru_cache.h), not in the value bytes. Every entry is versioned, also with R = 1 (8 bytes
// each): a copy handed over on a membership change (replication/handoff.h) must lose to a newer
// write the receiver already took, and a removal leaves a tombstone so a copy handed over late
// cannot bring a deleted key back.
//
// Holders: a node stores what it is asked to store, also for a key it does not hold under its
// own ring (a write or a copy sent by a member whose ring differs while a membership change
// spreads: a stray). Strays are noted, for Handoff to deliver to the key's holders and drop;
// while strays wait or a walk after a membership change runs, client reads (Lookup with
// held_only) skip main-cache copies of keys this node does not hold, so a copy left behind is
// never served in place of the holders' newer one. A copy handed over before this node holds
// the key (a leaving member drains to the holders of the ring without it while it is still a
// member; a joiner's ring may be ahead of ours) is kept, not handed back, and keeps client reads
// checking holders until a walk that started after it arrived placed it: until then writes go
// to the current holders and this copy may fall behind.
//
// Transitions: a membership change reaches the nodes a few milliseconds apart, so for a moment
// a writer's ring and a reader's ring may disagree about a key's holders. From a change until
// the ring has been stable for a while (Handoff ends it), this node is in a transition from
// the ring before it ("from"): its writes also go to the key's holders under "from" (awaited,
// not counted toward W), and, in the transition's first part (until EndFormerReads), a client
// read serves a main-cache copy only if this node held the key under "from", else it asks the
// first holder under "from" that is still a member. A holder under "from" got every write,
// whichever of the two rings its writer had, and keeps its copy until the transition ends, so
// the read is never older than an acknowledged write. A node that joins (starting, or back
// after its lease expired) is in a transition from the ring without it. (Nodes that join
// together have different rings before; a read that the former holder cannot answer goes to
// the current owner: Group::Get.)
//
// Writes: the owner's Write and Remove store locally, then push the change to the other members
// of the key's replica set and call `done` once every push answered or failed (each push has
// the peer's deadline; failures are logged and counted, the write is still acknowledged). A
// key that is not hot now but was hot recently (the registry remembers it until its hot
// deadline, even if the hot cache evicted it) gets a removal pushed to every member, so after
// the ack no node serves the old value.
//
// Thread-safety: every method may be called concurrently; callbacks never run under the
// store's lock. The destructor waits (bounded) for pushes still in flight.
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "cache/sharded_cache.h"
#include "cluster/peer.h"
#include "cluster/value.h"
#include "common/clock.h"

namespace nexus {

struct ReplicatedStoreOptions {
  std::string group = "scores";  // the group's name, in pushes and logs
  // Byte budgets (entries + index, as LruCache charges them).
  size_t main_bytes = 64 << 20;
  size_t hot_bytes = 16 << 20;
  int shard_bits = 4;
  // R: members holding each key that is not hot (the owner included); W: members that must
  // have stored a write before it is acknowledged (1..R).
  size_t replicas = 1;
  size_t write_quorum = 1;
};

struct ReplicationStats {
  uint64_t pushes = 0;            // hot-key changes pushed to other members (one per member)
  uint64_t failures = 0;          // hot-key pushes that failed or timed out
  uint64_t invalidations = 0;     // hot-key pushes that removed a copy (delete / set not hot)
  uint64_t applied = 0;           // hot-key changes received and applied here
  uint64_t stale = 0;             // changes received with an older version, ignored (both kinds)
  uint64_t ring_pushes = 0;       // changes pushed to the key's other replicas (one per member)
  uint64_t ring_failures = 0;     // of those, failed or timed out
  uint64_t ring_applied = 0;      // ring copies received and applied here
  uint64_t under_replicated = 0;  // writes whose pushes ended with fewer than R copies stored
  uint64_t quorum_failures = 0;   // writes that reached fewer than W members (not acknowledged)
  uint64_t handoff_received = 0;  // copies handed over to this node on membership changes, applied
  uint64_t handoff_received_bytes = 0;  // their keys and values
  uint64_t strays = 0;       // keys stored here that this node did not hold (then handed on)
  uint64_t substitutes = 0;  // ring pushes sent to a substitute for an unreachable holder
};

class ReplicatedStore {
 public:
  // `peers` may not be null (NoPeers for a single node).
  ReplicatedStore(ReplicatedStoreOptions options, std::shared_ptr<PeerPicker> peers,
                  const Clock* clock);
  ~ReplicatedStore();
  ReplicatedStore(const ReplicatedStore&) = delete;
  ReplicatedStore& operator=(const ReplicatedStore&) = delete;

  // A live copy of `key` in the main or the hot cache (tombstones are not values). With
  // `held_only`, while holders are verified (see VerifyHolders) a main-cache copy of a key this
  // node does not hold is not returned.
  bool Lookup(std::string_view key, CachedValue* out, bool held_only = false);
  // Whether the main cache has a tombstone for `key` (deleted: not a value to look for
  // elsewhere).
  bool Deleted(std::string_view key);

  // Stores a value the loader returned, unless a client's write got there first (in either
  // cache); returns the value to answer with. A value too large for a shard is returned but
  // not stored.
  CachedValue Fill(std::string_view key, CachedValue loaded);

  // Owner side. Stores (hot: in the hot cache, else in the main cache) and pushes the change to
  // the key's replica set before `done`. ResourceExhausted if the entry cannot fit in its cache.
  void Write(std::string_view key, std::string_view value, UnixMillis deadline, bool hot,
             StatusCallback done);
  // Removes the key from both caches, and from every replica if it was hot.
  void Remove(std::string_view key, StatusCallback done);

  // Replica side: applies a change pushed by the key's owner if it is newer than the copy here.
  // Returns whether it was applied.
  bool Apply(const Replica& replica);

  // Pushes the live hot keys that this node or `joined` owns to `joined` (a member that just
  // joined), without waiting for the answers.
  void PushTo(const std::shared_ptr<Peer>& joined);

  // Membership changes (what replication/handoff.h uses).
  // Reads check holders from now on (a membership change: copies are about to move).
  void VerifyHolders() { verify_holders_.store(true, std::memory_order_release); }
  // Starts a transition from `from` (see above; if one is running already and its reads
  // still follow its ring, that ring is kept: the oldest ring not yet settled is the one to
  // read from), or replaces it (`replace`: this node joins, `from` is the ring without it). Reads
  // check holders from now on (VerifyHolders), also when `from` is null (no ring: nothing to read
  // from).
  void BeginTransition(std::shared_ptr<const RingSnapshot> from, bool replace = false);
  // Client reads follow the current ring again (writes still reach the "from" holders);
  // whether they followed the ring before until now.
  bool EndFormerReads() { return reading_former_.exchange(false, std::memory_order_acq_rel); }
  void EndTransition();
  bool in_transition() const { return in_transition_.load(std::memory_order_acquire); }
  // Where a client's read of `key` goes when this node does not serve it: the first holder
  // under the transition's "from" ring that is still a member (null: this node), else the
  // current owner.
  std::shared_ptr<Peer> ReadTarget(std::string_view key);
  // Reads stop checking holders, unless strays or early copies wait; whether they stopped.
  bool StopVerifyingHolders();
  // Early copies: handed-over copies of keys this node did not hold when they arrived (a
  // leaving member's drain, sent by the ring without it; a sender whose ring is ahead). They
  // wait for the ring change their sender saw: a walk by the ring they arrived under (or an
  // older one) keeps them (EarlyCopyWaits; the first kMaxStrays are tracked by key), and a walk
  // that started at mark m (EarlyCopiesMark) and completed by a ring of generation g placed
  // every one up to m that arrived under an older ring (EarlyCopiesPlaced(m, g)).
  uint64_t EarlyCopiesMark() const { return early_copies_.load(std::memory_order_acquire); }
  bool EarlyCopyWaits(std::string_view key, uint64_t generation);
  void EarlyCopiesPlaced(uint64_t mark, uint64_t generation);
  bool verifying_holders() const { return verify_holders_.load(std::memory_order_acquire); }
  // The keys noted as strays since the last call. `overflowed`: more than kMaxStrays were noted
  // and some were not kept (a walk of the whole cache finds them).
  static constexpr size_t kMaxStrays = 4096;
  std::vector<std::string> TakeStrays(bool* overflowed);
  // The main-cache copy of `key` as a copy to hand over (a value or a tombstone), if any.
  std::optional<Replica> HandoffCopy(std::string_view key);
  // Erases `key`'s main-cache copy if it still has `version` (a copy handed over and no longer
  // held here); whether it did.
  bool EraseIfVersion(std::string_view key, uint64_t version);
  const ReplicatedStoreOptions& options() const { return options_; }
  // The highest version handed out or seen here.
  uint64_t last_version() const { return last_version_.load(std::memory_order_relaxed); }
  PeerPicker& peers() { return *peers_; }

  ReplicationStats stats() const;
  ShardedCache& main() { return main_; }
  ShardedCache& hot() { return hot_; }
  const ShardedCache& main() const { return main_; }
  const ShardedCache& hot() const { return hot_; }

  // The wall-clock time (unix ms) a version was drawn at, or later: versions are
  // (unix ms << kVersionClockShift) plus a count.
  static constexpr int kVersionClockShift = 20;
  static UnixMillis VersionTime(uint64_t version) {
    return static_cast<UnixMillis>(version >> kVersionClockShift);
  }

 private:
  // A version above `above`, above every version handed out or seen here, and not below the
  // wall-clock floor.
  uint64_t NextVersion(uint64_t above = 0);
  void RaiseVersionFloor(uint64_t seen);
  // Drops registry records whose deadline passed (amortized: every 256 writes).
  void PruneRegistryLocked(UnixMillis now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  class Quorum;

  // The members of `key`'s replica set of `n` other than this node.
  std::vector<std::shared_ptr<Peer>> OtherHolders(std::string_view key, size_t n);

  // Pushes a change of a key that is or was hot to every other member; `done` once all answered.
  void Push(Replica replica, StatusCallback done);
  // Runs the pushes a write produced (either may be absent) and answers `done` once both
  // completed; the ring push's error, if any, is the answer.
  void Finish(std::optional<Replica> hot_push, std::optional<Replica> ring_push,
              StatusCallback done);
  // Pushes a change of a key that is not hot to the other members of its replica set (ring
  // copies); `done` once W members (this one included) stored it, or with Unavailable when that
  // can no longer happen. Null `done`: nobody waits (a loaded value).
  void PushRing(Replica replica, StatusCallback done);
  // One ring push counted in `quorum`; an unreachable member is replaced by the quorum's next
  // spare.
  void PushCounted(const std::shared_ptr<Quorum>& quorum, const std::shared_ptr<Peer>& peer,
                   const std::shared_ptr<const Replica>& replica);
  // A tombstone deadline for a key removed here: as long as the copy it removes, and at least a
  // minute, so a push still in flight cannot resurrect the key.
  UnixMillis TombstoneDeadline(UnixMillis copy_deadline, UnixMillis now) const;
  bool replicated() const { return options_.replicas > 1; }
  // Whether writes push ring copies: R > 1, or a transition (the holders under "from").
  bool pushes_ring_copies() const { return replicated() || in_transition(); }
  std::shared_ptr<const RingSnapshot> transition_from() const;
  // transition_from() while client reads follow it, else null.
  std::shared_ptr<const RingSnapshot> reading_from() const;
  // Whether a client read may be served from this node's main-cache copy of `key` while
  // holders are verified.
  bool Servable(std::string_view key);
  // The holders of `key` under the transition's "from" ring that are members now, other than
  // this node and not in `except`.
  std::vector<std::shared_ptr<Peer>> FormerHolders(
      std::string_view key, const std::vector<std::shared_ptr<Peer>>& except);
  // Notes `key` as a stray if this node does not hold it now. Not under mu_.
  void NoteIfStray(std::string_view key);
  // Logs a failed push, at most once a second.
  void WarnPushFailed(bool ring, const std::string& key, const absl::Status& status);
  // One push to one member; `done` runs with its outcome when it answered or failed.
  void PushOne(const std::shared_ptr<Peer>& peer, const Replica& replica,
               absl::AnyInvocable<void(const absl::Status&)> done);

  const ReplicatedStoreOptions options_;
  const Clock* const clock_;
  const std::shared_ptr<PeerPicker> peers_;
  ShardedCache main_;
  ShardedCache hot_;

  std::atomic<uint64_t> last_version_{0};
  std::atomic<uint64_t> pushes_{0};
  std::atomic<uint64_t> failures_{0};
  std::atomic<uint64_t> invalidations_{0};
  std::atomic<uint64_t> applied_{0};
  std::atomic<uint64_t> stale_{0};
  std::atomic<uint64_t> ring_pushes_{0};
  std::atomic<uint64_t> ring_failures_{0};
  std::atomic<uint64_t> ring_applied_{0};
  std::atomic<uint64_t> under_replicated_{0};
  std::atomic<uint64_t> quorum_failures_{0};
  std::atomic<int64_t> pushes_in_flight_{0};
  std::atomic<int64_t> last_warning_ms_{std::numeric_limits<int64_t>::min() / 2};
  std::atomic<uint64_t> unlogged_failures_{0};
  std::atomic<uint64_t> handoff_received_{0};
  std::atomic<uint64_t> handoff_received_bytes_{0};
  std::atomic<uint64_t> strays_noted_{0};
  std::atomic<uint64_t> substitutes_{0};
  std::atomic<bool> verify_holders_{false};
  std::atomic<bool> in_transition_{false};
  std::atomic<bool> reading_former_{false};
  mutable absl::Mutex transition_mu_;
  std::shared_ptr<const RingSnapshot> transition_from_ ABSL_GUARDED_BY(transition_mu_);
  std::atomic<uint64_t> early_copies_{0};
  std::atomic<uint64_t> early_copies_placed_{0};
  // Early copies still waiting: key -> the generation of this node's ring when it arrived.
  absl::Mutex early_mu_;
  absl::flat_hash_map<std::string, uint64_t> early_waiting_ ABSL_GUARDED_BY(early_mu_);
  std::atomic<bool> early_waiting_any_{false};

  absl::Mutex strays_mu_;
  std::vector<std::string> strays_ ABSL_GUARDED_BY(strays_mu_);
  bool strays_overflowed_ ABSL_GUARDED_BY(strays_mu_) = false;

  // Serializes version assignment with the local store on the owner (so the owner's copy is
  // always the highest version it handed out), moves between the two caches, and the
  // read-compare-write of Apply.
  absl::Mutex mu_;
  // Owner side: every key this node made hot, and whether it was removed since, until its
  // deadline. Separate from the hot cache (which may evict): a later write or delete of a key
  // in here pushes a removal to the replicas even if this node no longer holds the value, and
  // also while an earlier removal may still be on its way.
  struct HotRecord {
    uint64_t version = 0;
    UnixMillis deadline = kNoDeadline;
    bool removed = false;
  };
  absl::flat_hash_map<std::string, HotRecord> registry_ ABSL_GUARDED_BY(mu_);
  uint64_t writes_since_prune_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace nexus
