// Fuzz target: etcd's view of the members, from registration values and watch events to the
// member set (discovery/membership.h): MemberInfoFromJson on what a node registered (any bytes
// a writer to etcd could put there), and MembershipView on a history of puts and deletes with
// a fresh read (Reset) in front.
//
// Checked beyond the sanitizers: a value that parses survives MemberInfoToJson and parsing
// again unchanged; applying the same events in revision order and in reverse gives the same
// members (events apply by revision, not arrival order); every member has a valid
// registration; the view's revision never goes down.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "discovery/membership.h"
#include "spdlog/spdlog.h"

namespace {

using nexus::MemberInfo;
using nexus::MembershipEntry;
using nexus::MembershipEvent;
using nexus::MembershipView;

void Fail(const char* what) {
  std::fprintf(stderr, "%s\n", what);
  std::abort();
}

std::string Key(FuzzedDataProvider& in) {
  // Mostly the few names of a small cluster (so histories touch the same keys), sometimes
  // anything, also outside the prefix.
  if (in.ConsumeIntegralInRange<int>(0, 7) == 0) return in.ConsumeRandomLengthString(64);
  return std::string(nexus::kNodesPrefix) + "svc" +
         std::to_string(in.ConsumeIntegralInRange<int>(0, 5));
}

std::string Value(FuzzedDataProvider& in) {
  if (in.ConsumeBool()) return in.ConsumeRandomLengthString(256);
  MemberInfo info{.name = in.ConsumeRandomLengthString(16),
                  .grpc = in.ConsumeRandomLengthString(24),
                  .http = in.ConsumeBool() ? in.ConsumeRandomLengthString(24) : "",
                  .incarnation = in.ConsumeBool() ? in.ConsumeRandomLengthString(16) : ""};
  return nexus::MemberInfoToJson(info);
}

void CheckRoundTrip(const std::string& value) {
  const absl::StatusOr<MemberInfo> info = nexus::MemberInfoFromJson(value);
  if (!info.ok()) return;
  const absl::StatusOr<MemberInfo> again = nexus::MemberInfoFromJson(MemberInfoToJson(*info));
  if (!again.ok() || !(*again == *info)) Fail("a registration changed through ToJson");
}

void CheckView(const MembershipView& view) {
  const auto nodes = view.Nodes();
  for (const auto& [name, grpc] : view.Members()) {
    auto it = nodes.find(name);
    if (it == nodes.end() || it->second.grpc != grpc) Fail("Members() and Nodes() disagree");
    if (name.empty() || grpc.empty()) Fail("a member without a name or an address");
  }
}

}  // namespace

// Ignored registrations are logged, one line each: millions of lines here (they slowed the
// target to under 1,000 inputs/s).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  // A read at `read_revision`, then events at revisions after it, as etcd sends them.
  std::vector<MembershipEntry> read;
  const int entries = in.ConsumeIntegralInRange<int>(0, 4);
  const int64_t read_revision = in.ConsumeIntegralInRange<int64_t>(0, 1000);
  for (int i = 0; i < entries; ++i) {
    read.push_back({.key = Key(in),
                    .value = Value(in),
                    .mod_revision = in.ConsumeIntegralInRange<int64_t>(1, read_revision + 1)});
    CheckRoundTrip(read.back().value);
  }
  std::vector<MembershipEvent> events;
  int64_t revision = in.ConsumeIntegralInRange<int64_t>(0, read_revision + 2);
  while (in.remaining_bytes() > 0 && events.size() < 64) {
    MembershipEvent e;
    e.type = in.ConsumeBool() ? MembershipEvent::Type::kPut : MembershipEvent::Type::kDelete;
    e.key = Key(in);
    if (e.type == MembershipEvent::Type::kPut) e.value = Value(in);
    CheckRoundTrip(e.value);
    e.mod_revision = ++revision;
    events.push_back(std::move(e));
  }

  // Without a read: in order and in reverse, the same members.
  MembershipView forward, backward;
  for (const MembershipEvent& e : events) {
    const int64_t before = forward.revision();
    forward.Apply(e);
    if (forward.revision() < before) Fail("the revision went down");
    CheckView(forward);
  }
  for (auto it = events.rbegin(); it != events.rend(); ++it) backward.Apply(*it);
  if (forward.Nodes() != backward.Nodes()) Fail("the arrival order changed the members");

  // After a read: events at or below its revision are ignored, the rest apply.
  MembershipView view;
  view.Reset(read, read_revision);
  CheckView(view);
  for (const MembershipEvent& e : events) {
    const int64_t before = view.revision();
    view.Apply(e);
    if (view.revision() < before) Fail("the revision went down after a read");
    CheckView(view);
  }
  return 0;
}
