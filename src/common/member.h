// MemberInfo: where one cluster member listens. Its name is its key on the hash ring; `grpc` is
// the host:port peers dial for gRPC; `http` the host:port of its HTTP API, where peers forward
// requests (empty: unknown, so peers reach it over gRPC only). The same value comes from the
// --peer flag, from an etcd registration, and is what the ring picker keeps per member.
// `incarnation` tells one run of a member from the next (set by the node at start, registered
// in etcd; empty for static members): a member that comes back under the same name and
// addresses before its old lease expired is seen as restarted, and gets its copies again.
//
// Thread-safety: a plain value.
#pragma once

#include <string>

namespace nexus {

struct MemberInfo {
  std::string name;
  std::string grpc;
  std::string http;
  std::string incarnation;

  friend bool operator==(const MemberInfo&, const MemberInfo&) = default;
};

}  // namespace nexus
