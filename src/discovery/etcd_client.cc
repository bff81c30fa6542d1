#include "discovery/etcd_client.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <string_view>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "proto/etcd/rpc.grpc.pb.h"
#include "proto/grpc_status.h"

namespace nexus {

namespace pb = etcdserverpb;

namespace {

// etcd's own metadata key (rpctypes.MetadataRequireLeaderKey): a member that has lost its
// leader ends the stream with an error instead of silently serving a partitioned view.
constexpr char kRequireLeaderKey[] = "hasleader";
// etcd's auth token metadata key (rpctypes.TokenFieldNameGRPC).
constexpr char kTokenKey[] = "token";

std::string NormalizeEndpoint(std::string endpoint) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (endpoint.compare(0, scheme.size(), scheme) == 0) endpoint.erase(0, scheme.size());
  }
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  return endpoint;
}

absl::Status FromGrpc(const grpc::Status& status, const std::string& endpoint, const char* method) {
  return absl::Status(FromGrpcCode(status.error_code()),
                      "etcd " + endpoint + " " + method + ": " + status.error_message());
}

// An answer that says the auth token is no good: expired or unknown to this member
// (UNAUTHENTICATED), older than a change of users or roles (ErrAuthOldRevision), or missing
// where auth was enabled since (ErrUserEmpty).
bool StaleToken(const grpc::Status& status) {
  if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED) return true;
  const std::string& m = status.error_message();
  return status.error_code() == grpc::StatusCode::INVALID_ARGUMENT &&
         (m.find("revision of auth store is old") != std::string::npos ||
          m.find("user name is empty") != std::string::npos);
}

bool Retryable(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

// Waits until `channel` is connected. False as soon as it fails to connect (connection refused
// -> TRANSIENT_FAILURE) or at `deadline`.
bool WaitReady(grpc::Channel& channel, std::chrono::system_clock::time_point deadline) {
  grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) return false;
    if (!channel.WaitForStateChange(state, deadline)) return false;
    state = channel.GetState(/*try_to_connect=*/true);
  }
  return true;
}

}  // namespace

std::string EtcdPrefixRangeEnd(const std::string& prefix) {
  std::string end = prefix;
  for (size_t i = end.size(); i-- > 0;) {
    if (static_cast<unsigned char>(end[i]) < 0xff) {
      end[i] = static_cast<char>(static_cast<unsigned char>(end[i]) + 1);
      end.resize(i + 1);
      return end;
    }
  }
  return std::string(1, '\0');
}

// One etcd endpoint: its channel and stubs, shared by the client and every stream on it (a
// stream keeps it alive after the client is gone).
struct EtcdEndpoint {
  EtcdEndpoint(std::string addr, const EtcdCredentials& credentials) : address(std::move(addr)) {
    grpc::ChannelArguments args;
    // HTTP/2 pings only while calls/streams are open; 10 s stays above etcd's default
    // --grpc-keepalive-min-time (5 s), so etcd never answers with GOAWAY(too_many_pings). A dead
    // etcd behind a silent network is noticed by a watch/keep-alive within ~15 s.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10'000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5'000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
    // A restarted etcd is reachable again within ~2 s instead of gRPC's default 120 s backoff.
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2'000);
    args.SetMaxReceiveMessageSize(64 << 20);
    // Own subchannels (not gRPC's process-wide pool): a new client must not inherit another
    // client's reconnect backoff to a dead endpoint (its first call there would wait ~1 s for the
    // backoff to expire instead of being refused at once).
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
    if (!credentials.ca_pem.empty()) {
      creds =
          grpc::SslCredentials(grpc::SslCredentialsOptions{.pem_root_certs = credentials.ca_pem,
                                                           .pem_private_key = credentials.key_pem,
                                                           .pem_cert_chain = credentials.cert_pem});
    }
    channel = grpc::CreateCustomChannel(address, creds, args);
    kv = pb::KV::NewStub(channel);
    lease = pb::Lease::NewStub(channel);
    watch = pb::Watch::NewStub(channel);
    auth = pb::Auth::NewStub(channel);
  }

  std::string token() const {
    absl::MutexLock lock(&mu);
    return auth_token;
  }
  bool no_auth() const {
    absl::MutexLock lock(&mu);
    return auth_off;
  }

