#include "peer/grpc_peer.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <utility>

#include "auth/cluster_secret.h"
#include "peer/call_counter.h"
#include "peer/status_map.h"
#include "proto/nexuscache.grpc.pb.h"

namespace nexus {

namespace {

int ClampMs(std::chrono::milliseconds ms) {
  return static_cast<int>(std::min<int64_t>(ms.count(), std::numeric_limits<int>::max()));
}

}  // namespace

class GrpcPeer::Impl {
 public:
  Impl(std::string name, std::string address, GrpcPeerOptions options)
      : name_(std::move(name)), address_(std::move(address)), options_(options) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, ClampMs(options_.keepalive_time));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ClampMs(options_.keepalive_timeout));
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, ClampMs(options_.max_reconnect_backoff));
    args.SetMaxReceiveMessageSize(options_.max_receive_message_bytes);
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
    if (!options_.tls.empty()) {
      credentials =
          grpc::SslCredentials(grpc::SslCredentialsOptions{.pem_root_certs = options_.tls.ca,
                                                           .pem_private_key = options_.tls.key,
                                                           .pem_cert_chain = options_.tls.cert});
      args.SetSslTargetNameOverride(name_);  // the member name its certificate carries
    }
    channel_ = grpc::CreateCustomChannel(address_, credentials, args);
    stub_ = nexuscachepb::NexusCache::NewStub(channel_);
  }

  // One call in flight: everything gRPC needs alive until the completion callback runs, plus a
  // reference to the Impl so the channel outlives the call even if the GrpcPeer is dropped.
  template <typename Request, typename Response, typename Done>
  struct Call {
    Call(std::shared_ptr<Impl> impl, Done done) : impl(std::move(impl)), done(std::move(done)) {
      const Impl& i = *this->impl;
      ctx.set_deadline(std::chrono::system_clock::now() + i.options_.deadline);
      ctx.set_wait_for_ready(false);
      if (!i.options_.cluster_secret.empty()) {
        ctx.AddMetadata(auth::kClusterSecretMetadata, i.options_.cluster_secret);
      }
    }
    std::shared_ptr<Impl> impl;
    grpc::ClientContext ctx;
    Request request;
    Response response;
    Done done;
  };

  // The call's deadline as unix ms (the owner does not apply a write that arrives later).
  static int64_t AnswerBy(const grpc::ClientContext& ctx) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(ctx.deadline().time_since_epoch())
        .count();
  }

  // Converts the call's status and counts its outcome.
  absl::Status Finish(CallCounter::Op op, const grpc::Status& status) {
    absl::Status s = FromPeerGrpcStatus(status, name_, address_, options_.deadline);
    counter_.Finished(op, s);
    return s;
  }

  static void Get(const std::shared_ptr<Impl>& self, std::string_view group, std::string_view key,
                  bool peek, ValueCallback done) {
    using GetCall = Call<nexuscachepb::Request, nexuscachepb::Response, ValueCallback>;
    auto* call = new GetCall(self, std::move(done));
    call->request.set_group(std::string(group));
    call->request.set_key(std::string(key));
    call->request.set_peek(peek);
    self->counter_.Started();
    self->stub_->async()->Get(
        &call->ctx, &call->request, &call->response, [call](grpc::Status status) {
          std::unique_ptr<GetCall> owned(call);
          absl::Status s = owned->impl->Finish(CallCounter::kGet, status);
          absl::StatusOr<CachedValue> result;
          if (s.ok()) {
            const int64_t d = owned->response.deadline_ms();
            result = CachedValue{.data = std::move(*owned->response.mutable_value()),
                                 .deadline = d == 0 ? kNoDeadline : d};
          } else {
            result = std::move(s);
          }
          // Release the context and the channel reference before handing control to the user,
          // who may destroy the last GrpcPeer from inside the callback's aftermath.
          ValueCallback done = std::move(owned->done);
          owned.reset();
          done(std::move(result));
        });
  }

  static void Set(const std::shared_ptr<Impl>& self, std::string_view group, std::string_view key,
                  std::string_view value, Expiry expiry, bool hot, StatusCallback done) {
    using SetCall = Call<nexuscachepb::SetRequest, nexuscachepb::SetResponse, StatusCallback>;
    auto* call = new SetCall(self, std::move(done));
    call->request.set_group(std::string(group));
    call->request.set_key(std::string(key));
    call->request.set_value(std::string(value));
    if (expiry.is_ttl()) {
      call->request.set_ttl_ms(expiry.ttl_ms);
    } else {
      call->request.set_deadline_ms(expiry.deadline);
    }
    call->request.set_ishot(hot);
    call->request.set_answer_by_ms(AnswerBy(call->ctx));
    self->counter_.Started();
    self->stub_->async()->Set(
        &call->ctx, &call->request, &call->response, [call](grpc::Status status) {
          std::unique_ptr<SetCall> owned(call);
          absl::Status s = owned->impl->Finish(CallCounter::kSet, status);
          if (s.ok() && !owned->response.ok()) {
            owned->impl->counter_.CountFailure();
            s = absl::InternalError("peer " + owned->impl->name_ + " (" + owned->impl->address_ +
                                    ") did not store the value");
          }
          StatusCallback done = std::move(owned->done);
          owned.reset();
          done(std::move(s));
        });
  }

  static void Delete(const std::shared_ptr<Impl>& self, std::string_view group,
                     std::string_view key, StatusCallback done) {
    using DeleteCall =
        Call<nexuscachepb::DeleteRequest, nexuscachepb::DeleteResponse, StatusCallback>;
    auto* call = new DeleteCall(self, std::move(done));
    call->request.set_group(std::string(group));
    call->request.set_key(std::string(key));
    call->request.set_answer_by_ms(AnswerBy(call->ctx));
    self->counter_.Started();
    self->stub_->async()->Delete(
        &call->ctx, &call->request, &call->response, [call](grpc::Status status) {
          std::unique_ptr<DeleteCall> owned(call);
          absl::Status s = owned->impl->Finish(CallCounter::kDelete, status);
          StatusCallback done = std::move(owned->done);
          owned.reset();
          done(std::move(s));
        });
  }

  static void Replicate(const std::shared_ptr<Impl>& self, std::string_view group,
                        const Replica& replica, StatusCallback done) {
    using ReplicateCall =
        Call<nexuscachepb::ReplicateRequest, nexuscachepb::ReplicateResponse, StatusCallback>;
    auto* call = new ReplicateCall(self, std::move(done));
    call->request.set_group(std::string(group));
    call->request.set_key(replica.key);
    call->request.set_value(replica.value);
    call->request.set_deadline_ms(replica.deadline == kNoDeadline ? 0 : replica.deadline);
    call->request.set_version(replica.version);
    call->request.set_remove(replica.remove);
    call->request.set_ring(replica.ring);
    call->request.set_handoff(replica.handoff);
    self->counter_.Started();
    self->stub_->async()->Replicate(
        &call->ctx, &call->request, &call->response, [call](grpc::Status status) {
          std::unique_ptr<ReplicateCall> owned(call);
          absl::Status s = owned->impl->Finish(CallCounter::kReplicate, status);
          StatusCallback done = std::move(owned->done);
          owned.reset();
          done(std::move(s));
        });
  }

  static void FetchMetrics(const std::shared_ptr<Impl>& self, std::chrono::milliseconds deadline,
                           MetricsCallback done) {
    using MetricsCall =
        Call<nexuscachepb::MetricsRequest, nexuscachepb::MetricsResponse, MetricsCallback>;
    auto* call = new MetricsCall(self, std::move(done));
    call->ctx.set_deadline(std::chrono::system_clock::now() + deadline);
    self->stub_->async()->Metrics(
        &call->ctx, &call->request, &call->response, [call, deadline](grpc::Status status) {
          std::unique_ptr<MetricsCall> owned(call);
          const Impl& impl = *owned->impl;
          absl::StatusOr<std::string> result;
          if (status.ok()) {
            result = std::move(*owned->response.mutable_text());
          } else {
            result = FromPeerGrpcStatus(status, impl.name_, impl.address_, deadline);
          }
          MetricsCallback done = std::move(owned->done);
          owned.reset();
          done(std::move(result));
        });
  }

  const std::string name_;
  const std::string address_;
  const GrpcPeerOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<nexuscachepb::NexusCache::Stub> stub_;
  CallCounter counter_;
};

