#include "http/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <future>
#include <limits>
#include <memory>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/beast/core/string.hpp"
#include "boost/beast/http/error.hpp"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/status.hpp"
#include "boost/beast/http/string_body.hpp"
#include "common/errno_text.h"
#include "http/loop.h"
#include "spdlog/spdlog.h"

namespace nexus::http {
namespace internal {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;

constexpr TimePoint kNever = TimePoint::max();
// After a response that closes the connection we drain the client's remaining bytes for at
// most this long (see Conn::LingerClose).
constexpr std::chrono::milliseconds kMaxLinger{2000};
// Deadlines are checked this often (their precision), and a paused accept is retried after it.
constexpr std::chrono::milliseconds kScanInterval{50};
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
constexpr std::string_view kDroppedBody = "internal error: handler dropped the request\n";
constexpr size_t kInitialBuffer = 4096;
constexpr int kMaxEvents = 256;
// recv() calls one connection may make per loop turn before the others get theirs.
constexpr int kReadsPerTurn = 16;
// Connections accepted per wake-up of the listening socket.
constexpr int kAcceptsPerTurn = 64;
// A client that pipelines requests without reading answers is not parsed further while this
// much output is unsent.
constexpr size_t kMaxPendingOutput = 256 * 1024;

// Tags in epoll_event.data.ptr that are not connections.
char kListenTag;
char kWakeTag;

std::string AddressString(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = "unknown";
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return absl::StrCat(host, ":", ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return absl::StrCat("[", host, "]:", ntohs(in6->sin6_port));
  }
  return "unknown";
}

// Header names and values must not smuggle CR/LF (a handler bug must not split responses).
bool ValidHeader(std::string_view name, std::string_view value) {
  return !name.empty() && name.find_first_of("\r\n:") == std::string_view::npos &&
         value.find_first_of("\r\n") == std::string_view::npos;
}

// Serializes `r` by hand and appends it to `out`: for the small responses a cache serves,
// Beast's generic serializer cost more CPU than the whole lookup (measured with perf under wrk).
void AppendResponse(Response r, unsigned version, bool keep_alive, bool head,
                    std::string_view server_name, std::string& out) {
  int status = r.status;
  if (status < 100 || status > 999) status = 500;
  // These statuses must not carry a body.
  const bool bodiless = status / 100 == 1 || status == 204 || status == 304;
  if (bodiless) r.body.clear();
  out.reserve(out.size() + 160 + r.body.size());
  out += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  const auto reason = bhttp::obsolete_reason(static_cast<bhttp::status>(status));
  out.append(reason.data(), reason.size());
  out += "\r\nServer: ";
  out += server_name;
  bool has_content_type = false;
  for (const auto& [name, value] : r.headers) {
    if (beast::iequals(name, "Content-Length") || beast::iequals(name, "Transfer-Encoding") ||
        beast::iequals(name, "Connection") || beast::iequals(name, "Server") ||
        !ValidHeader(name, value)) {
      continue;
    }
    if (beast::iequals(name, "Content-Type")) has_content_type = true;
    out += "\r\n";
    out += name;
    out += ": ";
    out += value;
  }
  if (!has_content_type && ValidHeader("Content-Type", r.content_type)) {
    out += "\r\nContent-Type: ";
    out += r.content_type;
  }
  if (!bodiless) {
    // HEAD answers like GET without the body: same Content-Length, nothing after the header.
    out += "\r\nContent-Length: ";
    out += std::to_string(r.body.size());
  }
  if (!keep_alive) {
    out += "\r\nConnection: close";
  } else if (version == 10) {
    out += "\r\nConnection: keep-alive";
  }
  out += "\r\n\r\n";
  if (!head) out += r.body;
}

// Work handed to a loop thread from other threads (a handler's late response, Stop). Wakes the
// loop through an eventfd, written only when the queue goes from empty to non-empty. Once
// closed (the loop is gone), posts are dropped, so a late Responder is harmless.
class Mailbox {
 public:
  using Task = absl::AnyInvocable<void()>;

  explicit Mailbox(int event_fd) : fd_(event_fd) {}
  ~Mailbox() { ::close(fd_); }
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  int fd() const { return fd_; }

