// TLS for the cluster plane (--tls-cert, --tls-key, --tls-ca): OpenSSL contexts for the two
// sides of a node-to-node connection, the sessions made from them, and the count of the
// handshakes they refused.
//
// Rules (docs/security.md): TLS 1.2 or later. A cluster server requires a client certificate
// that chains to the CA file (mutual TLS). A client verifies that the server's certificate
// chains to the CA file and carries the name of the member it meant to call as a DNS
// subjectAltName (or, without any, as the common name): a certificate stolen from one member
// cannot impersonate another. The CA file may hold several CAs (a rotation: old and new).
// Creating a context ignores SIGPIPE process-wide, since OpenSSL writes with write().
//
// The client HTTP port's own certificate (--http-tls-cert): a server context that does not
// require a client certificate (one that is presented is verified against the CA file, when
// given: a member's). Clients of the cluster plane name kClusterServerName in their SNI; a
// client-port context given the cluster's server context switches such handshakes to it, so
// members see the cluster certificate (and must present theirs) on the same port.
//
// Sessions: NewSession gives an SSL bound to a non-blocking socket; io::BufferedSocket drives
// it (io/connection.h). A refused handshake is classified (FailureReason) and counted in the
// context's HandshakeFailures, which the node exports as
// nexuscache_tls_handshake_failures_total{side,reason}; the first refusal of each reason and
// then at most one per 10 s per side and reason is logged.
//
// Thread-safety: a Context is immutable after Create and may be shared by every loop thread;
// a session belongs to one socket (one thread). HandshakeFailures counts from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace nexus::tls {

struct Files {
  std::string cert;  // PEM: this node's certificate (and intermediates)
  std::string key;   // PEM: its private key
  std::string ca;    // PEM: the CA certificate(s) peers' certificates must chain to
};

enum class Side : uint8_t { kServer = 0, kClient = 1 };

// Why a handshake failed, as the reason label of the metric.
enum class Failure : uint8_t {
  kNoCertificate,  // the client presented none
  kUntrusted,      // the certificate does not chain to the CA file (wrong CA, self-signed)
  kExpired,        // outside its validity period
  kWrongName,      // the server's certificate lacks the member name the client called
  kRefusedByPeer,  // the other side refused ours (an alert: unknown CA, bad certificate, ...)
  kNotTls,         // not a TLS handshake at all (garbage, a plaintext client)
  kOther,          // anything else (protocol version, ciphers, a reset mid-handshake)
  kCount
};
std::string_view FailureName(Failure failure);

// Refused handshakes by side and reason, shared by the contexts of a node.
class HandshakeFailures {
 public:
  void Count(Side side, Failure failure, std::string_view detail, std::string_view remote);
  uint64_t count(Side side, Failure failure) const {
    return counts_[static_cast<int>(side)][static_cast<int>(failure)].load(
        std::memory_order_relaxed);
  }

 private:
  std::array<std::array<std::atomic<uint64_t>, static_cast<int>(Failure::kCount)>, 2> counts_{};
  std::array<std::array<std::atomic<int64_t>, static_cast<int>(Failure::kCount)>, 2> last_log_ms_{};
};

// The SNI a cluster client sends (a name under the reserved .invalid TLD: no client of the
// HTTP port uses it by accident). The name check is separate (the member's name).
inline constexpr char kClusterServerName[] = "cluster.nexuscache.invalid";

class Context;
struct ContextOptions {
  Side side = Side::kServer;
  Files files;  // files.ca may be empty for a server that does not verify clients
  // The flags the files came from, for error messages.
  std::string cert_flag = "--tls-cert";
  std::string key_flag = "--tls-key";
  std::string ca_flag = "--tls-ca";
  // When not empty, the certificate must carry it (the member name peers will check).
  std::string own_name;
  // Server: a client certificate chaining to files.ca is required; false: verified when one is
  // presented (and files.ca is set), else not asked for.
  bool require_client_certificate = true;
  // Release a connection's record buffers while it is idle (SSL_MODE_RELEASE_BUFFERS): less
  // memory per idle connection (many clients), an allocation per busy read.
  bool release_idle_buffers = false;
  // Server: the context a handshake naming kClusterServerName switches to (may be null).
  std::shared_ptr<const Context> cluster;
  // Counts refused handshakes (may be null); must outlive the context.
  HandshakeFailures* failures = nullptr;
};

class Context {
 public:
  // Loads and checks the files: each readable PEM, the key matching the certificate and not
  // expired, the CA file holding at least one certificate, own_name carried. Errors name the
  // flag, the file and the problem.
  static absl::StatusOr<std::shared_ptr<const Context>> Create(ContextOptions options);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Side side() const { return side_; }
  // A session on the connected non-blocking socket `fd` (not owned), or nullptr with
  // *error set. Client side: `server_name` is the member called (SNI and the name check).
  SSL* NewSession(int fd, std::string_view server_name, std::string* error) const;

  // After a failed handshake of `ssl`: classifies it, counts it, logs it (rate-limited) and
  // returns a one-line reason, e.g. "certificate verify failed: certificate has expired".
  std::string Refused(SSL* ssl, int ssl_error, std::string_view remote) const;

  // For a TLS stack that asks us to verify (gRPC's server, peer/grpc_server.cc): the PEM
  // certificate a client presented (empty: none), with `pem_chain` (any order, may hold the
  // leaf too) as intermediates, against the CA file, as a client certificate. A refusal is
  // Unauthenticated with the reason, counted and logged like a refused handshake.
  absl::Status VerifyPeerChain(std::string_view pem_leaf, std::string_view pem_chain,
                               std::string_view remote) const;

 private:
  Context(Side side, SSL_CTX* ctx, HandshakeFailures* failures,
          std::shared_ptr<const Context> cluster)
      : side_(side), ctx_(ctx), failures_(failures), cluster_(std::move(cluster)) {}
  static int OnServerName(SSL* ssl, int* alert, void* arg);
  const Side side_;
  SSL_CTX* const ctx_;
  HandshakeFailures* const failures_;
  const std::shared_ptr<const Context> cluster_;
};

// The PEM text of `path`, for APIs that take certificates as text (gRPC). Errors name `flag`.
absl::StatusOr<std::string> ReadPem(std::string_view flag, const std::string& path);

// The three files as text, for gRPC's credentials (no CA: no TLS; a client without cert and
// key presents no certificate).
struct Pem {
  std::string cert, key, ca;
  bool empty() const { return ca.empty(); }
  static absl::StatusOr<Pem> Read(const Files& files);
};

// The text of OpenSSL's error queue (emptied), or `fallback` when it is empty.
std::string TakeErrors(std::string_view fallback);

}  // namespace nexus::tls
