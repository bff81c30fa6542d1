#include "http/server.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <future>
#include <limits>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/asio.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "spdlog/spdlog.h"

namespace nexus::http {
namespace internal {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

// After a response that closes the connection we drain the client's remaining bytes for at
// most this long (see LingerClose).
constexpr std::chrono::milliseconds kMaxLinger{2000};
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
constexpr std::string_view kDroppedBody = "internal error: handler dropped the request\n";

std::string EndpointString(const tcp::endpoint& ep) {
  const auto addr = ep.address();
  return addr.is_v6() ? absl::StrCat("[", addr.to_string(), "]:", ep.port())
                      : absl::StrCat(addr.to_string(), ":", ep.port());
}

bool IsHttpParseError(const beast::error_code& ec) {
  return ec.category() == beast::error_code(bhttp::error::bad_method).category();
}

// Orders posts from handler threads before the io_contexts are destroyed: once closed, a late
// Responder is dropped instead of posting to a dead context.
class PostGate {
 public:
  template <class Handler>
  void Post(const net::any_io_executor& ex, Handler&& handler) {
    absl::MutexLock lock(&mu_);
    if (open_) net::post(ex, std::forward<Handler>(handler));
  }
  void Close() {
    absl::MutexLock lock(&mu_);
    open_ = false;
  }

 private:
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
};

}  // namespace

class Session;

class ServerImpl {
 public:
  ServerImpl(ServerOptions options, std::shared_ptr<const Router> router)
      : options_(std::move(options)),
        router_(std::move(router)),
        gate_(std::make_shared<PostGate>()) {}
  ~ServerImpl();

  absl::Status Start();
  void Stop(std::chrono::milliseconds grace);
  uint16_t port() const { return port_.load(); }
  size_t active_connections() const {
    absl::MutexLock lock(&mu_);
    return sessions_.size();
  }

  // For sessions.
  const ServerOptions& options() const { return options_; }
  const Router& router() const { return *router_; }
  const std::shared_ptr<PostGate>& gate() const { return gate_; }
  bool draining() const { return draining_.load(std::memory_order_acquire); }
  void Unregister(Session* session);

 private:
  void DoAccept();
  void OnAccept(beast::error_code ec, tcp::socket socket);
  bool NoSessionsLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return sessions_.empty(); }

  const ServerOptions options_;
  const std::shared_ptr<const Router> router_;
  const std::shared_ptr<PostGate> gate_;
  std::atomic<bool> draining_{false};
  std::atomic<uint16_t> port_{0};
  std::string listen_address_;

  mutable absl::Mutex mu_;
  // Owns every open connection, so a session waiting for its handler (no I/O pending) stays
  // alive; a session removes itself when it closes.
  std::unordered_map<Session*, std::shared_ptr<Session>> sessions_ ABSL_GUARDED_BY(mu_);

  absl::Mutex lifecycle_mu_;
  bool started_ ABSL_GUARDED_BY(lifecycle_mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(lifecycle_mu_) = false;

  // Touched only by Start/Stop/~ServerImpl (serialized by lifecycle_mu_ and thread joins) and,
  // for next_context_/acceptor_, by the first context's thread.
  std::vector<std::unique_ptr<net::io_context>> contexts_;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::unique_ptr<net::steady_timer> accept_retry_;  // on the acceptor's context
  size_t next_context_ = 0;
};

// One connection. Every member function runs on the connection's io_context thread (Start and
// BeginDrain post there first). State machine:
//   kReading -> kHandling -> kWriting -> (kReading | kLingering) -> kClosed
// with errors jumping to kWriting (400/413/431) or kClosed.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, ServerImpl* server)
      : server_(server), options_(server->options()), stream_(std::move(socket)) {
    beast::error_code ec;
    const tcp::endpoint ep = stream_.socket().remote_endpoint(ec);
    remote_ = ec ? std::string("unknown") : EndpointString(ep);
    // Every response goes out in one write; Nagle would only hold it back waiting for an ACK.
    stream_.socket().set_option(tcp::no_delay(true), ec);
  }