  void Post(Task task) {
    bool wake;
    {
      absl::MutexLock lock(&mu_);
      if (!open_) return;
      wake = tasks_.empty();
      tasks_.push_back(std::move(task));
    }
    if (wake) {
      const uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(fd_, &one, sizeof one);
    }
  }

  // Loop thread: everything posted so far.
  std::vector<Task> Take() {
    uint64_t count;
    [[maybe_unused]] ssize_t n = ::read(fd_, &count, sizeof count);
    absl::MutexLock lock(&mu_);
    return std::exchange(tasks_, {});
  }

  void Close() {
    std::vector<Task> dropped;  // destroyed outside the lock
    absl::MutexLock lock(&mu_);
    open_ = false;
    dropped.swap(tasks_);
  }

 private:
  const int fd_;
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  std::vector<Task> tasks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

class Loop;

// One connection, owned by its Loop; every member runs on that loop's thread.
//
// States: kReading (a request is being received; also the keep-alive wait before it) ->
// kHandling (the router has it; no reading, so responses stay in order) -> kReading again, or
// kClosing (the last response is being flushed) -> kLingering (half-closed, discarding input)
// -> kClosed. Output is appended to out_ and flushed whenever the socket is writable, so
// answers to pipelined requests leave in one send.
//
// Readiness is tracked like nginx does with edge-triggered epoll: readable_ becomes false when
// a recv() returns less than asked (the socket is drained) and true on the next EPOLLIN, so a
// keep-alive connection costs one recv() and one send() per request and no failed reads.
class Conn final : public LoopSocket {
 public:
  Conn(Loop* loop, int fd, uint64_t id, std::string remote);
  ~Conn() override { ::close(fd_); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  uint64_t id() const { return id_; }
  void OnEvents(uint32_t events) override;
  void OnResponse(uint64_t seq, Response response);
  void OnDrain();
  // Closes the connection if a deadline has passed.
  void CheckDeadline(TimePoint now);
  // Processes buffered and readable input and flushes output, until it has to wait.
  void Drive();

 private:
  enum class State { kReading, kHandling, kClosing, kLingering, kClosed };

  void StartRequest();
  // Feeds buffered input to the parser; true when the state changed (request complete or
  // rejected), false when more input is needed.
  bool ParseBuffered();
  void OnParseError(const beast::error_code& ec);
  void OnRequest();
  // Reads once into the buffer; false when there is nothing to read now or the connection
  // closed.
  bool ReadSome();
  void Reply(Response response, bool keep_alive);
  void Flush();
  void LingerClose();
  void Discard();
  bool Idle() const;
  void Close();
  bool Draining() const;

  Loop* const loop_;
  const ServerOptions& options_;
  const int fd_;
  const uint64_t id_;
  const std::string remote_;
  State state_ = State::kReading;
  bool in_drive_ = false;
  bool readable_ = true;
  bool writable_ = true;

  // Input: bytes [begin_, end_) of in_ are received and not yet parsed.
  std::unique_ptr<char[]> in_;
  size_t capacity_ = 0;
  size_t begin_ = 0;
  size_t end_ = 0;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bool continue_sent_ = false;

  std::string out_;
  size_t out_sent_ = 0;

  TimePoint read_deadline_ = kNever;
  TimePoint write_deadline_ = kNever;

  uint64_t seq_ = 0;  // numbers requests so a stale Responder cannot answer a later one
  bool head_ = false;
  bool keep_alive_ = false;
  unsigned version_ = 11;
};

// One thread with its epoll instance and the connections it accepted. The listening socket is
// registered in every loop with EPOLLEXCLUSIVE, so the kernel wakes one waiting loop per new
// connection and that loop keeps it (as nginx's workers do); no connection ever moves between
// threads. It is also the LoopContext (http/loop.h) of code running on its thread.
class Loop final : public LoopContext {
 public:
  Loop(ServerImpl* server, int listen_fd) : server_(server), listen_fd_(listen_fd) {}
  ~Loop() {
    services_.clear();  // normally already gone: Run() ends with them
    conns_.clear();
    graveyard_.clear();
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
    if (mailbox_) mailbox_->Close();
  }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  absl::Status Init();
  void Run();  // the thread body; returns after Quit()

