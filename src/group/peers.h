// The seam between a Group and the network (groupcache's PeerPicker): the group asks "who owns
// this key?" and talks to the owner through the abstract Peer, so group/ never depends on a
// transport. src/peer/ implements these over gRPC; unit tests hand in fakes.
//
// Thread-safety: implementations must allow concurrent calls from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "group/value.h"

namespace nexus {

// Another node, as seen by a group. Every call completes its callback exactly once, from any
// thread, within the implementation's deadline (a dead peer answers with an error, never hangs).
class Peer {
 public:
  virtual ~Peer() = default;
  // The owner looks in its caches and, on a miss, runs its loader.
  virtual void Get(std::string_view group, std::string_view key, ValueCallback done) = 0;
  // The owner stores the value with deadline now + ttl + jitter drawn on the owner.
  virtual void Set(std::string_view group, std::string_view key, std::string_view value,
                   int64_t ttl_ms, bool hot, StatusCallback done) = 0;
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

class PeerPicker {
 public:
  virtual ~PeerPicker() = default;
  // The peer that owns `key`, or nullptr when this node owns it.
  virtual std::shared_ptr<Peer> PickPeer(std::string_view key) = 0;
  // The `n` distinct members that follow `key`'s ring position (fewer if the cluster is
  // smaller): a replica set of factor n. n = 1 is the owner alone, which is what the groups use
  // today; the default answers exactly that.
  virtual ReplicaSet PickReplicas(std::string_view key, size_t n) {
    if (n == 0) return {};
    return ReplicaSet{.generation = 0, .members = {PickPeer(key)}};
  }
  // Every member but this node: where the owner of a hot key pushes its changes.
  virtual std::vector<std::shared_ptr<Peer>> OtherPeers() { return {}; }
};

// A single-node cluster: this node owns every key.
class NoPeers final : public PeerPicker {
 public:
  std::shared_ptr<Peer> PickPeer(std::string_view) override { return nullptr; }
};

}  // namespace nexus
