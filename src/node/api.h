// Api: the seed's HTTP API and the node's admin routes, a thin front over CacheService
// (service/cache_service.h): each handler decodes the request, calls the service and encodes
// the answer with the seed's bodies and status codes.
//
//   GET  /api/get?key=K[&group=G]          200 "value=<v>\n" | 404 "key not found\n"
//   POST /api/set key,value,expire,hot     200 "done\n" | 400/413 with the seed's messages
//   DELETE /api/delete?key=K (POST too)    200 "done\n"
//   POST /setpeer peer=NAME[&addr=H:P]     200 "set peer NAME successful\n"
//   GET  /healthz, /api/stats, /api/ring, /metrics, /dashboard
//   GET  /api/cluster                      every ring member's /metrics text (for /dashboard)
//
// Errors map to HTTP statuses in one place (http::HttpStatusFor), with the service's message
// as the body; a refusal by authentication is 401 (with WWW-Authenticate: Bearer) or 403.
//
// Credentials: `Authorization: Bearer <token>` (RFC 6750), checked by the service (its
// Identify/Authorize) for every route but /healthz; another scheme counts as a wrong token.
//
// Handlers never block: service operations complete through callbacks, possibly on a gRPC or
// origin thread, and the http layer posts the response back to the connection's event loop.
// Thread-safety: handlers run concurrently on every HTTP thread; Api holds no mutable state.
#pragma once

#include <atomic>
#include <string>

#include "http/router.h"
#include "metrics/metrics.h"
#include "node/config.h"
#include "service/cache_service.h"
#include "service/cluster_view.h"

namespace nexus {

class Api {
 public:
  Api(const Config* config, CacheService* service, ClusterView* cluster,
      metrics::Registry* metrics);

  // Registers every route on `router`.
  void Install(http::Router& router);
  // A router serving only /metrics (for --metrics-port).
  void InstallMetricsOnly(http::Router& router);
  // Whether /healthz answers 200 (ready) or 503 (a node with --etcd that has not yet read the
  // membership: it would take every key for its own). Ready from the start.
  void SetReady(bool ready) { ready_.store(ready, std::memory_order_release); }

 private:
  void Get(http::Request&& req, http::Responder respond);
  void Set(http::Request&& req, http::Responder respond);
  void Delete(http::Request&& req, http::Responder respond);
  void SetPeer(http::Request&& req, http::Responder respond);
  void Stats(http::Request&& req, http::Responder respond);
  void Ring(http::Request&& req, http::Responder respond);
  void Metrics(http::Request&& req, http::Responder respond);
  void Cluster(http::Request&& req, http::Responder respond);
  // Who sent `req` (its Bearer token, if any).
  Caller CallerOf(const http::Request& req) const;
  // Whether `req` may have `access`; if not, answers the refusal.
  bool Allowed(const http::Request& req, CacheService::Access access,
               http::Responder& respond) const;

  const Config* const config_;
  CacheService* const service_;
  ClusterView* const cluster_;
  metrics::Registry* const metrics_;
  std::atomic<bool> ready_{true};
};

}  // namespace nexus
