// Group: a named cache namespace (the seed's group, e.g. "scores"): lookup, singleflight,
// routing to the owner and the loader. It has this node's copies of its keys (a
// ReplicatedStore: a main cache for the keys this node owns, a separate hot cache with its own
// byte budget for replicated hot keys), an optional loader for misses, and a PeerPicker that
// says which node owns a key.
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
// With R > 1 (options.replicas) a key's holders are its R ring successors, the owner first: a
// Get, Set or Delete whose holder is unreachable (IsUnreachable: refused, broken, timed out)
// goes to the next holder at once, and runs here when this node is that holder (it then acts
// as the primary: a write is versioned and pushed from here). A Get that misses on the primary
// first asks the key's other holders for their copy (Peer::Peek, in ring order), and only
// when none has one runs the loader: a primary that just restarted or joined, whose copies are
// still on their way, answers with the holders' value instead of a miss or a reload. While
// the membership changes, a Get this node does not serve goes to the key's holder under the
// ring before the change (ReplicatedStore::ReadTarget), then, if that one has no copy, to the
// current owner.
//
// Copies: the group's caches, versions and the replication of hot keys to every member live in
// its ReplicatedStore (replication/replicated_store.h); the owner-side writes here go through
// it, so after a write's callback no node serves the value it replaced. Gets of a replicated
// key are served from the local hot cache, without a peer call. When the membership changes
// its Handoff moves copies to their new holders; meanwhile a client's Get is served from the
// main cache only if this node holds the key under its current ring.
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
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/sharded_cache.h"
#include "cluster/peer.h"
#include "cluster/value.h"
#include "common/clock.h"
#include "common/jitter.h"
#include "flight/flight.h"
#include "group/loader.h"
#include "replication/handoff.h"
#include "replication/replicated_store.h"

namespace nexus {

struct GroupOptions {
  std::string name = "scores";
  // Byte budgets (entries + index, as LruCache charges them).
  size_t cache_bytes = 64 << 20;
  size_t hot_cache_bytes = 16 << 20;
  int shard_bits = 4;
  // R and W (ReplicatedStoreOptions): members holding each key, and copies before a write's ack.
  size_t replicas = 1;
  size_t write_quorum = 1;
  // TTL given to values the loader returns.
  int64_t default_ttl_ms = 60 * 60 * 1000;
  JitterOptions jitter;
  // Seed of the jitter RNG; unset = random. Tests set it.
  std::optional<uint64_t> jitter_seed;
  // How copies move on membership changes (the thread starts with handoff().Start()).
  HandoffOptions handoff;
  // Asked before this node takes a write as a key's primary (SetLocal, StoreLocal,
  // DeleteLocal): a non-OK answer refuses it with that status. The node refuses while it may
  // have lost its etcd lease (the others may already route the key elsewhere). Unset: always.
  std::function<absl::Status()> primary_check;
};

struct GroupStats {
  CacheStats main;
  CacheStats hot;
  uint64_t hits = 0;          // Get/GetLocal calls answered from this node's caches
  uint64_t misses = 0;        // Get/GetLocal calls that had to load or forward
  uint64_t loads = 0;         // loader calls made by this node
  uint64_t load_errors = 0;   // loader calls that failed (NotFound excluded)
  uint64_t deduplicated = 0;  // Gets that joined a load already in flight
  uint64_t peer_gets = 0;     // Gets forwarded to the owner
  uint64_t peer_errors = 0;   // forwarded Gets that failed (NotFound excluded)
  uint64_t fallbacks = 0;     // requests sent on to the next holder (the previous unreachable)
  uint64_t holder_reads = 0;  // primary misses answered with another holder's copy
  ReplicationStats replication;
};

class Group {
 public:
  // `loader` may be null (misses are then NotFound); `peers` null means NoPeers.
  Group(GroupOptions options, std::shared_ptr<Loader> loader, std::shared_ptr<PeerPicker> peers,
        const Clock* clock);
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  const std::string& name() const { return options_.name; }
  const GroupOptions& options() const { return options_; }

  void Get(std::string_view key, ValueCallback done);
  void Set(std::string_view key, std::string_view value, Expiry expiry, bool hot,
           StatusCallback done);
  void Delete(std::string_view key, StatusCallback done);

  // Owner-side operations: what a peer's forwarded request runs here. They never forward, but
  // changes of hot keys are pushed to the replicas before `done` runs. Writes are refused
  // when options.primary_check says so.
  void GetLocal(std::string_view key, ValueCallback done);
  // This node's copy as it would serve it to a client (main or hot cache; not a copy it is not
  // to serve while the membership changes), without loading or counting: NotFound without one.
  absl::StatusOr<CachedValue> Peek(std::string_view key);
  void SetLocal(std::string_view key, std::string_view value, Expiry expiry, bool hot,
                StatusCallback done);
  // As SetLocal with a deadline already fixed (a seed client's absolute `expire`).
  void StoreLocal(std::string_view key, std::string_view value, UnixMillis deadline, bool hot,
                  StatusCallback done);
  void DeleteLocal(std::string_view key, StatusCallback done);

