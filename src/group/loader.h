// Loader: where a group's misses go (the origin). The owner of a key calls it at most once per
// key at a time (Group runs it under singleflight).
//
// Contract: Load calls `done` exactly once, from any thread, with the value, NotFound when the
// origin has no such key (the client sees 404, never 5xx), or another error (the client sees a
// gateway error). Implementations must be thread-safe: loads of different keys run concurrently.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"

namespace nexus {

using LoadCallback = absl::AnyInvocable<void(absl::StatusOr<std::string>)>;

class Loader {
 public:
  virtual ~Loader() = default;
  virtual void Load(std::string_view key, LoadCallback done) = 0;
};

// Adapts a blocking function (a map lookup, a computation) into a Loader. The function runs
// on the thread that asked for the load, so it must be quick.
class FunctionLoader final : public Loader {
 public:
  using Fn = std::function<absl::StatusOr<std::string>(std::string_view key)>;
  explicit FunctionLoader(Fn fn) : fn_(std::move(fn)) {}
  void Load(std::string_view key, LoadCallback done) override { done(fn_(key)); }

 private:
  const Fn fn_;
};

}  // namespace nexus
