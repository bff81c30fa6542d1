#include "tls/context.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <sstream>
#include <tuple>

#include "spdlog/spdlog.h"

namespace nexus::tls {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool Readable(const std::string& path) { return std::ifstream(path).good(); }

absl::Status FileError(std::string_view flag, const std::string& path, std::string_view what) {
  return absl::InvalidArgumentError(std::string(flag) + " " + path + ": " + std::string(what));
}

// The reason of an alert the other side sent (OpenSSL reports alert N as reason 1000 + N).
bool IsAlert(int reason) {
  return reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256;
}

// The reason label of a certificate that did not verify (X509_V_ERR_*).
Failure VerifyFailure(long error) {
  switch (error) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return Failure::kExpired;
    case X509_V_ERR_HOSTNAME_MISMATCH:
      return Failure::kWrongName;
    default:
      return Failure::kUntrusted;
  }
}

}  // namespace

std::string_view FailureName(Failure failure) {
  switch (failure) {
    case Failure::kNoCertificate:
      return "no_certificate";
    case Failure::kUntrusted:
      return "untrusted";
    case Failure::kExpired:
      return "expired";
    case Failure::kWrongName:
      return "wrong_name";
    case Failure::kRefusedByPeer:
      return "refused_by_peer";
    case Failure::kNotTls:
      return "not_tls";
    case Failure::kOther:
    case Failure::kCount:
      break;
  }
  return "other";
}

void HandshakeFailures::Count(Side side, Failure failure, std::string_view detail,
                              std::string_view remote) {
  const int s = static_cast<int>(side);
  const int f = static_cast<int>(failure);
  const uint64_t n = counts_[s][f].fetch_add(1) + 1;
  const int64_t now = NowMs();
  int64_t last = last_log_ms_[s][f].load(std::memory_order_relaxed);
  if ((last == 0 || now - last >= 10'000) &&
      last_log_ms_[s][f].compare_exchange_strong(last, now)) {
    if (side == Side::kServer) {
      spdlog::warn(
          "tls: refused a connection from {}: {} ({}; {} refused so far for this reason; "
          "nexuscache_tls_handshake_failures_total)",
          std::string(remote), std::string(detail), std::string(FailureName(failure)), n);
    } else {
      spdlog::warn(
          "tls: the handshake with {} failed: {} ({}; {} so far for this reason; "
          "nexuscache_tls_handshake_failures_total)",
          std::string(remote), std::string(detail), std::string(FailureName(failure)), n);
    }
  }
}

std::string TakeErrors(std::string_view fallback) {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    if (!out.empty()) out += "; ";
    out += reason != nullptr ? std::string(reason) : "error " + std::to_string(e);
  }
  return out.empty() ? std::string(fallback) : out;
}

