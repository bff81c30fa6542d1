#include "peer/remote_peer.h"

#include <atomic>
#include <optional>
#include <utility>

#include "peer/forwarder.h"
#include "spdlog/spdlog.h"

namespace nexus {

namespace {

// The forwarding target of a member whose HTTP address is numeric ("1.2.3.4:80", "[::1]:80");
// nullopt for anything else (host names are not resolved: that could block the event loop).
std::optional<ForwardTarget> NumericTarget(std::string name, const std::string& address,
                                           const GrpcPeerOptions& options) {
  std::optional<io::SocketAddress> resolved = io::ParseNumericAddress(address);
  if (!resolved.has_value()) return std::nullopt;
  return ForwardTarget{
      .name = std::move(name),
      .address = address,
      .sockaddr = *resolved,
      .deadline = options.deadline,
      .max_response_bytes = static_cast<uint64_t>(options.max_receive_message_bytes),
      .secret = options.cluster_secret,
      .tls = options.tls_context};
}

int64_t SteadyMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct RemotePeer::Shared {
  std::string name;
  std::string http_address;
  std::shared_ptr<GrpcPeer> grpc;
  std::optional<ForwardTarget> target;  // set when the HTTP address is usable
  // The same, pooled apart for the calls the member answers at once, without calling another
  // node: replica pushes and peeks (ForwardTarget::pool), with half the deadline.
  std::optional<ForwardTarget> immediate_target;
  std::chrono::milliseconds http_retry_after{kHttpRetryAfter};
  // Steady-clock ms before which HTTP forwarding is off (the member did not serve the routes).
  std::atomic<int64_t> http_off_until{0};
  // False once the member answered the replicate route with 404/405 (an older version).
  std::atomic<bool> replicate_over_http{true};
  CallCounter counter;  // the HTTP transport's calls

  // Whether Get/Set/Delete on a loop thread go over HTTP (RemotePeer::forwards_over_http).
  bool HttpOn() const {
    if (!target.has_value()) return false;
    const int64_t off_until = http_off_until.load(std::memory_order_relaxed);
    return off_until == 0 || SteadyMillis() >= off_until;
  }

  // The loop's forwarder when this call should go over HTTP, else nullptr.
  Forwarder* ForwarderForCall(const std::optional<ForwardTarget>& to) const {
    if (!HttpOn()) return nullptr;
    Forwarder* f = Forwarder::Current();
    // Every connection busy with a slow request (e.g. loads at the owner): do not queue behind.
    if (f != nullptr && !f->CanTake(*to)) return nullptr;
    return f;
  }
  Forwarder* ForwarderForCall() const { return ForwarderForCall(target); }

  // Whether a failed forwarded call should be repeated over gRPC (and, for a member that does
  // not serve the routes, stop forwarding to it over HTTP for a while). Any other outcome is an
  // answer over HTTP: forwarding works again if it was off.
  bool RetryOverGrpc(const absl::Status& s) {
    const int64_t now = SteadyMillis();
    if (IsNoRoutes(s)) {
      const int64_t was = http_off_until.exchange(now + http_retry_after.count());
      if (was == 0) {
        spdlog::warn(
            "peer: {} ({}) does not serve HTTP forwarding; using gRPC and trying HTTP "
            "again every {} ms: {}",
            name, http_address, http_retry_after.count(), std::string(s.message()));
      }
      return true;
    }
    if (IsTransportFailure(s)) return !absl::IsDeadlineExceeded(s);
    if (http_off_until.load(std::memory_order_relaxed) != 0 && http_off_until.exchange(0) != 0) {
      spdlog::info("peer: {} ({}) serves HTTP forwarding again", name, http_address);
    }
    return false;
  }
};

RemotePeer::RemotePeer(std::string name, std::string grpc_address, std::string http_address,
                       GrpcPeerOptions options, std::chrono::milliseconds http_retry_after)
    : shared_(std::make_shared<Shared>()) {
  shared_->name = name;
  shared_->http_retry_after = http_retry_after;
  shared_->http_address = http_address;
  shared_->grpc = std::make_shared<GrpcPeer>(name, std::move(grpc_address), options);
  if (!http_address.empty()) {
    shared_->target = NumericTarget(std::move(name), http_address, options);
    if (shared_->target.has_value()) {
      shared_->immediate_target = shared_->target;
      shared_->immediate_target->pool = "immediate";
      // A member answers these in well under a millisecond when it runs. Half the deadline:
      // a forwarded write waits at its primary for the push to the other holder, and when
      // that one hangs, the primary's substitute must be reached before the forwarding node
      // gives up on the write (with the full deadline it never was: the write was stored on
      // two members and its client got a 502).
      shared_->immediate_target->deadline = options.deadline / 2;
    } else {
      spdlog::info("peer: {}: HTTP address '{}' is not ip:port; forwarding over gRPC",
                   shared_->name, http_address);
    }
  }
}

RemotePeer::~RemotePeer() = default;

void RemotePeer::Get(std::string_view group, std::string_view key, ValueCallback done) {
  GetOrPeek(group, key, /*peek=*/false, std::move(done));
}

void RemotePeer::Peek(std::string_view group, std::string_view key, ValueCallback done) {
  GetOrPeek(group, key, /*peek=*/true, std::move(done));
}

void RemotePeer::GetOrPeek(std::string_view group, std::string_view key, bool peek,
                           ValueCallback done) {
  const auto over_grpc = [](const std::shared_ptr<GrpcPeer>& grpc, std::string_view group,
                            std::string_view key, bool peek, ValueCallback done) {
    peek ? grpc->Peek(group, key, std::move(done)) : grpc->Get(group, key, std::move(done));
  };
  const std::optional<ForwardTarget>& to = peek ? shared_->immediate_target : shared_->target;
  Forwarder* f = shared_->ForwarderForCall(to);
  if (f == nullptr) return over_grpc(shared_->grpc, group, key, peek, std::move(done));
  shared_->counter.Started();
  f->Get(
      *to, group, key,
      [shared = shared_, group = std::string(group), key = std::string(key), peek, over_grpc,
       done = std::move(done)](absl::StatusOr<CachedValue> r) mutable {
        shared->counter.Finished(CallCounter::kGet, r.status());
        if (shared->RetryOverGrpc(r.status())) {
          return over_grpc(shared->grpc, group, key, peek, std::move(done));
        }
        done(std::move(r));
      },
      peek);
}

void RemotePeer::Set(std::string_view group, std::string_view key, std::string_view value,
                     Expiry expiry, bool hot, StatusCallback done) {
  Forwarder* f = shared_->ForwarderForCall();
  if (f == nullptr) return shared_->grpc->Set(group, key, value, expiry, hot, std::move(done));
  shared_->counter.Started();
  f->Set(*shared_->target, group, key, value, expiry, hot,
         [shared = shared_, group = std::string(group), key = std::string(key),
          value = std::string(value), expiry, hot, done = std::move(done)](absl::Status s) mutable {
           shared->counter.Finished(CallCounter::kSet, s);
           if (shared->RetryOverGrpc(s)) {
             return shared->grpc->Set(group, key, value, expiry, hot, std::move(done));
           }
           done(std::move(s));
         });
}

void RemotePeer::Delete(std::string_view group, std::string_view key, StatusCallback done) {
  Forwarder* f = shared_->ForwarderForCall();
  if (f == nullptr) return shared_->grpc->Delete(group, key, std::move(done));
  shared_->counter.Started();
  f->Delete(*shared_->target, group, key,
            [shared = shared_, group = std::string(group), key = std::string(key),
             done = std::move(done)](absl::Status s) mutable {
              shared->counter.Finished(CallCounter::kDelete, s);
              if (shared->RetryOverGrpc(s)) {
                return shared->grpc->Delete(group, key, std::move(done));
              }
              done(std::move(s));
            });
}

void RemotePeer::Replicate(std::string_view group, const Replica& replica, StatusCallback done) {
  Forwarder* f = shared_->replicate_over_http.load(std::memory_order_relaxed)
                     ? shared_->ForwarderForCall(shared_->immediate_target)
                     : nullptr;
  if (f == nullptr) return shared_->grpc->Replicate(group, replica, std::move(done));
  shared_->counter.Started();
  f->Replicate(*shared_->immediate_target, group, replica,
               [shared = shared_, group = std::string(group), replica,
                done = std::move(done)](absl::Status s) mutable {
                 shared->counter.Finished(CallCounter::kReplicate, s);
                 if (IsNoRoutes(s)) {
                   // A member that forwards but predates the replicate route: pushes to it go
                   // over gRPC from now on; the other operations keep using HTTP.
                   shared->replicate_over_http.store(false, std::memory_order_relaxed);
                   return shared->grpc->Replicate(group, replica, std::move(done));
                 }
                 if (shared->RetryOverGrpc(s)) {
                   return shared->grpc->Replicate(group, replica, std::move(done));
                 }
                 done(std::move(s));
               });
}

const std::string& RemotePeer::name() const { return shared_->name; }
const std::string& RemotePeer::http_address() const { return shared_->http_address; }
const std::shared_ptr<GrpcPeer>& RemotePeer::grpc() const { return shared_->grpc; }
bool RemotePeer::forwards_over_http() const { return shared_->HttpOn(); }

uint64_t RemotePeer::calls() const { return shared_->counter.calls() + shared_->grpc->calls(); }

std::vector<CallCounter::Count> RemotePeer::CallCounts() const {
  std::vector<CallCounter::Count> out = shared_->grpc->CallCounts();
  const std::vector<CallCounter::Count> http = shared_->counter.Counts();
  for (size_t i = 0; i < out.size() && i < http.size(); ++i) out[i].count += http[i].count;
  return out;
}

}  // namespace nexus
