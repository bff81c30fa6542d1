#include "peer/grpc_server.h"

#include <grpcpp/grpcpp.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "auth/cluster_secret.h"
#include "peer/grpc_requests.h"
#include "peer/status_map.h"
#include "proto/nexuscache.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace nexus {

namespace {

std::string HostPort(const std::string& host, uint16_t port) {
  const bool v6 = host.find(':') != std::string::npos && host.front() != '[';
  return v6 ? absl::StrCat("[", host, "]:", port) : absl::StrCat(host, ":", port);
}

// A Get whose answer may come from a loader on another thread, after the handler returned.
// Exactly one of {the load completion, OnCancel} answers the call: whoever claims `State` first.
// The loser touches neither the reactor nor the response. The winner may: OnDone (which deletes
// the reactor, and after which gRPC frees the response) cannot run before the winner's Finish.
// The completion shares ownership of `State` only, so a load finishing after the call is gone
// is harmless.
class GetReactor final : public grpc::ServerUnaryReactor {
 public:
  struct State {
    // True for whichever side gets to answer the call.
    bool Claim() { return !answered.exchange(true, std::memory_order_acq_rel); }
    std::atomic<bool> answered{false};
  };

  explicit GetReactor(std::atomic<uint64_t>* served)
      : state_(std::make_shared<State>()), served_(served) {}

  const std::shared_ptr<State>& state() const { return state_; }

  // Only after a successful state()->Claim().
  void Answer(grpc::Status status) {
    if (served_ != nullptr) served_->fetch_add(1, std::memory_order_relaxed);
    Finish(std::move(status));
  }

  void OnCancel() override {
    if (state_->Claim()) Answer(grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled"));
  }
  void OnDone() override { delete this; }

 private:
  const std::shared_ptr<State> state_;
  std::atomic<uint64_t>* const served_;
};

}  // namespace

class PeerServer::Service final : public nexuscachepb::NexusCache::CallbackService {
 public:
  Service(OwnerService* owner, std::string node_name, std::function<std::string()> metrics_text,
          PeerTraffic* traffic)
      : owner_(owner),
        node_name_(std::move(node_name)),
        metrics_text_(std::move(metrics_text)),
        traffic_(traffic),
        served_(traffic != nullptr ? &traffic->served_grpc : nullptr) {}

  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx, const nexuscachepb::Request* req,
                                nexuscachepb::Response* resp) override {
    if (std::string refusal; !Admitted(ctx, &refusal)) return Refuse(ctx, refusal);
    auto* reactor = new GetReactor(served_);
    owner_->Get(req->group(), req->key(), req->peek(),
                [reactor, state = reactor->state(), resp](absl::StatusOr<CachedValue> r) {
                  // The loser of the race with OnCancel must not touch `reactor` or `resp`:
                  // they may be gone.
                  if (!state->Claim()) return;
                  if (!r.ok()) return reactor->Answer(ToGrpcStatus(r.status()));
                  resp->set_value(std::move(r->data));
                  resp->set_deadline_ms(r->deadline == kNoDeadline ? 0 : r->deadline);
                  reactor->Answer(grpc::Status::OK);
                });
    return reactor;
  }

  // Set and Delete may wait for hot-key replicas to acknowledge (bounded by the peer
  // deadline), so they finish from the owner's callback.
  grpc::ServerUnaryReactor* Set(grpc::CallbackServerContext* ctx,
                                const nexuscachepb::SetRequest* req,
                                nexuscachepb::SetResponse* resp) override {
    if (std::string refusal; !Admitted(ctx, &refusal)) return Refuse(ctx, refusal);
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    owner_->Set(OwnerSetOf(*req),
                [this, reactor, resp](absl::Status s) { Done(reactor, resp, s); });
    return reactor;
  }

  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* ctx,
                                   const nexuscachepb::DeleteRequest* req,
                                   nexuscachepb::DeleteResponse* resp) override {
    if (std::string refusal; !Admitted(ctx, &refusal)) return Refuse(ctx, refusal);
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    owner_->Delete(
        req->group(), req->key(), [this, reactor, resp](absl::Status s) { Done(reactor, resp, s); },
        req->answer_by_ms());
    return reactor;
  }

  grpc::ServerUnaryReactor* Replicate(grpc::CallbackServerContext* ctx,
                                      const nexuscachepb::ReplicateRequest* req,
                                      nexuscachepb::ReplicateResponse* resp) override {
    if (std::string refusal; !Admitted(ctx, &refusal)) return Refuse(ctx, refusal);
    absl::StatusOr<bool> applied = owner_->Replicate(req->group(), ReplicaOf(*req));
    if (applied.ok()) resp->set_applied(*applied);
    return FinishNow(ctx, ToGrpcStatus(applied.status()));
  }

  grpc::ServerUnaryReactor* Metrics(grpc::CallbackServerContext* ctx,
                                    const nexuscachepb::MetricsRequest*,
                                    nexuscachepb::MetricsResponse* resp) override {
    if (std::string refusal; !Admitted(ctx, &refusal)) return Refuse(ctx, refusal);
    if (!metrics_text_) {
      return FinishNow(ctx, grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no metrics here"));
    }
    resp->set_node(node_name_);
    resp->set_text(metrics_text_());
    return FinishNow(ctx, grpc::Status::OK);
  }

 private:
  // Whether the call passes the cluster plane's authentication (PeerTraffic::Admit); if not,
  // *refusal says why. Under mutual TLS gRPC has verified the client's certificate already
  // (a call without one never gets here); IsPeerAuthenticated confirms it.
  bool Admitted(grpc::CallbackServerContext* ctx, std::string* refusal) const {
    if (traffic_ == nullptr || !traffic_->checks()) return true;
    std::optional<std::string_view> presented;
    const auto& metadata = ctx->client_metadata();
    if (auto it = metadata.find(auth::kClusterSecretMetadata); it != metadata.end()) {
      presented = std::string_view(it->second.data(), it->second.size());
    }
    const std::shared_ptr<const grpc::AuthContext> auth = ctx->auth_context();
    const absl::Status admitted = traffic_->Admit(
        PeerTraffic::kGrpc, auth != nullptr && auth->IsPeerAuthenticated(), presented, ctx->peer());
    if (admitted.ok()) return true;
    *refusal = std::string(admitted.message());
    return false;
  }
  grpc::ServerUnaryReactor* Refuse(grpc::CallbackServerContext* ctx, const std::string& refusal) {
    return FinishNow(ctx, grpc::Status(grpc::StatusCode::UNAUTHENTICATED, refusal));
  }

  template <typename Response>
  void Done(grpc::ServerUnaryReactor* reactor, Response* resp, const absl::Status& s) {
    resp->set_ok(s.ok());
    if (served_ != nullptr) served_->fetch_add(1, std::memory_order_relaxed);
    reactor->Finish(ToGrpcStatus(s));
  }

  grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* ctx, grpc::Status status) {
    if (served_ != nullptr) served_->fetch_add(1, std::memory_order_relaxed);
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(std::move(status));
    return reactor;
  }

  OwnerService* const owner_;
  const std::string node_name_;
  const std::function<std::string()> metrics_text_;
  PeerTraffic* const traffic_;           // may be null
  std::atomic<uint64_t>* const served_;  // may be null
};