  const std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::KV::Stub> kv;
  std::unique_ptr<pb::Lease::Stub> lease;
  std::unique_ptr<pb::Watch::Stub> watch;
  std::unique_ptr<pb::Auth::Stub> auth;
  // etcd's auth token for this endpoint (tokens of etcd's default "simple" kind are known to
  // the member that issued them only); empty until authenticated.
  mutable absl::Mutex mu;
  std::string auth_token ABSL_GUARDED_BY(mu);
  // The endpoint answered that its auth is not enabled: calls go without a token (until a
  // call is refused for the lack of one: see StaleToken).
  bool auth_off ABSL_GUARDED_BY(mu) = false;
};

// ---------------------------------------------------------------------------------------------
// EtcdClient::Impl: endpoints, lazy channels, unary failover.

class EtcdClient::Impl {
 public:
  explicit Impl(EtcdClientOptions options) : options_(std::move(options)) {
    for (std::string& e : options_.endpoints) e = NormalizeEndpoint(std::move(e));
    endpoints_.resize(options_.endpoints.size());
  }

  const EtcdClientOptions& options() const { return options_; }

  // The endpoint at `index`, its channel created on first use.
  std::shared_ptr<EtcdEndpoint> Endpoint(size_t index) {
    absl::MutexLock lock(&mu_);
    std::shared_ptr<EtcdEndpoint>& ep = endpoints_[index];
    if (ep == nullptr) {
      ep = std::make_shared<EtcdEndpoint>(options_.endpoints[index], options_.credentials);
    }
    return ep;
  }

  bool uses_auth() const { return !options_.credentials.user.empty(); }

  // Authenticates on `ep` (its token replaces the one it had).
  absl::Status Authenticate(EtcdEndpoint& ep) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + options_.unary_timeout);
    ctx.set_wait_for_ready(false);
    pb::AuthenticateRequest request;
    request.set_name(options_.credentials.user);
    request.set_password(options_.credentials.password);
    pb::AuthenticateResponse response;
    const grpc::Status status = ep.auth->Authenticate(&ctx, request, &response);
    if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
        status.error_message().find("authentication is not enabled") != std::string::npos) {
      // The user and password are not needed here: calls go without a token.
      absl::MutexLock lock(&ep.mu);
      if (!std::exchange(ep.auth_off, true)) {
        spdlog::warn("etcd {}: auth is not enabled; calls go without --etcd-user's token",
                     ep.address);
      }
      return absl::OkStatus();
    }
    if (!status.ok()) return FromGrpc(status, ep.address, "Authenticate");
    absl::MutexLock lock(&ep.mu);
    ep.auth_token = response.token();
    ep.auth_off = false;
    return absl::OkStatus();
  }

  // A fresh token for a stream on `ep` (a stream keeps the token it started with, which may
  // have expired since the last unary call); "" without auth or when authenticating failed:
  // the stream is then refused by etcd and ends with that error.
  std::string StreamToken(EtcdEndpoint* ep) {
    if (!uses_auth() || ep == nullptr) return "";
    if (absl::Status s = Authenticate(*ep); !s.ok()) {
      spdlog::warn("{}", s.ToString());
      return "";
    }
    return ep->token();
  }

  // The token to send to `ep` (authenticating first if it has none); "" without auth.
  absl::StatusOr<std::string> TokenFor(EtcdEndpoint& ep) {
    if (!uses_auth()) return std::string();
    if (std::string token = ep.token(); !token.empty() || ep.no_auth()) return token;
    if (absl::Status s = Authenticate(ep); !s.ok()) return s;
    return ep.token();
  }

  // Runs `call(endpoint, context)` (a blocking stub call) on the last good endpoint, then on the
  // next ones while it fails with UNAVAILABLE / DEADLINE_EXCEEDED. Each attempt has its own
  // deadline.
  template <typename Call>
  absl::Status Unary(const char* method, Call&& call) {
    const size_t n = options_.endpoints.size();
    if (n == 0) return absl::FailedPreconditionError("etcd: no endpoints configured");
    const size_t start = last_good_.load(std::memory_order_relaxed) % n;
    absl::Status last;
    for (size_t i = 0; i < n; ++i) {
      const size_t index = (start + i) % n;
      const std::shared_ptr<EtcdEndpoint> ep = Endpoint(index);
      grpc::Status status;
      absl::Status auth_failed;
      // With auth: a second attempt on the same endpoint, with a fresh token, after an answer
      // that says the token is no good (expired, unknown to this member, or issued before a
      // change of users or roles: etcd's ErrAuthOldRevision).
      for (int attempt = 0; attempt < 2; ++attempt) {
        absl::StatusOr<std::string> token = TokenFor(*ep);
        if (!token.ok()) {
          auth_failed = token.status();
          break;
        }
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + options_.unary_timeout);
        ctx.set_wait_for_ready(false);
        if (!token->empty()) ctx.AddMetadata(kTokenKey, *token);
        status = call(*ep, &ctx);
        if (!uses_auth() || !StaleToken(status)) break;
        absl::MutexLock lock(&ep->mu);
        ep->auth_token.clear();
        ep->auth_off = false;
      }
      if (auth_failed.ok() && status.ok()) {
        last_good_.store(index, std::memory_order_relaxed);
        return absl::OkStatus();
      }
      // (An Authenticate failure names the endpoint and method already.)
      last = !auth_failed.ok() ? auth_failed : FromGrpc(status, ep->address, method);
      const bool next_endpoint = !auth_failed.ok() ? absl::IsUnavailable(auth_failed) ||
                                                         absl::IsDeadlineExceeded(auth_failed)
                                                   : Retryable(status);
      if (!next_endpoint) return last;
      if (i + 1 < n) spdlog::warn("{}; trying the next etcd endpoint", last.ToString());
    }
    return last;
  }

  // The first endpoint (starting at the last good one) that connects within unary_timeout; the
  // last good one if none does (the stream then fails at once with UNAVAILABLE). Null only when
  // no endpoints are configured.
  std::shared_ptr<EtcdEndpoint> PickStreamEndpoint() {
    const size_t n = options_.endpoints.size();
    if (n == 0) return nullptr;
    const size_t start = last_good_.load(std::memory_order_relaxed) % n;
    for (size_t i = 0; i < n; ++i) {
      const size_t index = (start + i) % n;
      std::shared_ptr<EtcdEndpoint> ep = Endpoint(index);
      if (WaitReady(*ep->channel, std::chrono::system_clock::now() + options_.unary_timeout)) {
        last_good_.store(index, std::memory_order_relaxed);
        return ep;
      }
      spdlog::warn("etcd {} is not reachable for a stream", ep->address);
    }
    return Endpoint(start);
  }

  std::string current_endpoint() const {
    const size_t n = options_.endpoints.size();
    if (n == 0) return "";
    return options_.endpoints[last_good_.load(std::memory_order_relaxed) % n];
  }

 private:
  EtcdClientOptions options_;
  absl::Mutex mu_;
  std::vector<std::shared_ptr<EtcdEndpoint>> endpoints_ ABSL_GUARDED_BY(mu_);
  std::atomic<size_t> last_good_{0};
};

