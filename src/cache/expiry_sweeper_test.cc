#include "cache/expiry_sweeper.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace nexus {
namespace {

TEST(ExpirySweeperTest, RunOnceRepeatsWhileMostOfTheSampleIsExpired) {
  FakeClock clock;
  ShardedCache c({.capacity_bytes = 16 << 20, .shard_bits = 2}, &clock);
  for (int i = 0; i < 2000; ++i) c.Set("k" + std::to_string(i), "v", clock.NowMillis() + 5);
  ExpirySweeper sweeper({&c}, {.entries_per_step = 64, .max_steps_per_tick = 16});
  EXPECT_EQ(sweeper.RunOnce().expired, 0u);
  clock.Advance(5);
  // 4 shards x 16 steps x 64 entries = 4096 >= 2000: one tick reclaims everything.
  const SweepResult r = sweeper.RunOnce();
  EXPECT_EQ(r.expired, 2000u);
  EXPECT_EQ(c.items(), 0u);
}

TEST(ExpirySweeperTest, MostlyLiveCacheCostsOneStepPerShard) {
  FakeClock clock;
  ShardedCache c({.capacity_bytes = 16 << 20, .shard_bits = 2}, &clock);
  for (int i = 0; i < 2000; ++i) c.Set("k" + std::to_string(i), "v", kNoDeadline);
  ExpirySweeper sweeper({&c}, {.entries_per_step = 64, .max_steps_per_tick = 16});
  EXPECT_EQ(sweeper.RunOnce().examined, 4u * 64u);
}

TEST(ExpirySweeperTest, BackgroundThreadReclaimsUnreadEntries) {
  FakeClock clock;
  ShardedCache main({.capacity_bytes = 16 << 20, .shard_bits = 2}, &clock);
  ShardedCache hot({.capacity_bytes = 1 << 20, .shard_bits = 0}, &clock);
  for (int i = 0; i < 500; ++i) {
    main.Set("m" + std::to_string(i), "v", clock.NowMillis() + 1);
    hot.Set("h" + std::to_string(i), "v", clock.NowMillis() + 1);
  }
  ExpirySweeper sweeper({&main, &hot}, {.interval = std::chrono::milliseconds(1)});
  sweeper.Start();
  clock.Advance(1);
  // Wait for the condition (bounded), not for a fixed time.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while ((main.items() > 0 || hot.items() > 0) && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::yield();
  }
  sweeper.Stop();
  EXPECT_EQ(main.items(), 0u);
  EXPECT_EQ(hot.items(), 0u);
  EXPECT_EQ(main.stats().expirations, 500u);
}

}  // namespace
}  // namespace nexus
