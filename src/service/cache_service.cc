#include "service/cache_service.h"

#include <thread>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace nexus {

namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr char kNoSuchGroupPayload[] = "nexus.service/no-such-group";

}  // namespace

std::string_view ProtocolName(Protocol protocol) {
  switch (protocol) {
    case Protocol::kHttp:
      return "http";
    case Protocol::kResp:
      return "resp";
    case Protocol::kMemcache:
      return "memcache";
  }
  return "unknown";
}

CacheService::Call::Call(CacheService* service, Protocol protocol, Op op)
    : service_(service), metrics_(&service->MetricsOf(protocol, op)), start_(SteadyClock::now()) {
  service_->in_flight_.fetch_add(1, std::memory_order_relaxed);
}

void CacheService::Call::Finish(Outcome outcome) {
  switch (outcome) {
    case Outcome::kHit:
    case Outcome::kOk:
      metrics_->ok->Inc();
      break;
    case Outcome::kMiss:
      metrics_->miss->Inc();
      break;
    case Outcome::kError:
      metrics_->error->Inc();
      break;
  }
  metrics_->duration->Observe(std::chrono::duration<double>(SteadyClock::now() - start_).count());
  std::exchange(service_, nullptr)->in_flight_.fetch_sub(1, std::memory_order_release);
}

CacheService::CacheService(CacheServiceOptions options, GroupRegistry* groups, ClusterView* cluster,
                           metrics::Registry* metrics, const auth::Authenticator* auth)
    : options_(std::move(options)), groups_(groups), cluster_(cluster), auth_(auth) {
  auto* refused = metrics->AddCounter(
      "nexuscache_auth_refused_total",
      "Client requests refused by authentication, by protocol and reason (missing: no token "
      "where one is needed; invalid: an unknown token; forbidden: a token whose role is too "
      "low).",
      {"protocol", "reason"});
  static constexpr const char* kReasons[3] = {"missing", "invalid", "forbidden"};
  for (int p = 0; p < kProtocols; ++p) {
    for (int r = 0; r < 3; ++r) {
      refused_[p][r] =
          refused->With({std::string(ProtocolName(static_cast<Protocol>(p))), kReasons[r]});
    }
  }
  auto* requests = metrics->AddCounter("nexuscache_requests_total",
                                       "Client requests by protocol, operation and outcome.",
                                       {"protocol", "op", "status"});
  auto* duration = metrics->AddHistogram("nexuscache_request_duration_seconds",
                                         "Client request latency in seconds.", {"protocol", "op"},
                                         metrics::Registry::LatencyBounds());
  static constexpr const char* kOpNames[kOps] = {"get", "set", "delete", "setpeer"};
  for (int p = 0; p < kProtocols; ++p) {
    const std::string protocol(ProtocolName(static_cast<Protocol>(p)));
    for (int o = 0; o < kOps; ++o) {
      const bool reads = o == static_cast<int>(Op::kGet);
      OpMetrics& m = ops_[p][o];
      m.ok = requests->With({protocol, kOpNames[o], reads ? "hit" : "ok"});
      if (reads) m.miss = requests->With({protocol, kOpNames[o], "miss"});
      m.error = requests->With({protocol, kOpNames[o], "error"});
      m.duration = duration->With({protocol, kOpNames[o]});
    }
  }
}

auth::Identity CacheService::Identify(std::optional<std::string_view> token) const {
  return auth_ == nullptr ? auth::Identity::Anonymous() : auth_->Check(token);
}

absl::Status CacheService::Check(const Caller& caller, auth::Role needed, std::string_view what) {
  if (!auth_enabled()) return absl::OkStatus();
  absl::Status s = auth::Authorize(caller.identity, needed, what);
  if (!s.ok()) {
    const int reason = caller.identity.state == auth::Identity::State::kInvalid ? 1
                       : absl::IsPermissionDenied(s)                            ? 2
                                                                                : 0;
    refused_[static_cast<int>(caller.protocol)][reason]->Inc();
  }
  return s;
}

absl::Status CacheService::Authorize(const Caller& caller, Access access) {
  switch (access) {
    case Access::kRead:
      return Check(caller, options_.auth_reads ? auth::Role::kRead : auth::Role::kNone, "read");
    case Access::kMetrics:
      return Check(caller, options_.auth_metrics ? auth::Role::kRead : auth::Role::kNone,
                   "read the metrics");
    case Access::kDashboard:
      return Check(caller, options_.auth_dashboard ? auth::Role::kRead : auth::Role::kNone,
                   "read the dashboard");
    case Access::kClusterMetrics:
      return Check(
          caller,
          options_.auth_dashboard || options_.auth_metrics ? auth::Role::kRead : auth::Role::kNone,
          "read the cluster's metrics");
    case Access::kSet:
      return auth_enabled() ? Check(caller, auth::Role::kWrite, "set") : absl::OkStatus();
  }
  return absl::InternalError("unknown access");
}

