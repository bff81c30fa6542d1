// Socket helpers shared by every socket state machine in the codebase (io/connection.h): errno
// text, address parsing and formatting, listening and non-blocking connects, and the one send
// loop. Everything is a thin, non-blocking wrapper over the POSIX call, except Resolve (which may
// block in getaddrinfo: never call it on an event loop).
//
// Thread-safety: pure functions over the descriptors they are given.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace nexus::io {

// The message of an errno value (strerror is not thread-safe).
std::string ErrnoText(int err);

// A socket address of either family, ready for connect().
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

// "1.2.3.4:80", "[::1]:80" or "localhost:80" (as 127.0.0.1) as an address; nullopt for anything
// else. Host names are not resolved, so this is safe on an event loop.
std::optional<SocketAddress> ParseNumericAddress(std::string_view host_port);

// Resolves `host` (a name or an IP literal) with getaddrinfo; the first address wins. `passive`
// gives the wildcard address for an empty host (for listening). May block.
absl::StatusOr<SocketAddress> Resolve(const std::string& host, uint16_t port, bool passive = false);

// "ip:port", or "[ip6]:port"; "unknown" for other families.
std::string AddressString(const sockaddr* address);
// The port of an IPv4 or IPv6 address.
uint16_t PortOf(const sockaddr_storage& address);

// Disables Nagle: every message we write is complete, and waiting for an ACK only adds delay.
void SetNoDelay(int fd);

// A non-blocking listening socket bound to address:port (port 0 picks a free one), with
// SO_REUSEADDR so a restarted node can rebind while old connections linger in TIME_WAIT (Linux
// still refuses a port another socket listens on). Errors name `what` (e.g. "http") and the
// address: "http: cannot listen on 0.0.0.0:9999: Address already in use (bind)".
struct ListeningSocket {
  int fd = -1;
  uint16_t port = 0;  // the bound port
};
absl::StatusOr<ListeningSocket> Listen(std::string_view what, const std::string& address,
                                       uint16_t port);

// Starts a non-blocking connect to `address` (TCP_NODELAY set). Returns the socket, whose
// connect may still be in progress (EPOLLOUT, then ConnectError, tells), or the errno of a
// connect that failed at once (e.g. ECONNREFUSED on loopback can be immediate) as
// UnavailableError("connect: <errno text>").
absl::StatusOr<int> StartConnect(const SocketAddress& address);
// The result of a finished non-blocking connect: 0 or its errno (SO_ERROR).
int ConnectError(int fd);

// Sends out[*sent..] while the socket takes data, advancing *sent. On EAGAIN sets *writable to
// false (wait for EPOLLOUT). Returns 0, or the errno of a failed send (never raises SIGPIPE).
int SendPending(int fd, const std::string& out, size_t* sent, bool* writable);

}  // namespace nexus::io
