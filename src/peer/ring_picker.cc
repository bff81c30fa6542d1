#include "peer/ring_picker.h"

#include <utility>

#include "spdlog/spdlog.h"

namespace nexus {

RingPeerPicker::RingPeerPicker(std::string self_name, std::string self_address,
                               RingPickerOptions options)
    : self_name_(std::move(self_name)),
      self_address_(std::move(self_address)),
      options_(std::move(options)),
      ring_(RingOptions{.vnodes = options_.vnodes}) {
  absl::MutexLock lock(&mu_);
  members_.emplace(self_name_, Member{.address = {.name = self_name_, .grpc = self_address_},
                                      .client = nullptr});
  ring_.Add(self_name_);
}

std::shared_ptr<Peer> RingPeerPicker::PickPeer(std::string_view key) {
  std::shared_ptr<const RingSnapshot> snapshot = ring_.Snapshot();
  std::optional<std::string_view> owner = snapshot->OwnerView(key);
  if (!owner.has_value() || *owner == self_name_) return nullptr;
  absl::ReaderMutexLock lock(&mu_);
  auto it = members_.find(*owner);
  if (it == members_.end()) {
    // The owner left between the lock-free ring lookup and this lock. Under the lock ring and
    // map agree, so ask the ring again.
    snapshot = ring_.Snapshot();
    owner = snapshot->OwnerView(key);
    if (!owner.has_value() || *owner == self_name_) return nullptr;
    it = members_.find(*owner);
    if (it == members_.end()) return nullptr;  // unreachable: writers keep both in step
  }
  return it->second.client;
}

ReplicaSet RingPeerPicker::PickReplicas(std::string_view key, size_t n) {
  ReplicaSet out;
  absl::ReaderMutexLock lock(&mu_);
  // Under the lock the ring and the clients agree (writers change both under it).
  std::shared_ptr<const RingSnapshot> snapshot = ring_.Snapshot();
  out.generation = snapshot->generation();
  for (std::string_view name : snapshot->Successors(key, n)) {
    if (name == self_name_) {
      out.members.push_back(nullptr);
      continue;
    }
    auto it = members_.find(name);
    if (it != members_.end()) out.members.push_back(it->second.client);
  }
  return out;
}

bool RingPeerPicker::Holds(std::string_view key, size_t n) {
  const std::shared_ptr<const RingSnapshot> snapshot = ring_.Snapshot();
  if (n == 1) return snapshot->OwnerView(key) == std::string_view(self_name_);
  for (std::string_view name : snapshot->Successors(key, n)) {
    if (name == self_name_) return true;
  }
  return false;
}

std::shared_ptr<Peer> RingPeerPicker::PeerNamed(std::string_view name) {
  absl::ReaderMutexLock lock(&mu_);
  auto it = members_.find(name);
  return it == members_.end() ? nullptr : it->second.client;
}

std::shared_ptr<const RingSnapshot> RingPeerPicker::RingWithout(std::string_view name) {
  std::vector<std::string> others;
  for (const std::string& member : ring_.Snapshot()->members()) {
    if (member != name) others.push_back(member);
  }
  HashRing ring(RingOptions{.vnodes = options_.vnodes});
  ring.Reset(others);
  return ring.Snapshot();
}

std::shared_ptr<RemotePeer> RingPeerPicker::NewClient(const std::string& name,
                                                      const MemberInfo& address) const {
  return std::make_shared<RemotePeer>(
      name, address.grpc, options_.forward_over_http ? address.http : std::string(), options_.peer);
}

void RingPeerPicker::RetireLocked(Member& member) {
  if (member.client == nullptr) return;
  for (const CallCounter::Count& c : member.client->CallCounts()) {
    retired_counts_[{member.client->name(), c.op, c.status}] += c.count;
  }
  member.client.reset();
}

std::vector<RingPeerPicker::Joined> RingPeerPicker::SetMembers(
    const std::map<std::string, std::string>& name_to_grpc_address) {
  std::map<std::string, MemberInfo> members;
  for (const auto& [name, grpc] : name_to_grpc_address) members[name] = {.grpc = grpc};
  return SetMembers(members);
}

std::vector<RingPeerPicker::Joined> RingPeerPicker::SetMembers(
    const std::map<std::string, MemberInfo>& members) {
  Observer* const observer = observer_.load(std::memory_order_acquire);
  if (observer != nullptr) observer->MembersChanging();
  std::vector<Joined> joined = ReplaceMembers(members);
  if (observer != nullptr) observer->MembersChanged(joined);
  return joined;
}

std::vector<RingPeerPicker::Joined> RingPeerPicker::ReplaceMembers(
    const std::map<std::string, MemberInfo>& members) {
  std::vector<Joined> joined;
  absl::MutexLock lock(&mu_);
  // Order: clients of new members first, then the ring, then the clients of members that left,
  // so that a PickPeer that read the ring without the lock finds a client (or re-checks).
  std::vector<std::string> names;
  names.reserve(members.size() + 1);
  names.push_back(self_name_);
  for (const auto& [name, address] : members) {
    if (!name.empty() && name != self_name_) names.push_back(name);
  }
  for (const auto& [name, given] : members) {
    if (name.empty() || name == self_name_) continue;
    MemberInfo address = given;
    address.name = name;  // the map's key names the member
    auto it = members_.find(name);
    if (it == members_.end()) {
      auto client = NewClient(name, address);
      joined.push_back({.name = name, .client = client});
      members_.emplace(name, Member{.address = address, .client = std::move(client)});
      spdlog::info("peer: member {} joined at {}{}", name, address.grpc,
                   address.http.empty() ? "" : " (http " + address.http + ")");
    } else if (it->second.address != address) {
      const MemberInfo& was = it->second.address;
      const bool restarted = was.grpc == address.grpc && was.http == address.http;
      if (restarted) {
        spdlog::info("peer: member {} restarted (incarnation {} -> {})", name, was.incarnation,
                     address.incarnation);
      } else {
        spdlog::info("peer: member {} moved from {} to {}{}", name, was.grpc, address.grpc,
                     address.http.empty() ? "" : " (http " + address.http + ")");
      }
      RetireLocked(it->second);
      it->second = Member{.address = address, .client = NewClient(name, address)};
      joined.push_back({.name = name, .client = it->second.client, .restarted = restarted});
    }
  }
  const bool changed = ring_.Reset(names);
  for (auto it = members_.begin(); it != members_.end();) {
    if (it->first != self_name_ && !members.contains(it->first)) {
      spdlog::info("peer: member {} ({}) left", it->first, it->second.address.grpc);
      RememberLocked(it->second.address);
      RetireLocked(it->second);
      it = members_.erase(it);
    } else {
      ++it;
    }
  }
  if (changed) spdlog::info("peer: ring generation {}", ring_.Generation());
  return joined;
}

bool RingPeerPicker::AddMember(std::string name, std::string grpc_address,
                               std::string http_address) {
  if (name.empty() || name == self_name_) return false;
  Observer* const observer = observer_.load(std::memory_order_acquire);
  if (observer != nullptr) observer->MembersChanging();
  std::optional<Joined> joined =
      Add(std::move(name), std::move(grpc_address), std::move(http_address));
  const bool changed = joined.has_value();
  if (observer != nullptr) {
    std::vector<Joined> list;
    if (changed) list.push_back(std::move(*joined));
    observer->MembersChanged(list);
  }
  return changed;
}

std::optional<RingPeerPicker::Joined> RingPeerPicker::Add(std::string name,
                                                          std::string grpc_address,
                                                          std::string http_address) {
  MemberInfo address{
      .name = name, .grpc = std::move(grpc_address), .http = std::move(http_address)};
  absl::MutexLock lock(&mu_);
  auto it = members_.find(name);
  if (it != members_.end()) {
    // No HTTP address given (e.g. /setpeer): keep the one known for the same gRPC address.
    if (address.http.empty() && address.grpc == it->second.address.grpc) return std::nullopt;
    address.incarnation = it->second.address.incarnation;  // /setpeer does not know it
    if (it->second.address == address) return std::nullopt;
    spdlog::info("peer: member {} moved from {} to {}", name, it->second.address.grpc,
                 address.grpc);
    RetireLocked(it->second);
    it->second.client = NewClient(name, address);
    it->second.address = std::move(address);
    return Joined{.name = std::move(name), .client = it->second.client};
  }
  std::shared_ptr<RemotePeer> client = NewClient(name, address);
  spdlog::info("peer: member {} joined at {}", name, address.grpc);
  members_.emplace(name, Member{.address = std::move(address), .client = client});
  ring_.Add(name);
  return Joined{.name = std::move(name), .client = std::move(client)};
}

bool RingPeerPicker::RemoveMember(std::string_view name) {
  if (name == self_name_) return false;
  absl::MutexLock lock(&mu_);
  auto it = members_.find(name);
  if (it == members_.end()) return false;
  ring_.Remove(name);
  spdlog::info("peer: member {} ({}) left", it->first, it->second.address.grpc);
  RememberLocked(it->second.address);
  RetireLocked(it->second);
  members_.erase(it);
  return true;
}

void RingPeerPicker::RememberLocked(const MemberInfo& address) {
  if (left_.size() >= kMaxRemembered && !left_.contains(address.name)) {
    // The one that left first goes (a scan, on the rare leave beyond the bound).
    auto oldest = left_.begin();
    for (auto it = left_.begin(); it != left_.end(); ++it) {
      if (it->second.order < oldest->second.order) oldest = it;
    }
    left_.erase(oldest);
  }
  left_[address.name] = {.address = address, .order = ++left_order_};
}

std::optional<MemberInfo> RingPeerPicker::KnownMember(std::string_view name) const {
  absl::ReaderMutexLock lock(&mu_);
  if (auto it = members_.find(name); it != members_.end()) return it->second.address;
  if (auto it = left_.find(name); it != left_.end()) return it->second.address;
  return std::nullopt;
}

std::optional<std::string> RingPeerPicker::OwnerOf(std::string_view key) const {
  return ring_.Owner(key);
}

void RingPeerPicker::FetchMetrics(const std::string& name, std::chrono::milliseconds deadline,
                                  MetricsCallback done) {
  std::shared_ptr<GrpcPeer> client;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = members_.find(name);
    if (it != members_.end() && it->second.client != nullptr) client = it->second.client->grpc();
  }
  if (client == nullptr) return done(absl::NotFoundError("no longer a member"));
  client->FetchMetrics(deadline, std::move(done));
}

