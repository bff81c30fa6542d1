#include "io/connection.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace nexus::io {

namespace {
// An output buffer larger than this is released once sent, so one large answer does not pin
// its memory for the connection's life.
constexpr size_t kKeepOutputCapacity = 256 * 1024;
// The first byte of a TLS handshake record (a ClientHello); no HTTP method starts with it.
constexpr char kTlsHandshakeRecord = 0x16;
// Largest SSL_write: a few records per call.
constexpr size_t kTlsWriteChunk = 64 * 1024;
}  // namespace

BufferedSocket::BufferedSocket(Loop* loop, size_t initial_input)
    : loop_(loop), initial_input_(std::max<size_t>(initial_input, 64)) {}

BufferedSocket::~BufferedSocket() {
  SSL_free(ssl_);
  if (fd_ >= 0) {
    loop_->Forget();
    ::close(fd_);
  }
}

void BufferedSocket::UseTls(std::shared_ptr<const tls::Context> context, std::string server_name,
                            std::string who) {
  tls_context_ = std::move(context);
  tls_server_name_ = std::move(server_name);
  tls_who_ = std::move(who);
}

bool BufferedSocket::tls_peer_verified() const {
  return tls_state_ == TlsState::kOn && SSL_get0_peer_certificate(ssl_) != nullptr &&
         SSL_get_verify_result(ssl_) == X509_V_OK;
}

absl::Status BufferedSocket::Adopt(int fd) {
  fd_ = fd;
  connecting_ = false;
  readable_ = writable_ = true;
  peer_closed_ = false;
  if (tls_context_ != nullptr && tls_context_->side() == tls::Side::kServer) {
    tls_state_ = TlsState::kSniff;
  }
  if (absl::Status s = loop_->Watch(fd_, this); !s.ok()) {
    ::close(fd_);
    fd_ = -1;
    return s;
  }
  return absl::OkStatus();
}

absl::Status BufferedSocket::Connect(const SocketAddress& address) {
  CloseSocket();
  tls_error_.clear();
  absl::StatusOr<int> fd = StartConnect(address);
  if (!fd.ok()) return fd.status();
  if (absl::Status s = Adopt(*fd); !s.ok()) return s;
  connecting_ = true;
  readable_ = writable_ = false;
  return absl::OkStatus();
}

void BufferedSocket::OnEvents(uint32_t events) {
  if (fd_ < 0) return;
  if (connecting_ && tls_state_ != TlsState::kHandshake) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    {  // the TCP connect finished
      if (const int err = ConnectError(fd_); err != 0) {
        CloseSocket();
        return OnConnectFailed(err);
      }
      if (tls_context_ == nullptr) {
        connecting_ = false;
        OnConnected();
        if (fd_ < 0) return;
      } else if (!BeginTls()) {
        return;
      }
    }
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) readable_ = true;
  if (events & (EPOLLRDHUP | EPOLLERR | EPOLLHUP)) peer_closed_ = true;
  if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) writable_ = true;
  if (tls_state_ == TlsState::kSniff || tls_state_ == TlsState::kHandshake) {
    if (!AdvanceTls()) return;
  }
  OnReady(events);
}

void BufferedSocket::OnHandshakeFailed() {
  CloseSocket();
  OnConnectFailed(EPROTO);
}

bool BufferedSocket::BeginTls() {
  std::string error;
  ssl_ = tls_context_->NewSession(fd_, tls_server_name_, &error);
  if (ssl_ == nullptr) {
    tls_error_ = std::move(error);
    OnHandshakeFailed();
    return false;
  }
  tls_state_ = TlsState::kHandshake;
  tls_read_any_ = false;
  // The handshake's first flight is due now (client) or may be readable already (server).
  readable_ = writable_ = true;
  return true;
}

bool BufferedSocket::AdvanceTls() {
  if (tls_state_ == TlsState::kSniff) {
    char first = 0;
    ssize_t n;
    do {
      n = ::recv(fd_, &first, 1, MSG_PEEK);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      readable_ = false;
      return false;
    }
    if (n != 1 || first != kTlsHandshakeRecord) {
      tls_state_ = TlsState::kOff;  // plaintext (an EOF or error: the protocol's read sees it)
      return true;
    }
    if (!BeginTls()) return false;
  }
  ERR_clear_error();
  errno = 0;  // (SSL_ERROR_SYSCALL leaves errno as the failed call set it, or as it was)
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    tls_state_ = TlsState::kOn;
    readable_ = writable_ = true;  // the session may hold data read with the handshake
    if (connecting_) {
      connecting_ = false;
      OnConnected();
      if (fd_ < 0) return false;
    }
    return true;
  }
  const int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ) {
    readable_ = false;
    return false;
  }
  if (err == SSL_ERROR_WANT_WRITE) {
    writable_ = false;
    return false;
  }
  tls_error_ = tls_context_->Refused(ssl_, err, tls_who_);
  OnHandshakeFailed();
  return false;
}

