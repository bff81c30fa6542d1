#include "ring/hash_ring.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "common/hash.h"

namespace nexus {
namespace {

using ring_internal::VNode;

// Total order on virtual nodes: by position, then by member name (member indexes follow the
// sorted member list, so the index stands in for the name).
bool VNodeLess(const VNode& a, const VNode& b) {
  return a.hash != b.hash ? a.hash < b.hash : a.member < b.member;
}

}  // namespace

RingSnapshot::RingSnapshot(std::shared_ptr<const RingHashFn> hash, std::vector<std::string> members,
                           const std::vector<VNode>& vnodes, uint64_t generation)
    : hash_(std::move(hash)), members_(std::move(members)), generation_(generation) {
  vnode_hashes_.reserve(vnodes.size());
  vnode_members_.reserve(vnodes.size());
  for (const VNode& v : vnodes) {
    vnode_hashes_.push_back(v.hash);
    vnode_members_.push_back(v.member);
  }
}

std::optional<std::string_view> RingSnapshot::OwnerView(std::string_view key) const {
  if (vnode_hashes_.empty()) return std::nullopt;
  const uint64_t h = (*hash_)(key);
  // lower_bound lands on the first of any run of equal hashes, i.e. the smallest member name,
  // which is what makes ties independent of insertion order.
  auto it = std::lower_bound(vnode_hashes_.begin(), vnode_hashes_.end(), h);
  const size_t pos =
      it == vnode_hashes_.end() ? 0 : static_cast<size_t>(it - vnode_hashes_.begin());
  return std::string_view(members_[vnode_members_[pos]]);
}

std::vector<std::string_view> RingSnapshot::Successors(std::string_view key, size_t n) const {
  std::vector<std::string_view> out;
  if (vnode_hashes_.empty() || n == 0) return out;
  n = std::min(n, members_.size());
  out.reserve(n);
  const uint64_t h = (*hash_)(key);
  const size_t start = static_cast<size_t>(
      std::lower_bound(vnode_hashes_.begin(), vnode_hashes_.end(), h) - vnode_hashes_.begin());
  // Walk the virtual nodes from the key's position (wrapping), keeping each member the first
  // time it appears; at most one full turn.
  std::vector<bool> seen(members_.size(), false);
  for (size_t i = 0; i < vnode_hashes_.size() && out.size() < n; ++i) {
    const uint32_t m = vnode_members_[(start + i) % vnode_hashes_.size()];
    if (seen[m]) continue;
    seen[m] = true;
    out.emplace_back(members_[m]);
  }
  return out;
}

std::optional<std::string> RingSnapshot::Owner(std::string_view key) const {
  std::optional<std::string_view> view = OwnerView(key);
  if (!view) return std::nullopt;
  return std::string(*view);
}

bool RingSnapshot::Contains(std::string_view member) const {
  return std::binary_search(members_.begin(), members_.end(), member, std::less<>());
}

HashRing::HashRing(RingOptions options)
    : vnodes_(std::max(options.vnodes, 1)),
      hash_(std::make_shared<const RingHashFn>(options.hash ? std::move(options.hash)
                                                            : RingHashFn(&HashBytes))) {
  absl::MutexLock lock(&mu_);
  Publish({}, {});
}

std::vector<VNode> HashRing::VNodesOf(std::string_view member, uint32_t index) const {
  std::vector<VNode> out;
  out.reserve(static_cast<size_t>(vnodes_));
  std::string name(member);
  name += '#';
  const size_t prefix = name.size();
  for (int i = 0; i < vnodes_; ++i) {
    name.resize(prefix);
    name += std::to_string(i);
    out.push_back(VNode{(*hash_)(name), index});
  }
  std::sort(out.begin(), out.end(), VNodeLess);
  return out;
}

bool HashRing::Add(std::string_view member) {
  absl::MutexLock lock(&mu_);
  const std::vector<std::string>& old_members = current_->members_;
  auto it = std::lower_bound(old_members.begin(), old_members.end(), member, std::less<>());
  if (it != old_members.end() && *it == member) return false;
  const auto index = static_cast<uint32_t>(it - old_members.begin());

  std::vector<std::string> members;
  members.reserve(old_members.size() + 1);
  members.insert(members.end(), old_members.begin(), it);
  members.emplace_back(member);
  members.insert(members.end(), it, old_members.end());

  // Existing vnodes keep their order: shifting the indexes at or after the insertion point is
  // monotone, so a linear merge with the new member's (sorted) vnodes is enough.
  const size_t old_count = current_->vnode_hashes_.size();
  std::vector<VNode> shifted;
  shifted.reserve(old_count);
  for (size_t i = 0; i < old_count; ++i) {
    uint32_t m = current_->vnode_members_[i];
    shifted.push_back(VNode{current_->vnode_hashes_[i], m >= index ? m + 1 : m});
  }
  std::vector<VNode> added = VNodesOf(member, index);
  std::vector<VNode> merged;
  merged.reserve(old_count + added.size());
  std::merge(shifted.begin(), shifted.end(), added.begin(), added.end(), std::back_inserter(merged),
             VNodeLess);
  Publish(std::move(members), merged);
  return true;
}

bool HashRing::Remove(std::string_view member) {
  absl::MutexLock lock(&mu_);
  const std::vector<std::string>& old_members = current_->members_;
  auto it = std::lower_bound(old_members.begin(), old_members.end(), member, std::less<>());
  if (it == old_members.end() || *it != member) return false;
  const auto index = static_cast<uint32_t>(it - old_members.begin());

  std::vector<std::string> members;
  members.reserve(old_members.size() - 1);
  members.insert(members.end(), old_members.begin(), it);
  members.insert(members.end(), it + 1, old_members.end());

  const size_t old_count = current_->vnode_hashes_.size();
  std::vector<VNode> kept;
  kept.reserve(old_count - std::min(old_count, static_cast<size_t>(vnodes_)));
  for (size_t i = 0; i < old_count; ++i) {
    uint32_t m = current_->vnode_members_[i];
    if (m == index) continue;
    kept.push_back(VNode{current_->vnode_hashes_[i], m > index ? m - 1 : m});
  }
  Publish(std::move(members), kept);
  return true;
}

bool HashRing::Reset(const std::vector<std::string>& members) {
  std::vector<std::string> sorted = members;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());

