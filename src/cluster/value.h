// Value types and callbacks that cross the cluster seam: what a group, its replication and its
// peers pass each other.
#pragma once

#include <cstdint>
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

// When a write expires, as the client said it: after a TTL (the owner adds the jitter, drawn
// once, and fixes the deadline: the seed's form), or at a deadline the client fixed (exact, no
// jitter; kNoDeadline: never, as a Redis SET without EX). Implicit from a TTL in milliseconds,
// the common case.
struct Expiry {
  Expiry(int64_t ttl) : ttl_ms(ttl) {}  // NOLINT(google-explicit-constructor)
  static Expiry At(UnixMillis deadline) {
    Expiry e(0);
    e.deadline = deadline;
    return e;
  }
  static Expiry Never() { return At(kNoDeadline); }
  bool is_ttl() const { return ttl_ms != 0; }
  // A positive TTL, or a deadline after the epoch.
  bool valid() const { return is_ttl() ? ttl_ms > 0 : deadline > 0; }

  int64_t ttl_ms = 0;       // > 0: a TTL (0: `deadline` applies)
  UnixMillis deadline = 0;  // when ttl_ms is 0: the absolute deadline (unix ms)
};

// One change of a key, pushed by its owner to the other members holding copies: a hot copy
// (every member's hot cache) or, with `ring`, a copy for the key's replica set (--replicas R:
// the next R-1 members' main caches).
struct Replica {
  std::string key;
  std::string value;
  UnixMillis deadline = kNoDeadline;
  uint64_t version = 0;
  bool remove = false;  // drop the copy (deleted, or a hot key set again as not hot)
  bool ring = false;
  // A ring copy handed over by a member that held it, because the membership changed (the
  // receiver now holds the key): applied like a ring copy, counted apart.
  bool handoff = false;
};

// True for a failure after which the member may not have seen the request or its answer is
// lost (unreachable, refused, timed out): another holder of the key may answer instead.
inline bool IsUnreachable(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status);
}

// The NotFound answer for a key whose copy is a tombstone and that no loader provides: the key
// was deleted, so a reader must not look for a copy elsewhere (another member's may be older).
// Clients see a plain miss.
inline constexpr char kDeletedMessage[] = "key deleted";
inline absl::Status DeletedError() { return absl::NotFoundError(kDeletedMessage); }
inline bool IsDeleted(const absl::Status& status) {
  return absl::IsNotFound(status) && status.message() == kDeletedMessage;
}

// Completion callbacks. Each is called exactly once, possibly on another thread.
using ValueCallback = absl::AnyInvocable<void(absl::StatusOr<CachedValue>)>;
using StatusCallback = absl::AnyInvocable<void(absl::Status)>;

}  // namespace nexus