void RingPeerPicker::ExportMetrics(metrics::Registry& registry) {
  registry.AddGauge("nexuscache_ring_members", "Members of this node's hash ring.",
                    [this] { return static_cast<double>(Members().size()); });
  registry.AddGauge("nexuscache_ring_generation",
                    "Generation of this node's hash ring (bumped on every membership change).",
                    [this] { return static_cast<double>(generation()); });
  registry.AddCollector("nexuscache_peer_requests_total",
                        "Requests this node sent to other nodes (HTTP forwarding or gRPC), by "
                        "peer, operation and outcome.",
                        "counter", {"peer", "op", "status"}, [this] {
                          metrics::Registry::Samples out;
                          for (const auto& c : CallCounts()) {
                            out.push_back({{c.peer, c.op, c.status}, static_cast<double>(c.count)});
                          }
                          return out;
                        });
}

std::vector<std::pair<std::string, std::string>> RingPeerPicker::Members() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(members_.size());
  for (const auto& [name, member] : members_) out.emplace_back(name, member.address.grpc);
  return out;
}

uint64_t RingPeerPicker::generation() const { return ring_.Generation(); }

std::vector<RingPeerPicker::PeerCallCount> RingPeerPicker::CallCounts() const {
  absl::ReaderMutexLock lock(&mu_);
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> all = retired_counts_;
  for (const auto& [name, member] : members_) {
    if (member.client == nullptr) continue;
    for (const CallCounter::Count& c : member.client->CallCounts()) {
      all[{name, c.op, c.status}] += c.count;
    }
  }
  std::vector<PeerCallCount> out;
  for (const auto& [k, count] : all) {
    out.push_back({std::get<0>(k), std::get<1>(k), std::get<2>(k), count});
  }
  return out;
}

}  // namespace nexus
