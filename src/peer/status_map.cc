#include "peer/status_map.h"

#include <string>

namespace nexus {

absl::Status FromPeerGrpcStatus(const grpc::Status& status, std::string_view peer_name,
                                std::string_view peer_address, std::chrono::milliseconds deadline) {
  // absl::StrCat does not take std::string_view with this abseil build; build by hand.
  auto who = [&] {
    std::string s = "peer ";
    s.append(peer_name).append(" (").append(peer_address).append(")");
    return s;
  };
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      return absl::OkStatus();
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::DeadlineExceededError(who() + ": deadline exceeded after " +
                                         std::to_string(deadline.count()) + " ms");
    case grpc::StatusCode::UNAVAILABLE:
      return absl::UnavailableError(who() + " unavailable: " + status.error_message());
    case grpc::StatusCode::UNAUTHENTICATED:
      // (The peer refused this node, not the client: not a 401 for the client.)
      return absl::InternalError(who() + " refused the call: " + status.error_message());
    default:
      return FromGrpcStatus(status);
  }
}

}  // namespace nexus
