// Waiting for a condition in tests, instead of sleeping: poll `pred` until it holds or
// `timeout` passes. The bounds are generous (only a bug makes a test wait that long).
//
// Thread-safety: `pred` runs on the calling thread.
#pragma once

#include <chrono>
#include <optional>
#include <thread>

namespace nexus::testing {

// How long `pred` took to hold, or nullopt if it did not within `timeout`.
template <typename Pred>
std::optional<std::chrono::milliseconds> WaitUntil(
    Pred pred, std::chrono::milliseconds timeout,
    std::chrono::milliseconds poll = std::chrono::milliseconds(10)) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    if (pred()) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - start);
    }
    if (std::chrono::steady_clock::now() - start >= timeout) return std::nullopt;
    std::this_thread::sleep_for(poll);
  }
}

// Whether `pred` held within `timeout`.
template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10),
             std::chrono::milliseconds poll = std::chrono::milliseconds(1)) {
  return WaitUntil(pred, timeout, poll).has_value();
}

}  // namespace nexus::testing
