// Handoff: moves a group's copies to the members that start holding them when the membership
// changes (Dynamo's hinted handoff and Cassandra's streaming are the models), so that a join,
// a graceful leave or a death does not turn a share of the keys into misses.
//
// A walk (after a membership change): a background thread crawls the main cache
// (ShardedCache::Crawl: bounded steps under one shard lock, memory bounded by one batch) and
// compares each entry's replica set (R ring successors) under the ring the last walk finished
// with ("before") and the current one ("after"):
//   - the members of "after" that were not in "before" get the copy (value or tombstone, with
//     its deadline and version; ReplicatedStore::Apply at the receiver keeps the newer version),
//     sent by the first member of "before" that is still in the ring, so each copy travels
//     once (with R >= 2 the survivors of a death re-replicate this way);
//   - a copy this node did not hold under "before" (a stray, or one left from an interrupted
//     walk) goes to every holder under "after";
//   - a copy this node does not hold under "after" is dropped once sent (also if sending
//     failed: a cache may lose a copy, it must not serve a stale one later).
// Copies go out in batches (batch_entries / batch_bytes), all of a batch at once, and the walk
// waits for every answer before it goes on; the bytes sent are held to rate_bytes per second.
// A membership change during a walk restarts it against the newest ring.
//
// Strays (ReplicatedStore::TakeStrays: stored here while this node did not hold them) are
// delivered the same way a key at a time, once the ring has been stable for stray_delay (a
// membership change takes a moment to reach every node). A stray is also how a substitute
// keeps a write for an unreachable holder (the sloppy quorum of ReplicatedStore): a copy whose
// holder was unreachable is kept as a hint and sent again every stray_delay until the holder
// takes it, the ring no longer names it (the next walk places the copy), or hint_lifetime
// passes.
//
// Reads: from a membership change until the walk finished and no stray waits, the store's
// client reads check that this node holds a key before serving its main-cache copy
// (ReplicatedStore::VerifyHolders); until the ring has been stable for stray_delay, reads and
// writes also follow the ring before the change (ReplicatedStore's transitions).
//
// Drain (a graceful leave, SIGTERM): Drain() hands every copy to its holders under the ring
// without this node, within a time budget, while the node keeps serving; the node then leaves
// the membership and calls Drain again for the copies written meanwhile (since_version).
// The receivers do not hold those copies yet (their rings still have the leaving node): they
// keep them as early copies, which no walk by that ring drops, and serve them once their ring
// no longer has it.
//
// Thread-safety: every method may be called from any thread. The store and the picker must
// outlive the Handoff; the destructor stops the thread (a walk stops after its current batch).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "cluster/peer.h"
#include "common/clock.h"
#include "replication/replicated_store.h"
#include "ring/hash_ring.h"

namespace nexus {

struct HandoffOptions {
  // Bytes of keys and values sent per second (--handoff-rate); 0 = no limit.
  int64_t rate_bytes = 64 << 20;
  // A batch: sent at once, then every answer is awaited.
  size_t batch_entries = 256;
  size_t batch_bytes = 1 << 20;
  // Entries examined per crawl step (one shard lock hold).
  size_t entries_per_step = 64;
  // How long the ring must be unchanged before strays are delivered.
  std::chrono::milliseconds stray_delay{1000};
  // How often the thread looks for work it was not told about (a safety net: every change of
  // the member set is told, RingChanging and RingChanged).
  std::chrono::milliseconds poll{200};
  // How long a copy for an unreachable holder is kept and sent again (a hint).
  std::chrono::milliseconds hint_lifetime{10 * 60 * 1000};
};

struct HandoffStats {
  uint64_t keys_sent = 0;      // copies delivered to a new holder (one per holder)
  uint64_t bytes_sent = 0;     // their keys and values
  uint64_t send_failures = 0;  // copies a holder did not take (unreachable, refused)
  uint64_t dropped = 0;        // copies dropped here because this node no longer holds them
  uint64_t walks = 0;          // walks finished
  uint64_t hints = 0;          // copies kept here for holders that were unreachable
  uint64_t backlog = 0;        // entries the running walk has yet to examine (0: none runs)
};

struct DrainResult {
  bool complete = false;  // every copy was examined within the budget
  uint64_t keys_sent = 0;
  uint64_t send_failures = 0;
  // The highest version handed out here when the drain started: a second drain with
  // since_version = this sends only what was written later.
  uint64_t watermark = 0;
};

class Handoff {
 public:
  Handoff(HandoffOptions options, ReplicatedStore* store, const Clock* clock);
  ~Handoff();
  Handoff(const Handoff&) = delete;
  Handoff& operator=(const Handoff&) = delete;

