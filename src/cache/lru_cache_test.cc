#include "cache/lru_cache.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <map>
#include <string>
#include <vector>

namespace nexus {
namespace {

std::string Val(char c, size_t n = 1000) { return std::string(n, c); }

bool Has(LruCache& c, std::string_view key, std::string* out = nullptr) {
  std::string v;
  return c.Get(MakeKeyRef(key), out ? out : &v);
}

class LruCacheTest : public ::testing::Test {
 protected:
  FakeClock clock_{1'000'000};
};

TEST_F(LruCacheTest, GetReturnsWhatSetStored) {
  LruCache c(1 << 20, &clock_);
  EXPECT_EQ(c.Set(MakeKeyRef("Tom"), "630", kNoDeadline), StoreResult::kStored);
  std::string v;
  EXPECT_TRUE(c.Get(MakeKeyRef("Tom"), &v));
  EXPECT_EQ(v, "630");
  EXPECT_FALSE(c.Get(MakeKeyRef("Jack"), &v));
  EXPECT_EQ(c.items(), 1u);
}

// Found by fuzz/http_request_fuzz: an empty value as a default string_view (null data())
// went to memcpy, undefined behaviour even for 0 bytes (UBSan: nonnull argument).
TEST_F(LruCacheTest, TombstonesAreCountedAsTheyComeAndGo) {
  LruCache c(1 << 20, &clock_);
  c.Set(MakeKeyRef("a"), "1", kNoDeadline, {.version = 1});
  c.Set(MakeKeyRef("b"), "", kNoDeadline, {.version = 2, .tombstone = true});
  EXPECT_EQ(c.stats().items, 2u);
  EXPECT_EQ(c.stats().tombstones, 1u);
  c.Set(MakeKeyRef("a"), "", kNoDeadline, {.version = 3, .tombstone = true});  // in place
  EXPECT_EQ(c.stats().tombstones, 2u);
  c.Set(MakeKeyRef("b"), "a longer value than before", kNoDeadline, {.version = 4});  // moved
  EXPECT_EQ(c.stats().tombstones, 1u);
  c.Erase(MakeKeyRef("a"));
  EXPECT_EQ(c.stats().tombstones, 0u);
  EXPECT_EQ(c.stats().items, 1u);
}

TEST_F(LruCacheTest, AnEmptyValueWithNullDataIsStoredAndRewritten) {
  LruCache c(1 << 20, &clock_);
  EXPECT_EQ(c.Set(MakeKeyRef("k"), std::string_view(), kNoDeadline), StoreResult::kStored);
  EXPECT_EQ(c.Set(MakeKeyRef("k"), std::string_view(), kNoDeadline), StoreResult::kStored);
  std::string v = "x";
  EXPECT_TRUE(c.Get(MakeKeyRef("k"), &v));
  EXPECT_EQ(v, "");
}

TEST_F(LruCacheTest, EvictsLeastRecentlyUsedAndGetRefreshesRecency) {
  LruCache probe(1 << 20, &clock_);
  for (const char* k : {"a", "b", "c"}) probe.Set(MakeKeyRef(k), Val('x'), kNoDeadline);
  // Room for a, b, c plus slack smaller than one more entry (covers index growth).
  LruCache c(probe.bytes() + 200, &clock_);
  for (const char* k : {"a", "b", "c"})
    ASSERT_EQ(c.Set(MakeKeyRef(k), Val('x'), kNoDeadline), StoreResult::kStored);
  ASSERT_TRUE(Has(c, "a"));  // a becomes most recent; b is now the LRU entry
  ASSERT_EQ(c.Set(MakeKeyRef("d"), Val('y'), kNoDeadline), StoreResult::kStored);
  EXPECT_FALSE(Has(c, "b"));
  EXPECT_TRUE(Has(c, "a"));
  EXPECT_TRUE(Has(c, "c"));
  EXPECT_TRUE(Has(c, "d"));
  EXPECT_EQ(c.stats().evictions, 1u);
  EXPECT_LE(c.bytes(), c.capacity());
}

TEST_F(LruCacheTest, OverwriteRefreshesRecency) {
  LruCache probe(1 << 20, &clock_);
  for (const char* k : {"a", "b", "c"}) probe.Set(MakeKeyRef(k), Val('x'), kNoDeadline);
  LruCache c(probe.bytes() + 200, &clock_);
  for (const char* k : {"a", "b", "c"}) c.Set(MakeKeyRef(k), Val('x'), kNoDeadline);
  c.Set(MakeKeyRef("a"), Val('z'), kNoDeadline);  // same size: rewritten in place
  c.Set(MakeKeyRef("d"), Val('y'), kNoDeadline);
  std::string v;
  EXPECT_TRUE(Has(c, "a", &v));
  EXPECT_EQ(v, Val('z'));
  EXPECT_FALSE(Has(c, "b"));
}

TEST_F(LruCacheTest, BytesChargeKeyValueAndOverheadExactly) {
  LruCache c(1 << 20, &clock_);
  EXPECT_EQ(c.bytes(), 0u);
  size_t entries = 0;
  for (int i = 0; i < 100; ++i) {
    const std::string key = "key" + std::to_string(i);
    const std::string value(i * 7, 'v');
    c.Set(MakeKeyRef(key), value, kNoDeadline);
    entries += LruCache::ChargeFor(key.size(), value.size());
    ASSERT_EQ(c.bytes(), entries + c.IndexBytes());
  }
  // Overwrite with a different size, then erase.
  c.Set(MakeKeyRef("key5"), std::string(500, 'w'), kNoDeadline);
  entries += LruCache::ChargeFor(4, 500) - LruCache::ChargeFor(4, 35);
  EXPECT_EQ(c.bytes(), entries + c.IndexBytes());
  EXPECT_TRUE(c.Erase(MakeKeyRef("key5")));
  entries -= LruCache::ChargeFor(4, 500);
  EXPECT_EQ(c.bytes(), entries + c.IndexBytes());
  EXPECT_EQ(c.stats().bytes, c.bytes());
  // The charge is never less than key + value, and covers a real header.
  EXPECT_GE(LruCache::ChargeFor(16, 100), 16u + 100u + 32u);
  EXPECT_LE(LruCache::ChargeFor(16, 100), 16u + 100u + 48u);
  c.Clear();
  EXPECT_EQ(c.items(), 0u);
}

TEST_F(LruCacheTest, MetadataLivesInTheHeaderAndTombstonesReadAsAbsent) {
  LruCache c(1 << 20, &clock_);
  const EntryMeta v7{.version = 7};
  ASSERT_EQ(c.Set(MakeKeyRef("k"), "value", kNoDeadline, v7), StoreResult::kStored);
  std::string v;
  EntryMeta meta;
  ASSERT_TRUE(c.Get(MakeKeyRef("k"), &v, nullptr, &meta));
  EXPECT_EQ(v, "value");  // the value bytes are the client's, nothing prepended
  EXPECT_EQ(meta, v7);
  // Versioned entries pay for their version, unversioned ones do not.
  EXPECT_EQ(c.bytes(), LruCache::ChargeFor(1, 5, true) + c.IndexBytes());
  EXPECT_EQ(LruCache::ChargeFor(1, 5, true), LruCache::ChargeFor(1 + 8, 5));
  // Rewritten in place (same size): the new version is what a reader sees.
  ASSERT_EQ(c.Set(MakeKeyRef("k"), "VALUE", kNoDeadline, {.version = 8}), StoreResult::kStored);
  ASSERT_TRUE(c.Peek(MakeKeyRef("k"), &meta));
  EXPECT_EQ(meta.version, 8u);
  // Same key, now unversioned: the layout changes and the charge with it.
  ASSERT_EQ(c.Set(MakeKeyRef("k"), "plain", kNoDeadline), StoreResult::kStored);
  ASSERT_TRUE(c.Get(MakeKeyRef("k"), &v, nullptr, &meta));
  EXPECT_EQ(v, "plain");
  EXPECT_EQ(meta, EntryMeta{});
  EXPECT_EQ(c.bytes(), LruCache::ChargeFor(1, 5) + c.IndexBytes());

  // A tombstone: Get and SetIfAbsent see nothing, Peek and ForEachLive see its version.
  ASSERT_EQ(c.Set(MakeKeyRef("k"), "", clock_.NowMillis() + 100, {.version = 9, .tombstone = true}),
            StoreResult::kStored);
  EXPECT_FALSE(c.Get(MakeKeyRef("k"), &v));
  ASSERT_TRUE(c.Peek(MakeKeyRef("k"), &meta));
  EXPECT_EQ(meta, (EntryMeta{.version = 9, .tombstone = true}));
  int seen = 0;
  c.ForEachLive([&](const EntryView& e) {
    ++seen;
    EXPECT_TRUE(e.meta.tombstone);
    EXPECT_EQ(e.meta.version, 9u);
  });
  EXPECT_EQ(seen, 1);
  EXPECT_EQ(c.SetIfAbsent(MakeKeyRef("k"), "loaded", kNoDeadline, &v),
            LruCache::AddResult::kInserted);
  ASSERT_TRUE(c.Get(MakeKeyRef("k"), &v, nullptr, &meta));
  EXPECT_EQ(v, "loaded");
  EXPECT_FALSE(meta.tombstone);
  // An expired tombstone is gone for Peek too.
  c.Set(MakeKeyRef("t"), "", clock_.NowMillis() + 1, {.version = 3, .tombstone = true});
  clock_.Advance(1);
  EXPECT_FALSE(c.Peek(MakeKeyRef("t"), &meta));
}

// ASan's allocator is not glibc's: g++ says so with __SANITIZE_ADDRESS__, clang with
// __has_feature(address_sanitizer).
#if defined(__SANITIZE_ADDRESS__)
#define NEXUS_ASAN_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NEXUS_ASAN_ALLOCATOR 1
#endif
#endif
#if !defined(NEXUS_ASAN_ALLOCATOR)
TEST_F(LruCacheTest, BytesTrackRealHeapUsage) {
  // The charge should match what malloc actually hands out: glibc's in-use heap bytes plus its
  // mmapped blocks (where the large index lives).
  auto in_use = [] {
    const struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
  };
  const size_t before = in_use();
  auto c = std::make_unique<LruCache>(size_t{1} << 30, &clock_);
  for (int i = 0; i < 100'000; ++i) {
    char key[17];
    snprintf(key, sizeof key, "key-%012d", i);
    c->Set(MakeKeyRef(key), std::string(100, 'v'), kNoDeadline);
  }
  const double heap = static_cast<double>(in_use() - before);
  const double charged = static_cast<double>(c->bytes());
  EXPECT_NEAR(charged / heap, 1.0, 0.03) << "charged " << charged << " heap " << heap;
}
#endif

TEST_F(LruCacheTest, DeadlineIsAbsoluteAndReadsDoNotExtendIt) {
  LruCache c(1 << 20, &clock_);
  const UnixMillis deadline = clock_.NowMillis() + 1000;
  c.Set(MakeKeyRef("k"), "v", deadline);
  for (int i = 0; i < 9; ++i) {
    clock_.Advance(111);  // reads at 111 ms intervals would keep a sliding TTL alive forever
    UnixMillis got = 0;
    std::string v;
    ASSERT_TRUE(c.Get(MakeKeyRef("k"), &v, &got));
    EXPECT_EQ(got, deadline);
  }
  clock_.Set(deadline - 1);
  EXPECT_TRUE(Has(c, "k"));
  clock_.Set(deadline);
  EXPECT_FALSE(Has(c, "k"));
  EXPECT_EQ(c.items(), 0u);
  EXPECT_EQ(c.stats().expirations, 1u);
  EXPECT_EQ(c.bytes(), c.IndexBytes());
}

TEST_F(LruCacheTest, SetIfAbsentKeepsALiveEntryButReplacesAnExpiredOne) {
  LruCache c(1 << 20, &clock_);
  std::string existing;
  UnixMillis existing_deadline = 0;
  using R = LruCache::AddResult;
  EXPECT_EQ(c.SetIfAbsent(MakeKeyRef("k"), "first", clock_.NowMillis() + 10, &existing),
            R::kInserted);
  EXPECT_EQ(c.SetIfAbsent(MakeKeyRef("k"), "second", kNoDeadline, &existing, &existing_deadline),
            R::kExists);
  EXPECT_EQ(existing, "first");
  EXPECT_EQ(existing_deadline, clock_.NowMillis() + 10);
  clock_.Advance(10);
  EXPECT_EQ(c.SetIfAbsent(MakeKeyRef("k"), "third", kNoDeadline, &existing), R::kInserted);
  EXPECT_EQ(c.SetIfAbsent(MakeKeyRef("big"), std::string(2 << 20, 'x'), kNoDeadline, &existing),
            R::kTooLarge);
  EXPECT_EQ(c.stats().expirations, 1u);
  std::string v;
  EXPECT_TRUE(Has(c, "k", &v));
  EXPECT_EQ(v, "third");
}

TEST_F(LruCacheTest, OverwritesThatGrowWithinTheSameChunkDoNotOverflow) {
  // "" and "abcdefg" round to the same 48-byte chunk; the first block was allocated for 33
  // bytes, so writing 7 more in place would overflow it (ASan caught this).
  LruCache c(1 << 20, &clock_);
  ASSERT_EQ(LruCache::ChargeFor(1, 0), LruCache::ChargeFor(1, 7));
  ASSERT_EQ(c.Set(MakeKeyRef("k"), "", kNoDeadline), StoreResult::kStored);
  const size_t bytes = c.bytes();
  ASSERT_EQ(c.Set(MakeKeyRef("k"), "abcdefg", kNoDeadline), StoreResult::kStored);
  std::string v;
  ASSERT_TRUE(Has(c, "k", &v));
  EXPECT_EQ(v, "abcdefg");
  EXPECT_EQ(c.bytes(), bytes);
  ASSERT_EQ(c.Set(MakeKeyRef("k"), "abc", kNoDeadline),
            StoreResult::kStored);  // shrinking is done in place
  ASSERT_TRUE(Has(c, "k", &v));
  EXPECT_EQ(v, "abc");
  EXPECT_EQ(c.bytes(), bytes);
}

TEST_F(LruCacheTest, StatsCountHitsAndMisses) {
  LruCache c(1 << 20, &clock_);
  c.Set(MakeKeyRef("a"), "1", kNoDeadline);
  Has(c, "a");
  Has(c, "a");
  Has(c, "b");
  const CacheStats s = c.stats();
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.items, 1u);
}

TEST_F(LruCacheTest, CallbackSeesEvictedAndExpiredEntriesButNotErased) {
  std::vector<std::pair<std::string, RemovalReason>> removed;
  LruCache probe(1 << 20, &clock_);
  probe.Set(MakeKeyRef("a"), Val('a'), kNoDeadline);
  probe.Set(MakeKeyRef("b"), Val('b'), kNoDeadline);
  LruCache c(probe.bytes() + 200, &clock_,
             [&](std::string_view k, std::string_view v, RemovalReason r) {
               EXPECT_EQ(v, Val(k[0]));
               removed.emplace_back(std::string(k), r);
             });
  c.Set(MakeKeyRef("a"), Val('a'), clock_.NowMillis() + 10);
  c.Set(MakeKeyRef("b"), Val('b'), kNoDeadline);
  c.Set(MakeKeyRef("c"), Val('c'), kNoDeadline);  // evicts a, which is not expired yet
  clock_.Advance(10);
  c.Set(MakeKeyRef("d"), Val('d'), clock_.NowMillis() + 5);  // evicts b
  clock_.Advance(5);
  Has(c, "d");  // expired on access
  c.Erase(MakeKeyRef("c"));
  ASSERT_EQ(removed.size(), 3u);
  EXPECT_EQ(removed[0], std::make_pair(std::string("a"), RemovalReason::kEvicted));
  EXPECT_EQ(removed[1], std::make_pair(std::string("b"), RemovalReason::kEvicted));
  EXPECT_EQ(removed[2], std::make_pair(std::string("d"), RemovalReason::kExpired));
}

TEST_F(LruCacheTest, EvictingAnExpiredEntryCountsAsExpiration) {
  LruCache probe(1 << 20, &clock_);
  probe.Set(MakeKeyRef("a"), Val('a'), kNoDeadline);
  LruCache c(probe.bytes() + 200, &clock_);
  c.Set(MakeKeyRef("a"), Val('a'), clock_.NowMillis() + 1);
  clock_.Advance(1);
  c.Set(MakeKeyRef("b"), Val('b'), kNoDeadline);
  EXPECT_EQ(c.stats().expirations, 1u);
  EXPECT_EQ(c.stats().evictions, 0u);
}

TEST_F(LruCacheTest, EntryLargerThanCapacityIsRefusedAndOldValueDropped) {
  LruCache c(4096, &clock_);
  ASSERT_EQ(c.Set(MakeKeyRef("k"), "small", kNoDeadline), StoreResult::kStored);
  EXPECT_EQ(c.Set(MakeKeyRef("k"), std::string(5000, 'x'), kNoDeadline), StoreResult::kTooLarge);
  EXPECT_FALSE(Has(c, "k"));
  EXPECT_LE(c.bytes(), c.capacity());
}

TEST_F(LruCacheTest, ActiveSweepReclaimsUnreadExpiredEntriesWithBoundedWork) {
  std::vector<std::string> expired_keys;
  LruCache c(64 << 20, &clock_, [&](std::string_view k, std::string_view, RemovalReason r) {
    EXPECT_EQ(r, RemovalReason::kExpired);
    expired_keys.emplace_back(k);
  });
  const UnixMillis soon = clock_.NowMillis() + 10;
  for (int i = 0; i < 1000; ++i) {
    c.Set(MakeKeyRef("short" + std::to_string(i)), "v", soon);
    c.Set(MakeKeyRef("long" + std::to_string(i)), "v", kNoDeadline);
  }
  EXPECT_EQ(c.SweepExpired(100).expired, 0u);  // nothing expired yet
  clock_.Advance(10);
  size_t calls = 0;
  while (c.items() > 1000) {
    const SweepResult r = c.SweepExpired(100);
    ASSERT_LE(r.examined, 100u);
    ++calls;
    ASSERT_LE(calls, 25u) << "sweep does not make progress";
    // Reads in between move entries to the front; the cursor must survive that.
    Has(c, "long" + std::to_string(calls));
  }
  EXPECT_EQ(expired_keys.size(), 1000u);
  EXPECT_EQ(c.stats().expirations, 1000u);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(Has(c, "long" + std::to_string(i)));
}

TEST_F(LruCacheTest, SweepOnEmptyAndFullyExpiredCacheIsSafe) {
  LruCache c(1 << 20, &clock_);
  EXPECT_EQ(c.SweepExpired(10).examined, 0u);
  for (int i = 0; i < 5; ++i) c.Set(MakeKeyRef(std::to_string(i)), "v", clock_.NowMillis() + 1);
  clock_.Advance(1);
  const SweepResult r = c.SweepExpired(100);
  EXPECT_EQ(r.expired, 5u);
  EXPECT_EQ(c.items(), 0u);
  EXPECT_EQ(c.SweepExpired(100).examined, 0u);
}

TEST_F(LruCacheTest, CrawlVisitsEveryEntryOnceDespiteRemovalsAndReads) {
  LruCache c(64 << 20, &clock_);
  for (int i = 0; i < 1000; ++i) c.Set(MakeKeyRef("k" + std::to_string(i)), "v", kNoDeadline);
  c.Set(MakeKeyRef("expired"), "v", clock_.NowMillis() + 1);
  c.Set(MakeKeyRef("gone"), "", kNoDeadline, {.version = 7, .tombstone = true});
  clock_.Advance(1);
  const int a = c.OpenCrawl();
  const int b = c.OpenCrawl();
  ASSERT_GE(a, 1);
  ASSERT_GE(b, 1);
  ASSERT_NE(a, b);
  std::map<std::string, int> seen_a;
  std::map<std::string, int> seen_b;
  int steps = 0;
  bool more_a = true;
  bool more_b = true;
  while (more_a || more_b) {
    ASSERT_LT(++steps, 200) << "crawls do not make progress";
    if (more_a) {
      more_a = c.CrawlStep(a, 10, [&](const EntryView& e) { ++seen_a[std::string(e.key)]; });
    }
    if (more_b) {
      more_b = c.CrawlStep(b, 7, [&](const EntryView& e) { ++seen_b[std::string(e.key)]; });
    }
    // Meanwhile entries are removed right at and behind the cursors, and read (moved to the
    // MRU end, where the walks will meet them again) and the sweep runs.
    c.Erase(MakeKeyRef("k" + std::to_string(steps * 3)));
    Has(c, "k" + std::to_string(999 - steps));
    c.SweepExpired(5);
  }
  EXPECT_FALSE(c.CrawlStep(a, 10, [](const EntryView&) { FAIL() << "finished crawl visited"; }));
  c.CloseCrawl(a);
  c.CloseCrawl(b);
  for (const auto* seen : {&seen_a, &seen_b}) {
    EXPECT_FALSE(seen->contains("expired"));
    EXPECT_EQ(seen->count("gone"), 1u);  // tombstones are visited
    // Every entry still present was visited; only those read during the walk twice.
    for (int i = 0; i < 1000; ++i) {
      const std::string key = "k" + std::to_string(i);
      if (!Has(c, key)) continue;
      ASSERT_TRUE(seen->contains(key)) << key;
      EXPECT_LE(seen->at(key), 2) << key;
    }
  }
}

TEST_F(LruCacheTest, CrawlSlotsAreBoundedAndReusedAndSurviveClear) {
  LruCache c(1 << 20, &clock_);
  std::vector<int> ids;
  for (int i = 0; i < LruCache::kMaxCrawls; ++i) ids.push_back(c.OpenCrawl());
  EXPECT_EQ(c.OpenCrawl(), -1);
  c.CloseCrawl(ids[1]);
  EXPECT_EQ(c.OpenCrawl(), ids[1]);
  // An empty cache: the walk is over at once.
  EXPECT_FALSE(c.CrawlStep(ids[0], 10, [](const EntryView&) {}));
  c.CloseCrawl(ids[0]);
  c.Set(MakeKeyRef("a"), "v", kNoDeadline);
  const int id = c.OpenCrawl();
  c.Clear();
  EXPECT_FALSE(c.CrawlStep(id, 10, [](const EntryView&) { FAIL() << "cleared entry visited"; }));
}

}  // namespace
}  // namespace nexus