  // Any thread.
  const std::shared_ptr<Mailbox>& mailbox() const { return mailbox_; }
  void Quit() {
    mailbox_->Post([this] { quit_ = true; });
  }

  // Loop thread.
  static Loop* Current() { return current_; }
  ServerImpl& server() { return *server_; }
  void BeginDrain();
  void Deliver(uint64_t conn_id, uint64_t seq, Response response);
  void Closed(Conn* conn);
  void ScheduleTurn(Conn* conn) { turns_.push_back(conn->id()); }

  // LoopContext.
  absl::Status Watch(int fd, LoopSocket* socket) override;
  void Unwatch(int fd) override;
  void Retire(std::unique_ptr<LoopSocket> socket) override {
    graveyard_.push_back(std::move(socket));
  }
  void RequestTurnEnd(LoopService* service) override { turn_end_.push_back(service); }
  TimePoint now() const override { return now_; }

 private:
  LoopService* FindService(const void* key) override;
  LoopService* AddService(const void* key, std::unique_ptr<LoopService> service) override;
  void RunTurnEnds();
  // Whether deadlines need scanning: connections, sockets of services, or a paused accept.
  bool Busy() const { return !conns_.empty() || watched_ > 0 || accept_resume_ != kNever; }

  void AcceptSome();
  void PauseAccepting();
  void ResumeAccepting();
  void RunTasks();
  void Scan();
  int WaitTimeoutMs() const;
  // The open connections, for walks that may close some (closing erases from conns_).
  std::vector<Conn*> Snapshot() const;

  static thread_local Loop* current_;

  ServerImpl* const server_;
  const int listen_fd_;
  int epoll_fd_ = -1;
  std::shared_ptr<Mailbox> mailbox_;
  bool quit_ = false;
  bool accepting_ = false;
  bool draining_ = false;
  TimePoint accept_resume_ = kNever;
  TimePoint now_ = SteadyClock::now();
  TimePoint next_scan_ = kNever;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns_;
  // Closed connections (and retired sockets) are freed after the current batch of events,
  // which may still name them.
  std::vector<std::unique_ptr<LoopSocket>> graveyard_;
  std::vector<uint64_t> turns_;  // connections that used up their turn with input left
  size_t watched_ = 0;           // sockets registered through Watch
  std::vector<std::pair<const void*, std::unique_ptr<LoopService>>> services_;
  std::vector<LoopService*> turn_end_;  // services to call after this batch (may repeat)
};

thread_local Loop* Loop::current_ = nullptr;

}  // namespace internal

LoopContext* LoopContext::Current() { return internal::Loop::Current(); }

int SendPending(int fd, const std::string& out, size_t* sent, bool* writable) {
  while (*sent < out.size() && *writable) {
    const ssize_t n = ::send(fd, out.data() + *sent, out.size() - *sent, MSG_NOSIGNAL);
    if (n > 0) {
      *sent += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      *writable = false;  // EPOLLOUT says when there is room again
    } else {
      return errno;
    }
  }
  return 0;
}

namespace internal {

class ServerImpl {
 public:
  ServerImpl(ServerOptions options, std::shared_ptr<const Router> router)
      : options_(std::move(options)), router_(std::move(router)) {}
  ~ServerImpl();

  absl::Status Start();
  void Stop(std::chrono::milliseconds grace);
  uint16_t port() const { return port_.load(); }
  size_t active_connections() const {
    absl::MutexLock lock(&mu_);
    return connections_;
  }

  // For loops and connections.
  const ServerOptions& options() const { return options_; }
  const Router& router() const { return *router_; }
  bool draining() const { return draining_.load(std::memory_order_acquire); }
  void ConnectionOpened() {
    absl::MutexLock lock(&mu_);
    ++connections_;
  }
  void ConnectionClosed() {
    absl::MutexLock lock(&mu_);
    --connections_;
  }

 private:
  bool NoConnectionsLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return connections_ == 0; }
  absl::StatusOr<int> Listen();

  const ServerOptions options_;
  const std::shared_ptr<const Router> router_;
  std::atomic<bool> draining_{false};
  std::atomic<uint16_t> port_{0};
  std::string listen_address_;