EtcdClient::EtcdClient(EtcdClientOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

EtcdClient::~EtcdClient() = default;

const std::vector<std::string>& EtcdClient::endpoints() const { return impl_->options().endpoints; }

std::string EtcdClient::current_endpoint() const { return impl_->current_endpoint(); }

absl::StatusOr<LeaseGrant> EtcdClient::Grant(int64_t ttl_seconds) {
  pb::LeaseGrantRequest request;
  request.set_ttl(ttl_seconds);
  pb::LeaseGrantResponse response;
  absl::Status s = impl_->Unary("LeaseGrant", [&](EtcdEndpoint& ep, grpc::ClientContext* ctx) {
    response.Clear();
    return ep.lease->LeaseGrant(ctx, request, &response);
  });
  if (!s.ok()) return s;
  if (!response.error().empty()) return absl::InternalError("etcd LeaseGrant: " + response.error());
  return LeaseGrant{.id = response.id(), .ttl_seconds = response.ttl()};
}

absl::Status EtcdClient::Revoke(int64_t lease_id) {
  pb::LeaseRevokeRequest request;
  request.set_id(lease_id);
  pb::LeaseRevokeResponse response;
  return impl_->Unary("LeaseRevoke", [&](EtcdEndpoint& ep, grpc::ClientContext* ctx) {
    return ep.lease->LeaseRevoke(ctx, request, &response);
  });
}

absl::StatusOr<int64_t> EtcdClient::Put(const std::string& key, const std::string& value,
                                        int64_t lease_id) {
  pb::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  request.set_lease(lease_id);
  pb::PutResponse response;
  absl::Status s = impl_->Unary("Put", [&](EtcdEndpoint& ep, grpc::ClientContext* ctx) {
    response.Clear();
    return ep.kv->Put(ctx, request, &response);
  });
  if (!s.ok()) return s;
  return response.header().revision();
}

absl::StatusOr<RangeResult> EtcdClient::RangePrefix(const std::string& prefix) {
  pb::RangeRequest request;
  request.set_key(prefix);
  request.set_range_end(EtcdPrefixRangeEnd(prefix));
  pb::RangeResponse response;
  absl::Status s = impl_->Unary("Range", [&](EtcdEndpoint& ep, grpc::ClientContext* ctx) {
    response.Clear();
    return ep.kv->Range(ctx, request, &response);
  });
  if (!s.ok()) return s;
  RangeResult result;
  result.revision = response.header().revision();
  result.kvs.reserve(response.kvs_size());
  for (mvccpb::KeyValue& kv : *response.mutable_kvs()) {
    result.kvs.push_back(EtcdKeyValue{.key = std::move(*kv.mutable_key()),
                                      .value = std::move(*kv.mutable_value()),
                                      .mod_revision = kv.mod_revision(),
                                      .create_revision = kv.create_revision(),
                                      .lease = kv.lease()});
  }
  return result;
}

absl::Status EtcdClient::Delete(const std::string& key) {
  pb::DeleteRangeRequest request;
  request.set_key(key);
  pb::DeleteRangeResponse response;
  return impl_->Unary("DeleteRange", [&](EtcdEndpoint& ep, grpc::ClientContext* ctx) {
    return ep.kv->DeleteRange(ctx, request, &response);
  });
}

absl::Status EtcdClient::Compact(int64_t revision) {
  pb::CompactionRequest request;
  request.set_revision(revision);
  pb::CompactionResponse response;
  return impl_->Unary("Compact", [&](EtcdEndpoint& ep, grpc::ClientContext* ctx) {
    return ep.kv->Compact(ctx, request, &response);
  });
}

// ---------------------------------------------------------------------------------------------
// KeepAliveStream.
//
// The reactor is the Impl. A writer thread writes one keep-alive per interval, never more than one
// in flight (the reactor's rule), and holds the reactor (AddHold) so OnDone cannot run while it
// might still call StartWrite; it releases the hold when the stream is over or stopping. gRPC
// calls (StartWrite, RemoveHold, TryCancel) are never made while holding mu_: they may run
// reactions inline on the calling thread, and reactions take mu_.

class KeepAliveStream::Impl final
    : public grpc::ClientBidiReactor<pb::LeaseKeepAliveRequest, pb::LeaseKeepAliveResponse> {
 public:
  Impl(std::shared_ptr<EtcdEndpoint> ep, int64_t lease_id, std::chrono::milliseconds interval,
       ResponseCallback on_response, DoneCallback on_done)
      : ep_(std::move(ep)),
        lease_id_(lease_id),
        interval_(std::max(interval, std::chrono::milliseconds(10))),
        on_response_(std::move(on_response)),
        on_done_(std::move(on_done)) {
    request_.set_id(lease_id_);
  }

  void set_token(std::string token) { token_ = std::move(token); }

  void Start() {
    if (ep_ == nullptr) {
      Finish(absl::FailedPreconditionError("etcd: no endpoints configured"));
      return;
    }
    ctx_.AddMetadata(kRequireLeaderKey, "true");
    if (!token_.empty()) ctx_.AddMetadata(kTokenKey, token_);
    ep_->lease->async()->LeaseKeepAlive(&ctx_, this);
    AddHold();  // released by the writer thread
    StartRead(&response_);
    StartCall();
    writer_ = std::thread([this] { WriterLoop(); });
  }

  void Stop() {
    std::lock_guard<std::mutex> stop_lock(stop_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    ctx_.TryCancel();  // safe at any stage, even after the call finished
    if (writer_.joinable()) writer_.join();
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return done_; });
  }

  int64_t lease_id() const { return lease_id_; }
  const std::string& endpoint() const {
    static const std::string kNone;
    return ep_ ? ep_->address : kNone;
  }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      write_in_flight_ = false;
      if (!ok) stream_over_ = true;
    }
    cv_.notify_all();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        stream_over_ = true;
      }
      cv_.notify_all();
      return;
    }
    const int64_t ttl = response_.ttl();
    if (on_response_) on_response_(ttl);
    if (ttl <= 0) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        final_status_ = absl::NotFoundError("etcd lease " + std::to_string(lease_id_) +
                                            " expired or was revoked (keep-alive TTL " +
                                            std::to_string(ttl) + ")");
        stream_over_ = true;
      }
      cv_.notify_all();
      ctx_.TryCancel();
      return;
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    absl::Status result;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!final_status_.ok()) {
        result = final_status_;
      } else if (stopping_) {
        result = absl::CancelledError("etcd keep-alive stream stopped");
      } else if (status.ok()) {
        result = absl::UnavailableError("etcd " + ep_->address + " closed the keep-alive stream");
      } else {
        result = FromGrpc(status, ep_->address, "LeaseKeepAlive");
      }
    }
    spdlog::debug("etcd keep-alive stream for lease {} ended: {}", lease_id_, result.ToString());
    Finish(std::move(result));
  }

 private:
  void WriterLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    auto next = std::chrono::steady_clock::now();
    while (!stopping_ && !stream_over_) {
      if (!write_in_flight_) {  // else: the previous keep-alive is still in flight; skip a beat
        write_in_flight_ = true;
        lock.unlock();
        StartWrite(&request_);
        lock.lock();
      }
      next += interval_;
      cv_.wait_until(lock, next, [this] { return stopping_ || stream_over_; });
    }
    lock.unlock();
    RemoveHold();  // may run OnDone (inline or elsewhere); touch nothing after this
  }

  // Reports the end exactly once, then lets Stop() return.
  void Finish(absl::Status result) {
    if (on_done_) on_done_(std::move(result));
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    cv_.notify_all();
  }

  const std::shared_ptr<EtcdEndpoint> ep_;
  const int64_t lease_id_;
  const std::chrono::milliseconds interval_;
  const ResponseCallback on_response_;
  const DoneCallback on_done_;
  grpc::ClientContext ctx_;
  std::string token_;                    // etcd's auth token, sent at the start; "" without auth
  pb::LeaseKeepAliveRequest request_;    // never changes after construction
  pb::LeaseKeepAliveResponse response_;  // owned by the one outstanding read

  std::mutex stop_mu_;  // serializes Stop()
  std::mutex mu_;
  std::condition_variable cv_;
  bool write_in_flight_ = false;
  bool stream_over_ = false;  // a read or write failed, or the lease is gone
  bool stopping_ = false;
  bool done_ = false;  // OnDone (or a failed Start) has reported
  absl::Status final_status_;
  std::thread writer_;
};