  void Start() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&Session::ReadHeader, shared_from_this()));
  }

  // Stop() began: close now if idle; otherwise the current request finishes first.
  void BeginDrain() {
    net::post(stream_.get_executor(), [self = shared_from_this()] { self->OnDrain(); });
  }

  // The handler's response for request number `seq` (stale or late ones are dropped).
  void OnHandlerResponse(uint64_t seq, Response response) {
    if (state_ != State::kHandling || seq != seq_) return;
    const bool keep_alive = keep_alive_ && !response.close;
    WriteResponse(std::move(response), version_, keep_alive, head_);
  }

 private:
  enum class State { kReading, kHandling, kWriting, kLingering, kClosed };

  void ReadHeader() {
    if (state_ == State::kClosed) return;
    if (server_->draining()) {
      Close();
      return;
    }
    state_ = State::kReading;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(
        std::min<size_t>(options_.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
    parser_->body_limit(static_cast<std::uint64_t>(options_.max_body_bytes));
    // One deadline for the whole request (and the idle time before it): slow-loris clients
    // cannot hold a connection by trickling bytes.
    stream_.expires_after(options_.read_timeout);
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             beast::bind_front_handler(&Session::OnHeader, shared_from_this()));
  }

  void OnHeader(beast::error_code ec, size_t /*bytes*/) {
    if (state_ == State::kClosed) return;
    if (ec) return OnReadError(ec);
    if (parser_->is_done()) return OnRequest();
    const auto& req = parser_->get();
    if (req.version() >= 11 && beast::iequals(req[bhttp::field::expect], "100-continue")) {
      net::async_write(stream_, net::buffer(kContinue.data(), kContinue.size()),
                       [self = shared_from_this()](beast::error_code ec, size_t) {
                         if (self->state_ == State::kClosed) return;
                         if (ec) return self->OnReadError(ec);
                         self->ReadBody();
                       });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&Session::OnBody, shared_from_this()));
  }

  void OnBody(beast::error_code ec, size_t /*bytes*/) {
    if (state_ == State::kClosed) return;
    if (ec) return OnReadError(ec);
    OnRequest();
  }

  void OnReadError(const beast::error_code& ec) {
    if (ec == bhttp::error::body_limit) {
      WriteResponse(Text(413, "request body too large\n"), 11, false, false);
    } else if (ec == bhttp::error::header_limit) {
      WriteResponse(Text(431, "request header too large\n"), 11, false, false);
    } else if (IsHttpParseError(ec) && ec != bhttp::error::end_of_stream &&
               ec != bhttp::error::partial_message && ec != bhttp::error::short_read) {
      spdlog::debug("http: bad request from {}: {}", remote_, ec.message());
      WriteResponse(Text(400, "bad request\n"), 11, false, false);
    } else {
      // Timeout, EOF, reset or our own Close(): nothing to answer.
      spdlog::debug("http: closing connection from {}: {}", remote_, ec.message());
      Close();
    }
  }

  void OnRequest() {
    state_ = State::kHandling;
    // The handler may take long (peer fetch, origin load); the read deadline does not apply.
    stream_.expires_never();
    auto msg = parser_->release();
    parser_.reset();
    head_ = msg.method() == bhttp::verb::head;
    keep_alive_ = msg.keep_alive();
    version_ = msg.version();

    Request req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    req.headers.reserve(std::distance(msg.begin(), msg.end()));
    for (const auto& field : msg) {
      req.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    req.body = std::move(msg.body());
    req.keep_alive = keep_alive_;
    req.remote = remote_;
    DecodeRequest(req);

    const uint64_t seq = ++seq_;
    Responder respond(
        ResponderImpl(weak_from_this(), stream_.get_executor(), server_->gate(), seq));
    try {
      server_->router().Dispatch(std::move(req), std::move(respond));
    } catch (const std::exception& e) {
      // The Responder died in the unwinding and answers 500.
      spdlog::error("http: handler for {} threw: {}", std::string(msg.target()), e.what());
    }
  }

  // Serializes the response by hand into one buffer and writes it with one call: for the small
  // responses a cache serves, Beast's generic serializer cost more CPU than the whole lookup
  // (measured with perf under wrk), and one contiguous buffer is one sendmsg.
  void WriteResponse(Response r, unsigned version, bool keep_alive, bool head) {
    state_ = State::kWriting;
    if (server_->draining()) keep_alive = false;
    int status = r.status;
    if (status < 100 || status > 999) status = 500;
    // These statuses must not carry a body.
    if (status / 100 == 1 || status == 204 || status == 304) r.body.clear();
    out_.clear();
    out_.reserve(160 + r.body.size());
    out_ += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
    out_ += std::to_string(status);
    out_ += ' ';
    const auto reason = bhttp::obsolete_reason(static_cast<bhttp::status>(status));
    out_.append(reason.data(), reason.size());
    out_ += "\r\nServer: ";
    out_ += options_.server_name;
    bool has_content_type = false;
    for (const auto& [name, value] : r.headers) {
      if (beast::iequals(name, "Content-Length") || beast::iequals(name, "Transfer-Encoding") ||
          beast::iequals(name, "Connection") || beast::iequals(name, "Server") ||
          !ValidHeader(name, value)) {
        continue;
      }
      if (beast::iequals(name, "Content-Type")) has_content_type = true;
      out_ += "\r\n";
      out_ += name;
      out_ += ": ";
      out_ += value;
    }
    if (!has_content_type && ValidHeader("Content-Type", r.content_type)) {
      out_ += "\r\nContent-Type: ";
      out_ += r.content_type;
    }
    if (status / 100 != 1 && status != 204 && status != 304) {
      // HEAD answers like GET without the body: same Content-Length, nothing after the header.
      out_ += "\r\nContent-Length: ";
      out_ += std::to_string(r.body.size());
    }
    if (!keep_alive) {
      out_ += "\r\nConnection: close";
    } else if (version == 10) {
      out_ += "\r\nConnection: keep-alive";
    }
    out_ += "\r\n\r\n";
    if (!head) out_ += r.body;
    stream_.expires_after(options_.write_timeout);
    net::async_write(
        stream_, net::buffer(out_),
        beast::bind_front_handler(&Session::OnWrite, shared_from_this(), keep_alive));
  }

  // Header names and values must not smuggle CR/LF (a handler bug must not split responses).
  static bool ValidHeader(std::string_view name, std::string_view value) {
    return !name.empty() && name.find_first_of("\r\n:") == std::string_view::npos &&
           value.find_first_of("\r\n") == std::string_view::npos;
  }

  void OnWrite(bool keep_alive, beast::error_code ec, size_t /*bytes*/) {
    if (state_ == State::kClosed) return;
    if (ec) {
      spdlog::debug("http: write to {} failed: {}", remote_, ec.message());
      return Close();
    }
    if (!keep_alive) return LingerClose();
    ReadHeader();  // pipelined requests are already in buffer_
  }

  // Half-closes and discards what the client still sends until it closes too (or kMaxLinger),
  // because closing a socket with unread input makes the kernel send RST, which can destroy
  // the response before the client reads it (e.g. a 413 while the client is still uploading).
  void LingerClose() {
    state_ = State::kLingering;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec || server_->draining()) return Close();
    stream_.expires_after(std::min<std::chrono::milliseconds>(options_.read_timeout, kMaxLinger));
    Discard();
  }

  void Discard() {
    stream_.async_read_some(net::buffer(discard_),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (self->state_ == State::kClosed) return;
                              if (ec) return self->Close();
                              self->Discard();
                            });
  }

  void OnDrain() {
    const bool idle = state_ == State::kReading && parser_.has_value() && !parser_->got_some() &&
                      buffer_.size() == 0;
    if (idle || state_ == State::kLingering) Close();
  }

  void Close() {
    if (state_ == State::kClosed) return;
    state_ = State::kClosed;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
    server_->Unregister(this);
  }

  // The Responder handed to handlers: move-only, answers 500 if destroyed uncalled, posts the
  // response to the session's context (handlers may run on any thread) and holds the session
  // weakly, so a session that closed meanwhile just drops the late response.
  class ResponderImpl {
   public:
    ResponderImpl(std::weak_ptr<Session> session, net::any_io_executor executor,
                  std::shared_ptr<PostGate> gate, uint64_t seq)
        : session_(std::move(session)),
          executor_(std::move(executor)),
          gate_(std::move(gate)),
          seq_(seq) {}
    ResponderImpl(ResponderImpl&& other) noexcept
        : session_(std::move(other.session_)),
          executor_(std::move(other.executor_)),
          gate_(std::move(other.gate_)),
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
    void Deliver(Response response) {
      armed_ = false;
      // Answered on the session's own thread (a cache hit, a bad request): write directly,
      // skipping a queue hop through the io_context and the gate's lock.
      if (const auto* ex = executor_.target<net::io_context::executor_type>();
          ex != nullptr && ex->running_in_this_thread()) {
        if (auto s = session_.lock()) s->OnHandlerResponse(seq_, std::move(response));
        return;
      }
      gate_->Post(executor_,
                  [session = session_, seq = seq_, response = std::move(response)]() mutable {
                    if (auto s = session.lock()) s->OnHandlerResponse(seq, std::move(response));
                  });
    }

    std::weak_ptr<Session> session_;
    net::any_io_executor executor_;
    std::shared_ptr<PostGate> gate_;
    uint64_t seq_;
    bool armed_ = true;
  };

  ServerImpl* const server_;
  const ServerOptions& options_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::string out_;  // the serialized response, kept alive during async_write
  std::array<char, 4096> discard_;
  std::string remote_;
  State state_ = State::kReading;
  uint64_t seq_ = 0;  // numbers requests so a stale Responder cannot answer a later one
  bool head_ = false;
  bool keep_alive_ = false;
  unsigned version_ = 11;
};