BufferedSocket::ReadResult BufferedSocket::ReadTls(size_t want) {
  ERR_clear_error();
  errno = 0;
  const int n =
      SSL_read(ssl_, in_.get() + end_, static_cast<int>(std::min<size_t>(want, INT32_MAX)));
  if (n > 0) {
    end_ += static_cast<size_t>(n);
    tls_read_any_ = true;
    return ReadResult::kData;  // readable_ stays: the session may hold more than it gave
  }
  const int err = SSL_get_error(ssl_, n);
  switch (err) {
    case SSL_ERROR_WANT_READ:
      readable_ = false;
      return ReadResult::kDrained;
    case SSL_ERROR_WANT_WRITE:  // (no renegotiation; a key update's answer) wait for EPOLLOUT,
      writable_ = false;        // then read again (readable_ stays: no EPOLLIN edge may come)
      return ReadResult::kDrained;
    case SSL_ERROR_ZERO_RETURN:
      readable_ = false;
      return ReadResult::kEof;
    case SSL_ERROR_SYSCALL:
      readable_ = false;
      if (errno == 0) return ReadResult::kEof;
      read_error_ = errno;
      return ReadResult::kError;
    default:
      readable_ = false;
      read_error_ = EPROTO;
      // Over TLS 1.3 a server refuses a client's certificate after the client's handshake
      // ended: the refusal arrives as an alert on the client's first read.
      tls_error_ = !tls_read_any_ && tls_context_->side() == tls::Side::kClient
                       ? tls_context_->Refused(ssl_, err, tls_who_)
                       : tls::TakeErrors("TLS error");
      return ReadResult::kError;
  }
}

std::string BufferedSocket::read_error_text() const {
  if (read_error_ == EPROTO && !tls_error_.empty()) return "TLS: " + tls_error_;
  return ErrnoText(read_error_);
}

int BufferedSocket::FlushTls() {
  while (out_sent_ < out_.size()) {
    ERR_clear_error();
    errno = 0;
    const size_t chunk = std::min(out_.size() - out_sent_, kTlsWriteChunk);
    const int n = SSL_write(ssl_, out_.data() + out_sent_, static_cast<int>(chunk));
    if (n > 0) {
      out_sent_ += static_cast<size_t>(n);
      continue;
    }
    const int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
      // (WANT_READ: the next EPOLLIN re-arms it: its event mask carries EPOLLOUT too)
      writable_ = false;
      return 0;
    }
    if (err == SSL_ERROR_SYSCALL && errno != 0) return errno;
    tls_error_ = tls::TakeErrors("TLS write failed");
    return EPIPE;
  }
  return 0;
}

BufferedSocket::ReadResult BufferedSocket::ReadSome() {
  if (end_ == capacity_) {
    // Full: move the unconsumed bytes to the front, or grow (a large header or message).
    if (begin_ > 0) {
      std::memmove(in_.get(), in_.get() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    } else {
      const size_t grown = std::max(initial_input_, capacity_ * 2);
      auto bigger = std::unique_ptr<char[]>(new char[grown]);
      if (end_ > 0) std::memcpy(bigger.get(), in_.get(), end_);
      in_ = std::move(bigger);
      capacity_ = grown;
    }
  }
  const size_t want = capacity_ - end_;
  if (ssl_ != nullptr) return ReadTls(want);
  for (;;) {
    const ssize_t n = ::recv(fd_, in_.get() + end_, want, 0);
    if (n > 0) {
      end_ += static_cast<size_t>(n);
      // Drained (EPOLLIN says when more comes), unless the FIN was seen: then read to the EOF.
      if (static_cast<size_t>(n) < want && !peer_closed_) readable_ = false;
      return ReadResult::kData;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      readable_ = false;
      return ReadResult::kDrained;
    }
    readable_ = false;
    if (n == 0) return ReadResult::kEof;
    read_error_ = errno;
    return ReadResult::kError;
  }
}

void BufferedSocket::Consume(size_t n) {
  begin_ += std::min(n, end_ - begin_);
  if (begin_ == end_) begin_ = end_ = 0;
}

int BufferedSocket::Flush() {
  if (fd_ < 0) return EBADF;
  if (ssl_ != nullptr && tls_state_ != TlsState::kOn) return 0;  // after the handshake
  const int err = ssl_ != nullptr ? FlushTls() : SendPending(fd_, out_, &out_sent_, &writable_);
  if (err != 0) return err;
  if (out_sent_ == out_.size()) {
    out_sent_ = 0;
    out_.clear();
    if (out_.capacity() > kKeepOutputCapacity) out_.shrink_to_fit();
  }
  return 0;
}

bool BufferedSocket::ShutdownWrite() {
  if (fd_ < 0) return false;
  if (tls_state_ == TlsState::kOn) {
    ERR_clear_error();
    SSL_shutdown(ssl_);  // close_notify; the answer, if any, is read and discarded
    ERR_clear_error();
  }
  return ::shutdown(fd_, SHUT_WR) == 0;
}

void BufferedSocket::CloseSocket() {
  if (fd_ < 0) return;
  loop_->Forget();
  SSL_free(ssl_);
  ssl_ = nullptr;
  tls_state_ = TlsState::kOff;
  ::close(fd_);  // also leaves the epoll set (the fd is not shared)
  fd_ = -1;
  connecting_ = readable_ = writable_ = peer_closed_ = false;
  begin_ = end_ = 0;
  out_.clear();
  out_sent_ = 0;
}

void Connection::Close() {
  if (closed_) return;
  closed_ = true;
  CloseSocket();
  loop().Closed(this);  // frees this object after the batch
}

}  // namespace nexus::io
