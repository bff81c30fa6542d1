// The seam between a node's data and the network (groupcache's PeerPicker): a group asks "who
// owns this key?" and talks to the owner through the abstract Peer; replication asks "who holds
// copies of it?" (a ReplicaSet) and pushes changes to them. Neither group/ nor replication/
// depends on a transport: src/peer/ implements these over gRPC and HTTP, unit tests hand in
// fakes (tests/support/fake_peers.h).
//
// Thread-safety: implementations must allow concurrent calls from any thread.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string_view>
#include <vector>

#include "cluster/value.h"
#include "ring/hash_ring.h"

namespace nexus {

// Another node, as seen by a group. Every call completes its callback exactly once, from any
// thread, within the implementation's deadline (a dead peer answers with an error, never hangs).
class Peer {
 public:
  virtual ~Peer() = default;
  // The owner looks in its caches and, on a miss, runs its loader.
  virtual void Get(std::string_view group, std::string_view key, ValueCallback done) = 0;
  // The member's copy, from its caches only: NotFound when it has none, never a load (what a
  // key's primary asks the other holders when its own copy is missing, e.g. just restarted).
  virtual void Peek(std::string_view group, std::string_view key, ValueCallback done) = 0;
  // The owner stores the value with deadline now + ttl + jitter drawn on the owner, or the
  // expiry's fixed deadline.
  virtual void Set(std::string_view group, std::string_view key, std::string_view value,
                   Expiry expiry, bool hot, StatusCallback done) = 0;
  virtual void Delete(std::string_view group, std::string_view key, StatusCallback done) = 0;
  // Applies a hot-key change to this peer's hot cache (it keeps the newest version).
  virtual void Replicate(std::string_view group, const Replica& replica, StatusCallback done) = 0;
};

// The members that hold a key, in ring order (the owner first), under one ring generation.
// A null entry stands for this node.
struct ReplicaSet {
  uint64_t generation = 0;
  std::vector<std::shared_ptr<Peer>> members;
};

// A replica-set size that means "every member": the set of a hot key.
inline constexpr size_t kEveryMember = std::numeric_limits<size_t>::max();

class PeerPicker {
 public:
  virtual ~PeerPicker() = default;
  // The peer that owns `key`, or nullptr when this node owns it. (The owner is the first member
  // of PickReplicas(key, n); this is the allocation-free form every request uses.)
  virtual std::shared_ptr<Peer> PickPeer(std::string_view key) = 0;
  // The `n` distinct members that follow `key`'s ring position (fewer if the cluster is
  // smaller; kEveryMember for all of them): a replica set of factor n. The default is a
  // single-node cluster's answer.
  virtual ReplicaSet PickReplicas(std::string_view key, size_t n) {
    if (n == 0) return {};
    return ReplicaSet{.generation = 0, .members = {PickPeer(key)}};
  }
  // Whether this node is among the `n` holders of `key` (a member of PickReplicas(key, n)).
  virtual bool Holds(std::string_view key, size_t n) {
    for (const std::shared_ptr<Peer>& member : PickReplicas(key, n).members) {
      if (member == nullptr) return true;
    }
    return false;
  }

  // Placement by name, for walks that compare two memberships (handing copies over when the
  // membership changes): the ring that PickReplicas reads (null: no ring, which the defaults
  // describe), this node's name in it, and a member's client (null for this node or a name
  // that is not a member).
  virtual std::shared_ptr<const RingSnapshot> Ring() { return nullptr; }
  virtual std::string_view SelfName() const { return {}; }
  virtual std::shared_ptr<Peer> PeerNamed(std::string_view /*name*/) { return nullptr; }
  // The ring without member `name` (as it was before `name` joined, or will be once it left).
  virtual std::shared_ptr<const RingSnapshot> RingWithout(std::string_view /*name*/) {
    return nullptr;
  }
};

// A single-node cluster: this node owns every key.
class NoPeers final : public PeerPicker {
 public:
  std::shared_ptr<Peer> PickPeer(std::string_view) override { return nullptr; }
};

}  // namespace nexus