  mutable absl::Mutex mu_;
  size_t connections_ ABSL_GUARDED_BY(mu_) = 0;

  absl::Mutex lifecycle_mu_;
  bool started_ ABSL_GUARDED_BY(lifecycle_mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(lifecycle_mu_) = false;

  // Touched only by Start/Stop/~ServerImpl (serialized by lifecycle_mu_ and thread joins).
  int listen_fd_ = -1;
  std::vector<std::unique_ptr<Loop>> loops_;
  std::vector<std::thread> threads_;
};

// ---------------------------------------------------------------------------------------------
// Responder.

namespace {

// The Responder handed to handlers: move-only, answers 500 if destroyed uncalled, delivers on
// the connection's loop (inline when called there, e.g. a cache hit; else through its mailbox)
// and names the connection by id, so a connection that closed meanwhile drops the answer.
class ResponderImpl {
 public:
  ResponderImpl(Loop* loop, std::shared_ptr<Mailbox> mailbox, uint64_t conn_id, uint64_t seq)
      : loop_(loop), mailbox_(std::move(mailbox)), conn_id_(conn_id), seq_(seq) {}
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
  void Deliver(Response response) {
    armed_ = false;
    if (Loop::Current() == loop_) {
      loop_->Deliver(conn_id_, seq_, std::move(response));
      return;
    }
    mailbox_->Post([loop = loop_, id = conn_id_, seq = seq_,
                    response = std::move(response)]() mutable {
      loop->Deliver(id, seq, std::move(response));
    });
  }

