// MembershipView: the pure logic that turns etcd's view of /nexuscache/nodes/ (one read, then a
// stream of watch events) into a set of members, with no I/O, so it can be tested against any
// sequence of events.
//
// Every node registers the key `<prefix><name>` with the JSON value {"name","grpc","http"}.
// Events are applied by revision, not arrival order: an event whose mod_revision is not newer
// than what is known for its key (a duplicate, or a late event overtaken by a newer one,
// including a delete) is ignored; Reset (after a compaction or a reconnect) replaces the view
// with a fresh read and ignores every event at or below that read's revision.
//
// Thread-safety: none; the discovery thread owns it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/member.h"

namespace nexus {

inline constexpr std::string_view kNodesPrefix = "/nexuscache/nodes/";

std::string MemberInfoToJson(const MemberInfo& info);
// InvalidArgument for anything that is not {"name","grpc"[,"http"]} with non-empty strings.
absl::StatusOr<MemberInfo> MemberInfoFromJson(std::string_view json);

struct MembershipEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  std::string key;
  std::string value;  // empty for deletes
  int64_t mod_revision = 0;
};

struct MembershipEntry {
  std::string key;
  std::string value;
  int64_t mod_revision = 0;
};

class MembershipView {
 public:
  explicit MembershipView(std::string prefix = std::string(kNodesPrefix))
      : prefix_(std::move(prefix)) {}

  // Replaces the view with a read of the prefix taken at `revision`. Returns true if the
  // members (or their addresses) changed.
  bool Reset(const std::vector<MembershipEntry>& entries, int64_t revision);
  // Applies one watch event; true if the members (or their addresses) changed.
  bool Apply(const MembershipEvent& event);

  // name -> gRPC address of every registered node with a valid value.
  std::map<std::string, std::string> Members() const;
  // name -> everything it registered (gRPC and HTTP addresses).
  std::map<std::string, MemberInfo> Nodes() const;
  // The highest revision applied (the read's, or the newest event's).
  int64_t revision() const { return revision_; }

 private:
  struct KeyState {
    int64_t revision = 0;
    std::optional<MemberInfo> info;  // nullopt: deleted (a tombstone) or unparseable
  };

  const std::string prefix_;
  std::map<std::string, KeyState> keys_;
  int64_t floor_ = 0;  // events at or below this revision are older than the last Reset
  int64_t revision_ = 0;
};

}  // namespace nexus
