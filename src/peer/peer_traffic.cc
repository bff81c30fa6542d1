#include "peer/peer_traffic.h"

#include <chrono>
#include <string>

#include "spdlog/spdlog.h"

namespace nexus {

bool PeerTraffic::Admit(Transport transport, std::optional<std::string_view> presented,
                        std::string_view from) {
  if (secret == nullptr) return true;
  const auth::ClusterSecret::Check check = secret->Verify(presented);
  if (check == auth::ClusterSecret::Check::kOk) return true;
  const uint64_t n =
      refused_[transport][check == auth::ClusterSecret::Check::kWrong].fetch_add(1) + 1;
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  int64_t last = last_log_ms_[transport].load(std::memory_order_relaxed);
  if ((last == 0 || now - last >= 10'000) &&
      last_log_ms_[transport].compare_exchange_strong(last, now)) {
    spdlog::warn(
        "peer: refused a {} call from {}: cluster secret {} ({} refused so far this "
        "way; nexuscache_peer_auth_refused_total)",
        transport == kHttp ? "/peer/v1" : "gRPC", std::string(from),
        std::string(auth::CheckName(check)), n);
  }
  return false;
}

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
  registry.AddCollector(
      "nexuscache_peer_auth_refused_total",
      "Calls from other nodes (or anyone on the cluster network) refused for their cluster "
      "secret (--cluster-secret-file), by transport and reason (missing, wrong).",
      "counter", {"transport", "reason"}, [this] {
        metrics::Registry::Samples out;
        for (int t = 0; t < 2; ++t) {
          for (int r = 0; r < 2; ++r) {
            out.push_back({{t == kHttp ? "http" : "grpc", r == 0 ? "missing" : "wrong"},
                           static_cast<double>(refused_[t][r].load(std::memory_order_relaxed))});
          }
        }
        return out;
      });
}

}  // namespace nexus
