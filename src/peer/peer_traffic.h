// PeerTraffic: the requests from other nodes this node answered, per transport: the /peer/v1
// HTTP routes (http_routes.h) and the gRPC service (grpc_server.h) count into the one object the
// node owns, and it exports them as nexuscache_peer_requests_served_total{transport}. With a
// cluster secret it also checks the secret of every call for both fronts (Admit), counting
// and logging the calls it refuses (nexuscache_peer_auth_refused_total{transport,reason}).
//
// Thread-safety: the counters are atomics, counted from any thread. It must outlive the
// fronts that count into it and the registry's renders.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string_view>

#include "auth/cluster_secret.h"
#include "metrics/metrics.h"

namespace nexus {

struct PeerTraffic {
  enum Transport { kHttp = 0, kGrpc = 1 };

  std::atomic<uint64_t> served_http{0};
  std::atomic<uint64_t> served_grpc{0};
  // --cluster-secret-file (null: none, every call is admitted). Set before the fronts start.
  const auth::ClusterSecret* secret = nullptr;

  // Whether a call that carried `presented` (nullopt: none) from `from` may run. A refusal is
  // counted and logged (the first, then at most one line per 10 s per transport).
  bool Admit(Transport transport, std::optional<std::string_view> presented, std::string_view from);
  uint64_t refused(Transport transport, auth::ClusterSecret::Check why) const {
    return refused_[transport][why == auth::ClusterSecret::Check::kWrong].load(
        std::memory_order_relaxed);
  }

  void ExportMetrics(metrics::Registry& registry) const;

 private:
  std::atomic<uint64_t> refused_[2][2] = {};  // [transport][missing, wrong]
  std::atomic<int64_t> last_log_ms_[2] = {};
};

}  // namespace nexus
