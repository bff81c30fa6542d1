// Blocking forms of Group's asynchronous operations, for tests. Never call them on an
// event-loop thread (they wait for the callback).
#pragma once

#include <string_view>

#include "absl/synchronization/notification.h"
#include "group/group.h"

namespace nexus::testing {

inline absl::StatusOr<CachedValue> GetSync(Group& group, std::string_view key) {
  absl::Notification finished;
  absl::StatusOr<CachedValue> out;
  group.Get(key, [&](absl::StatusOr<CachedValue> r) {
    out = std::move(r);
    finished.Notify();
  });
  finished.WaitForNotification();
  return out;
}

inline absl::Status SetSync(Group& group, std::string_view key, std::string_view value,
                            Expiry expiry, bool hot) {
  absl::Notification finished;
  absl::Status out;
  group.Set(key, value, expiry, hot, [&](absl::Status s) {
    out = std::move(s);
    finished.Notify();
  });
  finished.WaitForNotification();
  return out;
}

inline absl::Status DeleteSync(Group& group, std::string_view key) {
  absl::Notification finished;
  absl::Status out;
  group.Delete(key, [&](absl::Status s) {
    out = std::move(s);
    finished.Notify();
  });
  finished.WaitForNotification();
  return out;
}

}  // namespace nexus::testing
