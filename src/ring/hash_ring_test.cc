#include "ring/hash_ring.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace nexus {
namespace {

std::string Key(int i) { return "key" + std::to_string(i); }

// Owner of each of the first n keys, as seen through one snapshot.
std::vector<std::string> OwnerMap(const HashRing& ring, int n) {
  std::shared_ptr<const RingSnapshot> snap = ring.Snapshot();
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) out.emplace_back(snap->OwnerView(Key(i)).value());
  return out;
}

// Hand-checkable hash in the spirit of groupcache's consistenthash_test: drop the '#' and read
// the digits as a decimal number, so vnode "2#1" sits at 21 and key "23" hashes to 23.
uint64_t DigitsHash(std::string_view s) {
  uint64_t v = 0;
  for (char c : s) {
    if (c >= '0' && c <= '9') v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

TEST(HashRingTest, EmptyRingHasNoOwner) {
  HashRing ring;
  EXPECT_EQ(ring.Owner("anything"), std::nullopt);
  EXPECT_EQ(ring.Snapshot()->OwnerView("anything"), std::nullopt);
  EXPECT_EQ(ring.Size(), 0u);
  EXPECT_TRUE(ring.Members().empty());
  EXPECT_EQ(ring.Generation(), 0u);
}

TEST(HashRingTest, SingleMemberOwnsEverything) {
  HashRing ring;
  ASSERT_TRUE(ring.Add("only"));
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(ring.Owner(Key(i)), "only");
  EXPECT_EQ(ring.Owner(""), "only");
}

TEST(HashRingTest, VnodesBelowOneAreTreatedAsOne) {
  EXPECT_EQ(HashRing(RingOptions{.vnodes = 0}).vnodes(), 1);
  EXPECT_EQ(HashRing(RingOptions{.vnodes = -7}).vnodes(), 1);
  EXPECT_EQ(HashRing(RingOptions{.vnodes = 3}).vnodes(), 3);
  EXPECT_EQ(HashRing().vnodes(), 50);

  HashRing ring(RingOptions{.vnodes = 0});
  ring.Add("a");
  ring.Add("b");
  EXPECT_TRUE(ring.Owner("x").has_value());
}

TEST(HashRingTest, AddIsIdempotent) {
  HashRing once;
  once.Add("a");
  once.Add("b");
  once.Add("c");

  HashRing twice;
  EXPECT_TRUE(twice.Add("a"));
  EXPECT_TRUE(twice.Add("b"));
  EXPECT_TRUE(twice.Add("c"));
  EXPECT_EQ(twice.Generation(), 3u);
  EXPECT_FALSE(twice.Add("b"));
  EXPECT_FALSE(twice.Add("a"));
  EXPECT_EQ(twice.Generation(), 3u);
  EXPECT_EQ(twice.Size(), 3u);

  EXPECT_EQ(OwnerMap(once, 10000), OwnerMap(twice, 10000));
}

TEST(HashRingTest, AddTwiceBumpsGenerationOnce) {
  HashRing ring;
  EXPECT_TRUE(ring.Add("a"));
  EXPECT_EQ(ring.Generation(), 1u);
  EXPECT_FALSE(ring.Add("a"));
  EXPECT_EQ(ring.Generation(), 1u);
}

TEST(HashRingTest, RemoveIsIdempotent) {
  HashRing ring;
  EXPECT_FALSE(ring.Remove("ghost"));
  EXPECT_EQ(ring.Generation(), 0u);

  ring.Add("a");
  ring.Add("b");
  EXPECT_EQ(ring.Generation(), 2u);
  EXPECT_FALSE(ring.Remove("ghost"));
  EXPECT_EQ(ring.Generation(), 2u);
  EXPECT_TRUE(ring.Remove("a"));
  EXPECT_EQ(ring.Generation(), 3u);
  EXPECT_FALSE(ring.Remove("a"));
  EXPECT_EQ(ring.Generation(), 3u);
  EXPECT_EQ(ring.Members(), std::vector<std::string>{"b"});
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(ring.Owner(Key(i)), "b");

  EXPECT_TRUE(ring.Remove("b"));
  EXPECT_EQ(ring.Owner("x"), std::nullopt);
  EXPECT_EQ(ring.Generation(), 4u);
}

TEST(HashRingTest, RemoveRestoresPreviousPlacement) {
  HashRing ring;
  ring.Add("a");
  ring.Add("c");
  const std::vector<std::string> before = OwnerMap(ring, 10000);
  ring.Add("b");  // inserted between existing members: shifts member indexes
  ring.Remove("b");
  EXPECT_EQ(OwnerMap(ring, 10000), before);
}

TEST(HashRingTest, GenerationCountsRealChanges) {
  HashRing ring;
  EXPECT_EQ(ring.Generation(), 0u);
  ring.Add("a");
  ring.Add("b");
  ring.Remove("a");
  ring.Add("a");
  EXPECT_EQ(ring.Generation(), 4u);
  std::shared_ptr<const RingSnapshot> snap = ring.Snapshot();
  EXPECT_EQ(snap->generation(), 4u);
  ring.Add("c");
  // A held snapshot is a frozen version.
  EXPECT_EQ(snap->generation(), 4u);
  EXPECT_EQ(snap->members(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(ring.Generation(), 5u);
}

TEST(HashRingTest, MembersAreSorted) {
  HashRing ring;
  for (const char* m : {"delta", "alpha", "charlie", "bravo"}) ring.Add(m);
  EXPECT_EQ(ring.Members(), (std::vector<std::string>{"alpha", "bravo", "charlie", "delta"}));
  EXPECT_EQ(ring.Size(), 4u);
  EXPECT_TRUE(ring.Snapshot()->Contains("charlie"));
  EXPECT_FALSE(ring.Snapshot()->Contains("echo"));
}

TEST(HashRingTest, InsertionOrderDoesNotMatter) {
  const std::vector<std::string> names = {"node-1", "node-2", "node-3", "node-4", "node-5"};
  HashRing forward;
  for (const std::string& n : names) forward.Add(n);
  HashRing backward;
  for (auto it = names.rbegin(); it != names.rend(); ++it) backward.Add(*it);
  HashRing shuffled;
  for (const char* n : {"node-3", "node-5", "node-1", "node-4", "node-2"}) shuffled.Add(n);
  HashRing reset;
  reset.Reset({"node-4", "node-2", "node-5", "node-1", "node-3"});

  const std::vector<std::string> expected = OwnerMap(forward, 10000);
  EXPECT_EQ(OwnerMap(backward, 10000), expected);
  EXPECT_EQ(OwnerMap(shuffled, 10000), expected);
  EXPECT_EQ(OwnerMap(reset, 10000), expected);
}

TEST(HashRingTest, InjectedHashHandChecked) {
  HashRing ring(RingOptions{.vnodes = 3, .hash = DigitsHash});
  // Vnodes: "2" -> 20,21,22; "4" -> 40,41,42; "6" -> 60,61,62.
  ring.Add("6");
  ring.Add("4");
  ring.Add("2");

  const std::map<std::string, std::string> cases = {
      {"2", "2"},   // 2 -> next vnode 20
      {"11", "2"},  // 11 -> 20
      {"20", "2"},  // exactly on a vnode: that vnode owns it
      {"21", "2"},  //
      {"23", "4"},  // 23 -> 40
      {"27", "4"},  //
      {"42", "4"},  //
      {"43", "6"},  // 43 -> 60
      {"62", "6"},  //
      {"63", "2"},  // past the last vnode: wraps to 20
      {"99", "2"},  //
  };
  for (const auto& [key, owner] : cases) EXPECT_EQ(ring.Owner(key), owner) << "key " << key;

  // "8" -> 80,81,82 takes exactly the wrapped-around keys in (62, 82].
  ring.Add("8");
  EXPECT_EQ(ring.Owner("27"), "4");
  EXPECT_EQ(ring.Owner("63"), "8");
  EXPECT_EQ(ring.Owner("82"), "8");
  EXPECT_EQ(ring.Owner("83"), "2");
  EXPECT_EQ(ring.Owner("2"), "2");
}

TEST(HashRingTest, TiesGoToSmallestMemberName) {
  // Every vnode and every key hashes to the same point: the tie-break alone decides.
  auto constant = [](std::string_view) -> uint64_t { return 7; };
  HashRing ring(RingOptions{.vnodes = 4, .hash = constant});
  ring.Add("m3");
  ring.Add("m1");
  ring.Add("m2");
  EXPECT_EQ(ring.Owner("k"), "m1");
  ring.Remove("m1");
  EXPECT_EQ(ring.Owner("k"), "m2");

  // Partial tie: "b#0" and "a#0" collide at 50, everything else is distinct.
  auto partial = [](std::string_view s) -> uint64_t {
    if (s == "a#0" || s == "b#0") return 50;
    if (s == "c#0") return 100;
    return DigitsHash(s);
  };
  for (bool b_first : {true, false}) {
    HashRing r(RingOptions{.vnodes = 1, .hash = partial});
    if (b_first) {
      r.Add("b");
      r.Add("c");
      r.Add("a");
    } else {
      r.Add("a");
      r.Add("c");
      r.Add("b");
    }
    EXPECT_EQ(r.Owner("10"), "a");
    EXPECT_EQ(r.Owner("50"), "a");
    EXPECT_EQ(r.Owner("51"), "c");
    EXPECT_EQ(r.Owner("101"), "a");  // wraps
    r.Remove("a");
    EXPECT_EQ(r.Owner("10"), "b");
  }
}

TEST(HashRingTest, AddingAMemberMovesOnlyKeysToIt) {
  constexpr int kKeys = 100000;
  HashRing ring;
  ring.Reset({"node-a", "node-b", "node-c"});
  const std::vector<std::string> before = OwnerMap(ring, kKeys);
  ASSERT_TRUE(ring.Add("node-d"));
  const std::vector<std::string> after = OwnerMap(ring, kKeys);

  int moved = 0;
  for (int i = 0; i < kKeys; ++i) {
    if (before[i] != after[i]) {
      ++moved;
      ASSERT_EQ(after[i], "node-d") << Key(i) << " moved from " << before[i];
    }
  }
  const double fraction = static_cast<double>(moved) / kKeys;
  std::printf("adding a 4th member moved %.2f%% of keys (ideal 25%%)\n", 100 * fraction);
  EXPECT_GT(fraction, 0.15);
  EXPECT_LT(fraction, 0.35);

  // And removing it again moves exactly those keys back.
  ASSERT_TRUE(ring.Remove("node-d"));
  EXPECT_EQ(OwnerMap(ring, kKeys), before);
}

TEST(HashRingTest, ResetSemantics) {
  HashRing ring;
  EXPECT_FALSE(ring.Reset({}));  // empty -> empty is a no-op
  EXPECT_EQ(ring.Generation(), 0u);

  EXPECT_TRUE(ring.Reset({"b", "a", "b", "c", "a"}));
  EXPECT_EQ(ring.Generation(), 1u);  // one bump for the whole change
  EXPECT_EQ(ring.Members(), (std::vector<std::string>{"a", "b", "c"}));

  EXPECT_FALSE(ring.Reset({"c", "b", "a"}));  // same set, different order / duplicates
  EXPECT_FALSE(ring.Reset({"a", "a", "b", "c"}));
  EXPECT_EQ(ring.Generation(), 1u);

  HashRing added;
  added.Add("a");
  added.Add("b");
  added.Add("c");
  EXPECT_EQ(OwnerMap(ring, 10000), OwnerMap(added, 10000));

  EXPECT_TRUE(ring.Reset({"c", "d"}));
  EXPECT_EQ(ring.Generation(), 2u);
  EXPECT_EQ(ring.Members(), (std::vector<std::string>{"c", "d"}));
  HashRing cd;
  cd.Add("d");
  cd.Add("c");
  EXPECT_EQ(OwnerMap(ring, 10000), OwnerMap(cd, 10000));

  EXPECT_TRUE(ring.Reset({}));
  EXPECT_EQ(ring.Generation(), 3u);
  EXPECT_EQ(ring.Owner("x"), std::nullopt);
}

// Prints the share of each member over 1M keys; asserts a tight bound only at 200 vnodes, where
// the expected deviation (~1/sqrt(200) ~ 7%) leaves room for 1.15x.
TEST(HashRingTest, Balance) {
  constexpr int kKeys = 1000000;
  for (int members : {3, 5}) {
    for (int vnodes : {50, 200}) {
      HashRing ring(RingOptions{.vnodes = vnodes});
      for (int m = 0; m < members; ++m) ring.Add("node-" + std::to_string(m));
      std::shared_ptr<const RingSnapshot> snap = ring.Snapshot();

      std::map<std::string_view, int> counts;
      for (const std::string& m : snap->members()) counts[m] = 0;
      char buf[32] = "key";
      for (int i = 0; i < kKeys; ++i) {
        char* end = std::to_chars(buf + 3, buf + sizeof(buf), i).ptr;
        ++counts[*snap->OwnerView(std::string_view(buf, static_cast<size_t>(end - buf)))];
      }

      const double mean = static_cast<double>(kKeys) / members;
      int max = 0;
      int min = kKeys;
      std::printf("balance: %d members, %3d vnodes:", members, vnodes);
      for (const auto& [name, count] : counts) {
        std::printf(" %.*s=%.2f%%", static_cast<int>(name.size()), name.data(),
                    100.0 * count / kKeys);
        max = std::max(max, count);
        min = std::min(min, count);
      }
      std::printf("  max/mean=%.3f min/mean=%.3f\n", max / mean, min / mean);
      std::fflush(stdout);

      EXPECT_LE(max / mean, vnodes >= 200 ? 1.15 : 1.5) << members << "x" << vnodes;
      EXPECT_GT(min, 0);
    }
  }
}

// Readers must always see a complete version: a non-empty owner drawn from the known pool, and
// generations that never go backwards, while a writer churns the membership.
TEST(HashRingTest, ConcurrentReadersAndWriter) {
  constexpr int kReaders = 4;
  constexpr int kWrites = 2000;
  const std::vector<std::string> pool = {"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"};
  const std::set<std::string, std::less<>> allowed = {"base", "m0", "m1", "m2", "m3",
                                                      "m4",   "m5", "m6", "m7"};

  HashRing ring;
  ring.Add("base");  // never removed, so the ring is never empty
  std::atomic<bool> done{false};
  std::atomic<int> started{0};
  std::atomic<int> bad_owner{0};
  std::atomic<int> missing_owner{0};
  std::atomic<int> generation_went_back{0};
  std::atomic<int> inconsistent_snapshot{0};
  std::atomic<long> lookups{0};

  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&, r] {
      std::mt19937_64 rng(static_cast<uint64_t>(r) + 1);
      uint64_t last_generation = 0;
      long n = 0;
      ++started;
      // do/while: each reader does some work even if the writer finishes first.
      do {
        for (int i = 0; i < 64; ++i, ++n) {
          const std::string key = Key(static_cast<int>(rng() % 1000000));
          std::optional<std::string> owner = ring.Owner(key);
          if (!owner) {
            ++missing_owner;
          } else if (allowed.find(*owner) == allowed.end()) {
            ++bad_owner;
          }
        }
        std::shared_ptr<const RingSnapshot> snap = ring.Snapshot();
        if (snap->generation() < last_generation) ++generation_went_back;
        last_generation = snap->generation();
        std::optional<std::string_view> view = snap->OwnerView("probe");
        if (!view || !snap->Contains(*view) ||
            snap->generation() == 0 /* "base" was added before */) {
          ++inconsistent_snapshot;
        }
      } while (!done.load(std::memory_order_relaxed));
      lookups += n;
    });
  }

  std::thread writer([&] {
    // Start churning only once every reader is running, so the writes actually overlap with
    // reads instead of finishing before the readers start.
    while (started.load() < kReaders) std::this_thread::yield();
    std::mt19937_64 rng(42);
    for (int i = 0; i < kWrites; ++i) {
      const std::string& m = pool[rng() % pool.size()];
      if (rng() % 2 == 0) {
        ring.Add(m);
      } else {
        ring.Remove(m);
      }
      if (i % 200 == 199) ring.Reset({"base", pool[i % pool.size()]});
    }
    done = true;
  });

  writer.join();
  for (std::thread& t : readers) t.join();

  EXPECT_EQ(missing_owner.load(), 0);
  EXPECT_EQ(bad_owner.load(), 0);
  EXPECT_EQ(generation_went_back.load(), 0);
  EXPECT_EQ(inconsistent_snapshot.load(), 0);
  EXPECT_GT(lookups.load(), 0);
  EXPECT_TRUE(ring.Snapshot()->Contains("base"));
  std::printf("stress: %ld lookups during %d writes, final generation %llu\n", lookups.load(),
              kWrites, static_cast<unsigned long long>(ring.Generation()));
}

TEST(HashRingSuccessorsTest, OwnerFirstThenDistinctMembersInRingOrder) {
  HashRing ring(RingOptions{.vnodes = 50});
  for (const char* m : {"a", "b", "c", "d", "e"}) ring.Add(m);
  auto snap = ring.Snapshot();
  for (int i = 0; i < 500; ++i) {
    const std::string key = "key" + std::to_string(i);
    const std::vector<std::string_view> three = snap->Successors(key, 3);
    ASSERT_EQ(three.size(), 3u);
    EXPECT_EQ(three[0], *snap->OwnerView(key));  // the owner first
    EXPECT_NE(three[0], three[1]);
    EXPECT_NE(three[1], three[2]);
    EXPECT_NE(three[0], three[2]);
    // A prefix of a longer walk: n = 1 is the owner, n = 3 extends n = 2.
    const std::vector<std::string_view> two = snap->Successors(key, 2);
    EXPECT_EQ(std::vector<std::string_view>(three.begin(), three.begin() + 2), two);
    // The second is who owns the key once the first is gone, the third once both are.
    HashRing without(RingOptions{.vnodes = 50});
    for (const auto& m : snap->members()) {
      if (m != three[0]) without.Add(m);
    }
    EXPECT_EQ(*without.Owner(key), three[1]) << key;
    without.Remove(three[1]);
    EXPECT_EQ(*without.Owner(key), three[2]) << key;
  }
  // At most every member, each once; nothing from an empty ring or for n = 0.
  EXPECT_EQ(snap->Successors("k", 10).size(), 5u);
  EXPECT_TRUE(snap->Successors("k", 0).empty());
  EXPECT_TRUE(HashRing().Snapshot()->Successors("k", 2).empty());
}

// Keys of a 100-member ring whose replica set (R = 2) changes when one member joins or leaves:
// only the keys the changed member holds or starts holding, about R / N of them. With 200
// vnodes every join and leave stays within 1.1 x R / N; with 50 (the default) the average
// does, single changes reach about 1.2 x (a member's share varies more with fewer vnodes).
TEST(HashRingSuccessorsTest, OneJoinOrLeaveMovesAboutRoverNOfTheKeys) {
  constexpr int kMembers = 100;
  constexpr size_t kR = 2;
  constexpr int kKeys = 50'000;
  for (int vnodes : {50, 200}) {
    auto build = [&](int members, std::string_view skip) {
      auto ring = std::make_unique<HashRing>(RingOptions{.vnodes = vnodes});
      for (int m = 0; m < members; ++m) {
        const std::string name = "node-" + std::to_string(m);
        if (name != skip) ring->Add(name);
      }
      return ring;
    };
    auto sets = [&](const HashRing& ring) {
      auto snap = ring.Snapshot();
      std::vector<std::set<std::string>> out(kKeys);
      for (int k = 0; k < kKeys; ++k) {
        for (std::string_view m : snap->Successors("key:" + std::to_string(k), kR)) {
          out[k].emplace(m);
        }
      }
      return out;
    };
    auto moved = [&](const std::vector<std::set<std::string>>& a,
                     const std::vector<std::set<std::string>>& b) {
      int n = 0;
      for (int k = 0; k < kKeys; ++k) n += a[k] != b[k] ? 1 : 0;
      return static_cast<double>(n) / kKeys;
    };
    const auto before = sets(*build(kMembers, ""));
    const double bound = 1.1 * static_cast<double>(kR) / kMembers;
    double worst = 0, sum = 0;
    int changes = 0;
    // Joins of five different newcomers, and leaves of five members.
    for (int j = 0; j < 5; ++j) {
      // A different newcomer each time: node-100+j joins a ring of 100+j members.
      const auto base = sets(*build(kMembers + j, ""));
      const double one_join = moved(base, sets(*build(kMembers + j + 1, "")));
      const double leave = moved(before, sets(*build(kMembers, "node-" + std::to_string(j * 17))));
      for (double f : {one_join, leave}) {
        worst = std::max(worst, f);
        sum += f;
        ++changes;
      }
    }
    std::printf(
        "[figures] %d members x %d vnodes, R = %zu: one join or leave changes the replica "
        "set of %.4f of the keys on average, %.4f at worst (R / N = %.4f)\n",
        kMembers, vnodes, kR, sum / changes, worst, static_cast<double>(kR) / kMembers);
    EXPECT_LE(sum / changes, bound) << vnodes << " vnodes";
    if (vnodes >= 200) {
      EXPECT_LE(worst, bound) << vnodes << " vnodes";  // every single change within 1.1 x R / N
    }
  }
}

}  // namespace
}  // namespace nexus
