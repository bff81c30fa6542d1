// The one socket state machine: a non-blocking TCP socket on a Loop (io/loop.h) with readiness
// tracking, an input buffer and an output buffer. Protocols are codecs on top of it: the HTTP
// server's connections, the peer forwarder's upstream connections and nexus-bench's clients.
//
// Readiness is tracked as nginx does with edge-triggered epoll: readable() becomes false when a
// read returns less than it asked for (the socket is drained) and true on the next EPOLLIN, so a
// keep-alive request costs one recv() and one send() and no failed reads. Once the peer's FIN
// (EPOLLRDHUP) or an error was reported, a short read no longer means drained, since the edge
// will not come again: reading goes on to the EOF. writable() is false from an EAGAIN on send
// (or while a connect is in progress) until EPOLLOUT.
//
// Input discipline: bytes arrive at the end of one buffer and are consumed from its front
// (Consume); the unconsumed rest moves to the front or the buffer doubles only when it is full.
// Output: Output() is appended to, Flush() sends as much as the socket takes and keeps the rest.
//
// TLS (tls/context.h): UseTls before Adopt or Connect. With a client context the handshake
// follows the TCP connect and connecting() stays true until it is done (so OnConnected means
// "ready for requests"); a refused handshake ends in OnConnectFailed(EPROTO) with the reason in
// tls_error(). With a server context the first byte decides: a TLS handshake record (0x16)
// starts a server handshake, anything else stays plaintext, and the protocol decides what a
// plaintext connection may do (tls_peer_verified() tells the two apart); a refused handshake
// closes the connection (OnHandshakeFailed). Once established, ReadSome and Flush go through
// the session: a TLS read that fills less than asked does not mean drained (the session may
// hold more), so readable() stays true until the session wants to read. Counting and logging
// of refusals are the context's.
//
// Lifetime: a BufferedSocket is owned by its user (a forwarder pool, a bench worker) and freed
// through Loop::Retire when that can happen inside its own events; a Connection (an accepted
// socket) is owned by its loop and frees itself with Close().
//
// Thread-safety: none; everything runs on the loop's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "io/loop.h"
#include "io/socket.h"
#include "tls/context.h"

namespace nexus::io {

class BufferedSocket : public LoopSocket {
 public:
  ~BufferedSocket() override;  // closes the socket if open
  BufferedSocket(const BufferedSocket&) = delete;
  BufferedSocket& operator=(const BufferedSocket&) = delete;

  void OnEvents(uint32_t events) final;

  bool is_open() const { return fd_ >= 0; }
  // A connect (and its TLS handshake) is in progress.
  bool connecting() const { return connecting_; }
  // The connection speaks TLS (its handshake may still be in progress).
  bool tls() const { return ssl_ != nullptr; }
  // Established TLS with a peer certificate that chains to the context's CA (on a server
  // context: a client certificate, i.e. a cluster member).
  bool tls_peer_verified() const;
  // Why the last TLS handshake or read failed ("" if none did).
  const std::string& tls_error() const { return tls_error_; }
  Loop& loop() const { return *loop_; }

 protected:
  // `initial_input`: the input buffer's first size (it doubles when a message needs more).
  explicit BufferedSocket(Loop* loop, size_t initial_input = 4096);

  // Speak TLS with `context` (see the top of this file). `server_name`: for a client context,
  // the name the server's certificate must carry (a member name); `who` names the other side
  // in logs. Call before Adopt or Connect.
  void UseTls(std::shared_ptr<const tls::Context> context, std::string server_name,
              std::string who);

  // Takes a connected socket (non-blocking) and watches it.
  absl::Status Adopt(int fd);
  // Starts a non-blocking connect and watches the socket; OnConnected or OnConnectFailed
  // follow from the loop. An error found at once (no socket, an immediate refusal) is returned
  // and the socket stays closed. Also used to reconnect after CloseSocket.
  absl::Status Connect(const SocketAddress& address);

