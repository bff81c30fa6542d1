// CacheService: a node's client operations, whatever protocol carried them (the seed's HTTP API
// today; RESP and the memcached protocol next). It validates against the node's limits,
// resolves the default group, counts every operation by protocol, operation and outcome with
// its latency, and tracks the operations in flight for shutdown. A protocol front only decodes
// a request, calls here and encodes the result: the error texts come from here, and each
// front maps a status to its own codes in one place.
//
// Operations and their errors (absl::Status, message texts are the seed's where it has one):
//   Get     InvalidArgument "key is required"; ResourceExhausted "key longer than N bytes";
//           NotFound "no such group: G" (IsNoSuchGroup; any other NotFound is a miss); the
//           group's errors (a peer down: Unavailable; the origin failing: its error).
//   Set     the same for the key, ResourceExhausted "value longer than N bytes",
//           InvalidArgument for a TTL outside 1 ms .. max_ttl_ms (a fixed deadline, exact
//           and without jitter, is the front's to bound: RESP's EX/PX/EXAT/PXAT).
//   Delete  as Get.
//   SetPeer InvalidArgument "peer is not allow empty!" / a name with ',', '=', '/' or spaces.
//
// Authentication (auth/tokens.h): every operation takes the Caller, whose identity the front
// got from Identify (an HTTP Bearer token, a RESP AUTH). Without --auth-token-file everything
// is open as in the seed, except that SetPeer only re-adds a member this node knows (from
// --peer or etcd) at its known address: a new member or a new address needs the admin role,
// so it needs tokens. With tokens: Get (and the read routes: Access::kRead) needs the read role
// if auth_reads, Set and Delete the write role, SetPeer the admin role, /metrics and the
// dashboard the read role if auth_metrics / auth_dashboard; an unknown token is refused
// everywhere. Refusals are Unauthenticated (no token, or an unknown one) or PermissionDenied
// (a role too low), counted in nexuscache_auth_refused_total{protocol,reason}.
//
// Metrics: nexuscache_requests_total{protocol,op,status} (status hit/miss/error for get,
// ok/error otherwise) and nexuscache_request_duration_seconds{protocol,op}.
//
// Thread-safety: every method may be called concurrently from any thread; callbacks run on the
// calling thread or on the one that completed a peer call or load.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "auth/tokens.h"
#include "cluster/value.h"
#include "group/group.h"
#include "group/registry.h"
#include "metrics/metrics.h"
#include "service/cluster_view.h"

namespace nexus {

enum class Protocol { kHttp, kResp, kMemcache };
inline constexpr int kProtocols = 3;
// "http", "resp", "memcache": the metrics' protocol label.
std::string_view ProtocolName(Protocol protocol);

struct CacheServiceOptions {
  // The group of requests that name none.
  std::string default_group = "scores";
  size_t max_key_bytes = 250;
  size_t max_value_bytes = 1 << 20;
  // Longest TTL a client may ask for (the seed's 4320 minutes).
  int64_t max_ttl_ms = 4320LL * 60'000;
  // A member added by name only is dialled at NAME:<this port> (the seed's setpeer).
  uint16_t grpc_port = 8888;
  // With tokens (an enabled Authenticator): what needs the read role besides nothing.
  bool auth_reads = false;      // gets and the read routes (--auth-reads)
  bool auth_metrics = false;    // /metrics (--auth-metrics)
  bool auth_dashboard = false;  // /dashboard and /api/cluster (--auth-dashboard)
};

// Who asks, over which protocol. The front fills `identity` from CacheService::Identify.
struct Caller {
  Protocol protocol = Protocol::kHttp;
  auth::Identity identity;
};

class CacheService {
 public:
  // `auth` null, or without a file: no tokens (the seed's open API). It must outlive this.
  CacheService(CacheServiceOptions options, GroupRegistry* groups, ClusterView* cluster,
               metrics::Registry* metrics, const auth::Authenticator* auth = nullptr);
  CacheService(const CacheService&) = delete;
  CacheService& operator=(const CacheService&) = delete;

