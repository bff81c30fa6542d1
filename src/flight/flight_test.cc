#include "flight/flight.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "support/wait.h"

namespace nexus {
namespace {

using testing::WaitFor;

class FlightManyCallersTest : public ::testing::TestWithParam<bool> {};

TEST_P(FlightManyCallersTest, HundredCallersOneRunAllGetTheResult) {
  const bool fail = GetParam();
  Flight<std::string> flight;
  std::atomic<int> runs{0};
  absl::Notification release;
  constexpr int kCallers = 100;
  std::vector<absl::StatusOr<std::string>> results(kCallers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([&, i] {
      results[i] = flight.DoSync("cold", [&]() -> absl::StatusOr<std::string> {
        runs.fetch_add(1);
        release.WaitForNotification();
        if (fail) return absl::UnavailableError("origin down");
        return std::string("value");
      });
    });
  }
  // Hold the single run until every caller has joined it.
  ASSERT_TRUE(
      WaitFor([&] { return flight.Waiting("cold") == kCallers; }, std::chrono::seconds(30)));
  release.Notify();
  for (auto& t : threads) t.join();
  EXPECT_EQ(runs.load(), 1);
  for (const auto& r : results) {
    if (fail) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
      EXPECT_EQ(r.status().message(), "origin down");
    } else {
      ASSERT_TRUE(r.ok());
      EXPECT_EQ(*r, "value");
    }
  }
  EXPECT_EQ(flight.InFlight(), 0u);
}

INSTANTIATE_TEST_SUITE_P(ValueAndError, FlightManyCallersTest, ::testing::Bool());

TEST(FlightTest, SharedFlagMarksJoiners) {
  Flight<int> flight;
  std::optional<Flight<int>::Done> held;
  std::vector<bool> shared;
  for (int i = 0; i < 3; ++i) {
    flight.Do(
        "k", [&](Flight<int>::Done d) { held.emplace(std::move(d)); },
        [&](const absl::StatusOr<int>& r, bool s) {
          EXPECT_EQ(*r, 7);
          shared.push_back(s);
        });
  }
  EXPECT_EQ(flight.Waiting("k"), 3u);
  (*held)(7);
  EXPECT_EQ(shared, (std::vector<bool>{false, true, true}));
  // The key is free again: a new call runs the work again.
  int runs = 0;
  flight.Do(
      "k",
      [&](Flight<int>::Done d) {
        ++runs;
        d(1);
      },
      [](const auto&, bool) {});
  EXPECT_EQ(runs, 1);
}

TEST(FlightTest, DifferentKeysRunIndependently) {
  Flight<int> flight;
  absl::Notification a_started, b_done;
  std::thread a([&] {
    auto r = flight.DoSync("a", [&]() -> absl::StatusOr<int> {
      a_started.Notify();
      b_done.WaitForNotification();  // "a" stays in flight while "b" runs and finishes
      return 1;
    });
    EXPECT_EQ(*r, 1);
  });
  a_started.WaitForNotification();
  bool shared = true;
  auto b = flight.DoSync(
      "b", [] { return absl::StatusOr<int>(2); }, &shared);
  EXPECT_EQ(*b, 2);
  EXPECT_FALSE(shared);
  b_done.Notify();
  a.join();
}

TEST(FlightTest, WorkMayCallDoForAnotherKey) {
  Flight<int> flight;
  auto r = flight.DoSync("outer", [&]() -> absl::StatusOr<int> {
    auto inner = flight.DoSync("inner", [] { return absl::StatusOr<int>(20); });
    if (!inner.ok()) return inner.status();
    return *inner + 1;
  });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 21);
}

TEST(FlightTest, CompletionFromAnotherThread) {
  Flight<std::string> flight;
  std::thread completer;
  absl::Notification got;
  flight.Do(
      "k",
      [&](Flight<std::string>::Done d) {
        completer = std::thread([d = std::move(d)]() mutable { d(std::string("async")); });
      },
      [&](const absl::StatusOr<std::string>& r, bool) {
        EXPECT_EQ(*r, "async");
        got.Notify();
      });
  got.WaitForNotification();
  completer.join();
}

TEST(FlightTest, DroppedDoneFailsTheFlightInsteadOfHanging) {
  Flight<int> flight;
  auto r = flight.DoSync("k", [] { return absl::StatusOr<int>(absl::NotFoundError("none")); });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<int> got = 0;
  flight.Do(
      "k", [](Flight<int>::Done) {}, [&](const absl::StatusOr<int>& res, bool) { got = res; });
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(flight.InFlight(), 0u);
}

}  // namespace
}  // namespace nexus
