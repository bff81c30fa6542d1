#include "node/node.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <thread>
#include <tuple>
#include <utility>

#include "common/clock.h"
#include "group/group_metrics.h"
#include "http/client.h"
#include "node/loaders.h"
#include "peer/http_routes.h"

namespace nexus {

namespace {

// This run of the node, as the other members tell it from the previous one: start time and a
// random suffix.
std::string Incarnation() {
  char suffix[17];
  std::snprintf(
      suffix, sizeof(suffix), "%016llx",
      static_cast<unsigned long long>(std::random_device{}()) << 32 | std::random_device{}());
  return std::to_string(SystemClock::Get().NowMillis()) + "-" + suffix;
}

}  // namespace

struct Node::OriginRuntime {
  boost::asio::io_context ioc;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{ioc.get_executor()};
  http::Client client{ioc};
  std::thread thread{[this] { ioc.run(); }};

  ~OriginRuntime() {
    work.reset();
    ioc.stop();
    if (thread.joinable()) thread.join();
  }
};

Node::Node(Config config) : config_(std::move(config)) {
  RingPickerOptions ring_options;
  if (!config_.cluster_secret_file.empty()) {
    absl::StatusOr<std::unique_ptr<auth::ClusterSecret>> secret =
        auth::ClusterSecret::FromFile(config_.cluster_secret_file);
    if (secret.ok()) {
      cluster_secret_ = std::move(*secret);
      peer_traffic_.secret = cluster_secret_.get();
      ring_options.peer.cluster_secret = cluster_secret_->value();
    } else {
      init_error_ = secret.status();
    }
  }
  if (config_.cluster_tls() && init_error_.ok()) init_error_ = LoadClusterTls(&ring_options);
  if (init_error_.ok()) init_error_ = LoadEtcdCredentials();
  if (init_error_.ok() && !config_.http_tls_cert.empty()) {
    // Clients see this certificate; members (SNI tls::kClusterServerName) the cluster's. No
    // CA: clients are not asked for a certificate (members are, in the cluster's context).
    absl::StatusOr<std::shared_ptr<const tls::Context>> http =
        tls::Context::Create({.files = {.cert = config_.http_tls_cert, .key = config_.http_tls_key},
                              .cert_flag = "--http-tls-cert",
                              .key_flag = "--http-tls-key",
                              .require_client_certificate = false,
                              // clients: many connections, mostly idle
                              .release_idle_buffers = true,
                              .cluster = tls_server_,
                              .failures = &tls_failures_});
    if (http.ok()) {
      http_tls_ = *std::move(http);
    } else {
      init_error_ = http.status();
    }
  }
  ring_options.vnodes = config_.vnodes;
  ring_options.peer.deadline = config_.peer_timeout;
  ring_options.forward_over_http = config_.forward_over_http;
  picker_ = std::make_shared<RingPeerPicker>(config_.name, config_.SelfGrpcAddress(), ring_options);
  std::map<std::string, MemberInfo> members;
  for (const MemberInfo& p : config_.peers) members[p.name] = p;
  members[config_.name] = {.grpc = config_.SelfGrpcAddress()};
  picker_->SetMembers(members);

  std::shared_ptr<Loader> loader;
  if (config_.demo_data) {
    loader = MakeDemoLoader();
  } else if (!config_.origin.empty()) {
    origin_ = std::make_unique<OriginRuntime>();
    loader =
        std::make_shared<OriginLoader>(config_.origin, &origin_->client, config_.origin_timeout);
  }
  GroupOptions group;
  group.name = config_.group;
  group.cache_bytes = config_.cache_bytes;
  group.hot_cache_bytes = config_.hot_cache_bytes;
  group.default_ttl_ms = config_.default_ttl_ms;
  group.replicas = static_cast<size_t>(config_.replicas);
  group.write_quorum = static_cast<size_t>(config_.write_quorum);
  group.jitter = {.fraction = config_.ttl_jitter, .cap_ms = config_.ttl_jitter_cap_ms};
  group.handoff.rate_bytes = static_cast<int64_t>(config_.handoff_rate);
  if (!config_.etcd.empty()) {
    // A node that may have lost its lease has been (or is about to be) dropped from the
    // others' rings: they route its keys elsewhere, so a write it took as primary could be
    // lost or shadowed. It refuses them (503; with --replicas > 1 the client's node goes on to
    // the next holder) until it registers again. Reads go on.
    group.primary_check = [this] {
      const EtcdMembership* m = membership_ready_.load(std::memory_order_acquire);
      if (m != nullptr && m->HoldsLease()) return absl::OkStatus();
      return absl::UnavailableError(
          "node " + config_.name +
          " does not hold its etcd lease (etcd unreachable, or not registered yet): it takes "
          "no writes as a key's primary until it registers again");
    };
  }
  groups_.Add(std::make_unique<Group>(group, loader, picker_, &SystemClock::Get())).IgnoreError();

  owner_ = std::make_unique<OwnerService>(
      &groups_, &SystemClock::Get(),
      OwnerLimits{.max_key_bytes = config_.max_key_bytes,
                  .max_value_bytes = config_.max_value_bytes,
                  .max_version_skew_ms = config_.max_version_skew.count()});
  metrics_.AddCounterFn(
      "nexuscache_replica_versions_refused_total",
      "Replica changes refused because their version was drawn further ahead "
      "of this node's clock than --max-version-skew.",
      [owner = owner_.get()] { return static_cast<double>(owner->versions_refused()); });
  if (config_.auth_token_file.empty()) {
    auth_ = std::make_unique<auth::Authenticator>();
  } else if (absl::StatusOr<std::unique_ptr<auth::Authenticator>> a =
                 auth::Authenticator::FromFile(config_.auth_token_file);
             a.ok()) {
    auth_ = std::move(*a);
  } else if (init_error_.ok()) {
    init_error_ = a.status();
  }
  service_ =
      std::make_unique<CacheService>(CacheServiceOptions{.default_group = config_.group,
                                                         .max_key_bytes = config_.max_key_bytes,
                                                         .max_value_bytes = config_.max_value_bytes,
                                                         .grpc_port = config_.grpc_port,
                                                         .auth_reads = config_.auth_reads,
                                                         .auth_metrics = config_.auth_metrics,
                                                         .auth_dashboard = config_.auth_dashboard},
                                     &groups_, picker_.get(), &metrics_, auth_.get());
  if (auth_ != nullptr) {
    metrics_.AddCollector(
        "nexuscache_auth_tokens", "Client tokens loaded from --auth-token-file, by role.", "gauge",
        {"role"}, [auth = auth_.get()] {
          metrics::Registry::Samples out;
          for (auth::Role r : {auth::Role::kRead, auth::Role::kWrite, auth::Role::kAdmin}) {
            out.push_back({{std::string(auth::RoleName(r))}, static_cast<double>(auth->count(r))});
          }
          return out;
        });
    metrics_.AddCollector("nexuscache_auth_reloads_total",
                          "Reloads of --auth-token-file (SIGHUP) by result; a failed one keeps "
                          "the tokens before it.",
                          "counter", {"result"}, [auth = auth_.get()] {
                            return metrics::Registry::Samples{
                                {{"ok"}, static_cast<double>(auth->reloads())},
                                {{"error"}, static_cast<double>(auth->reload_failures())}};
                          });
  }
  api_ = std::make_unique<Api>(&config_, service_.get(), picker_.get(), &metrics_);
  ExportGroupMetrics(groups_, metrics_);
  picker_->ExportMetrics(metrics_);
  metrics::ExportProcessMetrics(metrics_);
  metrics_.AddGauge(
      "nexuscache_http_connections",
      "Open connections on the HTTP port (clients and peers forwarding) and the RESP port.",
      [this] {
        const http::Server* s = http_ready_.load(std::memory_order_acquire);
        return s == nullptr ? 0.0 : static_cast<double>(s->active_connections());
      });
  metrics_.AddCounterFn(
      "nexuscache_http_connections_refused_total",
      "Connections to the HTTP or RESP port closed at once because --max-connections were "
      "open.",
      [this] {
        const http::Server* s = http_ready_.load(std::memory_order_acquire);
        return s == nullptr ? 0.0 : static_cast<double>(s->refused_connections());
      });
  peer_traffic_.ExportMetrics(metrics_);
  metrics_.AddCollector(
      "nexuscache_tls_handshake_failures_total",
      "TLS handshakes of the cluster plane (--tls-*) that failed, by side (server: a connection "
      "to this node's HTTP port refused; client: this node's connection to a member) and reason "
      "(no_certificate, untrusted, expired, wrong_name, refused_by_peer, not_tls, other); the "
      "gRPC port's refusals count as server too.",
      "counter", {"side", "reason"}, [failures = &tls_failures_] {
        metrics::Registry::Samples out;
        for (tls::Side side : {tls::Side::kServer, tls::Side::kClient}) {
          for (int f = 0; f < static_cast<int>(tls::Failure::kCount); ++f) {
            out.push_back(
                {{side == tls::Side::kServer ? "server" : "client",
                  std::string(tls::FailureName(static_cast<tls::Failure>(f)))},
                 static_cast<double>(failures->count(side, static_cast<tls::Failure>(f)))});
          }
        }
        return out;
      });
}

Node::~Node() { Stop(); }

void Node::ReloadTokens() {
  if (auth_ == nullptr || !auth_->enabled()) {
    spdlog::info("auth: SIGHUP, but there is no --auth-token-file to read again");
    return;
  }
  if (absl::Status s = auth_->Reload(); !s.ok()) {
    spdlog::error("auth: cannot reload: {}; the tokens loaded before stay in force",
                  std::string(s.message()));
    return;
  }
  spdlog::info("auth: reloaded {} (read {}, write {}, admin {})", auth_->path(),
               auth_->count(auth::Role::kRead), auth_->count(auth::Role::kWrite),
               auth_->count(auth::Role::kAdmin));
}

void Node::MembersChanging() {
  // Reads check holders before the ring changes.
  for (Group* g : groups_.All()) g->handoff().RingChanging();
}

void Node::MembersChanged(const std::vector<RingPeerPicker::Joined>& joined) {
  for (const RingPeerPicker::Joined& member : joined) {
    for (Group* g : groups_.All()) {
      g->store().PushTo(member.client);
      // Back under the same name before its lease expired: the ring is unchanged, but the
      // member lost what it held.
      if (member.restarted) g->handoff().Resync(member.name);
    }
  }
  // Copies of other keys move to their new holders.
  for (Group* g : groups_.All()) g->handoff().RingChanged();
}

absl::Status Node::LoadClusterTls(RingPickerOptions* ring_options) {
  const tls::Files files{.cert = config_.tls_cert, .key = config_.tls_key, .ca = config_.tls_ca};
  absl::StatusOr<std::shared_ptr<const tls::Context>> server =
      tls::Context::Create({.files = files, .own_name = config_.name, .failures = &tls_failures_});
  if (!server.ok()) return server.status();
  absl::StatusOr<std::shared_ptr<const tls::Context>> client =
      tls::Context::Create({.side = tls::Side::kClient,
                            .files = files,
                            .own_name = config_.name,
                            .failures = &tls_failures_});
  if (!client.ok()) return client.status();
  absl::StatusOr<tls::Pem> pem = tls::Pem::Read(files);
  if (!pem.ok()) return pem.status();
  tls_server_ = *std::move(server);
  cluster_pem_ = *pem;
  ring_options->peer.tls = *std::move(pem);
  ring_options->peer.tls_context = *std::move(client);
  peer_traffic_.require_certificate = true;
  return absl::OkStatus();
}

absl::Status Node::LoadEtcdCredentials() {
  for (auto [flag, path, out] : {std::tuple<std::string_view, const std::string*, std::string*>{
                                     "--etcd-ca", &config_.etcd_ca, &etcd_credentials_.ca_pem},
                                 {"--etcd-cert", &config_.etcd_cert, &etcd_credentials_.cert_pem},
                                 {"--etcd-key", &config_.etcd_key, &etcd_credentials_.key_pem}}) {
    if (path->empty()) continue;
    absl::StatusOr<std::string> pem = tls::ReadPem(flag, *path);
    if (!pem.ok()) return pem.status();
    *out = *std::move(pem);
  }
  if (!config_.etcd_user.empty()) {
    std::ifstream in(config_.etcd_password_file);
    std::string password;
    if (!in || !std::getline(in, password)) {
      return absl::InvalidArgumentError("--etcd-password-file " + config_.etcd_password_file +
                                        ": cannot be read");
    }
    if (!password.empty() && password.back() == '\r') password.pop_back();
    if (password.empty()) {
      return absl::InvalidArgumentError("--etcd-password-file " + config_.etcd_password_file +
                                        ": the first line (the password) is empty");
    }
    etcd_credentials_.user = config_.etcd_user;
    etcd_credentials_.password = std::move(password);
  }
  return absl::OkStatus();
}

absl::Status Node::Start() {
  if (!init_error_.ok()) return init_error_;
  if (cluster_secret_ != nullptr) {
    spdlog::info(
        "auth: node-to-node calls carry the cluster secret from {}; calls without it "
        "are refused",
        config_.cluster_secret_file);
  }
  if (auth_->enabled()) {
    spdlog::info(
        "auth: {} tokens from {} (read {}, write {}, admin {}); reads {}, /metrics {}, "
        "dashboard {}",
        auth_->count(auth::Role::kRead) + auth_->count(auth::Role::kWrite) +
            auth_->count(auth::Role::kAdmin),
        auth_->path(), auth_->count(auth::Role::kRead), auth_->count(auth::Role::kWrite),
        auth_->count(auth::Role::kAdmin), config_.auth_reads ? "need a token" : "open",
        config_.auth_metrics ? "needs a token" : "open",
        config_.auth_dashboard ? "needs a token" : "open");
  }
  if (http_tls_ != nullptr) {
    spdlog::info("tls: clients may use TLS on the HTTP port ({}){}", config_.http_tls_cert,
                 config_.http_tls_only ? "; plaintext client requests are refused" : "");
  }
  if (config_.cluster_tls()) {
    spdlog::info(
        "tls: node-to-node calls use mutual TLS ({}; CA {}); peer calls without a cluster "
        "certificate are refused",
        config_.tls_cert, config_.tls_ca);
  }
  grpc_ = std::make_unique<PeerServer>(
      owner_.get(), PeerServerOptions{.address = config_.bind_address,
                                      .port = config_.grpc_port,
                                      .node_name = config_.name,
                                      .metrics_text = [this] { return metrics_.Render(); },
                                      .traffic = &peer_traffic_,
                                      .tls = cluster_pem_,
                                      .tls_verifier = tls_server_});
  if (absl::Status s = grpc_->Start(); !s.ok()) return s;

  auto router = std::make_shared<http::Router>();
  api_->Install(*router);
  InstallPeerRoutes(*router, owner_.get(), &peer_traffic_);
  http::ServerOptions http_options;
  http_options.address = config_.bind_address;
  http_options.port = config_.http_port;
  http_options.threads = config_.threads;
  http_options.max_connections = config_.max_connections;
  http_options.tls = http_tls_ != nullptr ? http_tls_ : tls_server_;
  if (config_.http_tls_only) {
    router->set_guard([](const http::Request& req) -> std::optional<http::Response> {
      // (/peer/v1 has the cluster plane's own authentication; /healthz says nothing secret and
      // is what plain probes ask.)
      if (req.tls || req.path.rfind("/peer/v1/", 0) == 0 || req.path == "/healthz") {
        return std::nullopt;
      }
      return http::Text(400,
                        "this port takes client requests over TLS only (--http-tls-only): use "
                        "https://\n");
    });
  }
  // Room for the largest value plus the form encoding around it (up to 3 bytes per byte).
  http_options.max_body_bytes = config_.max_value_bytes * 3 + config_.max_key_bytes * 3 + 4096;
  http_ = std::make_unique<http::Server>(http_options, router);
  if (config_.resp_port) {
    resp_api_ = std::make_shared<RespApi>(
        RespApiOptions{.max_ttl_ms = config_.max_ttl.count(), .port = *config_.resp_port},
        service_.get(), picker_.get(), &SystemClock::Get());
    resp::ConnectionOptions resp_options;
    // An argument longer than any key or value cannot be a valid one: refused as it arrives.
    resp_options.limits.max_bulk_bytes = std::max(config_.max_value_bytes, config_.max_key_bytes);
    resp_options.limits.max_command_bytes =
        std::max<size_t>(64 << 20, 2 * config_.max_value_bytes + (64 << 10));
    resp_options.tls = http_tls_;  // the client-facing certificate (clients need none)
    absl::StatusOr<uint16_t> bound =
        http_->Listen(config_.bind_address, *config_.resp_port,
                      resp::RespConnections(std::move(resp_options), resp_api_));
    if (!bound.ok()) {
      grpc_->Stop(std::chrono::milliseconds(0));
      return bound.status();
    }
  }
  if (absl::Status s = http_->Start(); !s.ok()) {
    grpc_->Stop(std::chrono::milliseconds(0));
    return s;
  }
  http_ready_.store(http_.get(), std::memory_order_release);

  if (config_.metrics_port) {
    auto metrics_router = std::make_shared<http::Router>();
    api_->InstallMetricsOnly(*metrics_router);
    http::ServerOptions m;
    m.address = config_.bind_address;
    m.port = *config_.metrics_port;
    m.threads = 1;
    metrics_http_ = std::make_unique<http::Server>(m, metrics_router);
    if (absl::Status s = metrics_http_->Start(); !s.ok()) {
      http_->Stop(std::chrono::milliseconds(0));
      grpc_->Stop(std::chrono::milliseconds(0));
      return s;
    }
  }

  std::vector<ShardedCache*> caches;
  for (Group* g : groups_.All()) {
    caches.push_back(&g->store().main());
    caches.push_back(&g->store().hot());
  }
  sweeper_ = std::make_unique<ExpirySweeper>(caches);
  sweeper_->Start();
  // Before membership: the ring as it is now is the one copies are placed by.
  for (Group* g : groups_.All()) g->handoff().Start();
  picker_->set_observer(this);

  if (!config_.etcd.empty()) {
    EtcdMembershipOptions m;
    m.endpoints = config_.etcd;
    m.lease_ttl_seconds = config_.lease_ttl_seconds;
    m.credentials = etcd_credentials_;
    m.self = {.name = config_.name,
              .grpc = config_.SelfGrpcAddress(),
              .http = config_.SelfHttpAddress(http_->port()),
              .incarnation = Incarnation()};
    // Back after the lease expired: the others dropped this node and wrote its keys elsewhere.
    m.on_reregistering = [groups = &groups_] {
      for (Group* g : groups->All()) g->handoff().Rejoining();
    };
    m.on_reregistered = [groups = &groups_] {
      for (Group* g : groups->All()) g->handoff().Rejoined();
    };
    api_->SetReady(false);
    membership_ = std::make_unique<EtcdMembership>(
        m, [picker = picker_, groups = &groups_, api = api_.get(), self = config_.name,
            self_address = config_.SelfGrpcAddress(),
            first = std::make_shared<bool>(true)](const std::map<std::string, MemberInfo>& nodes) {
          std::map<std::string, MemberInfo> members;
          for (const auto& [name, info] : nodes) members[name] = info;
          // This node serves its own keys even while etcd has not (re)listed it.
          members[self] = {.grpc = self_address};
          picker->SetMembers(members);  // (MembersChanging, MembersChanged)
          // Just started: the copies this node holds are with the others until handed over.
          if (std::exchange(*first, false)) {
            for (Group* g : groups->All()) g->handoff().Rejoined();
          }
          api->SetReady(true);
        });
    membership_ready_.store(membership_.get(), std::memory_order_release);
    membership_->Start();
    // Serving before the first read of the membership would take every key for this node's
    // own; a bounded wait, then (etcd unreachable) serve alone with the ring it has.
    const auto ready_by = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (membership_->members().empty() && std::chrono::steady_clock::now() < ready_by) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    api_->SetReady(true);
  }
  started_ = true;

  std::string members;
  for (const auto& [name, address] : picker_->Members()) {
    members += (members.empty() ? "" : ", ") + name + "=" + address;
  }
  spdlog::info(
      "nexuscache {} serving group '{}': http :{} grpc :{}{}{} members [{}]{} loader {}",
      config_.name, config_.group, http_->port(), grpc_->port(),
      config_.resp_port ? " resp :" + std::to_string(*config_.resp_port) : "",
      config_.metrics_port ? " metrics :" + std::to_string(*config_.metrics_port) : "", members,
      config_.etcd.empty() ? "" : " (etcd: live membership)",
      config_.demo_data ? "demo-data" : (config_.origin.empty() ? "none" : config_.origin));
  return absl::OkStatus();
}

void Node::Stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  spdlog::info("nexuscache {} stopping (grace {} ms)", config_.name,
               config_.shutdown_grace.count());
  if (membership_) Leave();
  // No more walks: their sends need the servers stopped below.
  for (Group* g : groups_.All()) g->handoff().Stop();
  if (metrics_http_) metrics_http_->Stop(std::chrono::milliseconds(0));
  http_->Stop(config_.shutdown_grace);
  // Requests whose connection was closed after the grace may still wait on a peer or the
  // origin; those calls have deadlines, so this wait is bounded, and afterwards nothing
  // holds a pointer into the groups or the Api.
  const auto deadline = std::max(config_.peer_timeout, config_.origin_timeout);
  if (!service_->WaitIdle(deadline + std::chrono::milliseconds(1000))) {
    spdlog::warn("nexuscache {}: requests still in flight after their deadlines", config_.name);
  }
  grpc_->Stop(std::chrono::milliseconds(1000));
  sweeper_->Stop();
  origin_.reset();
  spdlog::info("nexuscache {} stopped", config_.name);
}