  // Starts the background thread, taking the picker's current ring as the one copies are
  // placed by now.
  void Start();
  // Stops the thread (a walk stops after its current batch, whose sends complete within the
  // peers' deadline). Idempotent; the destructor calls it. No walk runs afterwards.
  void Stop();
  // The picker's ring changed: reads check holders at once (a transition from the ring the last
  // walk finished with, ReplicatedStore::BeginTransition), a walk starts soon. The transition
  // ends once the ring has been stable for stray_delay and no walk is left.
  void RingChanged();
  // The picker's ring is about to change (call this first, change it, then RingChanged): the
  // transition begins before the new ring is seen, so no read is served by it before reads
  // check holders and follow the ring before (a copy handed here early, by a leaving member's
  // drain, would be served as soon as the ring names this node, and may be older than a write
  // that reached the current holders meanwhile).
  void RingChanging();
  // This node (re)entered the others' rings: it started, or registered again after its lease
  // expired, and its copies may be missing or older than the holders'. Until the ring is stable
  // for stray_delay it is in a transition from the ring without it.
  void Rejoined();
  // This node is about to try to register again after its lease was lost (the others may see
  // it any moment from now): as Rejoined, and the transition does not settle (reads keep
  // following the ring without it) until Rejoined says the registration is done, however long
  // the attempt takes.
  void Rejoining();
  // Member `name` restarted under the same name (its copies are gone, the ring is the same): a
  // walk hands it every copy it holds, as if it had just joined.
  void Resync(std::string name);
  // Hands every main-cache copy with a version above `since_version` to its holders under
  // `after` (the ring without this node), within `budget`; the background walk pauses
  // meanwhile. Blocks.
  DrainResult Drain(const std::shared_ptr<const RingSnapshot>& after,
                    std::chrono::milliseconds budget, uint64_t since_version = 0);

  HandoffStats stats() const;

 private:
  // Rejoined (registering false) and Rejoining (true): a transition from the ring without
  // this node, which settles only once `registering` is false.
  void BeginRejoin(bool registering);
  struct Item;
  enum class WalkEnd { kDone, kInterrupted, kOutOfTime };
  struct Walk {
    std::shared_ptr<const RingSnapshot> before;
    std::shared_ptr<const RingSnapshot> after;
    bool leaving = false;  // this node is leaving: it sends every copy it has
    // In a transition: copies this node stops holding stay until it ends (readers whose ring
    // is the one before may still ask here); the walk that ends it only drops them (drop_only).
    bool keep_all = false;
    bool drop_only = false;
    uint64_t since_version = 0;
    UnixMillis deadline = kNoDeadline;
  };

  void Run();
  // The thread's work outside mu_ (a walk, a delivery of strays), marked walking_ meanwhile
  // (a drain waits for it to give way).
  void Unlocked(absl::FunctionRef<void()> work) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  WalkEnd WalkUnlocked(const Walk& walk) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  WalkEnd RunWalk(const Walk& walk, DrainResult* result);
  // The holders of `r.key` to send it to, and whether this node keeps it.
  void Place(const Walk& walk, std::string_view key, std::vector<std::string>* targets,
             bool* keep) const;
  // Sends a batch and waits for every answer; drops the copies no longer held.
  void Send(std::vector<Item>& batch, DrainResult* result);
  void DeliverStrays();
  // Keeps `key`'s copy as a hint for an unreachable holder; false when it should be dropped
  // instead (too many hints, or kept for hint_lifetime already).
  bool KeepHint(const std::string& key);
  bool Hinted(const std::string& key);
  void ForgetHint(const std::string& key);
  // Waits so that `bytes` sent since `start` stay within the rate (a background walk wakes early
  // when a drain starts); false if stopped meanwhile.
  bool Pace(std::chrono::steady_clock::time_point start, uint64_t bytes, bool leaving);
  bool Interrupted(const Walk& walk);

  const HandoffOptions options_;
  ReplicatedStore* const store_;
  PeerPicker& peers_;
  const Clock* const clock_;
  const std::string self_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool changed_ ABSL_GUARDED_BY(mu_) = false;   // RingChanged since the thread last looked
  bool draining_ ABSL_GUARDED_BY(mu_) = false;  // a Drain runs: the thread stays idle
  bool walking_ ABSL_GUARDED_BY(mu_) = false;   // the thread is in a walk
  std::vector<std::string> resync_ ABSL_GUARDED_BY(mu_);  // members to walk for
  UnixMillis last_change_ ABSL_GUARDED_BY(mu_) = 0;
  bool rejoining_ ABSL_GUARDED_BY(mu_) = false;  // Rejoining, not yet Rejoined
  // The ring the last finished walk placed copies by.
  std::shared_ptr<const RingSnapshot> placed_ ABSL_GUARDED_BY(mu_);

  std::atomic<uint64_t> keys_sent_{0};
  std::atomic<uint64_t> bytes_sent_{0};
  std::atomic<uint64_t> send_failures_{0};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> walks_{0};
  std::atomic<uint64_t> examined_{0};  // by the running walk
  std::atomic<uint64_t> to_examine_{0};
  std::atomic<bool> in_walk_{false};

  absl::Mutex hints_mu_;
  // Key -> when its first delivery failed.
  std::map<std::string, UnixMillis> hints_ ABSL_GUARDED_BY(hints_mu_);
  UnixMillis last_hint_round_ ABSL_GUARDED_BY(hints_mu_) = 0;
  std::atomic<uint64_t> hints_pending_{0};

  std::thread thread_;
};

}  // namespace nexus
