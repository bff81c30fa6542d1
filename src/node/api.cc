#include "node/api.h"

#include <unistd.h>

#include <charconv>
#include <fstream>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/synchronization/mutex.h"
#include "node/dashboard.h"

namespace nexus {

namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr int64_t kMaxExpireMinutes = 4320;
// /api/cluster waits this long for a member's metrics; the dashboard asks every second.
constexpr std::chrono::milliseconds kClusterFetchDeadline{800};

http::Response Text(int status, std::string body) {
  http::Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

http::Response Json(const nlohmann::json& j) {
  http::Response r;
  r.content_type = "application/json";
  r.body = j.dump() + "\n";
  return r;
}

http::Response ErrorResponse(const absl::Status& s) {
  return Text(http::HttpStatusFor(s), std::string(s.message()) + "\n");
}

// Parses a decimal integer; false on anything else (sign allowed, no spaces).
bool ParseInt(const std::string& text, int64_t* out) {
  const char* begin = text.data();
  const char* end = begin + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, *out);
  return ec == std::errc() && ptr == end && begin != end;
}

}  // namespace

Api::Api(const Config* config, GroupRegistry* groups, RingPeerPicker* picker,
         metrics::Registry* metrics)
    : config_(config), groups_(groups), picker_(picker), metrics_(metrics) {
  requests_ = metrics_->AddCounter("nexuscache_requests_total",
                                   "HTTP API requests by operation and outcome.", {"op", "status"});
  duration_ = metrics_->AddHistogram("nexuscache_request_duration_seconds",
                                     "HTTP API request latency in seconds.", {"op"},
                                     metrics::Registry::LatencyBounds());
  auto op = [this](const std::string& name, bool reads) {
    OpMetrics m;
    m.hit = requests_->With({name, reads ? "hit" : "ok"});
    if (reads) m.miss = requests_->With({name, "miss"});
    m.error = requests_->With({name, "error"});
    m.duration = duration_->With({name});
    return m;
  };
  get_ = op("get", true);
  set_ = op("set", false);
  delete_ = op("delete", false);
  setpeer_ = op("setpeer", false);
  RegisterGauges(groups, picker);
}

