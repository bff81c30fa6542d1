// PeerTraffic: the requests from other nodes this node answered, per transport: the /peer/v1
// HTTP routes (http_routes.h) and the gRPC service (grpc_server.h) count into the one object the
// node owns, and it exports them as nexuscache_peer_requests_served_total{transport}. It also
// admits the calls of both fronts (Admit): with mutual TLS configured (--tls-*) only calls over
// a connection whose client certificate chains to the cluster CA, with a cluster secret only
// calls that carry it (both, when both are configured), counting and logging the calls it
// refuses (nexuscache_peer_auth_refused_total{transport,reason}).
//
// Thread-safety: the counters are atomics, counted from any thread. It must outlive the
// fronts that count into it and the registry's renders.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "auth/cluster_secret.h"
#include "metrics/metrics.h"

namespace nexus {

struct PeerTraffic {
  enum Transport { kHttp = 0, kGrpc = 1 };

  std::atomic<uint64_t> served_http{0};
  std::atomic<uint64_t> served_grpc{0};
  // --cluster-secret-file (null: none). Set before the fronts start.
  const auth::ClusterSecret* secret = nullptr;
  // --tls-*: a call must come over mutual TLS. Set before the fronts start.
  bool require_certificate = false;

  // Whether a call from `from` may run: `certified`, it came over mutual TLS with a verified
  // cluster certificate; `presented`, the secret it carried (nullopt: none). A refusal is
  // Unauthenticated with the reason, counted and logged (the first, then at most one line per
  // 10 s per transport).
  absl::Status Admit(Transport transport, bool certified, std::optional<std::string_view> presented,
                     std::string_view from);
  // Whether Admit checks anything.
  bool checks() const { return secret != nullptr || require_certificate; }

  enum Reason { kMissing = 0, kWrong = 1, kNoCertificate = 2, kReasons = 3 };
  uint64_t refused(Transport transport, Reason why) const {
    return refused_[transport][why].load(std::memory_order_relaxed);
  }

  void ExportMetrics(metrics::Registry& registry) const;

 private:
  std::atomic<uint64_t> refused_[2][kReasons] = {};  // [transport][reason]
  std::atomic<int64_t> last_log_ms_[2] = {};
};

}  // namespace nexus
