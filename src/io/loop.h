// Loop: one event loop, an epoll instance driven by one thread, in nginx's worker style. Every
// socket state machine in the codebase runs on one: the client protocols' connections (accepted
// from listening sockets, created by a ConnectionFactory per listener: the protocol seam), the
// peer forwarder's upstream connections, and nexus-bench's client connections.
//
// What a loop offers the code running on its thread:
//  - Sockets: Watch(fd, socket) registers a non-blocking fd edge-triggered for EPOLLIN |
//    EPOLLOUT | EPOLLRDHUP; its LoopSocket gets the event bits. A socket freed from inside its
//    own events is handed to Retire (freed after the batch, which may still name it).
//  - Accepted connections (io/connection.h) are owned by the loop, numbered (FindConnection),
//    ticked and told to drain.
//  - Per-loop services (LoopService), one per type, created on first use by Service<T>() and
//    destroyed on the loop's thread when the loop ends, so a service (the forwarder's pools)
//    can fail what it still has pending from the right thread. A service may ask to run once
//    after the current batch of events (RequestTurnEnd): where it flushes what it queued, so
//    everything one turn produced for a socket leaves in one send.
//  - A mailbox (Post, from any thread) and a tick: about every `tick` while anything is
//    watched, connections and services check their deadlines (their precision).
//
// Fairness: a connection that used up its share of reads in one turn asks for another turn
// (ScheduleTurn) instead of starving the others.
//
// Thread-safety: Post, Quit and mailbox() from any thread; AddListener before the loop runs;
// everything else only on the loop's thread (Current() is this loop there, else nullptr).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "io/mailbox.h"

namespace nexus::io {

using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;
inline constexpr TimePoint kNever = TimePoint::max();

class Connection;
class Loop;

// A file descriptor served by a loop. Registration is edge-triggered: read and write until
// EAGAIN before waiting for the next event.
class LoopSocket {
 public:
  virtual ~LoopSocket() = default;
  virtual void OnEvents(uint32_t events) = 0;
};

// One per loop and type (see Service<T>()).
class LoopService {
 public:
  virtual ~LoopService() = default;
  // After the batch of events during which RequestTurnEnd(this) was called.
  virtual void OnTurnEnd() {}
  // About every tick while the loop watches anything: check deadlines here.
  virtual void OnTick(TimePoint now) { (void)now; }
};

// The protocol seam: makes the connection for a socket accepted on one listener. Shared by the
// loops that serve the listener, so it must be thread-safe (typically immutable).
class ConnectionFactory {
 public:
  virtual ~ConnectionFactory() = default;
  // On `loop`'s thread, for a non-blocking accepted socket with TCP_NODELAY set. The loop owns
  // the result (and its fd) from then on; returning nullptr closes the socket.
  virtual std::unique_ptr<Connection> Create(Loop& loop, int fd, std::string remote) = 0;
};

// The factory of a protocol whose connections are `Conn(Loop*, std::string remote, State)`, all
// sharing one immutable `State` (typically a shared_ptr to options and a router or handler).
// Instantiate it where Conn is complete (the protocol's .cc).
template <typename Conn, typename State>
class ConnectionsOf final : public ConnectionFactory {
 public:
  explicit ConnectionsOf(State state) : state_(std::move(state)) {}
  std::unique_ptr<Connection> Create(Loop& loop, int, std::string remote) override {
    return std::make_unique<Conn>(&loop, std::move(remote), state_);
  }

 private:
  const State state_;
};

// The connections of all the loops of a server, counted so that a stop can wait for them.
class ConnectionCount {
 public:
  void Add(int delta) {
    absl::MutexLock lock(&mu_);
    count_ += delta;
  }
  // Counts one more connection unless `max` (0: no limit) are open; false (and counted as
  // refused) when the limit is reached.
  bool TryAdd(size_t max) {
    absl::MutexLock lock(&mu_);
    if (max != 0 && count_ >= max) {
      ++refused_;
      return false;
    }
    ++count_;
    return true;
  }
  uint64_t refused() const {
    absl::MutexLock lock(&mu_);
    return refused_;
  }
  size_t value() const {
    absl::MutexLock lock(&mu_);
    return count_;
  }
  // Waits until the count is 0 or `deadline`; true when it reached 0.
  bool WaitForZero(absl::Time deadline) const {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithDeadline(absl::Condition(this, &ConnectionCount::ZeroLocked), deadline);
  }

 private:
  bool ZeroLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return count_ == 0; }
  mutable absl::Mutex mu_;
  size_t count_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
};

