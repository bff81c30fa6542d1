#include "node/api.h"

#include <cctype>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/parse.h"
#include "group/group.h"
#include "node/dashboard.h"

namespace nexus {

namespace {

constexpr int64_t kMaxExpireMinutes = 4320;
// /api/cluster waits this long for a member's metrics; the dashboard asks every second.
constexpr std::chrono::milliseconds kClusterFetchDeadline{800};

using http::Text;

http::Response Json(const nlohmann::json& j) {
  http::Response r;
  r.content_type = "application/json";
  // (Keys and names in answers are the client's bytes: invalid UTF-8 becomes U+FFFD instead
  // of an exception.)
  r.body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  return r;
}

http::Response ErrorResponse(const absl::Status& s) {
  if (absl::IsUnauthenticated(s)) {
    http::Response r =
        Text(401, std::string(s.message()) + " (send Authorization: Bearer <token>)\n");
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"nexuscache\"");
    return r;
  }
  return Text(http::HttpStatusFor(s), std::string(s.message()) + "\n");
}

// A parameter's value, empty when absent.
std::string_view Param(const http::Request& req, std::string_view name) {
  const std::string* v = req.Param(name);
  return v == nullptr ? std::string_view() : std::string_view(*v);
}

}  // namespace

Caller Api::CallerOf(const http::Request& req) const {
  Caller caller{.protocol = Protocol::kHttp};
  const std::string* header = req.Header("Authorization");
  if (header == nullptr || !service_->auth_enabled()) return caller;
  // RFC 6750: "Bearer" (any case), one or more spaces, the token.
  std::string_view value = *header;
  constexpr std::string_view kScheme = "bearer ";
  bool bearer = value.size() > kScheme.size();
  for (size_t i = 0; bearer && i < kScheme.size(); ++i) {
    bearer = std::tolower(static_cast<unsigned char>(value[i])) == kScheme[i];
  }
  if (bearer) {
    value.remove_prefix(kScheme.size());
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
    caller.identity = service_->Identify(value);
  } else {
    caller.identity = auth::Identity::Invalid();  // another scheme, or no token
  }
  return caller;
}

bool Api::Allowed(const http::Request& req, CacheService::Access access,
                  http::Responder& respond) const {
  const absl::Status s = service_->Authorize(CallerOf(req), access);
  if (s.ok()) return true;
  respond(ErrorResponse(s));
  return false;
}

Api::Api(const Config* config, CacheService* service, ClusterView* cluster,
         metrics::Registry* metrics)
    : config_(config), service_(service), cluster_(cluster), metrics_(metrics) {}

void Api::Install(http::Router& router) {
  auto bind = [this](void (Api::*fn)(http::Request&&, http::Responder)) {
    return [this, fn](http::Request&& req, http::Responder respond) {
      (this->*fn)(std::move(req), std::move(respond));
    };
  };
  router.Handle("GET", "/api/get", bind(&Api::Get));
  router.Handle("POST", "/api/set", bind(&Api::Set));
  router.Handle("DELETE", "/api/delete", bind(&Api::Delete));
  router.Handle("POST", "/api/delete", bind(&Api::Delete));
  router.Handle("POST", "/setpeer", bind(&Api::SetPeer));
  router.Handle("GET", "/api/stats", bind(&Api::Stats));
  router.Handle("GET", "/api/ring", bind(&Api::Ring));
  router.Handle("GET", "/metrics", bind(&Api::Metrics));
  router.Handle("GET", "/api/cluster", bind(&Api::Cluster));
  router.Handle("GET", "/dashboard", [this](http::Request&& req, http::Responder respond) {
    if (!Allowed(req, CacheService::Access::kDashboard, respond)) return;
    http::Response r = Text(200, std::string(DashboardHtml()));
    r.content_type = "text/html; charset=utf-8";
    respond(std::move(r));
  });
  router.Handle("GET", "/healthz", [this](http::Request&&, http::Responder respond) {
    if (!ready_.load(std::memory_order_acquire)) {
      return respond(Text(503, "starting: waiting for the cluster membership from etcd\n"));
    }
    respond(Text(200, "ok\n"));
  });
}

void Api::InstallMetricsOnly(http::Router& router) {
  router.Handle("GET", "/metrics", [this](http::Request&& req, http::Responder respond) {
    Metrics(std::move(req), std::move(respond));
  });
}

