#include "service/owner_service.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "group/group.h"
#include "replication/replicated_store.h"
#include "spdlog/spdlog.h"

namespace nexus {

OwnerService::OwnerService(GroupRegistry* groups, const Clock* clock, OwnerLimits limits)
    : groups_(groups), clock_(clock), limits_(limits) {}

absl::StatusOr<Group*> OwnerService::Target(std::string_view group, std::string_view key) const {
  if (group.empty()) return absl::InvalidArgumentError("a group name is required");
  if (key.empty()) return absl::InvalidArgumentError("a non-empty key is required");
  if (key.size() > limits_.max_key_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("key longer than ", limits_.max_key_bytes, " bytes"));
  }
  Group* g = groups_->Find(group);
  if (g == nullptr) return absl::NotFoundError(absl::StrCat("no such group: ", std::string(group)));
  return g;
}

void OwnerService::Get(std::string_view group, std::string_view key, bool peek,
                       ValueCallback done) {
  absl::StatusOr<Group*> g = Target(group, key);
  if (!g.ok()) return done(g.status());
  if (peek) return done((*g)->Peek(key));
  (*g)->GetLocal(key, std::move(done));
}

namespace {

// DeadlineExceeded when the caller stopped waiting at `answer_by` before `now`.
absl::Status TooLate(UnixMillis answer_by, UnixMillis now) {
  if (answer_by == 0 || now <= answer_by) return absl::OkStatus();
  return absl::DeadlineExceededError(
      absl::StrCat("the caller stopped waiting ", now - answer_by, " ms ago: not applied"));
}

}  // namespace

void OwnerService::Set(const OwnerSet& r, StatusCallback done) {
  absl::StatusOr<Group*> g = Target(r.group, r.key);
  if (!g.ok()) return done(g.status());
  if (absl::Status late = TooLate(r.answer_by, clock_->NowMillis()); !late.ok()) return done(late);
  if (r.value.size() > limits_.max_value_bytes) {
    return done(absl::ResourceExhaustedError(
        absl::StrCat("value longer than ", limits_.max_value_bytes, " bytes")));
  }
  if (r.ttl_ms < 0 || r.deadline_ms < 0 || r.expire_s < 0) {
    return done(absl::InvalidArgumentError("ttl_ms, deadline_ms and expire must not be negative"));
  }
  if (r.ttl_ms > 0) return (*g)->SetLocal(r.key, r.value, r.ttl_ms, r.hot, std::move(done));
  if (r.deadline_ms > 0) {
    return (*g)->StoreLocal(r.key, r.value, r.deadline_ms, r.hot, std::move(done));
  }
  if (r.expire_s > 0) {
    if (r.expire_s > std::numeric_limits<int64_t>::max() / 1000) {
      return done(absl::InvalidArgumentError(absl::StrCat("expire out of range: ", r.expire_s)));
    }
    const UnixMillis deadline = r.expire_s * 1000;
    const UnixMillis now = clock_->NowMillis();
    if (deadline <= now) {
      return done(absl::InvalidArgumentError(absl::StrCat(
          "expire ", r.expire_s, " (unix seconds) is in the past (now ", now / 1000, ")")));
    }
    return (*g)->StoreLocal(r.key, r.value, deadline, r.hot, std::move(done));
  }
  done(absl::InvalidArgumentError("ttl_ms, deadline_ms or expire required"));
}

void OwnerService::Delete(std::string_view group, std::string_view key, StatusCallback done,
                          UnixMillis answer_by) {
  absl::StatusOr<Group*> g = Target(group, key);
  if (!g.ok()) return done(g.status());
  if (absl::Status late = TooLate(answer_by, clock_->NowMillis()); !late.ok()) return done(late);
  (*g)->DeleteLocal(key, std::move(done));
}

absl::StatusOr<bool> OwnerService::Replicate(std::string_view group, const Replica& replica) {
  absl::StatusOr<Group*> g = Target(group, replica.key);
  if (!g.ok()) return g.status();
  if (replica.version == 0) return absl::InvalidArgumentError("a replica needs a version");
  if (limits_.max_version_skew_ms > 0) {
    const UnixMillis now = clock_->NowMillis();
    const UnixMillis drawn = ReplicatedStore::VersionTime(replica.version);
    if (drawn - now > limits_.max_version_skew_ms) {
      const uint64_t n = versions_refused_.fetch_add(1, std::memory_order_relaxed) + 1;
      if (n == 1 || n % 1000 == 0) {
        spdlog::warn(
            "replication: refused a change of '{}' with a version {} ms ahead of this "
            "node's clock ({} refused so far; --max-version-skew {} ms)",
            replica.key, drawn - now, n, limits_.max_version_skew_ms);
      }
      return absl::OutOfRangeError(
          absl::StrCat("version ", replica.version, " was drawn ", drawn - now,
                       " ms ahead of this node's clock (at most ", limits_.max_version_skew_ms,
                       " ms: --max-version-skew)"));
    }
  }
  return (*g)->store().Apply(replica);
}

}  // namespace nexus
