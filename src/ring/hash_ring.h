// Consistent hash ring with virtual nodes: maps every key to the peer ("member") that owns it,
// so that all nodes sharing the same membership agree on the owner without talking to each
// other, and a membership change moves only the keys that must move (~1/N of them).
//
// Placement (identical on every node, every build):
//   - virtual node i of member m sits at hash(m + "#" + std::to_string(i)), i in [0, vnodes);
//   - a key goes to the first virtual node whose hash is >= hash(key), wrapping around to the
//     lowest one past the top of the 64-bit space;
//   - virtual nodes with equal hashes are ordered by member name (bytewise), so the smallest
//     name wins a tie. The owner therefore depends only on the member *set*, never on the order
//     in which members were added.
//
// Thread-safety: every method may be called concurrently. Lookups never take the writers' mutex:
// each membership version is an immutable RingSnapshot published through an atomic
// shared_ptr; writers serialize on a mutex, build the next snapshot copy-on-write and publish
// it. A reader sees either the old or the new version, never a mix. (libstdc++'s
// atomic<shared_ptr> is not lock-free: a load holds an internal spin bit for one reference-count
// increment, so a reader can wait for another load or for the pointer swap of a store, but never
// for a rebuild.) Membership changes are expected to be rare and cost O(members * vnodes);
// lookups cost O(log(members * vnodes)) and do not allocate (except for the std::string that
// HashRing::Owner returns).
//
// Invariants:
//   - a member appears at most once; it contributes exactly vnodes() virtual nodes;
//   - Generation() starts at 0 and grows by exactly 1 per change that altered the membership
//     (no-op Add/Remove/Reset do not bump it), so equal generations of the same ring mean the
//     same membership;
//   - a snapshot never changes after it is published.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace nexus {

using RingHashFn = std::function<uint64_t(std::string_view)>;

struct RingOptions {
  // Virtual nodes per member. More vnodes give a more even split at the cost of memory and
  // rebuild time (roughly: share deviation ~ 1/sqrt(vnodes)). Values < 1 are treated as 1.
  int vnodes = 50;
  // Hash used for both virtual nodes and keys. Empty means nexus::HashBytes (XXH3). Every node
  // of a cluster must use the same function, and it must be safe to call concurrently.
  // Initialized so that designated initializers like RingOptions{.vnodes = 200} do not trip
  // -Wmissing-field-initializers.
  RingHashFn hash = nullptr;
};

namespace ring_internal {

// One virtual node. `member` indexes the snapshot's sorted member list, so comparing indexes
// orders virtual nodes by member name, which is the tie-break rule. 32 bits bound the member
// count far above any realistic cluster while keeping rebuild buffers small.
struct VNode {
  uint64_t hash;
  uint32_t member;
};

}  // namespace ring_internal

// One immutable version of the ring. Holding the shared_ptr keeps it (and the string_views it
// hands out) alive, and lets a caller read generation and owners from the same version. A
// snapshot shares the hash function with its ring and may outlive it.
// Thread-safety: immutable after construction, so freely shareable across threads.
class RingSnapshot {
 public:
  RingSnapshot(const RingSnapshot&) = delete;
  RingSnapshot& operator=(const RingSnapshot&) = delete;

  // The owner of `key`, or nullopt when the ring is empty. The view points into this snapshot
  // and stays valid as long as the snapshot is alive. Does not allocate.
  std::optional<std::string_view> OwnerView(std::string_view key) const;

  // As OwnerView, but returns an owned copy.
  std::optional<std::string> Owner(std::string_view key) const;
  // The first `n` distinct members met walking the ring clockwise from `key`'s position: the
  // owner first, then the members that would own the key if those before them were gone (a
  // replica set of factor n). Fewer when the ring has fewer members; empty for an empty ring.
  // Views into this snapshot, as OwnerView's.
  std::vector<std::string_view> Successors(std::string_view key, size_t n) const;

  bool Contains(std::string_view member) const;

  // Members in ascending (bytewise) order.
  const std::vector<std::string>& members() const { return members_; }
  uint64_t generation() const { return generation_; }
  size_t size() const { return members_.size(); }
  bool empty() const { return members_.empty(); }

 private:
  friend class HashRing;

  using VNode = ring_internal::VNode;

  RingSnapshot(std::shared_ptr<const RingHashFn> hash, std::vector<std::string> members,
               const std::vector<VNode>& vnodes, uint64_t generation);

  const std::shared_ptr<const RingHashFn> hash_;
  const std::vector<std::string> members_;
  // Parallel arrays sorted by (hash, member): the binary search only touches vnode_hashes_, which
  // keeps the searched array dense (8 bytes per entry instead of 16).
  std::vector<uint64_t> vnode_hashes_;
  std::vector<uint32_t> vnode_members_;
  const uint64_t generation_;
};

class HashRing {
 public:
  explicit HashRing(RingOptions options = {});

  HashRing(const HashRing&) = delete;
  HashRing& operator=(const HashRing&) = delete;

  // Adds `member`. Returns false (and changes nothing) if it is already present.
  bool Add(std::string_view member) ABSL_LOCKS_EXCLUDED(mu_);

  // Removes `member`. Returns false (and changes nothing) if it is absent.
  bool Remove(std::string_view member) ABSL_LOCKS_EXCLUDED(mu_);

  // Replaces the whole membership with `members` (duplicates ignored) as a single change:
  // readers never observe an intermediate set. Returns false if the set is unchanged.
  bool Reset(const std::vector<std::string>& members) ABSL_LOCKS_EXCLUDED(mu_);

  // The owner of `key`, or nullopt when the ring is empty. For hot loops prefer
  // Snapshot()->OwnerView(), which avoids the atomic load and the string copy per key.
  std::optional<std::string> Owner(std::string_view key) const;

  // The current version. Use it when several reads must agree with each other (e.g. the
  // generation that a routing decision was made under).
  std::shared_ptr<const RingSnapshot> Snapshot() const;

  uint64_t Generation() const;
  // Sorted ascending.
  std::vector<std::string> Members() const;
  size_t Size() const;
  int vnodes() const { return vnodes_; }

 private:
  // Builds, records and publishes the next version. Only writers call it.
  void Publish(std::vector<std::string> members, const std::vector<ring_internal::VNode>& vnodes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Virtual nodes of one member, sorted by hash.
  std::vector<ring_internal::VNode> VNodesOf(std::string_view member, uint32_t index) const;

  const int vnodes_;
  const std::shared_ptr<const RingHashFn> hash_;

  absl::Mutex mu_;
  // The writers' view of the latest version. snapshot_ always equals it whenever mu_ is free;
  // keeping a guarded copy lets writers read the current version without reasoning about the
  // atomic, and lets the thread-safety analysis check them.
  std::shared_ptr<const RingSnapshot> current_ ABSL_GUARDED_BY(mu_);
  // What readers load. Stored only while holding mu_.
  std::atomic<std::shared_ptr<const RingSnapshot>> snapshot_;
};

}  // namespace nexus
