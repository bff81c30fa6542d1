// EtcdClient: the smallest honest etcd v3 client, on gRPC (no etcd C++ client ships in Debian).
//
// It speaks etcd's own v3 gRPC API (proto/etcd/rpc.proto, a wire-compatible subset of etcd's
// api/etcdserverpb/rpc.proto) and covers exactly what membership needs: leases (grant, revoke,
// keep-alive stream), Put / prefix Range / Delete / Compact, and a prefix watch stream.
//
// Endpoints and failover. `endpoints` are "host:port" (an "http://" or "https://" prefix is
// accepted and stripped; TLS is on when credentials.ca_pem is set, and etcd's certificate must
// then carry the endpoint's host). One gRPC channel per endpoint, created on first use and reused
// by every later call and stream. Each UNARY call gets a deadline of `unary_timeout` per attempt
// and wait_for_ready(false); on UNAVAILABLE or DEADLINE_EXCEEDED it tries the next endpoint
// (round robin, starting from the last endpoint that answered, which is remembered), so a call
// costs at most endpoints.size() * unary_timeout. Any other error (NotFound for an unknown lease,
// InvalidArgument, ...) is returned at once. Errors keep gRPC's code (gRPC and absl codes are the
// same numbers) and name the endpoint and method.
//
// Blocking. Every unary method BLOCKS the calling thread until etcd answers or the deadline(s)
// pass. That is intended: the client is driven from the discovery thread, never from an HTTP
// event loop or a gRPC callback. KeepAlive() and WatchPrefix() block too, while they pick an
// endpoint (each candidate gets up to unary_timeout to connect); the streams themselves are
// asynchronous (gRPC callback API) and have NO deadline.
//
// Auth. With credentials.user, the client authenticates (etcd's Auth.Authenticate) on an
// endpoint before its first call there and sends the token with every call and stream (gRPC
// metadata "token"); a call refused with UNAUTHENTICATED (the token expired, or another
// member does not know it) or with "revision of auth store is old" (users or roles changed
// since the token was issued) authenticates again and is repeated once. A refused password is
// InvalidArgument "etcd HOST Authenticate: etcdserver: authentication failed, invalid user ID
// or password", not retried on other endpoints.
//
// Streams use the first endpoint that is reachable when they start (trying the last good one
// first). If none is, the stream is started on the last good endpoint anyway and ends at once
// with UNAVAILABLE through on_done. A stream never reconnects by itself: when on_done runs the
// stream is over, and the owner decides what to do (new stream, new lease, re-list + re-watch).
//
// Thread-safety: every EtcdClient method may be called concurrently from any thread. A stream's
// callbacks run on gRPC threads, one at a time per stream, in order; they must not block for long
// and must NOT call Stop() on (or destroy) their own stream — that would wait for itself.
// Streams hold their channel, so they may outlive the EtcdClient that made them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace nexus {

// How to reach a secured etcd (node flags --etcd-ca, --etcd-cert, --etcd-key, --etcd-user,
// --etcd-password-file).
struct EtcdCredentials {
  // PEM text. ca_pem set: TLS, etcd's certificate must chain to it; cert_pem + key_pem: also a
  // client certificate (for etcd's --client-cert-auth). All empty: plaintext.
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
  // etcd's user/password auth; empty user: none.
  std::string user;
  std::string password;
};

struct EtcdClientOptions {
  // etcd client URLs as host:port, e.g. {"127.0.0.1:2379"}.
  std::vector<std::string> endpoints;
  // Deadline of one attempt of one unary call (and the connect wait of a stream's endpoint).
  std::chrono::milliseconds unary_timeout{2000};
  EtcdCredentials credentials;
};

struct LeaseGrant {
  int64_t id = 0;
  int64_t ttl_seconds = 0;  // as granted by the server
};

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t mod_revision = 0;
  int64_t create_revision = 0;
  int64_t lease = 0;  // 0 = no lease
};

struct RangeResult {
  std::vector<EtcdKeyValue> kvs;  // sorted by key (etcd's order)
  int64_t revision = 0;           // store revision the range was read at (response header)
};

struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  std::string key;
  std::string value;         // empty for kDelete
  int64_t mod_revision = 0;  // for kDelete: the revision of the deletion
};

// The smallest key strictly greater than every key with `prefix` ("a/" -> "a0", "a\xff" -> "b");
// "\0" (= no upper bound) when there is none (empty prefix or all bytes 0xff). etcd's rule.
std::string EtcdPrefixRangeEnd(const std::string& prefix);