absl::StatusOr<std::string> ReadPem(std::string_view flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return FileError(flag, path, "cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  std::string pem = text.str();
  if (pem.find("-----BEGIN ") == std::string::npos) return FileError(flag, path, "is not PEM");
  return pem;
}

absl::StatusOr<Pem> Pem::Read(const Files& files) {
  Pem pem;
  for (auto [flag, path, out] : {std::tuple<std::string_view, const std::string*, std::string*>{
                                     "--tls-cert", &files.cert, &pem.cert},
                                 {"--tls-key", &files.key, &pem.key},
                                 {"--tls-ca", &files.ca, &pem.ca}}) {
    absl::StatusOr<std::string> text = ReadPem(flag, *path);
    if (!text.ok()) return text.status();
    *out = *std::move(text);
  }
  return pem;
}

absl::StatusOr<std::shared_ptr<const Context>> Context::Create(ContextOptions options) {
  std::signal(SIGPIPE, SIG_IGN);  // OpenSSL writes with write(), not send(MSG_NOSIGNAL)
  ERR_clear_error();
  const Files& files = options.files;
  const Side side = options.side;
  if ((side == Side::kClient || options.require_client_certificate) && files.ca.empty()) {
    return absl::InvalidArgumentError(options.ca_flag + " is needed");
  }
  for (const auto& [flag, path] :
       {std::pair<const std::string&, const std::string&>{options.cert_flag, files.cert},
        {options.key_flag, files.key},
        {options.ca_flag, files.ca}}) {
    if (&path != &files.ca || !path.empty()) {
      if (!Readable(path)) return FileError(flag, path, "cannot be read");
    }
  }
  SSL_CTX* ctx = SSL_CTX_new(side == Side::kServer ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) return absl::InternalError("tls: " + TakeErrors("SSL_CTX_new failed"));
  auto context = std::shared_ptr<Context>(
      new Context(side, ctx, options.failures, std::move(options.cluster)));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
  // Output buffers grow and move between writes (std::string), and a write may be partial.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (options.release_idle_buffers) SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (side == Side::kServer) {
    // No session resumption: connections are long-lived, and a resumed session would skip the
    // client-certificate check of a context switched to by SNI. (Without a session id
    // context, OpenSSL fails every resumption attempt of a verifying server.)
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    static constexpr unsigned char kSessionContext[] = "nexuscache";
    SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);
  }

  if (SSL_CTX_use_certificate_chain_file(ctx, files.cert.c_str()) != 1) {
    return FileError(options.cert_flag, files.cert,
                     "not a usable certificate: " + TakeErrors("cannot load"));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, files.key.c_str(), SSL_FILETYPE_PEM) != 1 &&
      ERR_GET_REASON(ERR_peek_error()) != X509_R_KEY_VALUES_MISMATCH) {
    return FileError(options.key_flag, files.key, "not a usable key: " + TakeErrors("cannot load"));
  }
  if (ERR_peek_error() != 0 || SSL_CTX_check_private_key(ctx) != 1) {
    TakeErrors("");
    return FileError(options.key_flag, files.key,
                     "does not match " + options.cert_flag + " " + files.cert);
  }
  if (!files.ca.empty() && SSL_CTX_load_verify_locations(ctx, files.ca.c_str(), nullptr) != 1) {
    return FileError(options.ca_flag, files.ca,
                     "holds no usable CA certificate: " + TakeErrors("cannot load"));
  }
  X509* own = SSL_CTX_get0_certificate(ctx);
  if (X509_cmp_current_time(X509_get0_notAfter(own)) <= 0) {
    return FileError(options.cert_flag, files.cert, "has expired");
  }
  const std::string& own_name = options.own_name;
  if (!own_name.empty() &&
      X509_check_host(own, own_name.data(), own_name.size(), 0, nullptr) != 1) {
    return FileError(options.cert_flag, files.cert,
                     "does not carry this node's name '" + own_name +
                         "' (peers check it: add it as a DNS subjectAltName)");
  }
  int verify = SSL_VERIFY_PEER;
  if (side == Side::kServer) {
    if (files.ca.empty()) {
      verify = SSL_VERIFY_NONE;
    } else if (options.require_client_certificate) {
      verify = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    }
  }
  SSL_CTX_set_verify(ctx, verify, nullptr);
  if (side == Side::kServer && context->cluster_ != nullptr) {
    SSL_CTX_set_tlsext_servername_callback(ctx, &Context::OnServerName);
    SSL_CTX_set_tlsext_servername_arg(ctx, context.get());
  }
  return std::shared_ptr<const Context>(std::move(context));
}

Context::~Context() { SSL_CTX_free(ctx_); }

int Context::OnServerName(SSL* ssl, int*, void* arg) {
  const auto* self = static_cast<const Context*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name != nullptr && std::string_view(name) == kClusterServerName) {
    SSL_set_SSL_CTX(ssl, self->cluster_->ctx_);
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(self->cluster_->ctx_), nullptr);
    SSL_clear_mode(ssl, SSL_MODE_RELEASE_BUFFERS);  // (a member's connection is busy)
  }
  return SSL_TLSEXT_ERR_OK;
}

