// What the gRPC service (grpc_server.h) hands the owner service for each request: the one
// translation of the wire's messages into OwnerService calls, shared by the server and the
// fuzz target of the request handlers (fuzz/grpc_request_fuzz.cc). Includes generated code:
// only those two include it.
//
// Thread-safety: pure functions; the results view the request's strings.
#pragma once

#include "cluster/value.h"
#include "proto/nexuscache.pb.h"
#include "service/owner_service.h"

namespace nexus {

inline OwnerSet OwnerSetOf(const nexuscachepb::SetRequest& req) {
  return OwnerSet{.group = req.group(),
                  .key = req.key(),
                  .value = req.value(),
                  .ttl_ms = req.ttl_ms(),
                  .deadline_ms = req.deadline_ms(),
                  .expire_s = req.expire(),
                  .hot = req.ishot(),
                  .answer_by = req.answer_by_ms()};
}

// (The wire's deadline 0 is "none".)
inline Replica ReplicaOf(const nexuscachepb::ReplicateRequest& req) {
  return Replica{.key = req.key(),
                 .value = req.value(),
                 .deadline = req.deadline_ms() == 0 ? kNoDeadline : req.deadline_ms(),
                 .version = req.version(),
                 .remove = req.remove(),
                 .ring = req.ring(),
                 .handoff = req.handoff()};
}

}  // namespace nexus