  // This node left the membership and drains (SIGTERM): the others' writes no longer reach
  // it, so with R > 1 its copies may be older than the other holders'. From now on, peers'
  // reads (GetLocal, Peek) get Unavailable and go on to the next holder; with R = 1 its copy
  // is the only one and is still served. Idempotent; there is no way back (the process exits).
  void StopServingPeerReads() { left_.store(true, std::memory_order_release); }

  GroupStats stats() const;
  // This node's copies and their replication: replica pushes arriving from owners are applied
  // there, and a joining member gets the hot keys from there.
  ReplicatedStore& store() { return store_; }
  // Moves this node's copies to their new holders when the membership changes, and drains
  // them on a graceful leave (replication/handoff.h).
  Handoff& handoff() { return handoff_; }

 private:
  // A local lookup for a caller's request, counted as a hit or a miss (held_only: see
  // ReplicatedStore::Lookup).
  bool LookupCounted(std::string_view key, CachedValue* out, bool held_only);
  // Runs the load (peer or loader) for `key` under singleflight. Without `here_first`, a
  // fetch from `owner` does not look in this node's caches first (they may be behind).
  void Load(std::string_view key, std::shared_ptr<Peer> owner, ValueCallback done,
            bool here_first = true);
  // The holders a request tries after the first one was unreachable: the key's other replica
  // set members (none with R = 1), looked up on the first failure. A null entry is this node.
  using Holders = std::optional<std::vector<std::shared_ptr<Peer>>>;
  // After `status` from `failed` (null: this node): the next holder to ask, or false (answer
  // with `status`). The first failure looks the holders up, without `failed` (which need not be
  // the first of them: a read in a transition asks a former holder first, and the ring may have
  // changed since the request picked it).
  bool NextHolder(const absl::Status& status, std::string_view key,
                  const std::shared_ptr<Peer>& failed, Holders& rest, std::shared_ptr<Peer>* next);
  // Unavailable once this node left (StopServingPeerReads) and R > 1.
  absl::Status PeerReadsServed() const;
  // The first of `key`'s holders that is not this node, or null.
  std::shared_ptr<Peer> FirstOtherHolder(std::string_view key) const;
  // True (and the next holder in *next) when options.primary_check refuses writes here and
  // another holder is left to take the write.
  bool RefusedHere(std::string_view key, Holders& rest, std::shared_ptr<Peer>* next);
  // A valid key, and options.primary_check allows writes as its primary.
  absl::Status MayWriteAsPrimary(std::string_view key) const;
  // A forwarded Get's failure (NotFound excluded) counted in peer_errors.
  void CountPeerError(const absl::Status& status);
  // Each asks `holder` (null: this node), then the rest on IsUnreachable.
  void FetchFrom(std::string key, std::shared_ptr<Peer> holder, Holders rest,
                 Flight<CachedValue>::Done fd);
  void SetAt(std::string key, std::string value, Expiry expiry, bool hot,
             std::shared_ptr<Peer> holder, Holders rest, StatusCallback done);
  void DeleteAt(std::string key, std::shared_ptr<Peer> holder, Holders rest, StatusCallback done);
  // As the key's primary, after a local miss: the first of `others` (the other holders) that
  // has a copy answers, else the loader.
  void LoadAsPrimary(std::string key, std::vector<std::shared_ptr<Peer>> others,
                     Flight<CachedValue>::Done fd);
  void LoadFromLoader(const std::string& key, Flight<CachedValue>::Done done);

  const GroupOptions options_;
  const Clock* const clock_;
  const std::shared_ptr<Loader> loader_;
  const std::shared_ptr<PeerPicker> peers_;
  Jitter jitter_;
  // Its destructor waits (bounded) for replica pushes in flight; their callbacks use only it.
  ReplicatedStore store_;
  Handoff handoff_;  // uses store_; destroyed (its thread stopped) before it
  Flight<CachedValue> flight_;

  std::atomic<bool> left_{false};  // StopServingPeerReads
  std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> misses_{0};
  std::atomic<uint64_t> loads_{0};
  std::atomic<uint64_t> load_errors_{0};
  std::atomic<uint64_t> deduplicated_{0};
  std::atomic<uint64_t> peer_gets_{0};
  std::atomic<uint64_t> peer_errors_{0};
  std::atomic<uint64_t> fallbacks_{0};
  std::atomic<uint64_t> holder_reads_{0};
};

}  // namespace nexus
