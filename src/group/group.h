// Group: a named cache namespace (the seed's group, e.g. "scores"). It owns a main cache for
// the keys this node owns, a separate hot cache (its own byte budget) for replicated hot keys,
// an optional loader for misses, and a PeerPicker that says which node owns a key.
//
// Get:    main cache -> hot cache -> (singleflight per key) owner peer, or the loader when this
//         node owns the key. Inside the flight the main cache is checked again, so a value that
//         landed while the caller waited is not loaded twice (groupcache's load()).
//         Loaded values expire at now + default TTL + jitter. A miss everywhere is NotFound.
// Set:    forwarded to the owner; on the owner the deadline is now + ttl + jitter, the jitter
//         drawn once here and stored, never re-drawn on reads. hot=true stores the entry in the
//         hot cache instead of the main cache; either way a key lives in exactly one of the two
//         caches of a node.
// Delete: forwarded to the owner; removes the key from both local caches.
//
// Hot keys are replicated: the owner gives every change of a hot key a version (monotonic per
// owner: max(previous + 1, now_ms << 20)) and pushes (key, value, deadline, version) to every
// other member's hot cache through Peer::Replicate, answering only when all replicas acked or
// their calls failed (each call has the peer deadline; failures are logged and counted). A
// later Set (hot or not) or Delete of a key that is hot pushes the new value, or a removal, the
// same way, so after the ack no node serves the old value. A replica keeps the highest version
// it has seen: an older push (reordered, retried) never replaces a newer one, and a removal
// leaves a tombstone with its version so an older push cannot resurrect the key. Replicas
// carry the owner's deadline, so they expire with it. Gets of a replicated key are served from
// the local hot cache, without a peer call. (A node that joins later gets a hot key's replica
// at the key's next change.)
//
// Errors: InvalidArgument for an empty key or ttl <= 0, NotFound for a miss, ResourceExhausted
// for a value larger than a cache shard, and whatever the loader or peer reported.
//
// Thread-safety: every method may be called concurrently. Callbacks may run on the caller's
// thread or on the thread that completed a load or peer call. The Group must outlive every
// operation it started (the node drains requests before destroying groups).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "cache/sharded_cache.h"
#include "common/clock.h"
#include "common/jitter.h"
#include "flight/flight.h"
#include "group/loader.h"
#include "group/peers.h"
#include "group/value.h"

namespace nexus {

struct GroupOptions {
  std::string name = "scores";
  // Byte budgets (entries + index, as LruCache charges them).
  size_t cache_bytes = 64 << 20;
  size_t hot_cache_bytes = 16 << 20;
  int shard_bits = 4;
  // TTL given to values the loader returns.
  int64_t default_ttl_ms = 60 * 60 * 1000;
  JitterOptions jitter;
  // Seed of the jitter RNG; unset = random. Tests set it.
  std::optional<uint64_t> jitter_seed;
};

struct GroupStats {
  CacheStats main;
  CacheStats hot;
  uint64_t hits = 0;                   // Get/GetLocal calls answered from this node's caches
  uint64_t misses = 0;                 // Get/GetLocal calls that had to load or forward
  uint64_t loads = 0;                  // loader calls made by this node
  uint64_t load_errors = 0;            // loader calls that failed (NotFound excluded)
  uint64_t deduplicated = 0;           // Gets that joined a load already in flight
  uint64_t peer_gets = 0;              // Gets forwarded to the owner
  uint64_t peer_errors = 0;            // forwarded Gets that failed (NotFound excluded)
  uint64_t replica_pushes = 0;         // hot-key changes pushed to other nodes (one per node)
  uint64_t replica_failures = 0;       // pushes that failed or timed out
  uint64_t replica_invalidations = 0;  // pushes that removed a replica (delete / not hot)
  uint64_t replicas_applied = 0;       // pushes received and applied here
  uint64_t replicas_stale = 0;         // pushes received with an older version, ignored
};

class Group {
 public:
  // `loader` may be null (misses are then NotFound); `peers` null means NoPeers.
  Group(GroupOptions options, std::shared_ptr<Loader> loader, std::shared_ptr<PeerPicker> peers,
        const Clock* clock);
  // Waits (bounded) for replica pushes still in flight: their callbacks use this group.
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  const std::string& name() const { return options_.name; }
  const GroupOptions& options() const { return options_; }

  void Get(std::string_view key, ValueCallback done);
  void Set(std::string_view key, std::string_view value, int64_t ttl_ms, bool hot,
           StatusCallback done);
  void Delete(std::string_view key, StatusCallback done);

