// ClusterView: what the client service and the admin routes know of the cluster, behind one
// interface so that neither depends on a transport: the members, who owns a key, adding a
// member (the seed's /setpeer), and a member's metrics text (/api/cluster, the dashboard).
// The peer layer's RingPeerPicker implements it; unit tests hand in fakes.
//
// Thread-safety: implementations allow concurrent calls from any thread; FetchMetrics's
// callback runs exactly once, on any thread, within `deadline`.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "common/member.h"

namespace nexus {

class ClusterView {
 public:
  using MetricsCallback = absl::AnyInvocable<void(absl::StatusOr<std::string>)>;

  virtual ~ClusterView() = default;
  // This node's name.
  virtual const std::string& self() const = 0;
  // +1 on every change of the member set.
  virtual uint64_t generation() const = 0;
  // (name, gRPC address), sorted by name, this node included.
  virtual std::vector<std::pair<std::string, std::string>> Members() const = 0;
  // The owner's name (nullopt only for an empty ring).
  virtual std::optional<std::string> OwnerOf(std::string_view key) const = 0;
  // Adds or updates a member; true if something changed.
  virtual bool AddMember(std::string name, std::string grpc_address,
                         std::string http_address = {}) = 0;
  // Where member `name` was when it was last a member (from --peer, etcd or an added member;
  // kept after it left, so that the seed's /setpeer can re-add a recovered node), nullopt if
  // this node never had such a member. This node's own name: its own addresses.
  virtual std::optional<MemberInfo> KnownMember(std::string_view name) const = 0;
  // The Prometheus text of member `name` (not this node: render that locally). NotFound if it
  // is not a member.
  virtual void FetchMetrics(const std::string& name, std::chrono::milliseconds deadline,
                            MetricsCallback done) = 0;
};

}  // namespace nexus
