// Forwarder: the client side of the HTTP forwarding protocol (peer/http_wire.h), living inside
// one event loop (io/loop.h). A request received by a loop and owned by another
// node is written, by that same loop thread, to a keep-alive connection to the owner's HTTP
// port; the answer is read by the same loop, which then answers its client. No other thread
// is involved, and everything forwarded to one peer during a loop turn leaves in one send()
// (pipelined), so under load the cost of a forwarded request is a share of a send and a recv
// on each side instead of a gRPC call (measured in docs/benchmarks.md).
//
// Connections: per peer, a small pool (at most kMaxConnections per loop). Requests are
// pipelined on the least busy connection; a connection whose oldest request has waited longer
// than kStallAfter (e.g. a Get running the owner's loader) is avoided while the pool can grow,
// so a slow load does not hold up the hits queued behind it. Idle connections close after
// kIdleClose, before the owner's keep-alive timeout would.
//
// Failures: every call completes exactly once. A refused, broken or garbled connection fails
// the calls on it with Unavailable, marked IsTransportFailure(): the owner may not have seen
// them (or, for a garbled answer, the answer is lost), so the caller may repeat them another
// way; the operations are idempotent. A call not answered within its deadline fails with
// DeadlineExceeded (also marked) and the connection is closed, since nothing behind a stuck
// answer can be read: the calls pipelined behind it fail with a plain Unavailable (not to be
// repeated: they waited already). An answer larger than max_response_bytes fails with
// ResourceExhausted. An answer without X-Nexus-Status fails with Unimplemented marked
// IsNoRoutes() when it is 404/405 (the owner does not serve the routes: an older version),
// else with the code its HTTP status suggests. Errors the owner returned (NotFound for a
// miss, a loader error) come back with their code and message. When the loop ends, pending
// calls fail with Unavailable.
//
// Thread-safety: a Forwarder belongs to one loop thread; use it only through Current(), on that
// thread. Callbacks run on that thread, possibly before the call returns (e.g. a connect error
// found at once), so callers must not hold locks the callback takes.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cluster/value.h"
#include "http/decoder.h"
#include "io/loop.h"
#include "io/socket.h"
#include "tls/context.h"

namespace nexus {

// Where a peer's forwarding routes are: its name (for messages), its HTTP address as text,
// the resolved socket address, and the deadline of every call.
struct ForwardTarget {
  std::string name;
  std::string address;  // host:port
  io::SocketAddress sockaddr;
  std::chrono::milliseconds deadline{2000};
  // Largest answer accepted (a value is at most --max-value-bytes).
  uint64_t max_response_bytes = 8 << 20;
  // Connections are pooled per (address, pool). The calls a member answers at once, without
  // calling another node (replica pushes, peeks), use a pool of their own: a forwarded write
  // may wait for a push (its quorum) and a forwarded Get that misses at the primary waits for
  // a peek at the other holders, and two such calls crossing between two nodes on the same
  // pipelined connections would each wait behind the other's push or peek until the deadline
  // (with R = 2, every node of a fresh cluster stalled for the 2 s peer deadline that way).
  std::string pool;
  // Sent with every request (auth/cluster_secret.h); empty: none.
  std::string secret;
  // A client context (tls/context.h): connections speak TLS and the member's certificate must
  // carry `name`. Null: plaintext.
  std::shared_ptr<const tls::Context> tls;

  std::string PoolKey() const { return pool.empty() ? address : address + "#" + pool; }
};

// True for the failures after which the owner may not have seen the request (connection
// refused, closed or timed out), as opposed to an answer the owner gave.
bool IsTransportFailure(const absl::Status& status);
// True for the Unimplemented of an owner that does not serve the forwarding routes (404/405
// without X-Nexus-Status), as opposed to an Unimplemented the owner answered.
bool IsNoRoutes(const absl::Status& status);

// What one complete answer in `decoder` (after ResponseDecoder::kResponse) means for its call
// (http_wire.h): nullopt for an interim answer (1xx), which is skipped; else the result, from
// X-Nexus-Status, X-Nexus-Deadline-Ms and the body (moved out), or from the HTTP status of an
// answer without X-Nexus-Status, as described at the top of this file. The caller then calls
// decoder.Next(). (The upstream connections use it on every answer; public for the fuzz target
// of the answer path.)
std::optional<absl::StatusOr<CachedValue>> TakeAnswer(const ForwardTarget& from,
                                                      http::ResponseDecoder& decoder);

class Forwarder final : public io::LoopService {
 public:
  static constexpr int kMaxConnections = 4;
  static constexpr std::chrono::milliseconds kStallAfter{2};
  // CanTake is false when every connection's oldest request has waited this long.
  static constexpr std::chrono::milliseconds kDivertAfter{100};
  static constexpr std::chrono::milliseconds kIdleClose{15'000};

  Forwarder();
  ~Forwarder() override;  // fails what is pending with Unavailable

  // The forwarder of the calling thread's loop, or nullptr when not on a loop thread.
  static Forwarder* Current();

  // The operations of http_wire.h. `target` is copied where needed; `done` runs exactly once.
  // `peek`: the member's copy only (Peer::Peek).
  void Get(const ForwardTarget& target, std::string_view group, std::string_view key,
           ValueCallback done, bool peek = false);
  void Set(const ForwardTarget& target, std::string_view group, std::string_view key,
           std::string_view value, Expiry expiry, bool hot, StatusCallback done);
  void Delete(const ForwardTarget& target, std::string_view group, std::string_view key,
              StatusCallback done);
  void Replicate(const ForwardTarget& target, std::string_view group, const Replica& replica,
                 StatusCallback done);

  // False when the pool to `target` is full and every connection's oldest request has waited
  // longer than kDivertAfter (slow loads at the owner): a call queued now would wait behind
  // them, so the caller should go another way (gRPC). The threshold is well above a busy
  // machine's scheduling delays, since the other way costs more CPU.
  bool CanTake(const ForwardTarget& target) const;

  // Open connections (all peers), for tests.
  size_t connections() const;

  void OnTurnEnd() override;
  void OnTick(std::chrono::steady_clock::time_point now) override;

  class Upstream;  // one connection; defined in the .cc

 private:
  struct Pending;
  Pending NewPending(const ForwardTarget& target,
                     std::variant<ValueCallback, StatusCallback> done) const;
  // Queues `request` (a serialized HTTP request) on a connection to `target`.
  void Send(const ForwardTarget& target, std::string request, Pending pending);
  // A connection to `target` for one more request; nullptr (and *error) if none can be opened.
  Upstream* Pick(const ForwardTarget& target, absl::Status* error);
  void Dirty(Upstream* upstream);
  void Remove(Upstream* upstream);

  io::Loop* const loop_;
  // address -> its connections
  std::map<std::string, std::vector<std::unique_ptr<Upstream>>, std::less<>> pools_;
  std::vector<Upstream*> dirty_;  // with output to flush at the end of this turn
};

}  // namespace nexus
