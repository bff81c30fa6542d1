#include "common/jitter.h"

#include <gtest/gtest.h>

#include <set>

namespace nexus {
namespace {

constexpr int64_t kMinute = 60'000;

TEST(JitterTest, DefaultMaxIsTenPercentCappedAtThreeMinutes) {
  Jitter jitter({}, 1);
  EXPECT_EQ(jitter.MaxFor(10 * kMinute), kMinute);
  EXPECT_EQ(jitter.MaxFor(30 * kMinute), 3 * kMinute);
  EXPECT_EQ(jitter.MaxFor(4320 * kMinute), 3 * kMinute);
  EXPECT_EQ(jitter.MaxFor(0), 0);
  EXPECT_EQ(jitter.MaxFor(-5), 0);
}

TEST(JitterTest, DrawsStayInBoundsAndSpreadOut) {
  Jitter jitter({}, 42);
  const int64_t ttl = 10 * kMinute;
  std::set<int64_t> seen;
  int64_t min = ttl, max = -1;
  for (int i = 0; i < 10000; ++i) {
    const int64_t d = jitter.Draw(ttl);
    ASSERT_GE(d, 0);
    ASSERT_LE(d, kMinute);
    seen.insert(d);
    min = std::min(min, d);
    max = std::max(max, d);
  }
  EXPECT_GT(seen.size(), 9000u);  // not a constant
  EXPECT_LT(min, kMinute / 100);  // reaches both ends of [0, max]
  EXPECT_GT(max, kMinute - kMinute / 100);
}

TEST(JitterTest, SeededDrawsAreReproducible) {
  Jitter a({}, 7), b({}, 7);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.Draw(kMinute * 5), b.Draw(kMinute * 5));
}

TEST(JitterTest, ConfigurableAndDisableable) {
  Jitter off({.fraction = 0, .cap_ms = kMinute}, 1);
  EXPECT_EQ(off.Draw(10 * kMinute), 0);
  Jitter half({.fraction = 0.5, .cap_ms = 100 * kMinute}, 1);
  EXPECT_EQ(half.MaxFor(10 * kMinute), 5 * kMinute);
}

TEST(JitterTest, DeadlineIsNowPlusTtlPlusExtra) {
  Jitter jitter({}, 3);
  const UnixMillis now = 1'000'000;
  for (int i = 0; i < 1000; ++i) {
    const UnixMillis d = jitter.Deadline(now, 10 * kMinute);
    ASSERT_GE(d, now + 10 * kMinute);
    ASSERT_LE(d, now + 11 * kMinute);
  }
  EXPECT_EQ(jitter.Deadline(kNoDeadline - 5, 10 * kMinute), kNoDeadline);
}

}  // namespace
}  // namespace nexus