GrpcPeer::GrpcPeer(std::string name, std::string address, GrpcPeerOptions options)
    : impl_(std::make_shared<Impl>(std::move(name), std::move(address), options)) {}

GrpcPeer::~GrpcPeer() = default;

void GrpcPeer::Get(std::string_view group, std::string_view key, ValueCallback done) {
  Impl::Get(impl_, group, key, /*peek=*/false, std::move(done));
}

void GrpcPeer::Peek(std::string_view group, std::string_view key, ValueCallback done) {
  Impl::Get(impl_, group, key, /*peek=*/true, std::move(done));
}

void GrpcPeer::Set(std::string_view group, std::string_view key, std::string_view value,
                   Expiry expiry, bool hot, StatusCallback done) {
  Impl::Set(impl_, group, key, value, expiry, hot, std::move(done));
}

void GrpcPeer::Delete(std::string_view group, std::string_view key, StatusCallback done) {
  Impl::Delete(impl_, group, key, std::move(done));
}

void GrpcPeer::Replicate(std::string_view group, const Replica& replica, StatusCallback done) {
  Impl::Replicate(impl_, group, replica, std::move(done));
}

void GrpcPeer::FetchMetrics(std::chrono::milliseconds deadline, MetricsCallback done) {
  Impl::FetchMetrics(impl_, deadline, std::move(done));
}

const std::string& GrpcPeer::name() const { return impl_->name_; }
const std::string& GrpcPeer::address() const { return impl_->address_; }
uint64_t GrpcPeer::calls() const { return impl_->counter_.calls(); }
uint64_t GrpcPeer::failures() const { return impl_->counter_.failures(); }
std::vector<CallCounter::Count> GrpcPeer::CallCounts() const { return impl_->counter_.Counts(); }

}  // namespace nexus