  // `group` empty: the default group.
  // `done` is any callable taking the result (a ValueCallback / StatusCallback, or a lambda):
  // the service adds its bookkeeping to it in place, so a request costs one callback
  // allocation, not one per layer.
  template <typename Done>  // void(absl::StatusOr<CachedValue>)
  void Get(const Caller& caller, std::string_view group, std::string_view key, Done done);
  template <typename Done>  // void(absl::Status)
  void Set(const Caller& caller, std::string_view group, std::string_view key,
           std::string_view value, Expiry expiry, bool hot, Done done);
  template <typename Done>  // void(absl::Status)
  void Delete(const Caller& caller, std::string_view group, std::string_view key, Done done);
  // Adds member `name` at `address`. Empty `address`: where this node knows the member (its
  // gRPC and HTTP addresses), else NAME:<grpc_port> (the seed's form; admin role only).
  absl::Status SetPeer(const Caller& caller, std::string_view name, std::string_view address);

  // The identity of a request that presented `token` (nullopt: none).
  auth::Identity Identify(std::optional<std::string_view> token) const;
  bool auth_enabled() const { return auth_ != nullptr && auth_->enabled(); }
  // What a front's own routes need (the operations above check theirs themselves).
  enum class Access {
    kRead,       // like a get: /api/stats, /api/ring
    kMetrics,    // /metrics
    kDashboard,  // /dashboard
    // /api/cluster: the dashboard's data, every member's metrics; needs read under either
    // --auth-dashboard or --auth-metrics.
    kClusterMetrics,
    // What a set needs, for a front that checks it before parsing the rest of a write (so that
    // a caller without the role hears 401/403, not the form's 400); Set checks it again.
    kSet,
  };
  // OK, or the refusal to answer (see the top of the file); refusals are counted.
  absl::Status Authorize(const Caller& caller, Access access);

  enum class Op { kGet, kSet, kDelete, kSetPeer };
  // Counts a request that its front could not decode into an operation (e.g. the seed's
  // `expire` missing) as an error of `op`, so every client request is in the metrics.
  void CountRejected(Protocol protocol, Op op);

  // The group named `name` (empty: the default), or NotFound "no such group: G".
  absl::StatusOr<Group*> FindGroup(std::string_view name) const;
  const std::string& default_group() const { return options_.default_group; }
  const CacheServiceOptions& options() const { return options_; }

  // True for the NotFound of an unknown group (as opposed to a miss).
  static bool IsNoSuchGroup(const absl::Status& status);

  // Waits until no operation is in flight (their peer and origin calls hold pointers to this
  // service and to the groups), or `timeout`; true if idle.
  bool WaitIdle(std::chrono::milliseconds timeout);

 private:
  static constexpr int kOps = 4;
  enum class Outcome { kHit, kMiss, kOk, kError };
  // Metric children of one (protocol, operation), resolved once so the hot path takes no lock.
  struct OpMetrics {
    metrics::Counter* ok = nullptr;  // "hit" for get
    metrics::Counter* miss = nullptr;
    metrics::Counter* error = nullptr;
    metrics::Histogram* duration = nullptr;
  };
  // Counts one operation when it completes: its outcome, its latency, and the end of its time
  // in flight. Move-only; Finish runs at most once (a Call dropped unfinished counts as an
  // error).
  class Call {
   public:
    Call(CacheService* service, Protocol protocol, Op op);
    Call(Call&& other) noexcept
        : service_(std::exchange(other.service_, nullptr)),
          metrics_(other.metrics_),
          start_(other.start_) {}
    Call& operator=(Call&&) = delete;
    ~Call() {
      if (service_ != nullptr) Finish(Outcome::kError);
    }
    void Finish(Outcome outcome);