  // Owner-side operations: what a peer's forwarded request runs here. They never forward, but
  // changes of hot keys are pushed to the replicas before `done` runs.
  void GetLocal(std::string_view key, ValueCallback done);
  void SetLocal(std::string_view key, std::string_view value, int64_t ttl_ms, bool hot,
                StatusCallback done);
  // As SetLocal with a deadline already fixed (a seed client's absolute `expire`).
  void StoreLocal(std::string_view key, std::string_view value, UnixMillis deadline, bool hot,
                  StatusCallback done);
  void DeleteLocal(std::string_view key, StatusCallback done);
  // Replica side: applies a hot-key change pushed by its owner if it is newer than what this
  // node has. Returns whether it was applied.
  bool ApplyReplica(const Replica& replica);
  // Pushes the live hot keys that this node or `peer` owns to `peer` (a member that just
  // joined), without waiting for the answers.
  void PushHotTo(const std::shared_ptr<Peer>& peer);

  // Blocking conveniences (tests, tools). Never call them on an event-loop thread.
  absl::StatusOr<CachedValue> GetSync(std::string_view key);
  absl::Status SetSync(std::string_view key, std::string_view value, int64_t ttl_ms, bool hot);
  absl::Status DeleteSync(std::string_view key);

  GroupStats stats() const;
  ShardedCache& main_cache() { return main_; }
  ShardedCache& hot_cache() { return hot_; }

 private:
  // Looks in the main then the hot cache.
  bool LookupLocal(std::string_view key, CachedValue* out);
  // Hot cache entries carry their version: [8-byte version][1-byte kind][value].
  static std::string EncodeHot(uint64_t version, bool tombstone, std::string_view value);
  // Reads the hot entry of `key`: false if none; `tombstone` set for removed keys.
  bool ReadHot(std::string_view key, uint64_t* version, bool* tombstone, CachedValue* out);
  // A version above `above`, above every version handed out or seen here, and not below the
  // wall-clock floor (now_ms << 20).
  uint64_t NextVersion(uint64_t above = 0);
  void RaiseVersionFloor(uint64_t seen);
  // Drops registry records whose deadline passed (amortized: every 256 writes).
  void PruneRegistryLocked(UnixMillis now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Owner: stores and, for keys that are or were hot, pushes to every replica before `done`.
  void Write(std::string_view key, std::string_view value, UnixMillis deadline, bool hot,
             StatusCallback done);
  void PushToReplicas(Replica replica, StatusCallback done);
  // LookupLocal for a caller's request, counted as a hit or a miss.
  bool LookupCounted(std::string_view key, CachedValue* out);
  // Runs the load (peer or loader) for `key` under singleflight.
  void Load(std::string_view key, std::shared_ptr<Peer> owner, ValueCallback done);
  void LoadFromLoader(const std::string& key, Flight<CachedValue>::Done done);

  const GroupOptions options_;
  const Clock* const clock_;
  const std::shared_ptr<Loader> loader_;
  const std::shared_ptr<PeerPicker> peers_;
  Jitter jitter_;
  ShardedCache main_;
  ShardedCache hot_;
  Flight<CachedValue> flight_;

  std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> misses_{0};
  std::atomic<uint64_t> loads_{0};
  std::atomic<uint64_t> load_errors_{0};
  std::atomic<uint64_t> deduplicated_{0};
  std::atomic<uint64_t> peer_gets_{0};
  std::atomic<uint64_t> peer_errors_{0};
  std::atomic<uint64_t> last_version_{0};
  std::atomic<uint64_t> replica_pushes_{0};
  std::atomic<uint64_t> replica_failures_{0};
  std::atomic<uint64_t> replica_invalidations_{0};
  std::atomic<uint64_t> replicas_applied_{0};
  std::atomic<uint64_t> replicas_stale_{0};
  // Serializes version assignment with the local store on the owner (so the owner's copy is
  // always the highest version it handed out) and the read-compare-write of ApplyReplica.
  absl::Mutex write_mu_;
  // Owner side: every key this node made hot, and whether it was removed since, until its
  // deadline. Separate from the hot cache (which may evict): a later write or delete of a key
  // in here pushes a removal to the replicas even if this node no longer holds the value, and
  // also while an earlier removal may still be on its way.
  struct HotRecord {
    uint64_t version = 0;
    UnixMillis deadline = kNoDeadline;
    bool removed = false;
  };
  absl::flat_hash_map<std::string, HotRecord> hot_registry_ ABSL_GUARDED_BY(write_mu_);
  uint64_t writes_since_prune_ ABSL_GUARDED_BY(write_mu_) = 0;
  std::atomic<int64_t> pushes_in_flight_{0};
};

}  // namespace nexus