  absl::MutexLock lock(&mu_);
  if (sorted == current_->members_) return false;
  std::vector<VNode> all;
  all.reserve(sorted.size() * static_cast<size_t>(vnodes_));
  for (size_t i = 0; i < sorted.size(); ++i) {
    std::vector<VNode> one = VNodesOf(sorted[i], static_cast<uint32_t>(i));
    all.insert(all.end(), one.begin(), one.end());
  }
  std::sort(all.begin(), all.end(), VNodeLess);
  Publish(std::move(sorted), all);
  return true;
}

void HashRing::Publish(std::vector<std::string> members, const std::vector<VNode>& vnodes) {
  const uint64_t generation = current_ == nullptr ? 0 : current_->generation_ + 1;
  // RingSnapshot's constructor is private, so make_shared cannot reach it.
  current_ = std::shared_ptr<const RingSnapshot>(
      new RingSnapshot(hash_, std::move(members), vnodes, generation));
  snapshot_.store(current_, std::memory_order_release);
}

std::shared_ptr<const RingSnapshot> HashRing::Snapshot() const {
  return snapshot_.load(std::memory_order_acquire);
}

std::optional<std::string> HashRing::Owner(std::string_view key) const {
  return Snapshot()->Owner(key);
}

uint64_t HashRing::Generation() const { return Snapshot()->generation(); }

std::vector<std::string> HashRing::Members() const { return Snapshot()->members(); }

size_t HashRing::Size() const { return Snapshot()->size(); }

}  // namespace nexus