ServerImpl::~ServerImpl() {
  Stop(std::chrono::milliseconds(0));
  // Order matters: the acceptor and sockets must go before their io_contexts; destroying a
  // context also destroys handlers (and sessions) it still holds.
  accept_retry_.reset();
  acceptor_.reset();
  work_.clear();
  contexts_.clear();
}

absl::Status ServerImpl::Start() {
  absl::MutexLock lifecycle(&lifecycle_mu_);
  if (started_ || stopped_) {
    return absl::FailedPreconditionError("http: Start called twice or after Stop");
  }

  const int threads = options_.threads > 0
                          ? options_.threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  std::vector<std::unique_ptr<net::io_context>> contexts;
  for (int i = 0; i < threads; ++i) contexts.push_back(std::make_unique<net::io_context>(1));

  listen_address_ = options_.address.find(':') != std::string::npos
                        ? absl::StrCat("[", options_.address, "]:", options_.port)
                        : absl::StrCat(options_.address, ":", options_.port);
  beast::error_code ec;
  tcp::endpoint endpoint;
  const net::ip::address address = net::ip::make_address(options_.address, ec);
  if (!ec) {
    endpoint = tcp::endpoint(address, options_.port);
  } else {
    tcp::resolver resolver(*contexts[0]);
    auto results = resolver.resolve(options_.address, std::to_string(options_.port),
                                    tcp::resolver::passive, ec);
    if (ec || results.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("http: cannot resolve listen address ",
                                                     listen_address_, ": ", ec.message()));
    }
    endpoint = results.begin()->endpoint();
  }

  auto acceptor = std::make_unique<tcp::acceptor>(*contexts[0]);
  auto fail = [&](std::string_view what) {
    return absl::UnavailableError(absl::StrCat("http: cannot listen on ", listen_address_, ": ",
                                               ec.message(), " (", std::string(what), ")"));
  };
  acceptor->open(endpoint.protocol(), ec);
  if (ec) return fail("open");
  acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (ec) return fail("setsockopt");
  acceptor->bind(endpoint, ec);
  if (ec) return fail("bind");
  acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen");
  port_.store(acceptor->local_endpoint(ec).port());

  contexts_ = std::move(contexts);
  acceptor_ = std::move(acceptor);
  accept_retry_ = std::make_unique<net::steady_timer>(*contexts_[0]);
  for (auto& ctx : contexts_) work_.push_back(net::make_work_guard(*ctx));
  DoAccept();
  for (auto& ctx : contexts_) {
    threads_.emplace_back([ctx = ctx.get()] {
      for (;;) {
        try {
          ctx->run();
          return;
        } catch (const std::exception& e) {
          // Our handlers do not throw; keep serving the other connections if one did.
          spdlog::error("http: exception escaped a handler: {}", e.what());
        }
      }
    });
  }
  started_ = true;
  spdlog::info("http: listening on {}", EndpointString(acceptor_->local_endpoint(ec)));
  return absl::OkStatus();
}

