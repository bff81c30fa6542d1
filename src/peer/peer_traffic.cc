#include "peer/peer_traffic.h"

#include <chrono>
#include <string>

#include "spdlog/spdlog.h"

namespace nexus {

namespace {
constexpr std::string_view kReasonNames[] = {"missing", "wrong", "no_certificate"};
}  // namespace

absl::Status PeerTraffic::Admit(Transport transport, bool certified,
                                std::optional<std::string_view> presented, std::string_view from) {
  Reason reason;
  if (require_certificate && !certified) {
    reason = kNoCertificate;
  } else {
    const auth::ClusterSecret::Check check =
        secret == nullptr ? auth::ClusterSecret::Check::kOk : secret->Verify(presented);
    if (check == auth::ClusterSecret::Check::kOk) return absl::OkStatus();
    reason = check == auth::ClusterSecret::Check::kWrong ? kWrong : kMissing;
  }
  const uint64_t n = refused_[transport][reason].fetch_add(1) + 1;
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  int64_t last = last_log_ms_[transport].load(std::memory_order_relaxed);
  if ((last == 0 || now - last >= 10'000) &&
      last_log_ms_[transport].compare_exchange_strong(last, now)) {
    spdlog::warn(
        "peer: refused a {} call from {}: {} ({} refused so far this way; "
        "nexuscache_peer_auth_refused_total)",
        transport == kHttp ? "/peer/v1" : "gRPC", std::string(from),
        reason == kNoCertificate ? "no cluster certificate (mutual TLS)"
                                 : "cluster secret " + std::string(kReasonNames[reason]),
        n);
  }
  return absl::UnauthenticatedError(
      reason == kNoCertificate
          ? "this node takes peer calls only over mutual TLS with a cluster certificate "
            "(--tls-cert, --tls-key, --tls-ca)"
          : "this node takes peer calls only with the cluster secret (--cluster-secret-file)");
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
      "Calls from other nodes (or anyone on the cluster network) refused by the cluster "
      "plane's authentication, by transport and reason (missing, wrong: the cluster secret of "
      "--cluster-secret-file; no_certificate: not over mutual TLS, --tls-*).",
      "counter", {"transport", "reason"}, [this] {
        metrics::Registry::Samples out;
        for (int t = 0; t < 2; ++t) {
          for (int r = 0; r < kReasons; ++r) {
            out.push_back({{t == kHttp ? "http" : "grpc", std::string(kReasonNames[r])},
                           static_cast<double>(refused_[t][r].load(std::memory_order_relaxed))});
          }
        }
        return out;
      });
}

}  // namespace nexus
