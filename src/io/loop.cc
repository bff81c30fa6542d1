#include "io/loop.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <thread>

#include "io/connection.h"
#include "io/socket.h"
#include "spdlog/spdlog.h"

namespace nexus::io {

namespace {

constexpr int kMaxEvents = 256;
// Connections accepted per wake-up of a listening socket.
constexpr int kAcceptsPerTurn = 64;

// Tag in epoll_event.data.ptr for the mailbox (everything else is a LoopSocket).
char kWakeTag;

thread_local Loop* current_loop = nullptr;

}  // namespace

Loop::Loop(LoopOptions options) : options_(std::move(options)) {}

Loop::~Loop() {
  services_.clear();  // normally already gone: Run() ends with them
  if (options_.connections != nullptr) options_.connections->Add(-static_cast<int>(conns_.size()));
  conns_.clear();
  graveyard_.clear();
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (mailbox_) mailbox_->Close();
}

Loop* Loop::Current() { return current_loop; }

absl::Status Loop::Init() {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) {
    return absl::InternalError(options_.name + ": epoll_create1: " + ErrnoText(errno));
  }
  absl::StatusOr<std::unique_ptr<Mailbox>> mailbox = Mailbox::Create();
  if (!mailbox.ok()) {
    return absl::InternalError(options_.name + ": " + std::string(mailbox.status().message()));
  }
  mailbox_ = std::move(*mailbox);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &kWakeTag;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, mailbox_->fd(), &ev) != 0) {
    return absl::InternalError(options_.name + ": epoll_ctl: " + ErrnoText(errno));
  }
  return absl::OkStatus();
}

absl::Status Loop::AddListener(int listen_fd, ConnectionFactory* factory) {
  listeners_.push_back(std::make_unique<Listener>(this, listen_fd, factory));
  ResumeAccepting();
  if (!listeners_.back()->watched) {
    return absl::InternalError(options_.name + ": epoll_ctl(listen): " + ErrnoText(errno));
  }
  return absl::OkStatus();
}

void Loop::ResumeAccepting() {
  accept_resume_ = kNever;
  if (draining_) return;
  for (auto& l : listeners_) {
    if (l->watched) continue;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.ptr = static_cast<LoopSocket*>(l.get());
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, l->fd, &ev) == 0) {
      l->watched = true;
    } else {
      spdlog::warn("{}: cannot watch a listening socket: {}", options_.name, ErrnoText(errno));
      accept_resume_ = now_ + options_.tick;
    }
  }
}

void Loop::PauseAccepting() {
  for (auto& l : listeners_) {
    if (!l->watched) continue;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, l->fd, nullptr);
    l->watched = false;
  }
}

void Loop::Accept(Listener& listener) {
  for (int i = 0; i < kAcceptsPerTurn && listener.watched; ++i) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    const int fd = ::accept4(listener.fd, reinterpret_cast<sockaddr*>(&addr), &len,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
      // E.g. EMFILE: keep serving rather than spinning on a level-triggered listening socket;
      // stop watching the listeners for a tick.
      spdlog::warn("{}: accept failed: {}", options_.name, ErrnoText(err));
      PauseAccepting();
      accept_resume_ = now_ + options_.tick;
      return;
    }
    if (draining_) {
      ::close(fd);
      continue;
    }
    // (Counted before the connection exists, so that the limit holds across loops.)
    if (options_.connections != nullptr &&
        !options_.connections->TryAdd(options_.max_connections)) {
      ::close(fd);  // over --max-connections: closed at once, counted
      continue;
    }
    SetNoDelay(fd);
    std::unique_ptr<Connection> conn =
        listener.factory->Create(*this, fd, AddressString(reinterpret_cast<sockaddr*>(&addr)));
    if (conn == nullptr) {
      ::close(fd);
      if (options_.connections != nullptr) options_.connections->Add(-1);
      continue;
    }
    if (absl::Status s = conn->Adopt(fd); !s.ok()) {
      spdlog::warn("{}: cannot watch a new connection: {}", options_.name,
                   std::string(s.message()));
      if (options_.connections != nullptr) options_.connections->Add(-1);
      continue;  // Adopt closed the fd
    }
    conn->id_ = next_id_++;
    Connection* raw = conn.get();
    conns_.emplace(raw->id_, std::move(conn));
    raw->Start();
  }
}

