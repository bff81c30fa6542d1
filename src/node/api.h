// Api: the HTTP routes of a node (DESIGN §4), seed-compatible bodies and status codes.
//
//   GET  /api/get?key=K[&group=G]          200 "value=<v>\n" | 404 "key not found\n"
//   POST /api/set key,value,expire,hot     200 "done\n" | 400/413 with the seed's messages
//   DELETE /api/delete?key=K (POST too)    200 "done\n"
//   POST /setpeer peer=NAME[&addr=H:P]     200 "set peer NAME successful\n"
//   GET  /healthz, /api/stats, /api/ring, /metrics, /dashboard
//   GET  /api/cluster                      every ring member's /metrics text (for /dashboard)
//
// Handlers never block: group operations complete through callbacks, possibly on a gRPC or
// origin thread, and the http layer posts the response back to the connection's event loop.
// Thread-safety: handlers run concurrently on every HTTP thread; Api holds no mutable state of
// its own besides metrics (atomic).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "group/registry.h"
#include "http/router.h"
#include "metrics/metrics.h"
#include "node/config.h"
#include "peer/ring_picker.h"

namespace nexus {

class Api {
 public:
  Api(const Config* config, GroupRegistry* groups, RingPeerPicker* picker,
      metrics::Registry* metrics);

  // Registers every route on `router`.
  void Install(http::Router& router);
  // A router serving only /metrics (for --metrics-port).
  void InstallMetricsOnly(http::Router& router);

  // Waits until no get/set/delete/setpeer is in flight (their peer and origin calls hold
  // pointers to this Api and to the groups), or `timeout`; true if idle.
  bool WaitIdle(std::chrono::milliseconds timeout);

 private:
  void Get(http::Request&& req, http::Responder respond);
  void Set(http::Request&& req, http::Responder respond);
  void Delete(http::Request&& req, http::Responder respond);
  void SetPeer(http::Request&& req, http::Responder respond);
  void Stats(http::Request&& req, http::Responder respond);
  void Ring(http::Request&& req, http::Responder respond);
  void Metrics(http::Request&& req, http::Responder respond);
  void Cluster(http::Request&& req, http::Responder respond);

  // The group named by the request's `group` parameter (default: the configured group).
  Group* GroupFor(const http::Request& req, std::string* name);
  // The metrics read from the groups and the ring at scrape time.
  void RegisterGauges(GroupRegistry* groups, RingPeerPicker* picker);

  // Metric children of one operation, resolved once so the hot path takes no lock.
  struct OpMetrics {
    metrics::Counter* hit = nullptr;  // also "ok" for set/delete/setpeer
    metrics::Counter* miss = nullptr;
    metrics::Counter* error = nullptr;
    metrics::Histogram* duration = nullptr;
  };
  enum class Outcome { kHit, kMiss, kOk, kError };

  // Counts the request and its latency, then responds.
  void Finish(const OpMetrics& op, Outcome outcome, std::chrono::steady_clock::time_point start,
              http::Responder& respond, http::Response response);

  // Requests between their handler's start and their Finish (an atomic: this is the hot path;
  // only shutdown waits on it).
  std::atomic<int64_t> in_flight_{0};
  void Begin() { in_flight_.fetch_add(1, std::memory_order_relaxed); }

  const Config* const config_;
  GroupRegistry* const groups_;
  RingPeerPicker* const picker_;
  metrics::Registry* const metrics_;
  metrics::Family<metrics::Counter>* requests_;
  metrics::Family<metrics::Histogram>* duration_;
  OpMetrics get_, set_, delete_, setpeer_;
};

}  // namespace nexus