void Api::Get(http::Request&& req, http::Responder respond) {
  service_->Get(CallerOf(req), Param(req, "group"), Param(req, "key"),
                [respond = std::move(respond)](absl::StatusOr<CachedValue> r) mutable {
                  if (r.ok()) {
                    http::Response resp = Text(200, "value=" + r->data + "\n");
                    resp.content_type = "application/octet-stream";
                    return respond(std::move(resp));
                  }
                  // A miss is the seed's 404 text; an unknown group says which.
                  if (absl::IsNotFound(r.status()) && !CacheService::IsNoSuchGroup(r.status())) {
                    return respond(Text(404, "key not found\n"));
                  }
                  respond(ErrorResponse(r.status()));
                });
}

void Api::Set(http::Request&& req, http::Responder respond) {
  auto Reject = [this](http::Responder& respond, std::string text) {
    service_->CountRejected(Protocol::kHttp, CacheService::Op::kSet);
    respond(Text(400, std::move(text)));
  };
  // The role first: a caller without it hears 401/403 whatever its form holds.
  const Caller caller = CallerOf(req);
  if (absl::Status s = service_->Authorize(caller, CacheService::Access::kSet); !s.ok()) {
    service_->CountRejected(Protocol::kHttp, CacheService::Op::kSet);
    return respond(ErrorResponse(s));
  }
  // The seed's form: `expire` in minutes (1..4320), with its error texts; `ttl_ms` (an
  // extension, for short TTLs in tests and tools) replaces it when given.
  int64_t ttl_ms = 0;
  if (const std::string_view ttl = Param(req, "ttl_ms"); !ttl.empty()) {
    if (!ParseInt(ttl, &ttl_ms) || ttl_ms < 1 || ttl_ms > kMaxExpireMinutes * 60'000) {
      return Reject(respond, "ttl_ms must be an integer between 1 and 259200000 (3 days)\n");
    }
  } else {
    int64_t minutes = 0;
    if (!ParseInt(Param(req, "expire"), &minutes)) {
      return Reject(respond, "Please set expire time correctly, unit: minutes\n");
    }
    if (minutes < 1 || minutes > kMaxExpireMinutes) {
      return Reject(respond, "Expire time error, unit is minutes, max 4320 minutes (3 days)\n");
    }
    ttl_ms = minutes * 60'000;
  }
  const std::string_view hot_text = Param(req, "hot");
  if (!hot_text.empty() && hot_text != "true" && hot_text != "false") {
    return Reject(respond, "Invalid Param \"hot\"\n");
  }
  service_->Set(caller, Param(req, "group"), Param(req, "key"), Param(req, "value"), ttl_ms,
                hot_text == "true", [respond = std::move(respond)](absl::Status s) mutable {
                  respond(s.ok() ? Text(200, "done\n") : ErrorResponse(s));
                });
}

void Api::Delete(http::Request&& req, http::Responder respond) {
  service_->Delete(CallerOf(req), Param(req, "group"), Param(req, "key"),
                   [respond = std::move(respond)](absl::Status s) mutable {
                     respond(s.ok() ? Text(200, "done\n") : ErrorResponse(s));
                   });
}

void Api::SetPeer(http::Request&& req, http::Responder respond) {
  const std::string_view peer = Param(req, "peer");
  // Seed: a bare name is dialed as NAME:<--port>; addr=HOST:PORT (an extension) overrides it.
  const absl::Status s = service_->SetPeer(CallerOf(req), peer, Param(req, "addr"));
  respond(s.ok() ? Text(200, "set peer " + std::string(peer) + " successful\n") : ErrorResponse(s));
}