void Api::RegisterGauges(GroupRegistry* groups, RingPeerPicker* picker) {
  using metrics::Registry;
  // Sums one field over every group, per cache.
  auto per_cache = [groups](uint64_t CacheStats::*field) {
    return [groups, field] {
      double main = 0, hot = 0;
      for (Group* g : groups->All()) {
        const GroupStats s = g->stats();
        main += static_cast<double>(s.main.*field);
        hot += static_cast<double>(s.hot.*field);
      }
      return Registry::Samples{{{"main"}, main}, {{"hot"}, hot}};
    };
  };
  auto sum_groups = [groups](uint64_t GroupStats::*field) {
    return [groups, field] {
      double total = 0;
      for (Group* g : groups->All()) total += static_cast<double>(g->stats().*field);
      return total;
    };
  };
  metrics_->AddCollector("nexuscache_cache_size_bytes",
                         "Bytes held by each cache (entries, their overhead and the index).",
                         "gauge", {"cache"}, per_cache(&CacheStats::bytes));
  metrics_->AddCollector("nexuscache_cache_items", "Entries held by each cache.", "gauge",
                         {"cache"}, per_cache(&CacheStats::items));
  metrics_->AddCollector("nexuscache_cache_evictions_total",
                         "Entries dropped to stay within the byte budget.", "counter", {"cache"},
                         per_cache(&CacheStats::evictions));
  metrics_->AddCollector("nexuscache_cache_expirations_total",
                         "Entries dropped because their deadline passed.", "counter", {"cache"},
                         per_cache(&CacheStats::expirations));
  metrics_->AddCounterFn("nexuscache_cache_hits_total",
                         "Gets answered from this node's caches.", sum_groups(&GroupStats::hits));
  metrics_->AddCounterFn("nexuscache_cache_misses_total",
                         "Gets this node had to load or forward.", sum_groups(&GroupStats::misses));
  metrics_->AddCounterFn("nexuscache_loads_total", "Loader (origin) calls made by this node.",
                         sum_groups(&GroupStats::loads));
  metrics_->AddCounterFn("nexuscache_loads_deduplicated_total",
                         "Gets that joined a load or peer fetch already in flight.",
                         sum_groups(&GroupStats::deduplicated));
  metrics_->AddCounterFn("nexuscache_load_errors_total",
                         "Loader calls that failed (not found excluded).",
                         sum_groups(&GroupStats::load_errors));
  metrics_->AddGauge("nexuscache_ring_members", "Members of this node's hash ring.",
                     [picker] { return static_cast<double>(picker->Members().size()); });
  metrics_->AddGauge("nexuscache_ring_generation",
                     "Generation of this node's hash ring (bumped on every membership change).",
                     [picker] { return static_cast<double>(picker->generation()); });
  metrics_->AddCounterFn("nexuscache_hot_replications_total",
                         "Hot-key changes this node pushed to other nodes (one per node).",
                         sum_groups(&GroupStats::replica_pushes));
  metrics_->AddCounterFn("nexuscache_hot_replication_failures_total",
                         "Hot-key pushes that failed or timed out (the write was still acked).",
                         sum_groups(&GroupStats::replica_failures));
  metrics_->AddCounterFn("nexuscache_hot_invalidations_total",
                         "Pushes that removed a hot key's replicas (deleted, or set not hot).",
                         sum_groups(&GroupStats::replica_invalidations));
  metrics_->AddCounterFn("nexuscache_hot_replicas_applied_total",
                         "Hot-key changes received from their owner and applied here.",
                         sum_groups(&GroupStats::replicas_applied));
  metrics_->AddGauge("nexuscache_hot_replicas", "Entries held in the hot caches of this node.",
                     [groups] {
                       double total = 0;
                       for (Group* g : groups->All()) total += g->hot_cache().items();
                       return total;
                     });
  metrics_->AddCollector(
      "nexuscache_peer_requests_total",
      "Requests this node sent to other nodes (HTTP forwarding or gRPC), by peer, operation and outcome.",
      "counter", {"peer", "op", "status"}, [picker] {
        Registry::Samples out;
        for (const auto& c : picker->CallCounts()) {
          out.push_back({{c.peer, c.op, c.status}, static_cast<double>(c.count)});
        }
        return out;
      });
  metrics_->AddGauge("nexuscache_process_resident_memory_bytes",
                     "Resident memory of this process.", [] {
                       std::ifstream statm("/proc/self/statm");
                       double size = 0, resident = 0;
                       statm >> size >> resident;
                       return resident * static_cast<double>(sysconf(_SC_PAGESIZE));
                     });
}

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
  router.Handle("GET", "/dashboard", [](http::Request&&, http::Responder respond) {
    http::Response r = Text(200, std::string(DashboardHtml()));
    r.content_type = "text/html; charset=utf-8";
    respond(std::move(r));
  });
  router.Handle("GET", "/healthz", [](http::Request&&, http::Responder respond) {
    respond(Text(200, "ok\n"));
  });
}

void Api::InstallMetricsOnly(http::Router& router) {
  router.Handle("GET", "/metrics", [this](http::Request&& req, http::Responder respond) {
    Metrics(std::move(req), std::move(respond));
  });
}

Group* Api::GroupFor(const http::Request& req, std::string* name) {
  const std::string* g = req.Param("group");
  *name = (g == nullptr || g->empty()) ? config_->group : *g;
  return groups_->Find(*name);
}