SSL* Context::NewSession(int fd, std::string_view server_name, std::string* error) const {
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr || SSL_set_fd(ssl, fd) != 1) {
    SSL_free(ssl);
    *error = TakeErrors("cannot make a TLS session");
    return nullptr;
  }
  if (side_ == Side::kServer) {
    SSL_set_accept_state(ssl);
    return ssl;
  }
  SSL_set_connect_state(ssl);
  const std::string name(server_name);
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (name.empty() || SSL_set1_host(ssl, name.c_str()) != 1 ||
      SSL_set_tlsext_host_name(ssl, kClusterServerName) != 1) {
    SSL_free(ssl);
    *error = "cannot check the name '" + name + "': " + TakeErrors("not a host name");
    return nullptr;
  }
  return ssl;
}

std::string Context::Refused(SSL* ssl, int ssl_error, std::string_view remote) const {
  const int reason = ERR_GET_REASON(ERR_peek_error());
  const long verify = SSL_get_verify_result(ssl);
  Failure failure = Failure::kOther;
  std::string detail;
  if (ssl_error == SSL_ERROR_SSL && reason == SSL_R_CERTIFICATE_VERIFY_FAILED &&
      verify != X509_V_OK) {
    TakeErrors("");
    detail = std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
    failure = VerifyFailure(verify);
  } else if (ssl_error == SSL_ERROR_SSL) {
    if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
      failure = Failure::kNoCertificate;
    } else if (IsAlert(reason)) {
      failure = Failure::kRefusedByPeer;
    } else if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_HTTP_REQUEST ||
               reason == SSL_R_HTTPS_PROXY_REQUEST || reason == SSL_R_UNSUPPORTED_PROTOCOL) {
      failure = Failure::kNotTls;
    }
    detail = TakeErrors("TLS error");
  } else {
    detail = TakeErrors("the connection closed during the handshake");
  }
  if (failures_ != nullptr) failures_->Count(side_, failure, detail, remote);
  return detail;
}

absl::Status Context::VerifyPeerChain(std::string_view pem_leaf, std::string_view pem_chain,
                                      std::string_view remote) const {
  auto refuse = [&](Failure failure, const std::string& detail) {
    if (failures_ != nullptr) failures_->Count(side_, failure, detail, remote);
    return absl::UnauthenticatedError(detail);
  };
  if (pem_leaf.empty()) return refuse(Failure::kNoCertificate, "no client certificate");
  ERR_clear_error();
  BIO* bio = BIO_new_mem_buf(pem_leaf.data(), static_cast<int>(pem_leaf.size()));
  X509* leaf = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  STACK_OF(X509)* rest = sk_X509_new_null();
  bio = BIO_new_mem_buf(pem_chain.data(), static_cast<int>(pem_chain.size()));
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) sk_X509_push(rest, cert);
  BIO_free(bio);
  ERR_clear_error();  // (the read past the last certificate)
  int verified = 0;
  int error = X509_V_ERR_UNSPECIFIED;
  if (leaf != nullptr) {
    X509_STORE_CTX* check = X509_STORE_CTX_new();
    if (check != nullptr &&
        X509_STORE_CTX_init(check, SSL_CTX_get_cert_store(ctx_), leaf, rest) == 1) {
      X509_STORE_CTX_set_purpose(check, X509_PURPOSE_SSL_CLIENT);
      verified = X509_verify_cert(check);
      error = X509_STORE_CTX_get_error(check);
    }
    X509_STORE_CTX_free(check);
  }
  X509_free(leaf);
  sk_X509_pop_free(rest, X509_free);
  ERR_clear_error();
  if (verified == 1) return absl::OkStatus();
  if (leaf == nullptr) return refuse(Failure::kOther, "the client certificate is not PEM");
  return refuse(VerifyFailure(error),
                std::string("certificate verify failed: ") + X509_verify_cert_error_string(error));
}

}  // namespace nexus::tls