void ServerImpl::DoAccept() {
  // Round-robin: the new socket (and so its session) belongs to the next context.
  net::io_context& target = *contexts_[next_context_];
  next_context_ = (next_context_ + 1) % contexts_.size();
  acceptor_->async_accept(target, beast::bind_front_handler(&ServerImpl::OnAccept, this));
}

void ServerImpl::OnAccept(beast::error_code ec, tcp::socket socket) {
  if (ec == net::error::operation_aborted || !acceptor_->is_open()) return;
  if (draining()) {
    beast::error_code ignored;
    socket.close(ignored);
    return;
  }
  if (ec) {
    // E.g. EMFILE: keep accepting rather than going deaf, but pause so a persistent error
    // does not spin the thread and flood the log.
    spdlog::warn("http: accept failed: {}", ec.message());
    accept_retry_->expires_after(std::chrono::milliseconds(50));
    accept_retry_->async_wait([this](beast::error_code wait_ec) {
      if (!wait_ec && acceptor_->is_open() && !draining()) DoAccept();
    });
    return;
  }
  auto session = std::make_shared<Session>(std::move(socket), this);
  {
    absl::MutexLock lock(&mu_);
    sessions_.emplace(session.get(), session);
  }
  session->Start();
  DoAccept();
}

void ServerImpl::Unregister(Session* session) {
  std::shared_ptr<Session> removed;  // released outside the lock
  absl::MutexLock lock(&mu_);
  if (auto it = sessions_.find(session); it != sessions_.end()) {
    removed = std::move(it->second);
    sessions_.erase(it);
  }
}