KeepAliveStream::KeepAliveStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
KeepAliveStream::~KeepAliveStream() { impl_->Stop(); }
void KeepAliveStream::Stop() { impl_->Stop(); }
int64_t KeepAliveStream::lease_id() const { return impl_->lease_id(); }
const std::string& KeepAliveStream::endpoint() const { return impl_->endpoint(); }

std::unique_ptr<KeepAliveStream> EtcdClient::KeepAlive(
    int64_t lease_id, std::chrono::milliseconds interval,
    KeepAliveStream::ResponseCallback on_response, KeepAliveStream::DoneCallback on_done) {
  std::shared_ptr<EtcdEndpoint> ep = impl_->PickStreamEndpoint();
  auto impl = std::make_unique<KeepAliveStream::Impl>(ep, lease_id, interval,
                                                      std::move(on_response), std::move(on_done));
  impl->set_token(impl_->StreamToken(ep.get()));
  impl->Start();
  return std::unique_ptr<KeepAliveStream>(new KeepAliveStream(std::move(impl)));
}

// ---------------------------------------------------------------------------------------------
// WatchStream. One create request, then reads until the stream ends. No writer thread: the only
// write is started before StartCall.

class WatchStream::Impl final
    : public grpc::ClientBidiReactor<pb::WatchRequest, pb::WatchResponse> {
 public:
  Impl(std::shared_ptr<EtcdEndpoint> ep, const std::string& prefix, int64_t start_revision,
       EventsCallback on_events, DoneCallback on_done)
      : ep_(std::move(ep)), on_events_(std::move(on_events)), on_done_(std::move(on_done)) {
    pb::WatchCreateRequest* create = request_.mutable_create_request();
    create->set_key(prefix);
    create->set_range_end(EtcdPrefixRangeEnd(prefix));
    create->set_start_revision(start_revision);
  }

  void set_token(std::string token) { token_ = std::move(token); }

  void Start() {
    if (ep_ == nullptr) {
      Finish(absl::FailedPreconditionError("etcd: no endpoints configured"), 0);
      return;
    }
    ctx_.AddMetadata(kRequireLeaderKey, "true");
    if (!token_.empty()) ctx_.AddMetadata(kTokenKey, token_);
    ep_->watch->async()->Watch(&ctx_, this);
    StartWrite(&request_);
    StartRead(&response_);
    StartCall();
  }

  void Stop() {
    std::lock_guard<std::mutex> stop_lock(stop_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    ctx_.TryCancel();
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return done_; });
  }

  const std::string& endpoint() const {
    static const std::string kNone;
    return ep_ ? ep_->address : kNone;
  }

  void OnWriteDone(bool /*ok*/) override {}  // a failed write also fails the read

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream is over; OnDone follows
    if (response_.compact_revision() > 0) {
      EndWith(absl::OutOfRangeError("etcd watch: revision compacted (compact_revision " +
                                    std::to_string(response_.compact_revision()) +
                                    "); re-list and watch again"),
              response_.compact_revision());
      return;
    }
    if (response_.canceled()) {
      EndWith(
          absl::FailedPreconditionError("etcd canceled the watch: " + response_.cancel_reason()),
          0);
      return;
    }
    // `created` acknowledgements and progress notifications carry no events. We never ask for
    // fragmentation, so every response holds whole revisions.
    if (response_.events_size() > 0 && on_events_) {
      std::vector<WatchEvent> events;
      events.reserve(response_.events_size());
      for (mvccpb::Event& e : *response_.mutable_events()) {
        mvccpb::KeyValue* kv = e.mutable_kv();
        events.push_back(WatchEvent{.type = e.type() == mvccpb::Event::DELETE
                                                ? WatchEvent::Type::kDelete
                                                : WatchEvent::Type::kPut,
                                    .key = std::move(*kv->mutable_key()),
                                    .value = std::move(*kv->mutable_value()),
                                    .mod_revision = kv->mod_revision()});
      }
      on_events_(events, response_.header().revision());
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    absl::Status result;
    int64_t compact_revision = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!final_status_.ok()) {
        result = final_status_;
        compact_revision = compact_revision_;
      } else if (stopping_) {
        result = absl::CancelledError("etcd watch stopped");
      } else if (status.ok()) {
        result = absl::UnavailableError("etcd " + ep_->address + " closed the watch stream");
      } else {
        result = FromGrpc(status, ep_->address, "Watch");
      }
    }
    spdlog::debug("etcd watch stream ended: {}", result.ToString());
    Finish(std::move(result), compact_revision);
  }

 private:
  // Ends the stream from a reaction with our own status (no further reads are started).
  void EndWith(absl::Status status, int64_t compact_revision) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      final_status_ = std::move(status);
      compact_revision_ = compact_revision;
    }
    ctx_.TryCancel();
  }

  void Finish(absl::Status result, int64_t compact_revision) {
    if (on_done_) on_done_(std::move(result), compact_revision);
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    cv_.notify_all();
  }

  const std::shared_ptr<EtcdEndpoint> ep_;
  const EventsCallback on_events_;
  const DoneCallback on_done_;
  grpc::ClientContext ctx_;
  std::string token_;  // etcd's auth token, sent at the start; "" without auth
  pb::WatchRequest request_;
  pb::WatchResponse response_;

  std::mutex stop_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool done_ = false;
  absl::Status final_status_;
  int64_t compact_revision_ = 0;
};

WatchStream::WatchStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
WatchStream::~WatchStream() { impl_->Stop(); }
void WatchStream::Stop() { impl_->Stop(); }
const std::string& WatchStream::endpoint() const { return impl_->endpoint(); }

std::unique_ptr<WatchStream> EtcdClient::WatchPrefix(const std::string& prefix,
                                                     int64_t start_revision,
                                                     WatchStream::EventsCallback on_events,
                                                     WatchStream::DoneCallback on_done) {
  std::shared_ptr<EtcdEndpoint> ep = impl_->PickStreamEndpoint();
  auto impl = std::make_unique<WatchStream::Impl>(ep, prefix, start_revision, std::move(on_events),
                                                  std::move(on_done));
  impl->set_token(impl_->StreamToken(ep.get()));
  impl->Start();
  return std::unique_ptr<WatchStream>(new WatchStream(std::move(impl)));
}

}  // namespace nexus
