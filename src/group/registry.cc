#include "group/registry.h"

namespace nexus {

absl::Status GroupRegistry::Add(std::unique_ptr<Group> group) {
  absl::MutexLock lock(&mu_);
  const std::string name = group->name();
  if (!groups_.emplace(name, std::move(group)).second) {
    return absl::AlreadyExistsError("group " + name + " already exists");
  }
  return absl::OkStatus();
}

Group* GroupRegistry::Find(std::string_view name) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = groups_.find(name);
  return it == groups_.end() ? nullptr : it->second.get();
}

std::vector<Group*> GroupRegistry::All() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<Group*> out;
  for (const auto& [name, group] : groups_) out.push_back(group.get());
  return out;
}

}  // namespace nexus
