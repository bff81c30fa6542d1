// The owner's side of the HTTP forwarding protocol (peer/http_wire.h): handlers for
// /peer/v1/{get,set,delete} that serve the groups of this node exactly as the gRPC service
// (peer/grpc_server.h) does: Get looks in the caches and runs the loader on a miss, Set stores
// with a deadline drawn here, Delete removes. They never forward again: a request that reaches
// a node is served by it even if its ring disagrees about the owner (as with gRPC).
//
// Thread-safety: the handlers may run concurrently on every server thread (Router contract).
#pragma once

#include <atomic>
#include <cstdint>

#include "group/registry.h"
#include "http/router.h"

namespace nexus {

// Registers the three routes on `router`. `groups` must outlive the router; `served` (when
// not null) counts the answers the handlers give, and must outlive every request in flight.
void InstallPeerRoutes(http::Router& router, GroupRegistry* groups,
                       std::atomic<uint64_t>* served = nullptr);

}  // namespace nexus
