// Node: one nexuscache process. Wires the group (caches, loader, singleflight) to the ring
// picker, the gRPC peer server, the HTTP API (and optional /metrics listener) and the
// background expiry sweeper, and owns their lifetimes.
//
// Lifecycle: construct, Start() (binds every port; on error nothing keeps running), then
// Stop() (also run by the destructor): with --etcd, hand this node's copies to their next
// holders (within config.drain_timeout, still serving) and leave the membership; then stop
// accepting HTTP, let in-flight requests finish within config.shutdown_grace, then stop gRPC,
// the sweeper and the origin client.
// Thread-safety: Start and Stop from one thread; everything else runs on the servers' threads.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "auth/cluster_secret.h"
#include "auth/tokens.h"
#include "cache/expiry_sweeper.h"
#include "discovery/etcd_membership.h"
#include "group/registry.h"
#include "http/server.h"
#include "metrics/metrics.h"
#include "node/api.h"
#include "node/config.h"
#include "node/resp_api.h"
#include "peer/grpc_server.h"
#include "peer/ring_picker.h"
#include "service/cache_service.h"
#include "service/owner_service.h"
#include "tls/context.h"

namespace nexus {

class Node : private RingPeerPicker::Observer {
 public:
  explicit Node(Config config);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  absl::Status Start();
  void Stop();

  uint16_t http_port() const;
  uint16_t grpc_port() const;

  // SIGHUP: reads --auth-token-file again (a bad file keeps the tokens before it, logged). New
  // tokens apply to the next request, connections stay open.
  void ReloadTokens();

 private:
  struct OriginRuntime;  // io_context + thread for origin fetches (keeps Asio out of headers)

  // A graceful leave (SIGTERM with --etcd): drains this node's copies to their next holders
  // within --drain-timeout while still serving, then leaves the membership.
  void Leave();
  // Every change of the member set (etcd's watch, /setpeer): the groups' handoff begins a
  // transition before the ring changes; members that joined get this node's hot keys, and
  // one that restarted under its name gets its copies again.
  void MembersChanging() override;
  void MembersChanged(const std::vector<RingPeerPicker::Joined>& joined) override;

  const Config config_;
  // --cluster-secret-file's secret (null without it, or if it could not be read: then
  // init_error_ says why and Start fails).
  std::unique_ptr<auth::ClusterSecret> cluster_secret_;
  // --tls-*: the refused handshakes (outlives the contexts), the HTTP port's server context
  // and the files' text for gRPC (null / empty without it).
  tls::HandshakeFailures tls_failures_;
  std::shared_ptr<const tls::Context> tls_server_;
  // --http-tls-*: the HTTP port's context for clients (null without it).
  std::shared_ptr<const tls::Context> http_tls_;
  tls::Pem cluster_pem_;
  absl::Status LoadClusterTls(RingPickerOptions* ring_options);
  // --etcd-ca/-cert/-key and --etcd-user/--etcd-password-file, read at construction.
  EtcdCredentials etcd_credentials_;
  absl::Status LoadEtcdCredentials();
  // Counted by both peer fronts, read by metrics_: outlives them all.
  PeerTraffic peer_traffic_;
  metrics::Registry metrics_;
  GroupRegistry groups_;
  std::shared_ptr<RingPeerPicker> picker_;
  std::unique_ptr<OriginRuntime> origin_;
  std::unique_ptr<OwnerService> owner_;
  // --auth-token-file's tokens (none without it); null if the file could not be read, and then
  // Start fails with init_error_.
  std::unique_ptr<auth::Authenticator> auth_;
  absl::Status init_error_;
  std::unique_ptr<CacheService> service_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<PeerServer> grpc_;
  std::unique_ptr<http::Server> http_;
  std::shared_ptr<RespApi> resp_api_;  // --resp-port: its commands, on http_'s loops
  std::atomic<const http::Server*> http_ready_{nullptr};  // http_ once started (metrics)
  std::unique_ptr<http::Server> metrics_http_;
  std::unique_ptr<ExpirySweeper> sweeper_;
  std::unique_ptr<EtcdMembership> membership_;  // when --etcd is given
  // membership_ once created, for the groups' primary check (which may run before).
  std::atomic<const EtcdMembership*> membership_ready_{nullptr};
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace nexus