struct LoopOptions {
  // How often deadlines are checked (their precision), and a paused accept is retried.
  std::chrono::milliseconds tick{50};
  // Where accepted connections are counted (may be null).
  ConnectionCount* connections = nullptr;
  // With `connections`: beyond this many open connections (over every loop sharing the
  // count), a new one is closed at once and counted as refused. 0: no limit.
  size_t max_connections = 0;
  // For log lines ("http: accept failed: ...").
  std::string name = "io";
};

class Loop {
 public:
  using Task = Mailbox::Task;

  explicit Loop(LoopOptions options = {});
  ~Loop();  // closes what is left: connections, retired sockets, the epoll instance
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // Creates the epoll instance and the mailbox.
  [[nodiscard]] absl::Status Init();
  // Accepts connections from `listen_fd` (non-blocking, listening) with `factory`; the fd is
  // watched with EPOLLEXCLUSIVE, so of several loops serving it the kernel wakes one per
  // connection, which keeps it. Before Run; both must outlive the loop.
  [[nodiscard]] absl::Status AddListener(int listen_fd, ConnectionFactory* factory);

  // The thread body: runs turns until Quit(), then ends the services and closes everything.
  void Run();
  // One turn on the calling thread, waiting at most `max_wait` for events: for a caller that
  // drives the loop itself between its own work (nexus-bench's workers).
  void RunOnce(std::chrono::milliseconds max_wait);

  // Any thread.
  void Post(Task task) { mailbox_->Post(std::move(task)); }
  void Quit();
  const std::shared_ptr<Mailbox>& mailbox() const { return mailbox_; }

  // Loop thread.
  static Loop* Current();
  // The time the current batch of events started (cheap; what deadlines should use).
  TimePoint now() const { return now_; }
  [[nodiscard]] absl::Status Watch(int fd, LoopSocket* socket);
  // Stops counting `fd` as watched (closing it removes it from epoll; Unwatch also does so
  // explicitly, for an fd that stays open).
  void Unwatch(int fd);
  void Forget() {
    if (watched_ > 0) --watched_;
  }
  void Retire(std::unique_ptr<LoopSocket> socket) { graveyard_.push_back(std::move(socket)); }
  void RequestTurnEnd(LoopService* service) { turn_end_.push_back(service); }
  template <typename T>
  T& Service() {
    static_assert(std::is_base_of_v<LoopService, T>);
    static const char key = 0;
    LoopService* found = FindService(&key);
    if (found == nullptr) found = AddService(&key, std::make_unique<T>());
    return static_cast<T&>(*found);
  }

  // Accepted connections.
  Connection* FindConnection(uint64_t id) const;
  // `conn` gets OnReady(0) in the next turn (it used up its reads in this one).
  void ScheduleTurn(Connection* conn);
  // Called by Connection::Close: frees it after the batch.
  void Closed(Connection* conn);
  // Stops accepting and tells every connection to drain (Connection::OnDrain); new
  // connections are refused from then on.
  void BeginDrain();
  bool draining() const { return draining_; }

 private:
  // A listening socket in this loop's epoll set; its events accept.
  struct Listener final : LoopSocket {
    Listener(Loop* loop, int fd, ConnectionFactory* factory)
        : loop(loop), fd(fd), factory(factory) {}
    void OnEvents(uint32_t) override { loop->Accept(*this); }
    Loop* const loop;
    const int fd;
    ConnectionFactory* const factory;
    bool watched = false;
  };

  LoopService* FindService(const void* key);
  LoopService* AddService(const void* key, std::unique_ptr<LoopService> service);
  bool Busy() const { return !conns_.empty() || watched_ > 0 || accept_resume_ != kNever; }
  void Accept(Listener& listener);
  void PauseAccepting();
  void ResumeAccepting();
  void RunTasks();
  void RunTurnEnds();
  void Tick();
  int WaitTimeoutMs(std::chrono::milliseconds max_wait) const;
  void EndServices();
  // The open connections, for walks that may close some (closing erases from conns_).
  std::vector<Connection*> Snapshot() const;

  const LoopOptions options_;
  int epoll_fd_ = -1;
  std::shared_ptr<Mailbox> mailbox_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  bool quit_ = false;
  bool draining_ = false;
  TimePoint accept_resume_ = kNever;
  TimePoint now_ = SteadyClock::now();
  TimePoint next_tick_ = kNever;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> conns_;
  std::vector<std::unique_ptr<LoopSocket>> graveyard_;
  std::vector<uint64_t> turns_;  // connections that used up their turn with input left
  size_t watched_ = 0;           // sockets registered through Watch
  std::vector<std::pair<const void*, std::unique_ptr<LoopService>>> services_;
  std::vector<LoopService*> turn_end_;  // services to call after this batch (may repeat)
};

}  // namespace nexus::io
