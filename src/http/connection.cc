#include "http/connection.h"

#include <sys/epoll.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "http/decoder.h"
#include "http/response_writer.h"
#include "io/connection.h"
#include "spdlog/spdlog.h"

namespace nexus::http {
namespace {

using io::kNever;
using io::TimePoint;

// After a response that closes the connection the client's remaining bytes are drained for at
// most this long (see LingerClose).
constexpr std::chrono::milliseconds kMaxLinger{2000};
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
constexpr std::string_view kDroppedBody = "internal error: handler dropped the request\n";
// recv() calls one connection may make per loop turn before the others get theirs.
constexpr int kReadsPerTurn = 16;
// A client that pipelines requests without reading answers is not parsed further while this
// much output is unsent.
constexpr size_t kMaxPendingOutput = 256 * 1024;

class HttpConnection;

struct Shared {
  ProtocolOptions options;
  std::shared_ptr<const Router> router;
};

// The Responder handed to handlers: move-only, answers 500 if destroyed uncalled, delivers on
// the connection's loop (inline when called there, e.g. a cache hit; else through its mailbox)
// and names the connection by id, so a connection that closed meanwhile drops the answer.
class ResponderImpl {
 public:
  ResponderImpl(io::Loop* loop, uint64_t conn_id, uint64_t seq)
      : loop_(loop), mailbox_(loop->mailbox()), conn_id_(conn_id), seq_(seq) {}
  ResponderImpl(ResponderImpl&& other) noexcept
      : loop_(other.loop_),
        mailbox_(std::move(other.mailbox_)),
        conn_id_(other.conn_id_),
        seq_(other.seq_),
        armed_(std::exchange(other.armed_, false)) {}
  ResponderImpl& operator=(ResponderImpl&&) = delete;
  ~ResponderImpl() {
    if (armed_) {
      spdlog::warn("http: a handler dropped its Responder; answering 500");
      Deliver(Text(500, std::string(kDroppedBody)));
    }
  }

  void operator()(Response response) {
    if (armed_) Deliver(std::move(response));
  }

 private:
  static void DeliverOnLoop(io::Loop* loop, uint64_t id, uint64_t seq, Response response);

  void Deliver(Response response) {
    armed_ = false;
    if (io::Loop::Current() == loop_)
      return DeliverOnLoop(loop_, conn_id_, seq_, std::move(response));
    mailbox_->Post(
        [loop = loop_, id = conn_id_, seq = seq_, response = std::move(response)]() mutable {
          DeliverOnLoop(loop, id, seq, std::move(response));
        });
  }

  io::Loop* loop_;  // compared, and used only by tasks that run on that loop
  std::shared_ptr<io::Mailbox> mailbox_;
  uint64_t conn_id_;
  uint64_t seq_;
  bool armed_ = true;
};

// States: kReading (a request is being received; also the keep-alive wait before it) ->
// kHandling (the router has it; no reading, so responses stay in order) -> kReading again, or
// kClosing (the last response is being flushed) -> kLingering (half-closed, discarding input)
// -> kClosed.
class HttpConnection final : public io::Connection {
 public:
  HttpConnection(io::Loop* loop, std::string remote, std::shared_ptr<const Shared> shared)
      : io::Connection(loop, std::move(remote)),
        shared_(std::move(shared)),
        options_(shared_->options),
        decoder_(options_.max_header_bytes, options_.max_body_bytes) {
    if (options_.tls != nullptr) UseTls(options_.tls, {}, this->remote());
    StartRequest();
  }

  void OnReady(uint32_t events) override {
    if (state_ == State::kClosed) return;
    if ((events & (EPOLLERR | EPOLLHUP)) && state_ == State::kHandling) {
      // Reset or fully closed while the handler runs: nobody will read the answer.
      return CloseNow();
    }
    Drive();
  }

  void OnDrain() override {
    if (Idle() || state_ == State::kLingering) CloseNow();
  }

