#include "support/delay_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <list>
#include <vector>

namespace nexus::testing {

namespace {

using Clock = std::chrono::steady_clock;

sockaddr_in Loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

void NonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Bytes read from one side, due on the other at `due`; no bytes: the end of the stream.
struct Chunk {
  Clock::time_point due;
  std::string bytes;
  size_t sent = 0;
};

// One direction of a connection.
struct Flow {
  int from = -1;
  int to = -1;
  std::deque<Chunk> queue;
  bool read_done = false;   // `from` ended its stream (or failed)
  bool write_done = false;  // the end was passed on to `to`
  bool blocked = false;     // `to` took less than offered: wait until it is writable
};

struct Connection {
  int client = -1;
  int upstream = -1;
  Flow up;    // client -> upstream
  Flow down;  // upstream -> client
  bool broken = false;
};

}  // namespace

std::unique_ptr<DelayProxy> DelayProxy::Start(uint16_t target_port,
                                              std::chrono::milliseconds one_way,
                                              std::string* error) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = Loopback(0);
  socklen_t len = sizeof(a);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, 128) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    *error = std::string("delay proxy: cannot listen: ") + std::strerror(errno);
    if (fd >= 0) close(fd);
    return nullptr;
  }
  NonBlocking(fd);
  return std::unique_ptr<DelayProxy>(new DelayProxy(fd, ntohs(a.sin_port), target_port, one_way));
}

DelayProxy::DelayProxy(int listener, uint16_t port, uint16_t target_port,
                       std::chrono::milliseconds one_way)
    : listener_(listener), port_(port), target_port_(target_port), one_way_(one_way) {
  if (pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) wake_[0] = wake_[1] = -1;
  thread_ = std::thread([this] { Run(); });
}

DelayProxy::~DelayProxy() {
  const char stop = 1;
  if (write(wake_[1], &stop, 1) != 1) {
    // Cannot happen with an empty pipe; Run would then only stop at process exit.
  }
  thread_.join();
  close(listener_);
  close(wake_[0]);
  close(wake_[1]);
}

void DelayProxy::Run() {
  std::list<Connection> connections;
  std::vector<pollfd> fds;
  std::vector<char> buffer(64 << 10);
  const auto flush = [](Flow& f, Clock::time_point now) {
    while (!f.queue.empty() && f.queue.front().due <= now && !f.write_done) {
      Chunk& c = f.queue.front();
      if (c.bytes.empty()) {  // the end of the stream
        shutdown(f.to, SHUT_WR);
        f.write_done = true;
        f.queue.pop_front();
        break;
      }
      const ssize_t n = send(f.to, c.bytes.data() + c.sent, c.bytes.size() - c.sent, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          f.blocked = true;
          return true;
        }
        return false;
      }
      c.sent += static_cast<size_t>(n);
      if (c.sent < c.bytes.size()) {
        f.blocked = true;
        return true;
      }
      f.queue.pop_front();
    }
    f.blocked = false;
    return true;
  };
  for (;;) {
    // What to wait for, and until when: the earliest chunk due.
    fds.clear();
    fds.push_back({.fd = wake_[0], .events = POLLIN, .revents = 0});
    fds.push_back({.fd = listener_, .events = POLLIN, .revents = 0});
    Clock::time_point next = Clock::time_point::max();
    for (Connection& c : connections) {
      for (Flow* f : {&c.up, &c.down}) {
        const short read = f->read_done ? 0 : POLLIN;
        fds.push_back({.fd = f->from, .events = read, .revents = 0});
        fds.push_back(
            {.fd = f->to, .events = static_cast<short>(f->blocked ? POLLOUT : 0), .revents = 0});
        if (!f->queue.empty() && !f->blocked) next = std::min(next, f->queue.front().due);
      }
    }
    int timeout = -1;
    if (next != Clock::time_point::max()) {
      const auto wait = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now()).count();
      timeout = static_cast<int>(std::max<int64_t>(0, wait));
    }
    if (poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) return;
    if (fds[0].revents != 0) return;  // stopped
    const Clock::time_point now = Clock::now();
    // Read what arrived (due one_way from now), then send what is due.
    size_t i = 2;
    for (Connection& c : connections) {
      for (Flow* f : {&c.up, &c.down}) {
        const short from_events = fds[i].revents;
        i += 2;
        if (f->read_done || (from_events & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const ssize_t n = recv(f->from, buffer.data(), buffer.size(), 0);
        if (n > 0) {
          f->queue.push_back({.due = now + one_way_, .bytes = std::string(buffer.data(), n)});
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
          f->read_done = true;
          f->queue.push_back({.due = now + one_way_});
          if (n < 0) c.broken = true;
        }
      }
      for (Flow* f : {&c.up, &c.down}) {
        if (!flush(*f, Clock::now())) c.broken = true;
      }
    }
    // New connections: each to a new connection to the target (closed at once if that fails,
    // as a refused connection would be).
    if ((fds[1].revents & POLLIN) != 0) {  // (after the others: they have no fds yet)
      for (;;) {
        const int client = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) break;
        const int upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        const sockaddr_in target = Loopback(target_port_);
        if (upstream < 0 ||
            connect(upstream, reinterpret_cast<const sockaddr*>(&target), sizeof(target)) != 0) {
          close(client);
          if (upstream >= 0) close(upstream);
          continue;
        }
        const int one = 1;
        for (int fd : {client, upstream}) {
          NonBlocking(fd);
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        connections_.fetch_add(1);
        Connection& c = connections.emplace_back();
        c.client = client;
        c.upstream = upstream;
        c.up.from = c.down.to = client;
        c.up.to = c.down.from = upstream;
      }
    }
    // Connections whose both directions ended, or that failed, go.
    for (auto it = connections.begin(); it != connections.end();) {
      const bool done = it->up.write_done && it->down.write_done;
      if (done || it->broken) {
        close(it->client);
        close(it->upstream);
        it = connections.erase(it);
      } else {
        ++it;
      }
    }
  }
}

}  // namespace nexus::testing