  Loop* loop_;  // compared, and used only by tasks that run on that loop
  std::shared_ptr<Mailbox> mailbox_;
  uint64_t conn_id_;
  uint64_t seq_;
  bool armed_ = true;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Conn.

Conn::Conn(Loop* loop, int fd, uint64_t id, std::string remote)
    : loop_(loop),
      options_(loop->server().options()),
      fd_(fd),
      id_(id),
      remote_(std::move(remote)) {
  StartRequest();
}

bool Conn::Draining() const { return loop_->server().draining(); }

void Conn::OnEvents(uint32_t events) {
  if (state_ == State::kClosed) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) readable_ = true;
  if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) writable_ = true;
  if ((events & (EPOLLERR | EPOLLHUP)) && state_ == State::kHandling) {
    // Reset or fully closed while the handler runs: nobody will read the answer.
    return Close();
  }
  Drive();
}

void Conn::Drive() {
  if (in_drive_ || state_ == State::kClosed) return;
  in_drive_ = true;
  int reads = 0;
  for (;;) {
    if (state_ == State::kReading) {
      if (out_.size() - out_sent_ > kMaxPendingOutput) {
        Flush();
        if (state_ == State::kClosed || out_.size() - out_sent_ > kMaxPendingOutput) break;
      }
      if (ParseBuffered()) continue;
      if (!readable_) break;
      if (reads == kReadsPerTurn) {
        loop_->ScheduleTurn(this);
        break;
      }
      ++reads;
      if (!ReadSome()) break;
    } else if (state_ == State::kLingering) {
      Discard();
      break;
    } else {
      break;  // kHandling waits for the Responder; kClosing for the flush below
    }
  }
  if (state_ != State::kClosed && state_ != State::kLingering) Flush();
  in_drive_ = false;
}

void Conn::StartRequest() {
  state_ = State::kReading;
  parser_.emplace();
  parser_->eager(true);
  parser_->header_limit(static_cast<std::uint32_t>(
      std::min<size_t>(options_.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
  parser_->body_limit(static_cast<std::uint64_t>(options_.max_body_bytes));
  continue_sent_ = false;
  // One deadline for the whole request (and the idle time before it): slow-loris clients
  // cannot hold a connection by trickling bytes.
  read_deadline_ = loop_->now() + options_.read_timeout;
}

bool Conn::ParseBuffered() {
  while (begin_ < end_) {
    beast::error_code ec;
    const size_t used = parser_->put(boost::asio::const_buffer(in_.get() + begin_, end_ - begin_), ec);
    begin_ += used;
    if (begin_ == end_) begin_ = end_ = 0;
    if (ec == bhttp::error::need_more) break;
    if (ec) {
      OnParseError(ec);
      return true;
    }
    if (parser_->is_done()) {
      OnRequest();
      return true;
    }
    if (used == 0) break;
  }
  if (parser_->is_header_done() && !parser_->is_done() && !continue_sent_) {
    continue_sent_ = true;
    const auto& req = parser_->get();
    // curl sends "Expect: 100-continue" for bodies over 1 KiB and waits for this.
    if (req.version() >= 11 && beast::iequals(req[bhttp::field::expect], "100-continue")) {
      out_.append(kContinue);
    }
  }
  return false;
}

void Conn::OnParseError(const beast::error_code& ec) {
  // The request never parsed: answer as HTTP/1.1, with a body.
  version_ = 11;
  head_ = false;
  if (ec == bhttp::error::body_limit) return Reply(Text(413, "request body too large\n"), false);
  if (ec == bhttp::error::header_limit) {
    return Reply(Text(431, "request header too large\n"), false);
  }
  spdlog::debug("http: bad request from {}: {}", remote_, ec.message());
  Reply(Text(400, "bad request\n"), false);
}

bool Conn::ReadSome() {
  if (end_ == capacity_) {
    // Full: grow (a large header or body chunk), or move the unparsed bytes to the front.
    if (begin_ > 0) {
      std::memmove(in_.get(), in_.get() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    } else {
      const size_t grown = std::max(kInitialBuffer, capacity_ * 2);
      auto bigger = std::unique_ptr<char[]>(new char[grown]);
      if (end_ > 0) std::memcpy(bigger.get(), in_.get(), end_);
      in_ = std::move(bigger);
      capacity_ = grown;
    }
  }
  const size_t want = capacity_ - end_;
  const ssize_t n = ::recv(fd_, in_.get() + end_, want, 0);
  if (n > 0) {
    end_ += static_cast<size_t>(n);
    if (static_cast<size_t>(n) < want) readable_ = false;  // drained; EPOLLIN says when more
    return true;
  }
  if (n < 0 && errno == EINTR) return true;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    readable_ = false;
    return false;
  }
  // EOF or error (e.g. reset) mid-request or between requests: nothing to answer.
  if (n < 0) spdlog::debug("http: reading from {}: {}", remote_, ErrnoText(errno));
  Close();
  return false;
}

void Conn::OnRequest() {
  state_ = State::kHandling;
  // The handler may take long (peer fetch, origin load); the read deadline does not apply.
  read_deadline_ = kNever;
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
  Responder respond(ResponderImpl(loop_, loop_->mailbox(), id_, seq));
  try {
    loop_->server().router().Dispatch(std::move(req), std::move(respond));
  } catch (const std::exception& e) {
    // The Responder died in the unwinding and answered 500.
    spdlog::error("http: handler for {} threw: {}", std::string(msg.target()), e.what());
  }
}

void Conn::OnResponse(uint64_t seq, Response response) {
  if (state_ != State::kHandling || seq != seq_) return;
  const bool keep_alive = keep_alive_ && !response.close;
  Reply(std::move(response), keep_alive);
  Drive();  // a no-op when called from inside Drive (an inline answer); it continues there
}

void Conn::Reply(Response response, bool keep_alive) {
  if (Draining()) keep_alive = false;
  AppendResponse(std::move(response), version_, keep_alive, head_, options_.server_name, out_);
  if (keep_alive) {
    StartRequest();  // pipelined requests may already be buffered
  } else {
    state_ = State::kClosing;
    read_deadline_ = kNever;
    parser_.reset();
  }
}

void Conn::Flush() {
  if (const int err = SendPending(fd_, out_, &out_sent_, &writable_); err != 0) {
    spdlog::debug("http: write to {} failed: {}", remote_, ErrnoText(err));
    return Close();
  }
  if (out_sent_ < out_.size()) {
    // Writing one response must finish within write_timeout.
    if (write_deadline_ == kNever) write_deadline_ = loop_->now() + options_.write_timeout;
    return;
  }
  write_deadline_ = kNever;
  out_sent_ = 0;
  out_.clear();
  if (out_.capacity() > kMaxPendingOutput) out_.shrink_to_fit();
  if (state_ == State::kClosing) return LingerClose();
  if (Draining() && Idle()) Close();
}

// Half-closes and discards what the client still sends until it closes too (or kMaxLinger),
// because closing a socket with unread input makes the kernel send RST, which can destroy the
// response before the client reads it (e.g. a 413 while the client is still uploading).
void Conn::LingerClose() {
  state_ = State::kLingering;
  if (::shutdown(fd_, SHUT_WR) != 0 || Draining()) return Close();
  read_deadline_ =
      loop_->now() + std::min<std::chrono::milliseconds>(options_.read_timeout, kMaxLinger);
  begin_ = end_ = 0;
  Discard();
}

void Conn::Discard() {
  char scratch[4096];
  while (readable_) {
    const ssize_t n = ::recv(fd_, scratch, sizeof scratch, 0);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      readable_ = false;
      return;
    }
    return Close();  // the client closed too (or reset)
  }
}

bool Conn::Idle() const {
  return state_ == State::kReading && begin_ == end_ && out_sent_ == out_.size() &&
         parser_.has_value() && !parser_->got_some();
}

void Conn::OnDrain() {
  if (Idle() || state_ == State::kLingering) Close();
}

void Conn::CheckDeadline(TimePoint now) {
  if (state_ == State::kClosed) return;
  if (now >= read_deadline_ || now >= write_deadline_) {
    spdlog::debug("http: closing connection from {}: timed out", remote_);
    Close();
  }
}

void Conn::Close() {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  ::shutdown(fd_, SHUT_RDWR);
  loop_->Closed(this);  // the fd is closed when the loop frees this object
}

// ---------------------------------------------------------------------------------------------
// Loop.

absl::Status Loop::Init() {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) return absl::InternalError("http: epoll_create1: " + ErrnoText(errno));
  const int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) return absl::InternalError("http: eventfd: " + ErrnoText(errno));
  mailbox_ = std::make_shared<Mailbox>(efd);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &kWakeTag;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, efd, &ev) != 0) {
    return absl::InternalError("http: epoll_ctl: " + ErrnoText(errno));
  }
  ResumeAccepting();
  if (!accepting_) return absl::InternalError("http: epoll_ctl(listen): " + ErrnoText(errno));
  return absl::OkStatus();
}

void Loop::ResumeAccepting() {
  accept_resume_ = kNever;
  if (accepting_ || draining_) return;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLEXCLUSIVE;
  ev.data.ptr = &kListenTag;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev) == 0) {
    accepting_ = true;
  } else {
    spdlog::warn("http: cannot watch the listening socket: {}", ErrnoText(errno));
    accept_resume_ = now_ + kScanInterval;
  }
}