void Api::Stats(http::Request&& req, http::Responder respond) {
  if (!Allowed(req, CacheService::Access::kRead, respond)) return;
  absl::StatusOr<Group*> found = service_->FindGroup(Param(req, "group"));
  if (!found.ok()) return respond(ErrorResponse(found.status()));
  Group* group = *found;
  const GroupStats s = group->stats();
  nlohmann::json members = nlohmann::json::array();
  for (const auto& [name, address] : cluster_->Members()) members.push_back(name);
  respond(Json({{"node", config_->name},
                {"group", group->name()},
                {"items", s.main.items},
                {"bytes", s.main.bytes},
                {"hits", s.hits},
                {"misses", s.misses},
                {"evictions", s.main.evictions + s.hot.evictions},
                {"expirations", s.main.expirations + s.hot.expirations},
                {"hot_items", s.hot.items},
                {"hot_bytes", s.hot.bytes},
                {"loads", s.loads},
                {"load_errors", s.load_errors},
                {"deduplicated_loads", s.deduplicated},
                {"peer_gets", s.peer_gets},
                {"peer_errors", s.peer_errors},
                {"replica_pushes", s.replication.pushes},
                {"replica_failures", s.replication.failures},
                {"replica_invalidations", s.replication.invalidations},
                {"replicas_applied", s.replication.applied},
                {"replicas_stale", s.replication.stale},
                {"capacity_bytes", group->store().main().capacity()},
                {"hot_capacity_bytes", group->store().hot().capacity()},
                {"members", members}}));
}

void Api::Ring(http::Request&& req, http::Responder respond) {
  if (!Allowed(req, CacheService::Access::kRead, respond)) return;
  nlohmann::json members = nlohmann::json::array();
  for (const auto& [name, address] : cluster_->Members()) {
    members.push_back({{"name", name}, {"grpc", address}});
  }
  nlohmann::json j = {{"self", cluster_->self()},
                      {"generation", cluster_->generation()},
                      {"vnodes", config_->vnodes},
                      {"members", members}};
  const std::string* key = req.Param("key");
  if (key != nullptr && !key->empty()) {
    auto owner = cluster_->OwnerOf(*key);
    j["key"] = *key;
    j["owner"] = owner ? nlohmann::json(*owner) : nlohmann::json(nullptr);
  }
  respond(Json(j));
}

void Api::Metrics(http::Request&& req, http::Responder respond) {
  if (!Allowed(req, CacheService::Access::kMetrics, respond)) return;
  http::Response r = Text(200, metrics_->Render());
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  respond(std::move(r));
}

}  // namespace nexus

namespace nexus {

// Answers once every member has answered or failed (each within kClusterFetchDeadline), so a
// dead member costs the dashboard one slow refresh, never a hang. The callbacks hold only the
// shared Gather, not the Api.
void Api::Cluster(http::Request&& req, http::Responder respond) {
  if (!Allowed(req, CacheService::Access::kClusterMetrics, respond)) return;
  struct Gather {
    absl::Mutex mu;
    nlohmann::json nodes = nlohmann::json::array();  // one slot per member, sorted by name
    size_t pending = 0;
    http::Responder respond;
    nlohmann::json head;
  };
  auto gather = std::make_shared<Gather>();
  std::vector<std::pair<size_t, std::string>> calls;  // (slot, member)
  for (const auto& [name, address] : cluster_->Members()) {
    nlohmann::json node = {{"name", name}, {"grpc", address}, {"self", name == cluster_->self()}};
    if (name == cluster_->self()) {
      node["ok"] = true;
      node["metrics"] = metrics_->Render();
    } else {
      calls.emplace_back(gather->nodes.size(), name);
    }
    gather->nodes.push_back(std::move(node));
  }
  gather->head = {{"self", cluster_->self()}, {"generation", cluster_->generation()}};
  gather->pending = calls.size();
  gather->respond = std::move(respond);
  auto finish = [](Gather& g) {
    nlohmann::json body = std::move(g.head);
    body["nodes"] = std::move(g.nodes);
    http::Responder respond = std::move(g.respond);
    respond(Json(body));
  };
  if (calls.empty()) return finish(*gather);
  for (const auto& call : calls) {
    const size_t slot = call.first;  // (clang 14 cannot capture a structured binding)
    cluster_->FetchMetrics(call.second, kClusterFetchDeadline,
                           [gather, slot, finish](absl::StatusOr<std::string> text) {
                             absl::MutexLock lock(&gather->mu);
                             nlohmann::json& node = gather->nodes[slot];
                             node["ok"] = text.ok();
                             if (text.ok()) {
                               node["metrics"] = std::move(*text);
                             } else {
                               node["error"] = std::string(text.status().message());
                             }
                             if (--gather->pending == 0) finish(*gather);
                           });
  }
}

}  // namespace nexus
