#include "common/clock.h"

#include <gtest/gtest.h>

#include "common/hash.h"

namespace nexus {
namespace {

TEST(FakeClockTest, MovesOnlyWhenTold) {
  FakeClock clock(1000);
  EXPECT_EQ(clock.NowMillis(), 1000);
  clock.Advance(250);
  EXPECT_EQ(clock.NowMillis(), 1250);
  clock.Set(5);
  EXPECT_EQ(clock.NowMillis(), 5);
}

TEST(SystemClockTest, IsWallClockMillis) {
  // 2020-01-01 .. 2100-01-01: catches seconds/microseconds mix-ups.
  const UnixMillis now = SystemClock::Get().NowMillis();
  EXPECT_GT(now, 1'577'836'800'000);
  EXPECT_LT(now, 4'102'444'800'000);
}

TEST(HashTest, StableAcrossCalls) {
  EXPECT_EQ(HashBytes("Tom"), HashBytes(std::string("Tom")));
  EXPECT_NE(HashBytes("Tom"), HashBytes("Jack"));
}

}  // namespace
}  // namespace nexus