void Loop::PauseAccepting() {
  if (!accepting_) return;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
  accepting_ = false;
}

void Loop::AcceptSome() {
  for (int i = 0; i < kAcceptsPerTurn && accepting_; ++i) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
      // E.g. EMFILE: keep the server alive rather than spinning on a level-triggered listen
      // socket; stop watching it for a moment.
      spdlog::warn("http: accept failed: {}", ErrnoText(err));
      PauseAccepting();
      accept_resume_ = now_ + kScanInterval;
      return;
    }
    if (draining_) {
      ::close(fd);
      continue;
    }
    // Every response goes out in one send; Nagle would only hold it back waiting for an ACK.
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const uint64_t id = next_id_++;
    auto conn = std::make_unique<Conn>(this, fd, id,
                                       AddressString(reinterpret_cast<sockaddr*>(&addr)));
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = static_cast<LoopSocket*>(conn.get());  // what Run() casts it back to
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      spdlog::warn("http: cannot watch a new connection: {}", ErrnoText(errno));
      continue;  // the Conn destructor closes fd
    }
    server_->ConnectionOpened();
    Conn* raw = conn.get();
    conns_.emplace(id, std::move(conn));
    if (next_scan_ == kNever) next_scan_ = now_ + kScanInterval;
    raw->Drive();
  }
}

void Loop::Closed(Conn* conn) {
  auto it = conns_.find(conn->id());
  if (it == conns_.end()) return;
  graveyard_.push_back(std::move(it->second));
  conns_.erase(it);
  server_->ConnectionClosed();
}

