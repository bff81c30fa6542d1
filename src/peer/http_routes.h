// The owner's side of the HTTP forwarding protocol (peer/http_wire.h): handlers for
// /peer/v1/{get,set,delete} that decode a request, run it on the OwnerService (the same one
// behind the gRPC service, service/owner_service.h) and encode its answer.
//
// Thread-safety: the handlers may run concurrently on every server thread (Router contract).
#pragma once

#include "http/router.h"
#include "peer/peer_traffic.h"
#include "service/owner_service.h"

namespace nexus {

// Registers the routes on `router`. `owner` must outlive the router; `traffic` (when not
// null) counts the answers the handlers give and, with its cluster secret set, refuses every
// request without it (X-Nexus-Status Unauthenticated, counted); it must outlive every request
// in flight.
void InstallPeerRoutes(http::Router& router, OwnerService* owner, PeerTraffic* traffic = nullptr);

}  // namespace nexus