  void OnTick(TimePoint now) override {
    if (state_ == State::kClosed) return;
    if (now >= read_deadline_ || now >= write_deadline_) {
      spdlog::debug("http: closing connection from {}: timed out", remote());
      CloseNow();
    }
  }

  void OnResponse(uint64_t seq, Response response) {
    if (state_ != State::kHandling || seq != seq_) return;
    const bool keep_alive = keep_alive_ && !response.close;
    Reply(std::move(response), keep_alive);
    Drive();  // a no-op when called from inside Drive (an inline answer); it continues there
  }

 private:
  enum class State { kReading, kHandling, kClosing, kLingering, kClosed };

  // Processes buffered and readable input and flushes output, until it has to wait.
  void Drive();
  void StartRequest();
  // Feeds buffered input to the parser; true when the state changed (request complete or
  // rejected), false when more input is needed.
  bool ParseBuffered();
  void OnParseError();
  void OnRequest();
  // Reads once into the buffer; false when there is nothing to read now or the connection is
  // done reading.
  bool Read();
  void Reply(Response response, bool keep_alive);
  void FlushOutput();
  void LingerClose();
  void Discard();
  bool Idle() const {
    return state_ == State::kReading && input().empty() && !output_pending() &&
           !decoder_.got_some();
  }
  void CloseNow() {
    state_ = State::kClosed;
    Close();
  }