bool Api::WaitIdle(std::chrono::milliseconds timeout) {
  const auto give_up = SteadyClock::now() + timeout;
  while (in_flight_.load(std::memory_order_acquire) > 0) {
    if (SteadyClock::now() >= give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

void Api::Finish(const OpMetrics& op, Outcome outcome, SteadyClock::time_point start,
                 http::Responder& respond, http::Response response) {
  switch (outcome) {
    case Outcome::kHit:
    case Outcome::kOk:
      op.hit->Inc();
      break;
    case Outcome::kMiss:
      op.miss->Inc();
      break;
    case Outcome::kError:
      op.error->Inc();
      break;
  }
  op.duration->Observe(std::chrono::duration<double>(SteadyClock::now() - start).count());
  respond(std::move(response));
  in_flight_.fetch_sub(1, std::memory_order_release);
}

void Api::Get(http::Request&& req, http::Responder respond) {
  Begin();
  const auto start = SteadyClock::now();
  const std::string* key = req.Param("key");
  if (key == nullptr || key->empty()) {
    return Finish(get_, Outcome::kError, start, respond, Text(400, "key is required\n"));
  }
  if (key->size() > config_->max_key_bytes) {
    return Finish(get_, Outcome::kError, start, respond,
                  Text(413, "key longer than " + std::to_string(config_->max_key_bytes) +
                                " bytes\n"));
  }
  std::string group_name;
  Group* group = GroupFor(req, &group_name);
  if (group == nullptr) {
    return Finish(get_, Outcome::kError, start, respond, Text(404, "no such group: " + group_name + "\n"));
  }
  group->Get(*key, [this, start, respond = std::move(respond)](
                       absl::StatusOr<CachedValue> r) mutable {
    if (r.ok()) {
      http::Response resp = Text(200, "value=" + r->data + "\n");
      resp.content_type = "application/octet-stream";
      return Finish(get_, Outcome::kHit, start, respond, std::move(resp));
    }
    if (absl::IsNotFound(r.status())) {
      return Finish(get_, Outcome::kMiss, start, respond, Text(404, "key not found\n"));
    }
    Finish(get_, Outcome::kError, start, respond, ErrorResponse(r.status()));
  });
}

void Api::Set(http::Request&& req, http::Responder respond) {
  Begin();
  const auto start = SteadyClock::now();
  auto bad = [&](int code, std::string body) {
    Finish(set_, Outcome::kError, start, respond, Text(code, std::move(body)));
  };
  // `ttl_ms` (an extension, for short TTLs in tests and tools) replaces `expire` when given.
  int64_t ttl_ms = 0;
  if (const std::string* ttl = req.Param("ttl_ms"); ttl != nullptr && !ttl->empty()) {
    if (!ParseInt(*ttl, &ttl_ms) || ttl_ms < 1 || ttl_ms > kMaxExpireMinutes * 60'000) {
      return bad(400, "ttl_ms must be an integer between 1 and 259200000 (3 days)\n");
    }
  } else {
    const std::string* expire = req.Param("expire");
    int64_t minutes = 0;
    if (expire == nullptr || !ParseInt(*expire, &minutes)) {
      return bad(400, "Please set expire time correctly, unit: minutes\n");
    }
    if (minutes < 1 || minutes > kMaxExpireMinutes) {
      return bad(400, "Expire time error, unit is minutes, max 4320 minutes (3 days)\n");
    }
    ttl_ms = minutes * 60'000;
  }
  const std::string* hot_text = req.Param("hot");
  bool hot = false;
  if (hot_text != nullptr && !hot_text->empty()) {
    if (*hot_text == "true") {
      hot = true;
    } else if (*hot_text != "false") {
      return bad(400, "Invalid Param \"hot\"\n");
    }
  }
  const std::string* key = req.Param("key");
  if (key == nullptr || key->empty()) return bad(400, "key is required\n");
  if (key->size() > config_->max_key_bytes) {
    return bad(413, "key longer than " + std::to_string(config_->max_key_bytes) + " bytes\n");
  }
  const std::string* value = req.Param("value");
  const std::string empty;
  if (value == nullptr) value = &empty;
  if (value->size() > config_->max_value_bytes) {
    return bad(413, "value longer than " + std::to_string(config_->max_value_bytes) + " bytes\n");
  }
  std::string group_name;
  Group* group = GroupFor(req, &group_name);
  if (group == nullptr) return bad(404, "no such group: " + group_name + "\n");
  group->Set(*key, *value, ttl_ms, hot,
             [this, start, respond = std::move(respond)](absl::Status s) mutable {
               if (s.ok()) return Finish(set_, Outcome::kOk, start, respond, Text(200, "done\n"));
               Finish(set_, Outcome::kError, start, respond, ErrorResponse(s));
             });
}

void Api::Delete(http::Request&& req, http::Responder respond) {
  Begin();
  const auto start = SteadyClock::now();
  const std::string* key = req.Param("key");
  if (key == nullptr || key->empty()) {
    return Finish(delete_, Outcome::kError, start, respond, Text(400, "key is required\n"));
  }
  std::string group_name;
  Group* group = GroupFor(req, &group_name);
  if (group == nullptr) {
    return Finish(delete_, Outcome::kError, start, respond,
                  Text(404, "no such group: " + group_name + "\n"));
  }
  group->Delete(*key, [this, start, respond = std::move(respond)](absl::Status s) mutable {
    if (s.ok()) return Finish(delete_, Outcome::kOk, start, respond, Text(200, "done\n"));
    Finish(delete_, Outcome::kError, start, respond, ErrorResponse(s));
  });
}

void Api::SetPeer(http::Request&& req, http::Responder respond) {
  Begin();
  const auto start = SteadyClock::now();
  const std::string* peer = req.Param("peer");
  if (peer == nullptr || peer->empty()) {
    return Finish(setpeer_, Outcome::kError, start, respond, Text(400, "peer is not allow empty!\n"));
  }
  if (peer->find_first_of(",=/ ") != std::string::npos) {
    return Finish(setpeer_, Outcome::kError, start, respond,
                  Text(400, "peer must be a node name (no ',', '=', '/' or spaces)\n"));
  }
  // Seed: a bare name is dialed as NAME:<--port>, as inside its docker network. An explicit
  // addr=HOST:PORT (an extension) overrides that.
  const std::string* addr = req.Param("addr");
  const std::string address = (addr != nullptr && !addr->empty())
                                  ? *addr
                                  : *peer + ":" + std::to_string(config_->grpc_port);
  picker_->AddMember(*peer, address);
  Finish(setpeer_, Outcome::kOk, start, respond, Text(200, "set peer " + *peer + " successful\n"));
}

void Api::Stats(http::Request&& req, http::Responder respond) {
  std::string group_name;
  Group* group = GroupFor(req, &group_name);
  if (group == nullptr) return respond(Text(404, "no such group: " + group_name + "\n"));
  const GroupStats s = group->stats();
  nlohmann::json members = nlohmann::json::array();
  for (const auto& [name, address] : picker_->Members()) members.push_back(name);
  respond(Json({{"node", config_->name},
                {"group", group_name},
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
                {"replica_pushes", s.replica_pushes},
                {"replica_failures", s.replica_failures},
                {"replica_invalidations", s.replica_invalidations},
                {"replicas_applied", s.replicas_applied},
                {"replicas_stale", s.replicas_stale},
                {"capacity_bytes", group->main_cache().capacity()},
                {"hot_capacity_bytes", group->hot_cache().capacity()},
                {"members", members}}));
}

void Api::Ring(http::Request&& req, http::Responder respond) {
  nlohmann::json members = nlohmann::json::array();
  for (const auto& [name, address] : picker_->Members()) {
    members.push_back({{"name", name}, {"grpc", address}});
  }
  nlohmann::json j = {{"self", picker_->self()},
                      {"generation", picker_->generation()},
                      {"vnodes", config_->vnodes},
                      {"members", members}};
  const std::string* key = req.Param("key");
  if (key != nullptr && !key->empty()) {
    auto owner = picker_->OwnerOf(*key);
    j["key"] = *key;
    j["owner"] = owner ? nlohmann::json(*owner) : nlohmann::json(nullptr);
  }
  respond(Json(j));
}

void Api::Metrics(http::Request&&, http::Responder respond) {
  http::Response r = Text(200, metrics_->Render());
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  respond(std::move(r));
}

}  // namespace nexus

namespace nexus {

// Answers once every member has answered or failed (each within kClusterFetchDeadline), so a
// dead member costs the dashboard one slow refresh, never a hang. The callbacks hold only the
// shared Gather, not the Api.
void Api::Cluster(http::Request&&, http::Responder respond) {
  struct Gather {
    absl::Mutex mu;
    nlohmann::json nodes = nlohmann::json::array();  // one slot per member, sorted by name
    size_t pending = 0;
    http::Responder respond;
    nlohmann::json head;
  };
  std::map<std::string, std::shared_ptr<GrpcPeer>> clients;
  for (auto& client : picker_->OtherClients()) clients.emplace(client->name(), client);

  auto gather = std::make_shared<Gather>();
  std::vector<std::pair<size_t, std::shared_ptr<GrpcPeer>>> calls;
  for (const auto& [name, address] : picker_->Members()) {
    nlohmann::json node = {{"name", name}, {"grpc", address}, {"self", name == picker_->self()}};
    if (name == picker_->self()) {
      node["ok"] = true;
      node["metrics"] = metrics_->Render();
    } else if (auto it = clients.find(name); it != clients.end()) {
      calls.emplace_back(gather->nodes.size(), it->second);
    } else {
      node["ok"] = false;  // left the ring between the two snapshots above
      node["error"] = "no longer a member";
    }
    gather->nodes.push_back(std::move(node));
  }
  gather->head = {{"self", picker_->self()}, {"generation", picker_->generation()}};
  gather->pending = calls.size();
  gather->respond = std::move(respond);
  auto finish = [](Gather& g) {
    nlohmann::json body = std::move(g.head);
    body["nodes"] = std::move(g.nodes);
    http::Responder respond = std::move(g.respond);
    respond(Json(body));
  };
  if (calls.empty()) return finish(*gather);
  for (auto& [slot, client] : calls) {
    client->FetchMetrics(kClusterFetchDeadline,
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