   private:
    CacheService* service_;
    const OpMetrics* metrics_;
    std::chrono::steady_clock::time_point start_;
  };

  OpMetrics& MetricsOf(Protocol protocol, Op op) {
    return ops_[static_cast<int>(protocol)][static_cast<int>(op)];
  }
  // Authorize for `needed` with `what` naming the operation, counting a refusal.
  absl::Status Check(const Caller& caller, auth::Role needed, std::string_view what);
  absl::Status CheckKey(std::string_view key) const;
  // The group of a get or delete of `key`, or the error to answer.
  absl::StatusOr<Group*> Resolve(std::string_view group, std::string_view key,
                                 bool check_length) const;
  // The same for a set.
  absl::StatusOr<Group*> ResolveSet(std::string_view group, std::string_view key,
                                    std::string_view value, Expiry expiry) const;

  const CacheServiceOptions options_;
  GroupRegistry* const groups_;
  ClusterView* const cluster_;
  const auth::Authenticator* const auth_;
  OpMetrics ops_[kProtocols][kOps];
  // nexuscache_auth_refused_total by protocol and reason: missing, invalid, forbidden.
  metrics::Counter* refused_[kProtocols][3] = {};
  // Operations between their start and their completion (an atomic: this is the hot path;
  // only shutdown waits on it).
  std::atomic<int64_t> in_flight_{0};
};

template <typename Done>
void CacheService::Get(const Caller& caller, std::string_view group, std::string_view key,
                       Done done) {
  Call call(this, caller.protocol, Op::kGet);
  if (absl::Status s =
          Check(caller, options_.auth_reads ? auth::Role::kRead : auth::Role::kNone, "get");
      !s.ok()) {
    call.Finish(Outcome::kError);
    return done(std::move(s));
  }
  absl::StatusOr<Group*> g = Resolve(group, key, /*check_length=*/true);
  if (!g.ok()) {
    call.Finish(Outcome::kError);
    return done(g.status());
  }
  (*g)->Get(
      key, [call = std::move(call), done = std::move(done)](absl::StatusOr<CachedValue> r) mutable {
        call.Finish(r.ok()                         ? Outcome::kHit
                    : absl::IsNotFound(r.status()) ? Outcome::kMiss
                                                   : Outcome::kError);
        done(std::move(r));
      });
}

template <typename Done>
void CacheService::Set(const Caller& caller, std::string_view group, std::string_view key,
                       std::string_view value, Expiry expiry, bool hot, Done done) {
  Call call(this, caller.protocol, Op::kSet);
  if (absl::Status s = Check(caller, auth::Role::kWrite, "set"); !s.ok()) {
    call.Finish(Outcome::kError);
    return done(std::move(s));
  }
  absl::StatusOr<Group*> g = ResolveSet(group, key, value, expiry);
  if (!g.ok()) {
    call.Finish(Outcome::kError);
    return done(g.status());
  }
  (*g)->Set(key, value, expiry, hot,
            [call = std::move(call), done = std::move(done)](absl::Status s) mutable {
              call.Finish(s.ok() ? Outcome::kOk : Outcome::kError);
              done(std::move(s));
            });
}

template <typename Done>
void CacheService::Delete(const Caller& caller, std::string_view group, std::string_view key,
                          Done done) {
  Call call(this, caller.protocol, Op::kDelete);
  if (absl::Status s = Check(caller, auth::Role::kWrite, "delete"); !s.ok()) {
    call.Finish(Outcome::kError);
    return done(std::move(s));
  }
  absl::StatusOr<Group*> g = Resolve(group, key, /*check_length=*/false);
  if (!g.ok()) {
    call.Finish(Outcome::kError);
    return done(g.status());
  }
  (*g)->Delete(key, [call = std::move(call), done = std::move(done)](absl::Status s) mutable {
    call.Finish(s.ok() ? Outcome::kOk : Outcome::kError);
    done(std::move(s));
  });
}

}  // namespace nexus
