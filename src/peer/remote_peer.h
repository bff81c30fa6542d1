// RemotePeer: how this node reaches another member of the ring (a Peer, cluster/peer.h).
//
// Two transports. Get, Set, Delete and Replicate called on one of this node's HTTP event-loop
// threads (the normal case: a request this node received for a key another node owns, or the
// pushes of a write this node serves as primary) are forwarded by that very loop over HTTP/1.1
// to the member's HTTP port (peer/forwarder.h): no thread hand-off, pipelined, one send per
// peer per loop turn. Everything else uses gRPC (peer/grpc_peer.h): calls from other threads
// (e.g. a gRPC handler, a load completing on the origin's thread), FetchMetrics, and members
// whose HTTP address is unknown or not a numeric IP (names are not resolved on the loop
// thread). A member that serves the other routes but not /peer/v1/replicate (an older
// version) gets its pushes over gRPC from then on. Replica pushes and peeks, which a member
// answers without calling another node, have connections of their own and half the deadline
// (ForwardTarget::pool, remote_peer.cc).
//
// Fallbacks: a forwarded call that fails in transport (connection refused, closed or garbled,
// e.g. the member is draining its HTTP port during a restart) is retried once over gRPC; the
// operations are idempotent. A call that timed out is not retried (it already cost the
// deadline), nor are the calls that were queued behind it on the same connection. When every
// connection to the member has waited over 100 ms for an answer (slow loads at the owner), new
// calls go over gRPC rather than queue behind them. A member that answers 404/405 without the
// forwarding protocol's status header (an older version) is reached over gRPC for
// http_retry_after (default kHttpRetryAfter), then HTTP is tried again (it may have been
// upgraded); both changes are logged. A transport failure retried over gRPC counts as two
// calls in CallCounts (an HTTP error, then the gRPC outcome).
//
// Thread-safety: every method may be called concurrently from any thread. Calls in flight keep
// what they need alive, so the RemotePeer may be dropped (member left) while they finish.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/peer.h"
#include "peer/call_counter.h"
#include "peer/grpc_peer.h"

namespace nexus {

class RemotePeer final : public Peer {
 public:
  static constexpr std::chrono::milliseconds kHttpRetryAfter{30'000};

  // `http_address` ("ip:port") may be empty: gRPC only. `http_retry_after`: how long a member
  // that did not serve the forwarding routes is reached over gRPC before HTTP is tried again
  // (tests shorten it).
  RemotePeer(std::string name, std::string grpc_address, std::string http_address,
             GrpcPeerOptions options = {},
             std::chrono::milliseconds http_retry_after = kHttpRetryAfter);
  ~RemotePeer() override;
  RemotePeer(const RemotePeer&) = delete;
  RemotePeer& operator=(const RemotePeer&) = delete;

  void Get(std::string_view group, std::string_view key, ValueCallback done) override;
  void Peek(std::string_view group, std::string_view key, ValueCallback done) override;
  void Set(std::string_view group, std::string_view key, std::string_view value, Expiry expiry,
           bool hot, StatusCallback done) override;
  void Delete(std::string_view group, std::string_view key, StatusCallback done) override;
  void Replicate(std::string_view group, const Replica& replica, StatusCallback done) override;

  const std::string& name() const;
  const std::string& http_address() const;
  // The gRPC client (also for calls outside the Peer interface, e.g. FetchMetrics).
  const std::shared_ptr<GrpcPeer>& grpc() const;
  // Whether Get/Set/Delete on a loop thread go over HTTP (false: no usable HTTP address, or the
  // member did not serve the forwarding routes less than http_retry_after ago).
  bool forwards_over_http() const;

  // Calls started, over both transports (a retry over gRPC counts as a second call).
  uint64_t calls() const;
  // Finished calls by op and outcome, both transports summed.
  std::vector<CallCounter::Count> CallCounts() const;

 private:
  struct Shared;  // what in-flight calls keep alive; defined in the .cc
  void GetOrPeek(std::string_view group, std::string_view key, bool peek, ValueCallback done);
  const std::shared_ptr<Shared> shared_;
};

}  // namespace nexus
