// OwnerService: what this node does for its peers. A request forwarded to the owner of a key
// (Get, Set, Delete) or a hot-key change pushed to a replica (Replicate) runs here, whichever
// transport carried it: the /peer/v1 HTTP routes (peer/http_routes.h) and the gRPC service
// (peer/grpc_server.h) only decode, call and encode, so both validate and behave the same.
//
// Get looks in the caches and runs the loader on a miss (singleflight; a peek only looks); Set
// stores with a deadline drawn here (from ttl_ms, or a fixed deadline_ms, or the seed's absolute
// `expire` in unix seconds); Delete removes; changes of hot keys reach the replicas before `done`.
// Nothing forwards again: a request that reaches this node is served by it even if its ring
// disagrees about the owner.
//
// Errors: InvalidArgument for a missing group name, an empty key, a bad or missing expiry, a
// replica without a version; NotFound "no such group: G"; ResourceExhausted for a key or value
// over the limits; the group's own errors (NotFound for a miss).
//
// Thread-safety: every method may be called concurrently; `done` may run on the calling thread
// or on the thread that completed a load or replica push. `groups` and `clock` must outlive it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string_view>

#include "absl/status/statusor.h"
#include "cluster/value.h"
#include "common/clock.h"
#include "group/registry.h"

namespace nexus {

struct OwnerLimits {
  size_t max_key_bytes = std::numeric_limits<size_t>::max();
  size_t max_value_bytes = std::numeric_limits<size_t>::max();
  // A pushed change (Replicate) whose version was drawn more than this far ahead of this
  // node's clock is refused (--max-version-skew; 0 = no bound): a replica keeps the highest
  // version, so one far in the future would pin its value against every later write.
  int64_t max_version_skew_ms = 0;
};

// A store at the owner: exactly one way of saying when it expires.
struct OwnerSet {
  std::string_view group;
  std::string_view key;
  std::string_view value;
  int64_t ttl_ms = 0;       // deadline = now + ttl + jitter (drawn here)
  int64_t deadline_ms = 0;  // an absolute deadline fixed by the caller (unix ms)
  int64_t expire_s = 0;     // the seed's absolute expiry (unix seconds)
  bool hot = false;
  // When the caller stops waiting (unix ms; 0 = unknown). A write that reaches this node later
  // (it was paused, or the request sat in a queue) is not applied: the caller reported it
  // failed and may have written the key elsewhere since, and a version drawn now would put
  // the late value above that write.
  UnixMillis answer_by = 0;
};

class OwnerService {
 public:
  OwnerService(GroupRegistry* groups, const Clock* clock, OwnerLimits limits = {});

  // `peek`: this node's copy only (NotFound without one), never the loader (Peer::Peek).
  void Get(std::string_view group, std::string_view key, bool peek, ValueCallback done);
  void Set(const OwnerSet& request, StatusCallback done);
  void Delete(std::string_view group, std::string_view key, StatusCallback done,
              UnixMillis answer_by = 0);
  // Whether the change was newer than what this node holds (and so applied). OutOfRange for a
  // version too far ahead (OwnerLimits::max_version_skew_ms), counted.
  absl::StatusOr<bool> Replicate(std::string_view group, const Replica& replica);
  // Changes refused for a version too far ahead of this node's clock.
  uint64_t versions_refused() const { return versions_refused_.load(std::memory_order_relaxed); }

 private:
  // The group of a request about `key`, or the error to answer.
  absl::StatusOr<Group*> Target(std::string_view group, std::string_view key) const;

  GroupRegistry* const groups_;
  const Clock* const clock_;
  const OwnerLimits limits_;
  std::atomic<uint64_t> versions_refused_{0};
};

}  // namespace nexus
