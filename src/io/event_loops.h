// EventLoops: a server's event loops (io/loop.h), one thread each, and the listening sockets
// they share. Each listener has its own ConnectionFactory (its protocol), so one set of loops
// can serve several protocols on several ports, and code running for any of them shares each
// loop's services (the peer forwarder's connection pools).
//
// Every listening socket is in every loop with EPOLLEXCLUSIVE: the kernel hands each new
// connection to one waiting loop, which keeps it for its whole life, so a connection's work
// never needs a lock.
//
// Thread-safety: Listen before Start; Start, Stop, size and active_connections from any thread
// except the loops' own (Stop from a loop would wait for itself). Start succeeds at most once;
// Stop is idempotent; the destructor stops with no grace.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "io/loop.h"

namespace nexus::io {

class EventLoops {
 public:
  // `threads` loops (0: one per core); `name` prefixes log lines and errors ("http").
  EventLoops(int threads, std::string name,
             std::chrono::milliseconds tick = std::chrono::milliseconds(50));
  ~EventLoops();
  EventLoops(const EventLoops&) = delete;
  EventLoops& operator=(const EventLoops&) = delete;

  // Binds and listens on address:port now (port 0 picks one) and serves it with `factory` once
  // started. Returns the bound port. Errors as io::Listen ("http: cannot listen on ...").
  absl::StatusOr<uint16_t> Listen(const std::string& address, uint16_t port,
                                  std::shared_ptr<ConnectionFactory> factory);

  // Starts the threads.
  [[nodiscard]] absl::Status Start();

  // Stops accepting at once (new connections are refused) and tells every connection to drain:
  // idle ones close, busy ones finish their exchange (answers say Connection: close) until
  // `grace` has passed. Then closes everything and joins the threads. Idempotent.
  void Stop(std::chrono::milliseconds grace);

  // Before Start: beyond `max` open connections over every listener, new ones are closed at
  // once and counted (refused_connections). 0 (the default): no limit.
  void set_max_connections(size_t max) { max_connections_ = max; }

  int size() const { return threads_count_; }
  // Open accepted connections over every listener.
  size_t active_connections() const { return connections_.value(); }
  // Connections closed at once for the limit.
  uint64_t refused_connections() const { return connections_.refused(); }

 private:
  // Closes the listening sockets still open (the factories stay: connections use them).
  void CloseListeners() ABSL_EXCLUSIVE_LOCKS_REQUIRED(lifecycle_mu_);

  const int threads_count_;
  const std::string name_;
  const std::chrono::milliseconds tick_;
  ConnectionCount connections_;
  size_t max_connections_ = 0;

  absl::Mutex lifecycle_mu_;
  bool started_ ABSL_GUARDED_BY(lifecycle_mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(lifecycle_mu_) = false;
  // Touched only under lifecycle_mu_ (and by the loops' threads, which Start creates after
  // everything is set and Stop joins before anything is freed).
  struct Listener {
    int fd = -1;  // -1 once closed
    std::shared_ptr<ConnectionFactory> factory;
  };
  std::vector<Listener> listeners_;
  std::vector<std::unique_ptr<Loop>> loops_;
  std::vector<std::thread> threads_;
};

}  // namespace nexus::io