void Loop::Deliver(uint64_t conn_id, uint64_t seq, Response response) {
  auto it = conns_.find(conn_id);
  if (it != conns_.end()) it->second->OnResponse(seq, std::move(response));
}

void Loop::BeginDrain() {
  draining_ = true;
  PauseAccepting();
  accept_resume_ = kNever;
  for (Conn* conn : Snapshot()) conn->OnDrain();
}

std::vector<Conn*> Loop::Snapshot() const {
  std::vector<Conn*> conns;
  conns.reserve(conns_.size());
  for (const auto& [id, conn] : conns_) conns.push_back(conn.get());
  return conns;
}

absl::Status Loop::Watch(int fd, LoopSocket* socket) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = socket;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    return absl::InternalError("http: epoll_ctl: " + ErrnoText(errno));
  }
  ++watched_;
  if (next_scan_ == kNever) next_scan_ = now_ + kScanInterval;
  return absl::OkStatus();
}

void Loop::Unwatch(int fd) {
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr) == 0 && watched_ > 0) --watched_;
}

LoopService* Loop::FindService(const void* key) {
  for (auto& [k, service] : services_) {
    if (k == key) return service.get();
  }
  return nullptr;
}

LoopService* Loop::AddService(const void* key, std::unique_ptr<LoopService> service) {
  services_.emplace_back(key, std::move(service));
  return services_.back().second.get();
}

void Loop::RunTurnEnds() {
  // A service's OnTurnEnd may request another turn end (e.g. a failure answered a request whose
  // handler forwarded again): run until none is left.
  while (!turn_end_.empty()) {
    std::vector<LoopService*> services = std::exchange(turn_end_, {});
    std::sort(services.begin(), services.end());
    services.erase(std::unique(services.begin(), services.end()), services.end());
    for (LoopService* service : services) service->OnTurnEnd();
  }
}

void Loop::RunTasks() {
  for (auto& task : mailbox_->Take()) task();
}

void Loop::Scan() {
  next_scan_ = now_ + kScanInterval;
  if (accept_resume_ != kNever && now_ >= accept_resume_) ResumeAccepting();
  for (Conn* conn : Snapshot()) conn->CheckDeadline(now_);
  // By index: a tick's callbacks may create a service.
  for (size_t i = 0; i < services_.size(); ++i) services_[i].second->OnTick(now_);
}

int Loop::WaitTimeoutMs() const {
  if (!turns_.empty()) return 0;
  if (!Busy()) return -1;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next_scan_ - now_);
  return static_cast<int>(std::clamp<int64_t>(left.count() + 1, 1, kScanInterval.count()));
}

void Loop::Run() {
  current_ = this;
  epoll_event events[kMaxEvents];
  while (!quit_) {
    if (next_scan_ == kNever && accept_resume_ != kNever) next_scan_ = now_ + kScanInterval;
    const int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, WaitTimeoutMs());
    now_ = SteadyClock::now();
    if (n < 0 && errno != EINTR) {
      spdlog::error("http: epoll_wait: {}", ErrnoText(errno));
      std::this_thread::sleep_for(kScanInterval);
    }
    try {
      for (int i = 0; i < n; ++i) {
        void* tag = events[i].data.ptr;
        if (tag == &kListenTag) {
          AcceptSome();
        } else if (tag == &kWakeTag) {
          RunTasks();
        } else {
          static_cast<LoopSocket*>(tag)->OnEvents(events[i].events);
        }
      }
      if (!turns_.empty()) {
        for (uint64_t id : std::exchange(turns_, {})) {
          if (auto it = conns_.find(id); it != conns_.end()) it->second->Drive();
        }
      }
      RunTurnEnds();
      if (now_ >= next_scan_) Scan();
      RunTurnEnds();
      if (!Busy()) next_scan_ = kNever;
    } catch (const std::exception& e) {
      // Our handlers do not throw; keep serving the other connections if one did.
      spdlog::error("http: exception escaped a handler: {}", e.what());
    }
    graveyard_.clear();
  }
  // Services end on this thread, as no longer the current loop: what they fail (e.g. forwarded
  // requests still pending) can neither create services nor be answered here; the answers go
  // to the closed mailbox and the connections close with the loop.
  current_ = nullptr;
  turn_end_.clear();
  try {
    std::exchange(services_, {}).clear();
  } catch (const std::exception& e) {
    spdlog::error("http: exception while stopping a loop service: {}", e.what());
  }
  graveyard_.clear();
}

