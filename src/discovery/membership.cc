#include "discovery/membership.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

namespace nexus {

std::string MemberInfoToJson(const MemberInfo& info) {
  nlohmann::json j{{"name", info.name}, {"grpc", info.grpc}, {"http", info.http}};
  if (!info.incarnation.empty()) j["incarnation"] = info.incarnation;
  // (Invalid UTF-8 becomes U+FFFD rather than an exception; --name is printable ASCII.)
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::StatusOr<MemberInfo> MemberInfoFromJson(std::string_view json) {
  const nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::InvalidArgumentError("node value is not a JSON object");
  MemberInfo info;
  for (auto [field, target] :
       {std::pair{"name", &info.name}, std::pair{"grpc", &info.grpc}, std::pair{"http", &info.http},
        std::pair{"incarnation", &info.incarnation}}) {
    auto it = j.find(field);
    if (it == j.end()) continue;
    if (!it->is_string()) {
      return absl::InvalidArgumentError(std::string("node field '") + field + "' is not a string");
    }
    *target = it->get<std::string>();
  }
  if (info.name.empty() || info.grpc.empty()) {
    return absl::InvalidArgumentError("node value needs non-empty 'name' and 'grpc'");
  }
  return info;
}

namespace {

std::optional<MemberInfo> Parse(const std::string& key, std::string_view prefix,
                                const std::string& value) {
  auto info = MemberInfoFromJson(value);
  if (!info.ok()) {
    spdlog::warn("discovery: ignoring {}: {}", key, std::string(info.status().message()));
    return std::nullopt;
  }
  // The key names the node; a value that disagrees is a misconfiguration, the key wins.
  const std::string from_key = key.substr(prefix.size());
  if (info->name != from_key) {
    spdlog::warn("discovery: {} carries name '{}'; using '{}'", key, info->name, from_key);
    info->name = from_key;
  }
  return *info;
}

}  // namespace

bool MembershipView::Reset(const std::vector<MembershipEntry>& entries, int64_t revision) {
  const auto before = Nodes();
  keys_.clear();
  for (const MembershipEntry& e : entries) {
    if (e.key.compare(0, prefix_.size(), prefix_) != 0 || e.key.size() == prefix_.size()) continue;
    keys_[e.key] = {e.mod_revision, Parse(e.key, prefix_, e.value)};
  }
  floor_ = revision;
  revision_ = revision;
  return Nodes() != before;
}

bool MembershipView::Apply(const MembershipEvent& event) {
  if (event.key.compare(0, prefix_.size(), prefix_) != 0 || event.key.size() == prefix_.size()) {
    return false;
  }
  if (event.mod_revision <= floor_) return false;
  KeyState& state = keys_[event.key];
  if (event.mod_revision <= state.revision) return false;  // duplicate or overtaken
  const std::optional<MemberInfo> old = state.info;
  state.revision = event.mod_revision;
  state.info = event.type == MembershipEvent::Type::kPut ? Parse(event.key, prefix_, event.value)
                                                         : std::nullopt;
  revision_ = std::max(revision_, event.mod_revision);
  const bool was = old.has_value(), is = state.info.has_value();
  return was != is || (was && is && *old != *state.info);
}

std::map<std::string, MemberInfo> MembershipView::Nodes() const {
  std::map<std::string, MemberInfo> out;
  for (const auto& [key, state] : keys_) {
    if (state.info) out[state.info->name] = *state.info;
  }
  return out;
}

std::map<std::string, std::string> MembershipView::Members() const {
  std::map<std::string, std::string> out;
  for (const auto& [key, state] : keys_) {
    if (state.info) out[state.info->name] = state.info->grpc;
  }
  return out;
}

}  // namespace nexus
