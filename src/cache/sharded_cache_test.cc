#include "cache/sharded_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace nexus {
namespace {

TEST(ShardedCacheTest, ShardCountIsPowerOfTwoAndBudgetIsSplit) {
  FakeClock clock;
  ShardedCache c({.capacity_bytes = 64 << 20, .shard_bits = 4}, &clock);
  EXPECT_EQ(c.shard_count(), 16u);
  EXPECT_EQ(c.capacity(), size_t{64} << 20);
  // A small budget gets fewer shards so each keeps a useful size.
  ShardedCache small({.capacity_bytes = 200 << 10, .shard_bits = 4}, &clock);
  EXPECT_EQ(small.shard_count(), 2u);
  ShardedCache tiny({.capacity_bytes = 1000, .shard_bits = 4}, &clock);
  EXPECT_EQ(tiny.shard_count(), 1u);
  EXPECT_EQ(tiny.Set("k", "v", kNoDeadline), StoreResult::kStored);
}

TEST(ShardedCacheTest, KeysSpreadOverAllShards) {
  FakeClock clock;
  ShardedCache c({.capacity_bytes = 64 << 20, .shard_bits = 3}, &clock);
  std::vector<int> per_shard(c.shard_count());
  for (int i = 0; i < 80'000; ++i) {
    const std::string key = "user:" + std::to_string(i);
    ASSERT_EQ(c.Set(key, "v", kNoDeadline), StoreResult::kStored);
    ++per_shard[c.ShardOf(key)];
  }
  for (int n : per_shard) EXPECT_NEAR(n, 10'000, 500);
  EXPECT_EQ(c.items(), 80'000u);
  std::string v;
  EXPECT_TRUE(c.Get("user:123", &v));
  EXPECT_TRUE(c.Erase("user:123"));
  EXPECT_FALSE(c.Get("user:123", &v));
}

TEST(ShardedCacheTest, ForEachLiveVisitsLiveEntriesOnly) {
  FakeClock clock;
  ShardedCache c({.capacity_bytes = 16 << 20, .shard_bits = 2}, &clock);
  for (int i = 0; i < 100; ++i) c.Set("live" + std::to_string(i), "v", kNoDeadline);
  for (int i = 0; i < 50; ++i) c.Set("dead" + std::to_string(i), "v", clock.NowMillis() + 1);
  clock.Advance(1);
  int seen = 0;
  c.ForEachLive([&](const EntryView& e) {
    EXPECT_TRUE(e.key.starts_with("live"));
    EXPECT_EQ(e.value, "v");
    EXPECT_EQ(e.deadline, kNoDeadline);
    ++seen;
  });
  EXPECT_EQ(seen, 100);
}

TEST(ShardedCacheTest, CrawlWalksEveryShardInBoundedSteps) {
  FakeClock clock;
  ShardedCache c({.capacity_bytes = 64 << 20, .shard_bits = 3}, &clock);
  for (int i = 0; i < 5000; ++i) c.Set("k" + std::to_string(i), "v", kNoDeadline);
  std::set<std::string> seen;
  size_t steps = 0;
  {
    ShardedCache::Crawl crawl(&c);
    size_t in_step = 0;
    const auto visit = [&](const EntryView& e) {
      ++in_step;
      seen.emplace(e.key);
    };
    bool more = true;
    while (more) {
      in_step = 0;
      more = crawl.Step(100, visit);
      ASSERT_LE(in_step, 100u);
      ASSERT_LT(++steps, 1000u);
    }
    EXPECT_TRUE(crawl.ok());
  }
  EXPECT_EQ(seen.size(), 5000u);
  EXPECT_GE(steps, 50u);
  // The crawl closed its cursors: a cache can host many crawls one after another.
  for (int i = 0; i < 10; ++i) {
    ShardedCache::Crawl crawl(&c);
    ASSERT_TRUE(crawl.Step(1, [](const EntryView&) {}));
    ASSERT_TRUE(crawl.ok());
  }
}

TEST(ShardedCacheTest, StaysWithinBudgetUnderPressure) {
  FakeClock clock;
  ShardedCache c({.capacity_bytes = 1 << 20, .shard_bits = 2}, &clock);
  for (int i = 0; i < 50'000; ++i)
    c.Set("k" + std::to_string(i), std::string(100, 'x'), kNoDeadline);
  EXPECT_LE(c.bytes(), c.capacity());
  const CacheStats s = c.stats();
  EXPECT_GT(s.evictions, 0u);
  EXPECT_EQ(s.items + s.evictions, 50'000u);
  EXPECT_GT(c.bytes(), c.capacity() * 9 / 10);  // eviction keeps the cache near full
}

TEST(ShardedCacheTest, ConcurrentReadersAndWritersKeepCountsConsistent) {
  FakeClock clock;
  ShardedCache c({.capacity_bytes = 2 << 20, .shard_bits = 4}, &clock);
  constexpr int kThreads = 4;
  constexpr int kOps = 20'000;
  std::atomic<uint64_t> gets{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::string v;
      for (int i = 0; i < kOps; ++i) {
        const std::string key = "k" + std::to_string(rng() % 5000);
        if (rng() % 10 == 0) {
          c.Set(key, std::string(200, 'a' + t), clock.NowMillis() + 1000);
        } else {
          if (c.Get(key, &v)) {
            ASSERT_EQ(v.size(), 200u);
          }
          gets.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const CacheStats s = c.stats();
  EXPECT_EQ(s.hits + s.misses, gets.load());
  EXPECT_LE(c.bytes(), c.capacity());
}

}  // namespace
}  // namespace nexus
