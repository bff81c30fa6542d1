// Flight: singleflight keyed by string. While a load for a key is in flight, further callers
// for that key join it instead of starting their own; when the load completes, every caller
// receives the same result (value or error). Different keys run independently. This is what
// keeps a stampede of misses for one cold key down to a single origin fetch.
//
// The work is asynchronous: it receives a `Done` handle and completes whenever it likes, from
// any thread (an async gRPC or HTTP call can finish the flight). `DoSync` wraps it for code that
// wants to block. No lock is held while the work runs or while callbacks run, so a work
// function may itself call Do for another key. (Calling Do for the *same* key from inside its
// own work joins the flight that is waiting for it, which can never complete: don't.)
//
// A `Done` dropped without being called completes the flight with an Internal error, so a
// buggy loader cannot leave callers waiting forever.
//
// Thread-safety: every method may be called from any thread.
// Modeled on groupcache's singleflight, with callbacks instead of a WaitGroup.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace nexus {

template <typename T>
class Flight {
 public:
  using Result = absl::StatusOr<T>;
  // Receives the flight's result; `shared` is true for callers that joined a flight another
  // caller started (their call did not run the work).
  using Callback = absl::AnyInvocable<void(const Result& result, bool shared)>;

  // Completion handle passed to the work. Call it once with the result.
  class Done {
   public:
    Done(Done&& other) noexcept
        : flight_(std::exchange(other.flight_, nullptr)), key_(std::move(other.key_)) {}
    Done& operator=(Done&&) = delete;
    ~Done() {
      if (flight_ != nullptr) {
        std::exchange(flight_, nullptr)
            ->Finish(key_, absl::InternalError("singleflight: load finished without a result"));
      }
    }
    void operator()(Result result) {
      if (flight_ != nullptr) std::exchange(flight_, nullptr)->Finish(key_, std::move(result));
    }

   private:
    friend class Flight;
    Done(Flight* flight, std::string key) : flight_(flight), key_(std::move(key)) {}
    Flight* flight_;
    std::string key_;
  };

  using Work = absl::AnyInvocable<void(Done done)>;

  Flight() = default;
  Flight(const Flight&) = delete;
  Flight& operator=(const Flight&) = delete;
  // Every flight must have completed before the Flight is destroyed.
  ~Flight() = default;

  // Joins the flight for `key` if there is one; otherwise starts it by running `work` on this
  // thread. `callback` runs once, on the thread that completes the flight.
  void Do(std::string_view key, Work work, Callback callback) {
    {
      absl::MutexLock lock(&mu_);
      auto [it, inserted] = calls_.try_emplace(AbslKey(key));
      it->second.push_back(std::move(callback));
      if (!inserted) return;
    }
    work(Done(this, std::string(key)));
  }

  // Blocking form: runs `fn` (or waits for the flight already running) and returns the result.
  Result DoSync(std::string_view key, absl::AnyInvocable<Result()> fn, bool* shared = nullptr) {
    absl::Notification finished;
    Result out = absl::UnknownError("unset");
    bool was_shared = false;
    Do(
        key, [&fn](Done done) { done(fn()); },
        [&](const Result& r, bool s) {
          out = r;
          was_shared = s;
          finished.Notify();
        });
    finished.WaitForNotification();
    if (shared != nullptr) *shared = was_shared;
    return out;
  }

  // Callers (starter included) waiting on the flight for `key`; 0 when none is in flight.
  size_t Waiting(std::string_view key) const {
    absl::MutexLock lock(&mu_);
    auto it = calls_.find(AbslKey(key));
    return it == calls_.end() ? 0 : it->second.size();
  }

  // Number of keys with a flight in progress.
  size_t InFlight() const {
    absl::MutexLock lock(&mu_);
    return calls_.size();
  }

 private:
  // Debian's abseil is built with its own string_view type, not std::string_view.
  static absl::string_view AbslKey(std::string_view key) { return {key.data(), key.size()}; }

  void Finish(const std::string& key, Result result) {
    std::vector<Callback> callbacks;
    {
      absl::MutexLock lock(&mu_);
      auto it = calls_.find(key);
      callbacks = std::move(it->second);
      calls_.erase(it);
    }
    // The starter registered first.
    for (size_t i = 0; i < callbacks.size(); ++i) callbacks[i](result, i != 0);
  }

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::vector<Callback>> calls_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nexus
