// Server: the node's HTTP/1.1 front end (DESIGN §4): an epoll event loop per thread, with
// Boost.Beast's parser for requests; no Beast or system types in this header (pimpl).
//
// Architecture (nginx's worker model inside one process): `threads` loops, each one thread
// with its own epoll instance. The listening socket is in every loop with EPOLLEXCLUSIVE, so
// the kernel hands each new connection to one waiting loop, which keeps it for its whole life:
// a connection's work never needs a lock or a strand. Sockets are edge-triggered and their
// readiness is tracked (a short read means drained), so a keep-alive request costs one recv()
// and one send() and no failed reads. A connection reads one request (whole request within
// read_timeout), dispatches it to the Router and reads the next only once the handler's
// Responder has answered, so pipelined requests are answered in order; answers to several
// pipelined requests leave in one send(). A Responder called on the loop's thread (a cache
// hit) writes at once; from any other thread (a peer fetch) it goes through the loop's mailbox
// (a queue and an eventfd). Deadlines are checked every 50 ms, which is their precision.
// (Asio was the first design: Boost 1.74's reactor always tried a speculative read, one failed
// recv() per request, and the server reached 0.70x nginx's throughput; this one is ~1.1x,
// docs/benchmarks.md.)
//
// Protocol behaviour: body > max_body_bytes -> 413 and close; header > max_header_bytes -> 431
// and close; malformed request -> 400 and close; timeout, EOF or reset mid-request -> quiet
// close. "Expect: 100-continue" is answered before the body is read (curl sends it for bodies
// over 1 KiB). Every response carries Content-Length, Content-Type and Server. After a response
// that closes the connection the server half-closes and drains what the client still sends
// for a short while, so a client still uploading a rejected body reads the error instead of a
// TCP reset.
//
// Thread-safety: Start, Stop, port and active_connections may be called from any thread except
// the server's own threads (Stop from a handler would wait for itself). Start succeeds at most
// once per Server; Stop is idempotent; the destructor stops with no grace.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "http/router.h"

namespace nexus::http {

struct ServerOptions {
  // Address to bind; an IP literal or a resolvable host name.
  std::string address = "0.0.0.0";
  // 0 picks a free port (see Server::port()).
  uint16_t port = 9999;
  // Threads (= event loops); 0 means std::thread::hardware_concurrency().
  int threads = 0;
  // Request line + header fields.
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 2 << 20;
  // The whole request (header and body) must arrive within this; also the keep-alive idle
  // timeout between requests. Handler time is not counted.
  std::chrono::milliseconds read_timeout{30000};
  // Writing one response must finish within this.
  std::chrono::milliseconds write_timeout{30000};
  // Value of the Server header.
  std::string server_name = "nexuscache";
};

namespace internal {
class ServerImpl;
}  // namespace internal

class Server {
 public:
  Server(ServerOptions options, std::shared_ptr<const Router> router);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds, listens and starts the threads. A failure (e.g. the port is in use) returns
  // UnavailableError("http: cannot listen on 0.0.0.0:9999: Address already in use"); never
  // throws. SO_REUSEADDR is set so a restarted node can rebind while old connections linger in
  // TIME_WAIT (on Linux it still refuses a port another socket is listening on).
  [[nodiscard]] absl::Status Start();

  // The bound port (useful with port 0); 0 before a successful Start.
  uint16_t port() const;

  // Stops accepting at once and closes idle connections; requests in flight may finish and
  // have their responses written (with Connection: close) until `grace` has passed. Then closes
  // everything and joins the threads. Responders called afterwards are ignored. Idempotent.
  void Stop(std::chrono::milliseconds grace);

  // Open connections (including ones waiting for a handler).
  size_t active_connections() const;

 private:
  std::unique_ptr<internal::ServerImpl> impl_;
};

}  // namespace nexus::http