// A lease keep-alive stream (etcdserverpb.Lease/LeaseKeepAlive). Writes one keep-alive every
// `interval` from a small dedicated thread; reports every response's TTL through on_response. The
// stream ends (on_done runs exactly once, then nothing else runs) when:
//   - the lease is gone (a response with TTL <= 0 — also reported to on_response first):
//     on_done(NotFound);
//   - the stream breaks (etcd down, connection lost): on_done(the gRPC status, e.g. UNAVAILABLE);
//   - Stop() or the destructor: on_done(Cancelled).
class KeepAliveStream {
 public:
  using ResponseCallback = std::function<void(int64_t ttl_seconds)>;
  using DoneCallback = std::function<void(absl::Status)>;

  // Stops (see Stop()).
  ~KeepAliveStream();
  KeepAliveStream(const KeepAliveStream&) = delete;
  KeepAliveStream& operator=(const KeepAliveStream&) = delete;

  // Cancels the stream and returns once on_done has run and the writer thread has exited. Prompt
  // (no waiting for the next interval). Idempotent; must not be called from this stream's own
  // callbacks.
  void Stop();

  int64_t lease_id() const;
  const std::string& endpoint() const;

  class Impl;

 private:
  friend class EtcdClient;
  explicit KeepAliveStream(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A prefix watch stream (etcdserverpb.Watch/Watch): one WatchCreateRequest for [prefix,
// EtcdPrefixRangeEnd(prefix)) from `start_revision` (0 = from now). The created acknowledgement is
// not an event. on_events gets each response's events in revision order with the response header
// revision. on_done runs exactly once, last, with:
//   - OutOfRange and compact_revision > 0 when start_revision was compacted (or the watcher fell
//     behind compaction): re-list (RangePrefix) and watch again from the list's revision + 1;
//   - FailedPrecondition when etcd canceled the watch for another reason (message has its reason);
//   - the gRPC status (e.g. UNAVAILABLE) when the stream broke;
//   - Cancelled after Stop() / destruction.
// compact_revision is 0 except in the first case.
class WatchStream {
 public:
  using EventsCallback =
      std::function<void(const std::vector<WatchEvent>& events, int64_t header_revision)>;
  using DoneCallback = std::function<void(absl::Status, int64_t compact_revision)>;

  // Stops (see Stop()).
  ~WatchStream();
  WatchStream(const WatchStream&) = delete;
  WatchStream& operator=(const WatchStream&) = delete;

  // Cancels the stream and returns once on_done has run. Idempotent; must not be called from this
  // stream's own callbacks.
  void Stop();

  const std::string& endpoint() const;

  class Impl;

 private:
  friend class EtcdClient;
  explicit WatchStream(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class EtcdClient {
 public:
  using Options = EtcdClientOptions;

  explicit EtcdClient(EtcdClientOptions options);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  // Blocking unary calls (see the file comment for deadlines and failover).

  // LeaseGrant: a new lease with (at least) `ttl_seconds`; the server's id and TTL.
  absl::StatusOr<LeaseGrant> Grant(int64_t ttl_seconds);
  // LeaseRevoke: the lease and every key attached to it are deleted. NotFound if unknown.
  absl::Status Revoke(int64_t lease_id);
  // Put: `key` = `value`, attached to `lease_id` (0 = none). Returns the store revision of the put.
  absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value,
                              int64_t lease_id = 0);
  // Range over every key starting with `prefix` (all of them; no limit, linearizable read).
  absl::StatusOr<RangeResult> RangePrefix(const std::string& prefix);
  // DeleteRange of exactly `key` (OK even if it did not exist).
  absl::Status Delete(const std::string& key);
  // Compact the key-value history up to `revision` (watches from before it then fail with
  // OutOfRange). Returns once compaction is applied logically (not physically).
  absl::Status Compact(int64_t revision);

  // Streams (see KeepAliveStream / WatchStream). Never null.
  std::unique_ptr<KeepAliveStream> KeepAlive(int64_t lease_id, std::chrono::milliseconds interval,
                                             KeepAliveStream::ResponseCallback on_response,
                                             KeepAliveStream::DoneCallback on_done);
  std::unique_ptr<WatchStream> WatchPrefix(const std::string& prefix, int64_t start_revision,
                                           WatchStream::EventsCallback on_events,
                                           WatchStream::DoneCallback on_done);

  const std::vector<std::string>& endpoints() const;
  // The endpoint that answered last (the first one before any call).
  std::string current_endpoint() const;

 private:
  class Impl;
  const std::unique_ptr<Impl> impl_;
};

}  // namespace nexus
