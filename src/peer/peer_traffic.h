// PeerTraffic: the requests from other nodes this node answered, per transport: the /peer/v1
// HTTP routes (http_routes.h) and the gRPC service (grpc_server.h) count into the one object the
// node owns, and it exports them as nexuscache_peer_requests_served_total{transport}.
//
// Thread-safety: the counters are atomics, counted from any thread. It must outlive the
// fronts that count into it and the registry's renders.
#pragma once

#include <atomic>
#include <cstdint>

#include "metrics/metrics.h"

namespace nexus {

struct PeerTraffic {
  std::atomic<uint64_t> served_http{0};
  std::atomic<uint64_t> served_grpc{0};

  void ExportMetrics(metrics::Registry& registry) const;
};

}  // namespace nexus