  const std::shared_ptr<const Shared> shared_;
  const ProtocolOptions& options_;
  State state_ = State::kReading;
  bool in_drive_ = false;
  RequestDecoder decoder_;
  TimePoint read_deadline_ = kNever;
  TimePoint write_deadline_ = kNever;
  uint64_t seq_ = 0;  // numbers requests so a stale Responder cannot answer a later one
  bool head_ = false;
  bool keep_alive_ = false;
  unsigned version_ = 11;
};

void ResponderImpl::DeliverOnLoop(io::Loop* loop, uint64_t id, uint64_t seq, Response response) {
  // Ids are unique per loop and never reused, so the connection with this id is the HTTP
  // connection this Responder was made for (or it is gone).
  if (io::Connection* conn = loop->FindConnection(id); conn != nullptr) {
    static_cast<HttpConnection*>(conn)->OnResponse(seq, std::move(response));
  }
}

void HttpConnection::Drive() {
  if (in_drive_ || state_ == State::kClosed) return;
  in_drive_ = true;
  int reads = 0;
  for (;;) {
    if (state_ == State::kReading) {
      if (unsent_bytes() > kMaxPendingOutput) {
        FlushOutput();
        if (state_ == State::kClosed || unsent_bytes() > kMaxPendingOutput) break;
      }
      if (ParseBuffered()) continue;
      if (!readable()) break;
      if (reads == kReadsPerTurn) {
        loop().ScheduleTurn(this);
        break;
      }
      ++reads;
      if (!Read()) break;
    } else if (state_ == State::kLingering) {
      Discard();
      break;
    } else {
      break;  // kHandling waits for the Responder; kClosing for the flush below
    }
  }
  if (state_ != State::kClosed && state_ != State::kLingering) FlushOutput();
  in_drive_ = false;
}

void HttpConnection::StartRequest() {
  state_ = State::kReading;
  decoder_.Reset();
  // One deadline for the whole request (and the idle time before it): slow-loris clients
  // cannot hold a connection by trickling bytes.
  read_deadline_ = loop().now() + options_.read_timeout;
}

bool HttpConnection::ParseBuffered() {
  if (!input().empty()) {
    const RequestDecoder::Fed fed = decoder_.Feed(input());
    Consume(fed.used);
    if (fed.state == RequestDecoder::State::kError) {
      OnParseError();
      return true;
    }
    if (fed.state == RequestDecoder::State::kRequest) {
      OnRequest();
      return true;
    }
  }
  // curl sends "Expect: 100-continue" for bodies over 1 KiB and waits for this.
  if (decoder_.TakeContinue()) output().append(kContinue);
  return false;
}

void HttpConnection::OnParseError() {
  // The request never parsed: answer as HTTP/1.1, with a body.
  version_ = 11;
  head_ = false;
  Response rejection = decoder_.Rejection();
  if (rejection.status == 400) {
    spdlog::debug("http: bad request from {}: {}", remote(), decoder_.error_text());
  }
  Reply(std::move(rejection), false);
}

bool HttpConnection::Read() {
  switch (ReadSome()) {
    case ReadResult::kData:
      return true;
    case ReadResult::kDrained:
      return false;
    case ReadResult::kEof:
      // The client half-closed after whole requests: what they were answered still goes out,
      // then the connection closes. Mid-request there is nothing to answer.
      if (output_pending() && !decoder_.got_some()) {
        state_ = State::kClosing;
        read_deadline_ = kNever;
        return false;
      }
      break;
    case ReadResult::kError:
      spdlog::debug("http: reading from {}: {}", remote(), read_error_text());
      break;
  }
  CloseNow();
  return false;
}

void HttpConnection::OnRequest() {
  state_ = State::kHandling;
  // The handler may take long (peer fetch, origin load); the read deadline does not apply.
  read_deadline_ = kNever;
  Request req = decoder_.Take();
  head_ = req.method == "HEAD";
  keep_alive_ = req.keep_alive;
  version_ = decoder_.version();
  req.remote = remote();
  req.peer_certificate_verified = tls_peer_verified();
  req.tls = tls();

  const uint64_t seq = ++seq_;
  Responder respond(ResponderImpl(&loop(), id(), seq));
  try {
    shared_->router->Dispatch(std::move(req), std::move(respond));
  } catch (const std::exception& e) {
    // The Responder died in the unwinding and answered 500.
    spdlog::error("http: a handler for a request from {} threw: {}", remote(), e.what());
  }
}

void HttpConnection::Reply(Response response, bool keep_alive) {
  if (loop().draining()) keep_alive = false;
  AppendResponse(std::move(response), version_, keep_alive, head_, options_.server_name, output());
  if (keep_alive) {
    StartRequest();  // pipelined requests may already be buffered
  } else {
    state_ = State::kClosing;
    read_deadline_ = kNever;
  }
}

void HttpConnection::FlushOutput() {
  if (const int err = Flush(); err != 0) {
    spdlog::debug("http: write to {} failed: {}", remote(), io::ErrnoText(err));
    return CloseNow();
  }
  if (output_pending()) {
    // Writing one response must finish within write_timeout.
    if (write_deadline_ == kNever) write_deadline_ = loop().now() + options_.write_timeout;
    return;
  }
  write_deadline_ = kNever;
  if (state_ == State::kClosing) return LingerClose();
  if (loop().draining() && Idle()) CloseNow();
}

// Half-closes and discards what the client still sends until it closes too (or kMaxLinger),
// because closing a socket with unread input makes the kernel send RST, which can destroy the
// response before the client reads it (e.g. a 413 while the client is still uploading).
void HttpConnection::LingerClose() {
  state_ = State::kLingering;
  if (!ShutdownWrite() || loop().draining()) return CloseNow();
  read_deadline_ =
      loop().now() + std::min<std::chrono::milliseconds>(options_.read_timeout, kMaxLinger);
  ClearInput();
  Discard();
}

void HttpConnection::Discard() {
  while (readable()) {
    const ReadResult r = ReadSome();
    ClearInput();
    if (r == ReadResult::kDrained) return;
    if (r == ReadResult::kEof || r == ReadResult::kError)
      return CloseNow();  // the client closed too
  }
}

}  // namespace

std::shared_ptr<io::ConnectionFactory> HttpConnections(ProtocolOptions options,
                                                       std::shared_ptr<const Router> router) {
  return std::make_shared<io::ConnectionsOf<HttpConnection, std::shared_ptr<const Shared>>>(
      std::make_shared<const Shared>(Shared{std::move(options), std::move(router)}));
}

}  // namespace nexus::http
