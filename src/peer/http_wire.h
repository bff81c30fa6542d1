// The node-to-node forwarding protocol over HTTP/1.1 ("nexus-peer/1"): what peer/forwarder.h
// sends and peer/http_routes.h answers, on the owner's ordinary HTTP port. It carries the same
// operations as the gRPC service's Get/Set/Delete/Replicate, with the same meaning:
//
//   GET  /peer/v1/get?group=G&key=K[&peek=1]       -> value in the body,
//                                                     X-Nexus-Deadline-Ms: unix ms (0 = none)
//   POST /peer/v1/set?group=G&key=K&ttl_ms=T&hot=0|1  body = the value (application/octet-stream)
//   POST /peer/v1/delete?group=G&key=K
//   POST /peer/v1/replicate?group=G&key=K&deadline_ms=D&version=V&remove=0|1&ring=0|1
//        [&handoff=1]                              body = the value (a change pushed by the
//                                                  key's owner, or a copy handed over on a
//                                                  membership change: ReplicateRequest's fields)
//
// Every answer of these routes carries X-Nexus-Status: the absl::StatusCode as a decimal
// number (0 = OK), and for errors the status message as the body. The HTTP status code
// next to it is informative only. A response without X-Nexus-Status did not come from these
// routes, so it is never taken for a miss: 404/405 mean the node does not serve them (an older
// version answering "404 page not found"; the caller then uses gRPC), anything else is its
// HTTP server rejecting the request (e.g. 413) or failing (see peer/forwarder.h).
//
// Requests are pipelined on keep-alive connections; an owner answers them in order.
#pragma once

#include <string_view>

namespace nexus::peerwire {

inline constexpr std::string_view kGetPath = "/peer/v1/get";
inline constexpr std::string_view kSetPath = "/peer/v1/set";
inline constexpr std::string_view kDeletePath = "/peer/v1/delete";
inline constexpr std::string_view kReplicatePath = "/peer/v1/replicate";
inline constexpr std::string_view kStatusHeader = "X-Nexus-Status";
inline constexpr std::string_view kDeadlineHeader = "X-Nexus-Deadline-Ms";

}  // namespace nexus::peerwire
