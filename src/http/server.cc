#include "http/server.h"

#include <utility>

namespace nexus::http {

Server::Server(ServerOptions options, std::shared_ptr<const Router> router)
    : options_(std::move(options)), router_(std::move(router)), loops_(options_.threads, "http") {}

Server::~Server() { loops_.Stop(std::chrono::milliseconds(0)); }

absl::Status Server::Start() {
  absl::StatusOr<uint16_t> port =
      loops_.Listen(options_.address, options_.port,
                    HttpConnections(ProtocolOptions{.max_header_bytes = options_.max_header_bytes,
                                                    .max_body_bytes = options_.max_body_bytes,
                                                    .read_timeout = options_.read_timeout,
                                                    .write_timeout = options_.write_timeout,
                                                    .server_name = options_.server_name,
                                                    .tls = options_.tls},
                                    router_));
  if (!port.ok()) return port.status();
  loops_.set_max_connections(options_.max_connections);
  if (absl::Status s = loops_.Start(); !s.ok()) return s;
  port_.store(*port);
  return absl::OkStatus();
}

}  // namespace nexus::http
