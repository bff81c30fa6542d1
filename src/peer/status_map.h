// The peer layer's status mapping: proto/grpc_status.h's one-to-one mapping, and on the client
// side FromPeerGrpcStatus, which names the peer on transport-level failures
// (UNAVAILABLE, DEADLINE_EXCEEDED), so an operator reading a log line or an HTTP 502 body knows
// which node misbehaved: "peer svc2 (127.0.0.1:8882): deadline exceeded after 500 ms",
// "peer svc2 (127.0.0.1:8882) unavailable: <grpc message>". Application errors the remote group
// returned (NotFound, InvalidArgument, ...) keep the remote message untouched.
//
// Thread-safety: pure functions.
#pragma once

#include <grpcpp/support/status.h>

#include <chrono>
#include <string_view>

#include "absl/status/status.h"
#include "proto/grpc_status.h"

namespace nexus {

// Client side: the status of a call to `peer_name` at `peer_address` made with `deadline`.
absl::Status FromPeerGrpcStatus(const grpc::Status& status, std::string_view peer_name,
                                std::string_view peer_address, std::chrono::milliseconds deadline);

}  // namespace nexus
