#include "io/event_loops.h"

#include <unistd.h>

#include <algorithm>
#include <future>
#include <utility>

#include "absl/time/clock.h"
#include "io/socket.h"
#include "spdlog/spdlog.h"

namespace nexus::io {

EventLoops::EventLoops(int threads, std::string name, std::chrono::milliseconds tick)
    : threads_count_(threads > 0
                         ? threads
                         : std::max(1, static_cast<int>(std::thread::hardware_concurrency()))),
      name_(std::move(name)),
      tick_(tick) {}

EventLoops::~EventLoops() {
  Stop(std::chrono::milliseconds(0));
  absl::MutexLock lifecycle(&lifecycle_mu_);
  CloseListeners();
}

void EventLoops::CloseListeners() {
  for (Listener& l : listeners_) {
    if (l.fd >= 0) ::close(std::exchange(l.fd, -1));
  }
}

absl::StatusOr<uint16_t> EventLoops::Listen(const std::string& address, uint16_t port,
                                            std::shared_ptr<ConnectionFactory> factory) {
  absl::MutexLock lifecycle(&lifecycle_mu_);
  if (started_ || stopped_) {
    return absl::FailedPreconditionError(name_ + ": Listen after Start or Stop");
  }
  absl::StatusOr<ListeningSocket> socket = io::Listen(name_, address, port);
  if (!socket.ok()) return socket.status();
  spdlog::info("{}: listening on {}:{}", name_, address, socket->port);
  listeners_.push_back({.fd = socket->fd, .factory = std::move(factory)});
  return socket->port;
}

absl::Status EventLoops::Start() {
  absl::MutexLock lifecycle(&lifecycle_mu_);
  if (started_ || stopped_) {
    return absl::FailedPreconditionError(name_ + ": Start called twice or after Stop");
  }
  for (int i = 0; i < threads_count_; ++i) {
    auto loop = std::make_unique<Loop>(LoopOptions{.tick = tick_,
                                                   .connections = &connections_,
                                                   .max_connections = max_connections_,
                                                   .name = name_});
    absl::Status status = loop->Init();
    for (size_t l = 0; status.ok() && l < listeners_.size(); ++l) {
      status = loop->AddListener(listeners_[l].fd, listeners_[l].factory.get());
    }
    if (!status.ok()) {
      loops_.clear();
      return status;
    }
    loops_.push_back(std::move(loop));
  }
  for (auto& loop : loops_) threads_.emplace_back([loop = loop.get()] { loop->Run(); });
  started_ = true;
  return absl::OkStatus();
}

void EventLoops::Stop(std::chrono::milliseconds grace) {
  absl::MutexLock lifecycle(&lifecycle_mu_);
  if (stopped_) return;
  stopped_ = true;
  if (!started_) return;
  const absl::Time deadline = absl::Now() + absl::FromChrono(grace);

  // Every loop stops watching the listening sockets and closes its idle connections; once all
  // have, the sockets are closed, so new connections are refused.
  std::vector<std::future<void>> drained;
  for (auto& loop : loops_) {
    auto done = std::make_shared<std::promise<void>>();
    drained.push_back(done->get_future());
    loop->Post([loop = loop.get(), done] {
      loop->BeginDrain();
      done->set_value();
    });
  }
  const auto ack_deadline =
      std::chrono::steady_clock::now() + std::max(grace, std::chrono::milliseconds(1000));
  for (auto& f : drained) f.wait_until(ack_deadline);
  CloseListeners();

  if (connections_.WaitForZero(deadline)) {
    spdlog::debug("{}: all connections drained", name_);
  } else {
    spdlog::info("{}: closing {} connection(s) after the grace period", name_,
                 connections_.value());
  }
  for (auto& loop : loops_) loop->Quit();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  // The threads are gone: the loops' connections close with them, and late posters find the
  // mailboxes closed.
  loops_.clear();
}

}  // namespace nexus::io