void Node::Leave() {
  const auto start = std::chrono::steady_clock::now();
  const auto left = [&] {
    return std::max(std::chrono::milliseconds(0),
                    config_.drain_timeout - std::chrono::duration_cast<std::chrono::milliseconds>(
                                                std::chrono::steady_clock::now() - start));
  };
  const std::shared_ptr<const RingSnapshot> after = picker_->RingWithout(config_.name);
  const bool drain = config_.drain_timeout.count() > 0 && !after->empty();
  // While still a member (and serving), hand every copy to the members that hold it once this
  // node is gone; then leave (revokes the lease) so peers route elsewhere.
  std::vector<DrainResult> first;
  if (drain) {
    for (Group* g : groups_.All()) first.push_back(g->handoff().Drain(after, left()));
  }
  membership_->Stop();
  // Gone from the others' rings: their writes go to the other holders now.
  for (Group* g : groups_.All()) g->StopServingPeerReads();
  if (!drain) return;
  // Writes that reached this node during the drain, or from members that had not yet seen it
  // leave, go out in a second, short pass.
  std::this_thread::sleep_for(std::min(left(), std::chrono::milliseconds(250)));
  size_t i = 0;
  for (Group* g : groups_.All()) {
    const DrainResult& one = first[i++];
    // (All of them again if the first pass ran out of time or gave way before the end.)
    const DrainResult two = g->handoff().Drain(after, left(), one.complete ? one.watermark : 0);
    spdlog::info(
        "nexuscache {}: handed {} copies of group {} to their next holders before leaving "
        "({} failed{})",
        config_.name, one.keys_sent + two.keys_sent, g->name(),
        one.send_failures + two.send_failures,
        one.complete && two.complete ? "" : "; --drain-timeout ran out first");
  }
}

uint16_t Node::http_port() const { return http_ ? http_->port() : 0; }
uint16_t Node::grpc_port() const { return grpc_ ? grpc_->port() : 0; }

}  // namespace nexus