namespace {

// gRPC's TLS server hands a client's certificate chain to this verifier instead of verifying
// it itself, so a refusal (another CA, expired) is counted and logged like the HTTP port's
// (tls::Context::VerifyPeerChain).
class CountingVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit CountingVerifier(std::shared_ptr<const tls::Context> context)
      : context_(std::move(context)) {}
  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)>, grpc::Status* sync_status) override {
    const grpc::string_ref leaf = request->peer_cert();
    const grpc::string_ref chain = request->peer_cert_full_chain();
    const absl::Status s =
        context_->VerifyPeerChain(std::string_view(leaf.data(), leaf.size()),
                                  std::string_view(chain.data(), chain.size()), "a gRPC client");
    *sync_status = s.ok()
                       ? grpc::Status::OK
                       : grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(s.message()));
    return true;  // answered synchronously
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  const std::shared_ptr<const tls::Context> context_;
};

}  // namespace

std::shared_ptr<grpc::ServerCredentials> PeerServer::TlsCredentials() const {
  auto provider = std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
      options_.tls.ca,
      std::vector<grpc::experimental::IdentityKeyCertPair>{
          {.private_key = options_.tls.key, .certificate_chain = options_.tls.cert}});
  grpc::experimental::TlsServerCredentialsOptions tls(provider);
  tls.watch_root_certs();
  tls.watch_identity_key_cert_pairs();
  // Asked for, verified by CountingVerifier; a client without one is refused per call.
  tls.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
  tls.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<CountingVerifier>(
          options_.tls_verifier));
  return grpc::experimental::TlsServerCredentials(tls);
}

struct PeerServer::Running {
  std::unique_ptr<grpc::Server> server;
};

PeerServer::PeerServer(OwnerService* owner, PeerServerOptions options)
    : options_(std::move(options)),
      service_(std::make_unique<Service>(owner, options_.node_name, options_.metrics_text,
                                         options_.traffic)) {}

PeerServer::~PeerServer() { Stop(std::chrono::milliseconds(0)); }

absl::Status PeerServer::Start() {
  if (running_ != nullptr) return absl::FailedPreconditionError("grpc: server already started");
  const std::string where = HostPort(options_.address, options_.port);
  grpc::ServerBuilder builder;
  int selected_port = 0;
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!options_.tls.empty()) credentials = TlsCredentials();
  builder.AddListeningPort(where, credentials, &selected_port);
  builder.RegisterService(service_.get());
  builder.SetMaxReceiveMessageSize(options_.max_receive_message_bytes);
  // gRPC sets SO_REUSEPORT by default, which would let a second node "bind" a port that is
  // already in use and silently split the traffic with it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Clients ping every 30 s while calls are in flight (see GrpcPeerOptions); accept that
  // without answering GOAWAY "too_many_pings" during a long load.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || selected_port == 0) {
    if (server != nullptr) server->Shutdown(std::chrono::system_clock::now());
    return absl::UnavailableError(
        absl::StrCat("grpc: cannot listen on ", where, " (address in use?)"));
  }
  running_ = std::make_unique<Running>();
  running_->server = std::move(server);
  port_.store(static_cast<uint16_t>(selected_port), std::memory_order_release);
  spdlog::info("grpc: serving nexuscachepb.NexusCache on {}",
               HostPort(options_.address, static_cast<uint16_t>(selected_port)));
  return absl::OkStatus();
}

void PeerServer::Stop(std::chrono::milliseconds grace) {
  if (running_ == nullptr) return;
  // Shutdown waits up to the deadline for in-flight calls, then cancels them; GetReactor answers
  // a cancelled call at once, so this returns even if a loader never completes.
  running_->server->Shutdown(std::chrono::system_clock::now() + grace);
  running_->server->Wait();
  running_.reset();
}

}  // namespace nexus
