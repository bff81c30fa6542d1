// What the fuzz targets of a node's request paths share: one node's "scores" group (small
// caches, no loader) and its OwnerService with the node's limits, built once per fuzzing
// process; its state carries over between inputs, as a real node's does between requests.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>

#include "cluster/peer.h"
#include "common/clock.h"
#include "group/group.h"
#include "group/registry.h"
#include "service/owner_service.h"
#include "spdlog/spdlog.h"

namespace nexus::fuzz {

// The largest value (and request body) the targets' node takes.
inline constexpr size_t kMaxValueBytes = 64 * 1024;

struct OneNode {
  // `peers` null: no other member (PeerPicker of a one-node ring otherwise).
  explicit OneNode(std::shared_ptr<PeerPicker> peers = nullptr) {
    spdlog::set_level(spdlog::level::off);  // refusals log; millions of them here
    GroupOptions group{.name = "scores"};
    group.cache_bytes = 1 << 20;
    group.hot_cache_bytes = 256 << 10;
    if (!groups.Add(std::make_unique<Group>(group, nullptr, std::move(peers), &SystemClock::Get()))
             .ok()) {
      std::abort();
    }
    owner = std::make_unique<OwnerService>(&groups, &SystemClock::Get(),
                                           OwnerLimits{.max_key_bytes = 250,
                                                       .max_value_bytes = kMaxValueBytes,
                                                       .max_version_skew_ms = 60'000});
  }
  GroupRegistry groups;
  std::unique_ptr<OwnerService> owner;
};

}  // namespace nexus::fuzz