Connection* Loop::FindConnection(uint64_t id) const {
  auto it = conns_.find(id);
  return it == conns_.end() ? nullptr : it->second.get();
}

void Loop::ScheduleTurn(Connection* conn) { turns_.push_back(conn->id()); }

void Loop::Closed(Connection* conn) {
  auto it = conns_.find(conn->id());
  if (it == conns_.end()) return;
  graveyard_.push_back(std::move(it->second));
  conns_.erase(it);
  if (options_.connections != nullptr) options_.connections->Add(-1);
}

void Loop::BeginDrain() {
  draining_ = true;
  PauseAccepting();
  accept_resume_ = kNever;
  for (Connection* conn : Snapshot()) conn->OnDrain();
}

std::vector<Connection*> Loop::Snapshot() const {
  std::vector<Connection*> conns;
  conns.reserve(conns_.size());
  for (const auto& [id, conn] : conns_) conns.push_back(conn.get());
  return conns;
}

absl::Status Loop::Watch(int fd, LoopSocket* socket) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = socket;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    return absl::InternalError(options_.name + ": epoll_ctl: " + ErrnoText(errno));
  }
  ++watched_;
  if (next_tick_ == kNever) next_tick_ = now_ + options_.tick;
  return absl::OkStatus();
}

void Loop::Unwatch(int fd) {
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr) == 0) Forget();
}

void Loop::Quit() {
  mailbox_->Post([this] { quit_ = true; });
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

void Loop::Tick() {
  next_tick_ = now_ + options_.tick;
  if (accept_resume_ != kNever && now_ >= accept_resume_) ResumeAccepting();
  for (Connection* conn : Snapshot()) conn->OnTick(now_);
  // By index: a tick's callbacks may create a service.
  for (size_t i = 0; i < services_.size(); ++i) services_[i].second->OnTick(now_);
}

int Loop::WaitTimeoutMs(std::chrono::milliseconds max_wait) const {
  if (!turns_.empty()) return 0;
  int64_t wait = max_wait.count() < 0 ? -1 : max_wait.count();
  if (Busy()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next_tick_ - now_);
    const int64_t until_tick = std::clamp<int64_t>(left.count() + 1, 1, options_.tick.count());
    wait = wait < 0 ? until_tick : std::min(wait, until_tick);
  }
  return static_cast<int>(wait);
}

void Loop::RunOnce(std::chrono::milliseconds max_wait) {
  Loop* const previous = current_loop;
  current_loop = this;
  if (next_tick_ == kNever && accept_resume_ != kNever) next_tick_ = now_ + options_.tick;
  epoll_event events[kMaxEvents];
  const int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, WaitTimeoutMs(max_wait));
  now_ = SteadyClock::now();
  if (n < 0 && errno != EINTR) {
    spdlog::error("{}: epoll_wait: {}", options_.name, ErrnoText(errno));
    std::this_thread::sleep_for(options_.tick);
  }
  try {
    for (int i = 0; i < n; ++i) {
      void* tag = events[i].data.ptr;
      if (tag == &kWakeTag) {
        RunTasks();
      } else {
        static_cast<LoopSocket*>(tag)->OnEvents(events[i].events);
      }
    }
    if (!turns_.empty()) {
      for (uint64_t id : std::exchange(turns_, {})) {
        if (auto it = conns_.find(id); it != conns_.end()) it->second->OnReady(0);
      }
    }
    RunTurnEnds();
    if (now_ >= next_tick_) Tick();
    RunTurnEnds();
    if (!Busy()) next_tick_ = kNever;
  } catch (const std::exception& e) {
    // Our handlers do not throw; keep serving the other sockets if one did.
    spdlog::error("{}: exception escaped a handler: {}", options_.name, e.what());
  }
  graveyard_.clear();
  current_loop = previous;
}

void Loop::Run() {
  while (!quit_) RunOnce(std::chrono::milliseconds(-1));
  EndServices();
}

void Loop::EndServices() {
  // Services end on this thread, as no longer the current loop: what they fail (e.g. forwarded
  // requests still pending) can neither create services nor be answered here; the answers go
  // to the closed mailbox and the connections close with the loop.
  turn_end_.clear();
  try {
    std::exchange(services_, {}).clear();
  } catch (const std::exception& e) {
    spdlog::error("{}: exception while stopping a loop service: {}", options_.name, e.what());
  }
  graveyard_.clear();
}

}  // namespace nexus::io
