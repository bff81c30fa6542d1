#include "io/socket.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/parse.h"

namespace nexus::io {

std::string ErrnoText(int err) {
  char buf[256];
  return strerror_r(err, buf, sizeof buf);  // GNU strerror_r: returns the message
}

std::optional<SocketAddress> ParseNumericAddress(std::string_view host_port) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  std::string host(host_port.substr(0, colon));
  uint16_t port = 0;
  if (!ParseInt(host_port.substr(colon + 1), &port) || port == 0) return std::nullopt;
  SocketAddress a;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    auto* sa = reinterpret_cast<sockaddr_in6*>(&a.storage);
    if (::inet_pton(AF_INET6, host.c_str(), &sa->sin6_addr) != 1) return std::nullopt;
    sa->sin6_family = AF_INET6;
    sa->sin6_port = htons(port);
    a.length = sizeof(sockaddr_in6);
    return a;
  }
  auto* sa = reinterpret_cast<sockaddr_in*>(&a.storage);
  if (host == "localhost") host = "127.0.0.1";
  if (::inet_pton(AF_INET, host.c_str(), &sa->sin_addr) != 1) return std::nullopt;
  sa->sin_family = AF_INET;
  sa->sin_port = htons(port);
  a.length = sizeof(sockaddr_in);
  return a;
}

absl::StatusOr<SocketAddress> Resolve(const std::string& host, uint16_t port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  const char* node = host.empty() && passive ? nullptr : host.c_str();
  if (const int rc = ::getaddrinfo(node, service.c_str(), &hints, &found);
      rc != 0 || found == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve ", host, ": ", rc != 0 ? gai_strerror(rc) : "no address"));
  }
  SocketAddress a;
  std::memcpy(&a.storage, found->ai_addr, found->ai_addrlen);
  a.length = found->ai_addrlen;
  ::freeaddrinfo(found);
  return a;
}

std::string AddressString(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = "unknown";
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return absl::StrCat(host, ":", ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return absl::StrCat("[", host, "]:", ntohs(in6->sin6_port));
  }
  return "unknown";
}

uint16_t PortOf(const sockaddr_storage& a) {
  return a.ss_family == AF_INET6 ? ntohs(reinterpret_cast<const sockaddr_in6*>(&a)->sin6_port)
                                 : ntohs(reinterpret_cast<const sockaddr_in*>(&a)->sin_port);
}

void SetNoDelay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

absl::StatusOr<ListeningSocket> Listen(std::string_view what, const std::string& address,
                                       uint16_t port) {
  const std::string shown = address.find(':') != std::string::npos
                                ? absl::StrCat("[", address, "]:", port)
                                : absl::StrCat(address, ":", port);
  absl::StatusOr<SocketAddress> resolved = Resolve(address, port, /*passive=*/true);
  if (!resolved.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what),
                                                   ": cannot resolve listen address ", shown, ": ",
                                                   std::string(resolved.status().message())));
  }
  auto fail = [&](std::string_view call, int err, int fd) {
    if (fd >= 0) ::close(fd);
    return absl::UnavailableError(absl::StrCat(std::string(what), ": cannot listen on ", shown,
                                               ": ", ErrnoText(err), " (", std::string(call), ")"));
  };
  const int fd = ::socket(resolved->family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail("socket", errno, -1);
  const int one = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
    return fail("setsockopt", errno, fd);
  }
  if (::bind(fd, resolved->get(), resolved->length) != 0) return fail("bind", errno, fd);
  if (::listen(fd, SOMAXCONN) != 0) return fail("listen", errno, fd);
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  return ListeningSocket{.fd = fd, .port = PortOf(bound)};
}

absl::StatusOr<int> StartConnect(const SocketAddress& address) {
  const int fd = ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError("socket: " + ErrnoText(errno));
  SetNoDelay(fd);
  if (::connect(fd, address.get(), address.length) != 0 && errno != EINPROGRESS) {
    const int err = errno;
    ::close(fd);
    return absl::UnavailableError("connect: " + ErrnoText(err));
  }
  return fd;
}

int ConnectError(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

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

}  // namespace nexus::io
