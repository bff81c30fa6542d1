// GroupRegistry: the groups a node serves, by name (the seed's GetGroup). The HTTP routes and
// the gRPC server look groups up here; groups are created at startup and live as long as the
// registry.
//
// Thread-safety: all methods may be called concurrently.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "group/group.h"

namespace nexus {

class GroupRegistry {
 public:
  // AlreadyExists if a group of that name is registered.
  absl::Status Add(std::unique_ptr<Group> group);
  // nullptr when there is no such group.
  Group* Find(std::string_view name) const;
  std::vector<Group*> All() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Group>, std::less<>> groups_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nexus
