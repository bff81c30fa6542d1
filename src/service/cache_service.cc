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
                           metrics::Registry* metrics)
    : options_(std::move(options)), groups_(groups), cluster_(cluster) {
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
                                                std::string_view value, int64_t ttl_ms) const {
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  if (value.size() > options_.max_value_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("value longer than ", options_.max_value_bytes, " bytes"));
  }
  if (ttl_ms < 1 || ttl_ms > options_.max_ttl_ms) {
    return absl::InvalidArgumentError(
        absl::StrCat("the TTL must be between 1 ms and ", options_.max_ttl_ms, " ms"));
  }
  return FindGroup(group);
}

absl::Status CacheService::SetPeer(Protocol protocol, std::string_view name,
                                   std::string_view address) {
  Call call(this, protocol, Op::kSetPeer);
  if (name.empty()) {
    call.Finish(Outcome::kError);
    return absl::InvalidArgumentError("peer is not allow empty!");
  }
  if (name.find_first_of(",=/ ") != std::string_view::npos) {
    call.Finish(Outcome::kError);
    return absl::InvalidArgumentError("peer must be a node name (no ',', '=', '/' or spaces)");
  }
  // The seed dials a bare name as NAME:<its gRPC port>, as inside its docker network.
  cluster_->AddMember(std::string(name),
                      address.empty() ? absl::StrCat(std::string(name), ":", options_.grpc_port)
                                      : std::string(address));
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
