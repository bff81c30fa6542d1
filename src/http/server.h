// Server: an HTTP/1.1 server of one listener on its own event loops: io::EventLoops (nginx's
// worker model inside one process: one epoll loop per thread, each new connection handed to
// one loop by the kernel and kept there) serving http::HttpConnections (http/connection.h,
// which describes the protocol behaviour). Deadlines are checked every 50 ms, their precision.
//
// Another protocol may share the server's loops (Listen before Start: the node's RESP port), so
// what it forwards shares the loops' forwarder pools; --max-connections counts every listener.
//
// Thread-safety: Start, Stop, port and active_connections may be called from any thread except
// the server's own threads (Stop from a handler would wait for itself). Start succeeds at most
// once per Server; Stop is idempotent; the destructor stops with no grace.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "http/connection.h"
#include "http/router.h"
#include "io/event_loops.h"
#include "tls/context.h"

namespace nexus::http {

struct ServerOptions {
  // Address to bind; an IP literal or a resolvable host name.
  std::string address = "0.0.0.0";
  // 0 picks a free port (see Server::port()).
  uint16_t port = 9999;
  // Threads (= event loops); 0 means std::thread::hardware_concurrency().
  int threads = 0;
  // As in ProtocolOptions (http/connection.h).
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 2 << 20;
  std::chrono::milliseconds read_timeout{30000};
  std::chrono::milliseconds write_timeout{30000};
  std::string server_name = "nexuscache";
  // Beyond this many open connections a new one is closed at once and counted
  // (refused_connections). 0: no limit.
  size_t max_connections = 0;
  // As in ProtocolOptions: connections opening with a TLS handshake speak TLS.
  std::shared_ptr<const tls::Context> tls;
};

class Server {
 public:
  Server(ServerOptions options, std::shared_ptr<const Router> router);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds, listens and starts the threads. A failure (e.g. the port is in use) returns
  // UnavailableError("http: cannot listen on 0.0.0.0:9999: Address already in use (bind)");
  // never throws.
  [[nodiscard]] absl::Status Start();

  // Before Start: also serve address:port with `factory` (another protocol) on these loops.
  // Returns the bound port (port 0 picks one); errors as Start's.
  absl::StatusOr<uint16_t> Listen(const std::string& address, uint16_t port,
                                  std::shared_ptr<io::ConnectionFactory> factory) {
    return loops_.Listen(address, port, std::move(factory));
  }

  // The bound port (useful with port 0); 0 before a successful Start.
  uint16_t port() const { return port_.load(); }

  // Stops accepting at once and closes idle connections; requests in flight may finish and
  // have their responses written (with Connection: close) until `grace` has passed. Then closes
  // everything and joins the threads. Responders called afterwards are ignored. Idempotent.
  void Stop(std::chrono::milliseconds grace) { loops_.Stop(grace); }

  // Open connections (including ones waiting for a handler).
  size_t active_connections() const { return loops_.active_connections(); }
  // Connections closed at once because max_connections were open.
  uint64_t refused_connections() const { return loops_.refused_connections(); }

 private:
  const ServerOptions options_;
  const std::shared_ptr<const Router> router_;
  io::EventLoops loops_;
  std::atomic<uint16_t> port_{0};
};

}  // namespace nexus::http
