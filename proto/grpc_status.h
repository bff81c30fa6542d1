// The one place that maps absl::Status (our module boundaries) to and from grpc::Status (the
// wire between nodes, and to etcd). Codes map one to one (absl::StatusCode and
// grpc::StatusCode are both the canonical Google codes); messages are preserved. Part of the
// gRPC library (nexus_proto) so that every gRPC user, the peer layer and the etcd client, has
// the same mapping.
//
// Thread-safety: pure functions.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace nexus {

grpc::StatusCode ToGrpcCode(absl::StatusCode code);
absl::StatusCode FromGrpcCode(grpc::StatusCode code);

// Server side: what a handler answers for `status`.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Plain conversion, no peer context.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace nexus
