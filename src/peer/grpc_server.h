// PeerServer: the owner side of node-to-node traffic over gRPC. Serves nexuscachepb.NexusCache
// (Get, Set, Delete, Replicate, Metrics) by decoding each call, running it on the OwnerService
// (service/owner_service.h, shared with the /peer/v1 HTTP routes: one validation, one
// behaviour) and encoding its answer; it never forwards.
//
// Requests use gRPC's callback API: a Get whose key misses runs the group's loader, which may
// complete later on another thread; the reply is sent from that completion, so no gRPC thread
// ever blocks on a load. If a call is cancelled (client deadline, Stop's grace expired) before
// the load completes, the call is answered CANCELLED at once and the late load result is
// dropped (it still lands in the cache).
//
// Set's ttl_ms, deadline_ms and expire are OwnerSet's. Status codes are mapped by
// peer/status_map.h.
//
// Thread-safety: Start, Stop and the destructor must not race each other; port() may be called
// from any thread at any time. The owner service (and its
// groups) must outlive the server; Stop() (or the destructor) returns only after every in-flight
// call has been answered.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "peer/peer_traffic.h"
#include "service/owner_service.h"
#include "tls/context.h"

namespace grpc {
class ServerCredentials;
}  // namespace grpc

namespace nexus {

struct PeerServerOptions {
  // Interface to listen on. An IPv6 literal may be given with or without brackets.
  std::string address = "0.0.0.0";
  // TCP port; 0 picks a free one (read it back with port()).
  uint16_t port = 8888;
  // Largest request accepted (a Set carries a value up to --max-value-bytes, 1 MiB by default).
  int max_receive_message_bytes = 8 << 20;
  // Serves the Metrics RPC: this node's name and its Prometheus text exposition, rendered per
  // call (any gRPC thread). Without it Metrics answers UNIMPLEMENTED.
  std::string node_name;
  std::function<std::string()> metrics_text;
  // Counts the RPCs answered (any status) in served_grpc, and with its cluster secret set
  // refuses every call without it (UNAUTHENTICATED, counted); may be null.
  PeerTraffic* traffic = nullptr;
  // Mutual TLS (--tls-*): the port speaks only TLS with this certificate and key, and a
  // client's certificate is verified by `tls_verifier` (the cluster's server context: the CA,
  // and the count and log of refusals, tls/context.h). A client without a certificate gets
  // through the handshake and has every call refused (PeerTraffic::Admit). Empty: plaintext.
  tls::Pem tls;
  std::shared_ptr<const tls::Context> tls_verifier;
};

class PeerServer {
 public:
  PeerServer(OwnerService* owner, PeerServerOptions options);
  ~PeerServer();  // Stop(0 ms) if still running.
  PeerServer(const PeerServer&) = delete;
  PeerServer& operator=(const PeerServer&) = delete;

  // Binds and starts serving. Unavailable "grpc: cannot listen on 0.0.0.0:8888 (address in
  // use?)" when the port cannot be bound; FailedPrecondition if already started. Never crashes.
  [[nodiscard]] absl::Status Start();

  // The bound port (meaningful after a successful Start; 0 before).
  uint16_t port() const { return port_.load(std::memory_order_acquire); }

  // Stops accepting calls, lets in-flight calls finish for up to `grace`, then cancels the
  // rest. Idempotent; a no-op if not started.
  void Stop(std::chrono::milliseconds grace);

 private:
  class Service;
  // The port's credentials under mutual TLS (options_.tls).
  std::shared_ptr<grpc::ServerCredentials> TlsCredentials() const;

  const PeerServerOptions options_;
  std::atomic<uint16_t> port_{0};
  std::unique_ptr<Service> service_;
  // Opaque to keep gRPC headers out of this header (they are slow to compile).
  struct Running;
  std::unique_ptr<Running> running_;
};

}  // namespace nexus
