// RingPeerPicker: the production PeerPicker. A consistent hash ring (ring/hash_ring.h) keyed by
// node name says who owns a key; a RemotePeer per other member talks to it (over HTTP from the
// event loops when the member's HTTP address is known, else gRPC; see peer/remote_peer.h).
//
// Clients are created once per member (and again only if its address changes) and reused for
// every call; never a channel per call. A member that leaves has its client dropped here; calls
// in flight keep it alive until they complete.
//
// Invariants:
//   - this node (`self`) is always a ring member and never has a client: PickPeer returns
//     nullptr exactly for the keys it owns;
//   - every other ring member has exactly one client, whose addresses are the member's;
//   - generation() is the ring's: +1 per call that changed the member *set* (an address change
//     alone moves no keys and does not bump it).
//
// Thread-safety: every method may be called concurrently. PickPeer, the hot path, takes no
// writer lock: the ring lookup is lock-free (an immutable snapshot) and the client lookup takes
// the map's reader lock. Writers change ring and map together under the writer lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "cluster/peer.h"
#include "common/member.h"
#include "metrics/metrics.h"
#include "peer/grpc_peer.h"
#include "peer/remote_peer.h"
#include "ring/hash_ring.h"
#include "service/cluster_view.h"

namespace nexus {

struct RingPickerOptions {
  // Virtual nodes per member; every node of a cluster must use the same value.
  int vnodes = 50;
  // Options of every client this picker creates.
  GrpcPeerOptions peer;
  // false: members' HTTP addresses are ignored and every call goes over gRPC.
  bool forward_over_http = true;
};

class RingPeerPicker final : public PeerPicker, public ClusterView {
 public:
  // `self_address` is this node's own gRPC address (reported by Members(), never dialled).
  RingPeerPicker(std::string self_name, std::string self_address, RingPickerOptions options = {});
  RingPeerPicker(const RingPeerPicker&) = delete;
  RingPeerPicker& operator=(const RingPeerPicker&) = delete;

  // The client of the key's owner, or nullptr when this node owns it.
  std::shared_ptr<Peer> PickPeer(std::string_view key) override;
  // The key's ring successors (HashRing's Successors), their clients (null for this node) and
  // the generation of the ring they were read from.
  ReplicaSet PickReplicas(std::string_view key, size_t n) override;
  bool Holds(std::string_view key, size_t n) override;
  std::shared_ptr<const RingSnapshot> Ring() override { return ring_.Snapshot(); }
  std::string_view SelfName() const override { return self_name_; }
  std::shared_ptr<Peer> PeerNamed(std::string_view name) override;
  std::shared_ptr<const RingSnapshot> RingWithout(std::string_view name) override;

  // Replaces the membership with `members` (+ self, always kept with its own address whatever
  // the map says; empty names ignored) as one change: at most one generation bump. Members
  // whose addresses are unchanged keep their client.
  // Returns the members that joined with this call (for pushing state to them): new ones, ones
  // at new addresses, and ones that restarted (same name and addresses, a new incarnation:
  // the ring does not change, but the member lost what it held).
  struct Joined {
    std::string name;
    std::shared_ptr<Peer> client;
    bool restarted = false;
  };
  std::vector<Joined> SetMembers(const std::map<std::string, MemberInfo>& members);
  // The same with gRPC addresses only.
  std::vector<Joined> SetMembers(const std::map<std::string, std::string>& name_to_grpc_address);

  // Idempotent. True if something changed (new member, or new addresses for a known member,
  // whose client is then replaced). An empty `http_address` for a known member with the same
  // gRPC address keeps its HTTP address (false). Adding self or an empty name is a no-op.
  bool AddMember(std::string name, std::string grpc_address,
                 std::string http_address = {}) override;

  // Told of every change of the member set made through SetMembers or AddMember (etcd's
  // watch, the seed's /setpeer), on the thread that makes it and outside the picker's lock:
  // MembersChanging before the ring can change, MembersChanged after, with the members that
  // joined (as SetMembers returns them; empty when nothing changed). Concurrent changes may
  // interleave their calls.
  class Observer {
   public:
    virtual ~Observer() = default;
    virtual void MembersChanging() = 0;
    virtual void MembersChanged(const std::vector<Joined>& joined) = 0;
  };
  // May be set while others change the members (a change then may or may not be told); must
  // outlive every change.
  void set_observer(Observer* observer) { observer_.store(observer, std::memory_order_release); }

  // True if `name` was a member. Never removes self (false).
  bool RemoveMember(std::string_view name);

  // A member's addresses, also of one that left (the last kMaxRemembered that left are kept;
  // ClusterView). Self: its gRPC address.
  std::optional<MemberInfo> KnownMember(std::string_view name) const override;
  static constexpr size_t kMaxRemembered = 1024;

  // The owner's name; nullopt only if the ring is empty, which cannot happen (self is in it).
  std::optional<std::string> OwnerOf(std::string_view key) const override;

  // (name, grpc address), sorted by name, self included.
  std::vector<std::pair<std::string, std::string>> Members() const override;
  // Member `name`'s metrics over gRPC (ClusterView); NotFound if it is not a member.
  void FetchMetrics(const std::string& name, std::chrono::milliseconds deadline,
                    MetricsCallback done) override;

  uint64_t generation() const override;

  // Registers this picker's metrics: ring members and generation, calls to peers by peer,
  // operation and outcome. The picker must outlive `registry`'s renders.
  void ExportMetrics(metrics::Registry& registry);

  // Finished calls per peer, op and outcome, including members that left since.
  struct PeerCallCount {
    std::string peer;
    std::string op;
    std::string status;
    uint64_t count;
  };
  std::vector<PeerCallCount> CallCounts() const;

  const std::string& self() const override { return self_name_; }
  const std::string& self_address() const { return self_address_; }

 private:
  struct Member {
    MemberInfo address;
    std::shared_ptr<RemotePeer> client;  // null for self
  };

  // SetMembers and AddMember without the observer's calls.
  std::vector<Joined> ReplaceMembers(const std::map<std::string, MemberInfo>& members);
  std::optional<Joined> Add(std::string name, std::string grpc_address, std::string http_address);
  // Drops `member`'s client, keeping the count of the calls it made.
  void RetireLocked(Member& member) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Remembers where a member that leaves was (KnownMember).
  void RememberLocked(const MemberInfo& address) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<RemotePeer> NewClient(const std::string& name, const MemberInfo& address) const;

  const std::string self_name_;
  const std::string self_address_;
  const RingPickerOptions options_;
  std::atomic<Observer*> observer_{nullptr};
  // Thread-safe by itself; written only under mu_ so that it always agrees with members_ when
  // mu_ is free.
  HashRing ring_;

  mutable absl::Mutex mu_;
  std::map<std::string, Member, std::less<>> members_ ABSL_GUARDED_BY(mu_);
  // Calls made by clients that were dropped.
  // (peer, op, status) -> finished calls of clients that were dropped.
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> retired_counts_
      ABSL_GUARDED_BY(mu_);
  // Members that left, by name: where they were and when (at most kMaxRemembered; beyond it
  // the one that left first is forgotten).
  struct Left {
    MemberInfo address;
    uint64_t order = 0;  // left_order_ when it left
  };
  std::map<std::string, Left, std::less<>> left_ ABSL_GUARDED_BY(mu_);
  uint64_t left_order_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace nexus
