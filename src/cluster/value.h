// Value types and callbacks that cross the cluster seam: what a group, its replication and its
// peers pass each other.
#pragma once

#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/clock.h"

namespace nexus {

// A value as the cache holds it: the bytes and the absolute deadline they expire at.
struct CachedValue {
  std::string data;
  UnixMillis deadline = kNoDeadline;

  friend bool operator==(const CachedValue&, const CachedValue&) = default;
};

// One change of a hot key, pushed by its owner to every other node's hot cache.
struct Replica {
  std::string key;
  std::string value;
  UnixMillis deadline = kNoDeadline;
  uint64_t version = 0;
  bool remove = false;  // drop the replica (the key was deleted or set again as not hot)
};

// Completion callbacks. Each is called exactly once, possibly on another thread.
using ValueCallback = absl::AnyInvocable<void(absl::StatusOr<CachedValue>)>;
using StatusCallback = absl::AnyInvocable<void(absl::Status)>;

}  // namespace nexus
