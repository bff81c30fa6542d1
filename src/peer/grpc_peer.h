// GrpcPeer: a Peer (cluster/peer.h) reached over gRPC — the client side of node-to-node traffic.
//
// One grpc::Channel per peer, created in the constructor and reused by every call (HTTP/2
// multiplexes concurrent calls over one connection; gRPC reconnects it by itself). Every call is
// an async callback-API call with its own ClientContext, deadline = now + options.deadline, and
// wait_for_ready(false): a peer that refuses connections fails at once with Unavailable instead
// of waiting for the deadline; a peer that accepts but never answers fails with DeadlineExceeded
// after the deadline. Either way the callback runs exactly once, never hangs. Transport errors
// name the peer ("peer b (10.0.0.2:8888) unavailable: ..."), see peer/status_map.h.
//
// Thread-safety: all methods may be called concurrently from any thread. Callbacks run on a
// gRPC thread (or, rarely, on the calling thread when the call fails before it starts); they
// must not block for long. A call in flight keeps the channel alive, so the GrpcPeer may be
// destroyed (e.g. dropped from the ring) while calls are pending; those calls still complete.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "cluster/peer.h"
#include "peer/call_counter.h"
#include "tls/context.h"

namespace nexus {

struct GrpcPeerOptions {
  // Per-call deadline. A peer that accepts connections but never answers costs a caller this
  // long.
  std::chrono::milliseconds deadline{2000};
  // HTTP/2 keepalive ping interval while calls are in flight (no pings on an idle channel), and
  // how long to wait for the ack before declaring the connection dead.
  std::chrono::milliseconds keepalive_time{30'000};
  std::chrono::milliseconds keepalive_timeout{10'000};
  // Largest response accepted (a Get returns one value, at most --max-value-bytes).
  int max_receive_message_bytes = 8 << 20;
  // Cap on the reconnect backoff after the peer went away. gRPC's default (120 s) would leave a
  // restarted peer unreachable for up to two minutes.
  std::chrono::milliseconds max_reconnect_backoff{5000};
  // --cluster-secret-file's secret, sent with every call (gRPC metadata, and the header of the
  // HTTP forwarding); empty: none.
  std::string cluster_secret;
  // Mutual TLS (--tls-*): this node's certificate and key, and the CA the peer's certificate
  // must chain to; the certificate must carry the peer's name (the channel's target name).
  // Empty: plaintext.
  tls::Pem tls;
  // The same as a client context for the HTTP forwarding of RemotePeer (peer/forwarder.h);
  // set together with `tls`.
  std::shared_ptr<const tls::Context> tls_context;
};

class GrpcPeer final : public Peer {
 public:
  // `name` is the node name (ring member), `address` the host:port its gRPC server listens on.
  GrpcPeer(std::string name, std::string address, GrpcPeerOptions options = {});
  ~GrpcPeer() override;
  GrpcPeer(const GrpcPeer&) = delete;
  GrpcPeer& operator=(const GrpcPeer&) = delete;

  void Get(std::string_view group, std::string_view key, ValueCallback done) override;
  void Peek(std::string_view group, std::string_view key, ValueCallback done) override;
  void Set(std::string_view group, std::string_view key, std::string_view value, Expiry expiry,
           bool hot, StatusCallback done) override;
  void Delete(std::string_view group, std::string_view key, StatusCallback done) override;
  void Replicate(std::string_view group, const Replica& replica, StatusCallback done) override;

  // The peer's Prometheus text exposition (Metrics RPC), for the dashboard's cluster view.
  // `deadline` replaces options.deadline (a dashboard refreshes every second). Not counted in
  // calls(), failures() or CallCounts(): those describe cache traffic.
  using MetricsCallback = absl::AnyInvocable<void(absl::StatusOr<std::string>)>;
  void FetchMetrics(std::chrono::milliseconds deadline, MetricsCallback done);

  const std::string& name() const;
  const std::string& address() const;
  // Calls started.
  uint64_t calls() const;
  // Calls that ended in an error other than NotFound (a miss is an answer, not a failure).
  uint64_t failures() const;

  // Finished calls by operation (get, set, delete, replicate) and outcome (get: hit, miss,
  // error; the others: ok, error), for nexuscache_peer_requests_total{peer,op,status}.
  std::vector<CallCounter::Count> CallCounts() const;

 private:
  // Shared with in-flight calls; defined in the .cc to keep gRPC headers out of this one.
  class Impl;
  const std::shared_ptr<Impl> impl_;
};

}  // namespace nexus