  // The connect started by Connect finished.
  virtual void OnConnected() {}
  // The connect failed with `err`; the socket is already closed.
  virtual void OnConnectFailed(int err) = 0;
  // The TLS handshake was refused (tls_error() says why). Default: close the socket, then
  // OnConnectFailed(EPROTO).
  virtual void OnHandshakeFailed();
  // Events arrived (`events`: the epoll bits; 0 for a turn granted by ScheduleTurn): read,
  // parse and flush as far as the socket allows.
  virtual void OnReady(uint32_t events) = 0;

  enum class ReadResult { kData, kDrained, kEof, kError };
  // One recv() into the input buffer. kData: bytes were appended; kDrained: nothing to read
  // now; kEof: the peer closed; kError: see read_error().
  ReadResult ReadSome();
  int read_error() const { return read_error_; }
  // The reason of a kError: the TLS error, else the errno's text.
  std::string read_error_text() const;
  std::string_view input() const { return {in_.get() + begin_, end_ - begin_}; }
  void Consume(size_t n);
  void ClearInput() { begin_ = end_ = 0; }

  std::string& output() { return out_; }
  bool output_pending() const { return out_sent_ < out_.size(); }
  size_t unsent_bytes() const { return out_.size() - out_sent_; }
  // Sends what the socket takes; sent output is dropped (and a large buffer released once
  // empty). Returns 0 or the errno of a failed send.
  int Flush();

  bool readable() const { return readable_; }
  bool writable() const { return writable_; }

  // Half-closes the write side (the peer reads EOF after our output). False on error.
  bool ShutdownWrite();
  // Closes the socket (which leaves the epoll set); buffers are emptied. Idempotent.
  void CloseSocket();

 private:
  enum class TlsState : uint8_t { kOff, kSniff, kHandshake, kOn };
  // Drives the sniff and the handshake; true when the socket is ready for the protocol (plain
  // or established TLS), false while waiting or after a failure (the socket was handed to
  // OnHandshakeFailed).
  bool AdvanceTls();
  bool BeginTls();
  ReadResult ReadTls(size_t want);
  int FlushTls();

  Loop* const loop_;
  const size_t initial_input_;
  int fd_ = -1;
  bool connecting_ = false;
  bool readable_ = false;
  bool writable_ = false;
  bool peer_closed_ = false;  // FIN or error reported: read on to the EOF
  int read_error_ = 0;

  // Input: bytes [begin_, end_) of in_ are received and not yet consumed.
  std::unique_ptr<char[]> in_;
  size_t capacity_ = 0;
  size_t begin_ = 0;
  size_t end_ = 0;

  std::string out_;
  size_t out_sent_ = 0;

  std::shared_ptr<const tls::Context> tls_context_;  // null: plaintext
  std::string tls_server_name_;
  std::string tls_who_;
  SSL* ssl_ = nullptr;
  TlsState tls_state_ = TlsState::kOff;
  bool tls_read_any_ = false;  // a first read error may be the peer refusing our certificate
  std::string tls_error_;
};

// An accepted connection, owned by the loop that accepted it (made by the listener's
// ConnectionFactory). The loop numbers it (id(), unique per loop: an answer computed elsewhere
// names its connection by id, so one that closed meanwhile drops it), ticks it and tells it to
// drain when the server stops.
class Connection : public BufferedSocket {
 public:
  uint64_t id() const { return id_; }
  const std::string& remote() const { return remote_; }

  // Right after the loop registered it: serve what may already be readable (after the TLS
  // sniff or handshake, if any).
  virtual void Start() { OnEvents(0); }
  // The server is stopping: close now if idle, else finish the current exchange and close.
  virtual void OnDrain() = 0;
  // About every tick: check deadlines.
  virtual void OnTick(TimePoint now) { (void)now; }

 protected:
  Connection(Loop* loop, std::string remote, size_t initial_input = 4096)
      : BufferedSocket(loop, initial_input), remote_(std::move(remote)) {}

  // Closes the socket; the loop frees this object after the current batch of events.
  void Close();

  void OnConnectFailed(int) final {}  // accepted sockets do not connect
  void OnHandshakeFailed() final { Close(); }

 private:
  friend class Loop;
  uint64_t id_ = 0;
  const std::string remote_;
  bool closed_ = false;
};

}  // namespace nexus::io