void ServerImpl::Stop(std::chrono::milliseconds grace) {
  absl::MutexLock lifecycle(&lifecycle_mu_);
  if (stopped_) return;
  stopped_ = true;
  if (!started_) return;
  const absl::Time deadline = absl::Now() + absl::FromChrono(grace);
  draining_.store(true, std::memory_order_release);

  // The acceptor belongs to the first context's thread; close it there and wait, so no
  // session is registered after the snapshot below.
  auto closed = std::make_shared<std::promise<void>>();
  auto closed_future = closed->get_future();
  net::post(*contexts_[0], [this, closed] {
    beast::error_code ec;
    acceptor_->close(ec);
    accept_retry_->cancel();
    closed->set_value();
  });
  closed_future.wait_for(std::max(grace, std::chrono::milliseconds(1000)));

  std::vector<std::shared_ptr<Session>> sessions;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [ptr, session] : sessions_) sessions.push_back(session);
  }
  for (auto& session : sessions) session->BeginDrain();
  sessions.clear();

  if (mu_.LockWhenWithDeadline(absl::Condition(this, &ServerImpl::NoSessionsLocked), deadline)) {
    spdlog::debug("http: all connections drained");
  }
  const size_t left = sessions_.size();
  mu_.Unlock();
  if (left > 0) spdlog::info("http: closing {} connection(s) after the grace period", left);

  for (auto& guard : work_) guard.reset();
  for (auto& ctx : contexts_) ctx->stop();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  gate_->Close();

  // The threads are gone, so the remaining sessions can be destroyed here.
  std::unordered_map<Session*, std::shared_ptr<Session>> remaining;
  {
    absl::MutexLock lock(&mu_);
    remaining.swap(sessions_);
  }
  remaining.clear();
}

}  // namespace internal

Server::Server(ServerOptions options, std::shared_ptr<const Router> router)
    : impl_(std::make_unique<internal::ServerImpl>(std::move(options), std::move(router))) {}

Server::~Server() = default;

absl::Status Server::Start() { return impl_->Start(); }

uint16_t Server::port() const { return impl_->port(); }

void Server::Stop(std::chrono::milliseconds grace) { impl_->Stop(grace); }

size_t Server::active_connections() const { return impl_->active_connections(); }

}  // namespace nexus::http