// ---------------------------------------------------------------------------------------------
// ServerImpl.

ServerImpl::~ServerImpl() { Stop(std::chrono::milliseconds(0)); }

absl::StatusOr<int> ServerImpl::Listen() {
  listen_address_ = options_.address.find(':') != std::string::npos
                        ? absl::StrCat("[", options_.address, "]:", options_.port)
                        : absl::StrCat(options_.address, ":", options_.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(options_.port);
  if (const int rc = ::getaddrinfo(options_.address.c_str(), port.c_str(), &hints, &found);
      rc != 0 || found == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("http: cannot resolve listen address ",
                                                   listen_address_, ": ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owner(found, &freeaddrinfo);
  auto fail = [&](std::string_view what, int err, int fd) {
    if (fd >= 0) ::close(fd);
    return absl::UnavailableError(absl::StrCat("http: cannot listen on ", listen_address_, ": ",
                                               ErrnoText(err), " (", std::string(what), ")"));
  };
  const int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail("socket", errno, -1);
  const int one = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
    return fail("setsockopt", errno, fd);
  }
  if (::bind(fd, found->ai_addr, found->ai_addrlen) != 0) return fail("bind", errno, fd);
  if (::listen(fd, SOMAXCONN) != 0) return fail("listen", errno, fd);
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  port_.store(bound.ss_family == AF_INET6
                  ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                  : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port));
  spdlog::info("http: listening on {}", AddressString(reinterpret_cast<sockaddr*>(&bound)));
  return fd;
}

absl::Status ServerImpl::Start() {
  absl::MutexLock lifecycle(&lifecycle_mu_);
  if (started_ || stopped_) {
    return absl::FailedPreconditionError("http: Start called twice or after Stop");
  }
  absl::StatusOr<int> fd = Listen();
  if (!fd.ok()) return fd.status();
  listen_fd_ = *fd;

  const int threads = options_.threads > 0
                          ? options_.threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  for (int i = 0; i < threads; ++i) {
    auto loop = std::make_unique<Loop>(this, listen_fd_);
    if (absl::Status status = loop->Init(); !status.ok()) {
      loops_.clear();
      ::close(listen_fd_);
      listen_fd_ = -1;
      return status;
    }
    loops_.push_back(std::move(loop));
  }
  for (auto& loop : loops_) threads_.emplace_back([loop = loop.get()] { loop->Run(); });
  started_ = true;
  return absl::OkStatus();
}

void ServerImpl::Stop(std::chrono::milliseconds grace) {
  absl::MutexLock lifecycle(&lifecycle_mu_);
  if (stopped_) return;
  stopped_ = true;
  if (!started_) return;
  const absl::Time deadline = absl::Now() + absl::FromChrono(grace);
  draining_.store(true, std::memory_order_release);

  // Every loop stops watching the listening socket and closes its idle connections; once all
  // have, the socket is closed, so new connections are refused.
  std::vector<std::future<void>> drained;
  for (auto& loop : loops_) {
    auto done = std::make_shared<std::promise<void>>();
    drained.push_back(done->get_future());
    loop->mailbox()->Post([loop = loop.get(), done] {
      loop->BeginDrain();
      done->set_value();
    });
  }
  const auto ack_deadline =
      std::chrono::steady_clock::now() + std::max(grace, std::chrono::milliseconds(1000));
  for (auto& f : drained) f.wait_until(ack_deadline);
  ::close(listen_fd_);
  listen_fd_ = -1;

  if (mu_.LockWhenWithDeadline(absl::Condition(this, &ServerImpl::NoConnectionsLocked),
                               deadline)) {
    spdlog::debug("http: all connections drained");
  }
  const size_t left = connections_;
  mu_.Unlock();
  if (left > 0) spdlog::info("http: closing {} connection(s) after the grace period", left);

  for (auto& loop : loops_) loop->Quit();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  // The threads are gone: the loops' connections close with them, and late Responders find
  // their mailboxes closed.
  loops_.clear();
  absl::MutexLock lock(&mu_);
  connections_ = 0;
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