void CacheService::CountRejected(Protocol protocol, Op op) {
  Call(this, protocol, op).Finish(Outcome::kError);
}

bool CacheService::IsNoSuchGroup(const absl::Status& status) {
  return absl::IsNotFound(status) && status.GetPayload(kNoSuchGroupPayload).has_value();
}

absl::StatusOr<Group*> CacheService::FindGroup(std::string_view name) const {
  const std::string_view resolved = name.empty() ? std::string_view(options_.default_group) : name;
  if (Group* g = groups_->Find(resolved); g != nullptr) return g;
  absl::Status s = absl::NotFoundError(absl::StrCat("no such group: ", std::string(resolved)));
  s.SetPayload(kNoSuchGroupPayload, absl::Cord("1"));
  return s;
}

absl::Status CacheService::CheckKey(std::string_view key) const {
  if (key.empty()) return absl::InvalidArgumentError("key is required");
  if (key.size() > options_.max_key_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("key longer than ", options_.max_key_bytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Group*> CacheService::Resolve(std::string_view group, std::string_view key,
                                             bool check_length) const {
  if (check_length) {
    if (absl::Status s = CheckKey(key); !s.ok()) return s;
  } else if (key.empty()) {
    return absl::InvalidArgumentError("key is required");
  }
  return FindGroup(group);
}

absl::StatusOr<Group*> CacheService::ResolveSet(std::string_view group, std::string_view key,
                                                std::string_view value, Expiry expiry) const {
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  if (value.size() > options_.max_value_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("value longer than ", options_.max_value_bytes, " bytes"));
  }
  if (!expiry.is_ttl()) {
    if (expiry.deadline <= 0) return absl::InvalidArgumentError("invalid expire time");
  } else if (expiry.ttl_ms < 1 || expiry.ttl_ms > options_.max_ttl_ms) {
    return absl::InvalidArgumentError(
        absl::StrCat("the TTL must be between 1 ms and ", options_.max_ttl_ms, " ms"));
  }
  return FindGroup(group);
}

absl::Status CacheService::SetPeer(const Caller& caller, std::string_view name,
                                   std::string_view address) {
  Call call(this, caller.protocol, Op::kSetPeer);
  auto fail = [&call](absl::Status s) {
    call.Finish(Outcome::kError);
    return s;
  };
  if (auth_enabled()) {
    if (absl::Status s = Check(caller, auth::Role::kAdmin, "setpeer"); !s.ok()) return fail(s);
  }
  if (name.empty()) return fail(absl::InvalidArgumentError("peer is not allow empty!"));
  if (name.find_first_of(",=/ ") != std::string_view::npos) {
    return fail(
        absl::InvalidArgumentError("peer must be a node name (no ',', '=', '/' or spaces)"));
  }
  const std::optional<MemberInfo> known = cluster_->KnownMember(name);
  // Without tokens nobody is admin: only re-adding a member this node knows, where it knows it
  // (the seed's "re-add a recovered node"), never sending a member's keys somewhere new.
  if (!auth_enabled()) {
    if (!known) {
      return fail(absl::PermissionDeniedError(absl::StrCat(
          "peer ", std::string(name),
          " is not a known member (from --peer or etcd): adding a new member needs the admin "
          "role (--auth-token-file)")));
    }
    if (!address.empty() && address != known->grpc) {
      return fail(absl::PermissionDeniedError(
          absl::StrCat("peer ", std::string(name), " is known at ", known->grpc,
                       ": giving it a new address needs the admin role (--auth-token-file)")));
    }
  }
  if (known && (address.empty() || address == known->grpc)) {
    // Re-added where it was: with its HTTP address too (also a member that left, which the
    // ring no longer has).
    cluster_->AddMember(std::string(name), known->grpc, known->http);
  } else if (!address.empty()) {
    cluster_->AddMember(std::string(name), std::string(address));
  } else if (known) {
    cluster_->AddMember(std::string(name), known->grpc, known->http);
  } else {
    // The seed dials a bare name as NAME:<its gRPC port>, as inside its docker network.
    cluster_->AddMember(std::string(name),
                        absl::StrCat(std::string(name), ":", options_.grpc_port));
  }
  call.Finish(Outcome::kOk);
  return absl::OkStatus();
}

bool CacheService::WaitIdle(std::chrono::milliseconds timeout) {
  const auto give_up = SteadyClock::now() + timeout;
  while (in_flight_.load(std::memory_order_acquire) > 0) {
    if (SteadyClock::now() >= give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace nexus
