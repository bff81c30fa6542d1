#include "peer/peer_traffic.h"

namespace nexus {

void PeerTraffic::ExportMetrics(metrics::Registry& registry) const {
  registry.AddCollector(
      "nexuscache_peer_requests_served_total",
      "Requests from other nodes answered by this one, by transport (http: the forwarding "
      "routes on the HTTP port; grpc: the gRPC service, i.e. forwarding off the fast path, "
      "hot-key replication, dashboard metrics fetches, seed clients).",
      "counter", {"transport"}, [this] {
        return metrics::Registry::Samples{
            {{"http"}, static_cast<double>(served_http.load(std::memory_order_relaxed))},
            {{"grpc"}, static_cast<double>(served_grpc.load(std::memory_order_relaxed))}};
      });
}

}  // namespace nexus
