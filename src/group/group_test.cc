#include "group/group.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "group/registry.h"
#include "ring/hash_ring.h"
#include "support/fake_peers.h"
#include "support/group_sync.h"

namespace nexus {
namespace {

using testing::DeleteSync;
using testing::FakePicker;
using testing::GetSync;
using testing::RecordingPeer;
using testing::SetSync;

constexpr int64_t kMinute = 60'000;

// An origin whose answers the test releases by hand, to hold loads in flight.
class ManualLoader final : public Loader {
 public:
  void Load(std::string_view key, LoadCallback done) override {
    keys.emplace_back(key);
    pending.push_back(std::move(done));
  }
  void Complete(absl::StatusOr<std::string> r) {
    LoadCallback cb = std::move(pending.front());
    pending.pop_front();
    cb(std::move(r));
  }
  std::vector<std::string> keys;
  std::deque<LoadCallback> pending;
};

std::shared_ptr<Loader> MapLoader(std::map<std::string, std::string> data, int* calls) {
  return std::make_shared<FunctionLoader>(
      [data = std::move(data), calls](std::string_view key) -> absl::StatusOr<std::string> {
        ++*calls;
        auto it = data.find(std::string(key));
        if (it == data.end()) return absl::NotFoundError("no such key");
        return it->second;
      });
}

class GroupTest : public ::testing::Test {
 protected:
  GroupOptions Options() {
    GroupOptions o;
    o.name = "scores";
    o.cache_bytes = 1 << 20;
    o.hot_cache_bytes = 256 << 10;
    o.default_ttl_ms = 10 * kMinute;
    o.jitter_seed = 1234;
    return o;
  }
  FakeClock clock_{1'700'000'000'000};
};

TEST_F(GroupTest, AFixedDeadlineIsStoredExactlyHereAndSentAsSuchToTheOwner) {
  Group here(Options(), nullptr, nullptr, &clock_);
  const UnixMillis at = clock_.NowMillis() + 5000;
  ASSERT_TRUE(SetSync(here, "a", "1", Expiry::At(at), false).ok());
  EXPECT_EQ(GetSync(here, "a")->deadline, at);  // no jitter
  ASSERT_TRUE(SetSync(here, "b", "2", Expiry::Never(), false).ok());
  EXPECT_EQ(GetSync(here, "b")->deadline, kNoDeadline);
  EXPECT_FALSE(SetSync(here, "c", "3", Expiry::At(0), false).ok());

  auto owner = std::make_shared<RecordingPeer>();
  Group front(Options(), nullptr, FakePicker::OwnedBy(owner), &clock_);
  ASSERT_TRUE(SetSync(front, "k", "v", Expiry::At(at), false).ok());
  ASSERT_TRUE(SetSync(front, "k", "v", 60'000, true).ok());
  EXPECT_EQ(owner->calls, (std::vector<std::string>{"set scores k=v at=" + std::to_string(at),
                                                    "set scores k=v ttl=60000 hot"}));
}

TEST_F(GroupTest, MissGoesToLoaderOnceThenServesFromCacheWithDefaultTtl) {
  int calls = 0;
  Group g(Options(), MapLoader({{"Tom", "630"}}, &calls), nullptr, &clock_);
  const UnixMillis now = clock_.NowMillis();
  auto v = GetSync(g, "Tom");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->data, "630");
  EXPECT_GE(v->deadline, now + 10 * kMinute);
  EXPECT_LE(v->deadline, now + 11 * kMinute);  // 10% jitter
  auto again = GetSync(g, "Tom");
  EXPECT_EQ(*again, *v);  // same deadline: no sliding, no re-drawn jitter
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(g.stats().loads, 1u);
  EXPECT_EQ(g.stats().main.hits, 1u);
  EXPECT_EQ(g.stats().hits, 1u);    // the second Get
  EXPECT_EQ(g.stats().misses, 1u);  // the first
  // After the deadline the loader is asked again.
  clock_.Set(v->deadline);
  ASSERT_TRUE(GetSync(g, "Tom").ok());
  EXPECT_EQ(calls, 2);
}

TEST_F(GroupTest, MissEverywhereIsNotFoundNotAnError) {
  int calls = 0;
  Group with_loader(Options(), MapLoader({}, &calls), nullptr, &clock_);
  EXPECT_TRUE(absl::IsNotFound(GetSync(with_loader, "nobody").status()));
  EXPECT_EQ(with_loader.stats().load_errors, 0u);
  Group without_loader(Options(), nullptr, nullptr, &clock_);
  EXPECT_TRUE(absl::IsNotFound(GetSync(without_loader, "nobody").status()));
}

TEST_F(GroupTest, LoaderErrorsReachTheCallerAndAreNotCached) {
  int calls = 0;
  auto failing =
      std::make_shared<FunctionLoader>([&](std::string_view) -> absl::StatusOr<std::string> {
        ++calls;
        return absl::UnavailableError("origin down");
      });
  Group g(Options(), failing, nullptr, &clock_);
  EXPECT_EQ(GetSync(g, "k").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(GetSync(g, "k").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(g.stats().load_errors, 2u);
}

TEST_F(GroupTest, ConcurrentMissesShareOneLoad) {
  auto loader = std::make_shared<ManualLoader>();
  Group g(Options(), loader, nullptr, &clock_);
  std::vector<absl::StatusOr<CachedValue>> results;
  for (int i = 0; i < 50; ++i) {
    g.Get("cold", [&](absl::StatusOr<CachedValue> r) { results.push_back(std::move(r)); });
  }
  ASSERT_EQ(loader->keys.size(), 1u);
  EXPECT_TRUE(results.empty());
  loader->Complete(std::string("v"));
  ASSERT_EQ(results.size(), 50u);
  for (const auto& r : results) EXPECT_EQ(r->data, "v");
  EXPECT_EQ(g.stats().deduplicated, 49u);
  EXPECT_EQ(g.stats().loads, 1u);
  // Different keys load independently.
  g.Get("a", [](auto) {});
  g.Get("b", [](auto) {});
  EXPECT_EQ(loader->keys.size(), 3u);
  loader->Complete(std::string("1"));
  loader->Complete(std::string("2"));
}

TEST_F(GroupTest, ValueSetDuringALoadWinsOverTheLoadedValue) {
  auto loader = std::make_shared<ManualLoader>();
  Group g(Options(), loader, nullptr, &clock_);
  absl::StatusOr<CachedValue> during;
  g.Get("k", [&](absl::StatusOr<CachedValue> r) { during = std::move(r); });
  ASSERT_TRUE(SetSync(g, "k", "fresh", kMinute, false).ok());
  loader->Complete(std::string("stale-from-origin"));
  // The client's write wins over the load that was already running...
  ASSERT_TRUE(during.ok());
  EXPECT_EQ(during->data, "fresh");
  auto after = GetSync(g, "k");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->data, "fresh");
  // ...and the cached value is served without another load.
  EXPECT_EQ(loader->keys.size(), 1u);
}

TEST_F(GroupTest, HotSetDuringALoadWinsAndTheKeyLivesInOneCache) {
  auto loader = std::make_shared<ManualLoader>();
  Group g(Options(), loader, nullptr, &clock_);
  absl::StatusOr<CachedValue> during;
  g.Get("k", [&](absl::StatusOr<CachedValue> r) { during = std::move(r); });
  ASSERT_TRUE(SetSync(g, "k", "hot-value", kMinute, true).ok());
  loader->Complete(std::string("from-origin"));
  ASSERT_TRUE(during.ok());
  EXPECT_EQ(during->data, "hot-value");
  EXPECT_EQ(GetSync(g, "k")->data, "hot-value");
  EXPECT_EQ(g.store().main().items(), 0u);
}

// A peer that is really this node (a ring pointing a key back at us): the owner-side load must
// not join the forwarding flight it is serving.
class LoopbackPeer final : public testing::UnusedPeer {
 public:
  Group* group = nullptr;
  void Get(std::string_view, std::string_view key, ValueCallback done) override {
    group->GetLocal(key, std::move(done));
  }
};

TEST_F(GroupTest, ForwardedLoadDoesNotJoinItsOwnForwardingFlight) {
  auto peer = std::make_shared<LoopbackPeer>();
  int calls = 0;
  Group g(Options(), MapLoader({{"Tom", "630"}}, &calls), FakePicker::OwnedBy(peer), &clock_);
  peer->group = &g;
  bool answered = false;
  g.Get("Tom", [&](absl::StatusOr<CachedValue> r) {
    answered = true;
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->data, "630");
  });
  EXPECT_TRUE(answered) << "the Get joined its own flight and never completed";
  EXPECT_EQ(calls, 1);
}

TEST_F(GroupTest, WithTwoReplicasAnUnreachableOwnerFallsBackToTheNextHolder) {
  auto down = std::make_shared<testing::UnreachablePeer>();
  auto b = std::make_shared<RecordingPeer>();
  GroupOptions o = Options();
  o.replicas = 2;
  o.write_quorum = 1;
  // `down` owns every key; the replica sets are {down, b}.
  auto picker = std::make_shared<FakePicker>(
      std::vector<std::shared_ptr<Peer>>{down, b},
      [down](std::string_view) -> std::shared_ptr<Peer> { return down; });
  Group g(o, nullptr, picker, &clock_);
  auto v = GetSync(g, "k");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->data, "remote:k");  // answered by b
  ASSERT_TRUE(SetSync(g, "k", "v", kMinute, false).ok());
  ASSERT_TRUE(DeleteSync(g, "k").ok());
  EXPECT_EQ(b->calls, (std::vector<std::string>{"get scores k", "set scores k=v ttl=60000",
                                                "delete scores k"}));
  EXPECT_EQ(down->calls(), 3);
  EXPECT_EQ(g.stats().fallbacks, 3u);

  // An answer the owner gave (not a transport failure) is the answer: no fallback.
  b->calls.clear();
  auto errs = std::make_shared<RecordingPeer>();
  errs->error = absl::InternalError("origin answered HTTP 500");
  auto picker2 = std::make_shared<FakePicker>(
      std::vector<std::shared_ptr<Peer>>{errs, b},
      [errs](std::string_view) -> std::shared_ptr<Peer> { return errs; });
  Group g2(o, nullptr, picker2, &clock_);
  EXPECT_EQ(GetSync(g2, "k").status().code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(b->calls.empty());
}

TEST_F(GroupTest, WhenThisNodeIsTheNextHolderItActsAsThePrimary) {
  auto down = std::make_shared<testing::UnreachablePeer>();
  GroupOptions o = Options();
  o.replicas = 2;
  o.write_quorum = 1;
  int calls = 0;
  Group g(o, MapLoader({{"Tom", "630"}}, &calls), FakePicker::OwnedBy(down), &clock_);
  // The owner is down; this node holds the key's second copy: it loads, and stores.
  auto v = GetSync(g, "Tom");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->data, "630");
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(SetSync(g, "k", "mine", kMinute, false).ok());
  EXPECT_EQ(GetSync(g, "k")->data, "mine");
  // With R = 1 there is no next holder: the owner's failure is the answer.
  Group single(Options(), MapLoader({{"Tom", "630"}}, &calls), FakePicker::OwnedBy(down), &clock_);
  EXPECT_EQ(GetSync(single, "Tom").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(single.stats().fallbacks, 0u);
}

TEST_F(GroupTest, APrimaryThatMissesAsksTheOtherHoldersBeforeItLoads) {
  auto b = std::make_shared<RecordingPeer>();
  GroupOptions o = Options();
  o.replicas = 2;
  o.write_quorum = 1;
  int calls = 0;
  // This node is every key's primary, b the other holder.
  Group g(o, MapLoader({{"Tom", "630"}}, &calls), FakePicker::OwnerOfAll({b}), &clock_);
  b->copy = "held";
  auto v = GetSync(g, "k");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->data, "held");  // b's copy, no load
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(g.stats().holder_reads, 1u);
  b->copy.reset();
  EXPECT_EQ(GetSync(g, "Tom")->data, "630");  // no holder has one: the loader
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(b->calls, (std::vector<std::string>{"peek scores k", "peek scores Tom"}));
  // A key deleted here is deleted: its tombstone answers, no holder is asked.
  ASSERT_TRUE(DeleteSync(g, "d").ok());
  b->copy = "older";
  b->calls.clear();
  EXPECT_EQ(GetSync(g, "d").status().code(), absl::StatusCode::kNotFound);  // the loader's
  EXPECT_TRUE(b->calls.empty());
  // With R = 1 there is no other holder to ask.
  auto c = std::make_shared<RecordingPeer>();
  Group single(Options(), nullptr, FakePicker::OwnerOfAll({c}), &clock_);
  EXPECT_EQ(GetSync(single, "k").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(IsDeleted(GetSync(single, "k").status()));
  EXPECT_TRUE(c->calls.empty());
  // Without a loader, a deleted key's miss says so (a reader in a transition stops there).
  ASSERT_TRUE(DeleteSync(single, "k").ok());
  EXPECT_TRUE(IsDeleted(GetSync(single, "k").status()));
}

// This node ("a") plus named members over a real ring: what a transition needs.
class NamedPicker final : public PeerPicker {
 public:
  explicit NamedPicker(std::map<std::string, std::shared_ptr<Peer>> others)
      : others_(std::move(others)) {
    std::vector<std::string> names = {"a"};
    for (const auto& [name, peer] : others_) names.push_back(name);
    ring_.Reset(names);
  }
  std::shared_ptr<Peer> PickPeer(std::string_view key) override {
    return PeerNamed(*ring_.Snapshot()->OwnerView(key));
  }
  ReplicaSet PickReplicas(std::string_view key, size_t n) override {
    ReplicaSet set{.generation = 1};
    for (std::string_view name : ring_.Snapshot()->Successors(key, n)) {
      set.members.push_back(PeerNamed(name));
    }
    return set;
  }
  std::shared_ptr<const RingSnapshot> Ring() override { return ring_.Snapshot(); }
  std::string_view SelfName() const override { return "a"; }
  std::shared_ptr<Peer> PeerNamed(std::string_view name) override {
    auto it = others_.find(std::string(name));
    return it == others_.end() ? nullptr : it->second;
  }

 private:
  std::map<std::string, std::shared_ptr<Peer>> others_;
  HashRing ring_;
};

TEST_F(GroupTest, InATransitionAReadAsksTheFormerHolderThenTheOwner) {
  auto b = std::make_shared<RecordingPeer>();
  auto c = std::make_shared<RecordingPeer>();
  auto picker = std::make_shared<NamedPicker>(
      std::map<std::string, std::shared_ptr<Peer>>{{"b", b}, {"c", c}});
  Group g(Options(), nullptr, picker, &clock_);
  // c just joined: before, the ring was {a, b}. A key c owns now that b held before.
  HashRing before;
  before.Reset({"a", "b"});
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    const std::string k = "t" + std::to_string(i);
    if (*before.Snapshot()->OwnerView(k) == "b" && *picker->Ring()->OwnerView(k) == "c") key = k;
  }
  g.store().BeginTransition(before.Snapshot());
  auto v = GetSync(g, key);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->data, "remote:" + key);
  EXPECT_EQ(b->calls, (std::vector<std::string>{"get scores " + key}));  // b got every write
  EXPECT_TRUE(c->calls.empty());
  // b has no copy (when nodes join together their rings before differ): the owner answers.
  b->error = absl::NotFoundError("key not found");
  b->calls.clear();
  v = GetSync(g, key);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(c->calls, (std::vector<std::string>{"get scores " + key}));
  // b has a tombstone (the key was deleted): that is the answer, c's copy may be older.
  b->error = DeletedError();
  c->calls.clear();
  EXPECT_TRUE(IsDeleted(GetSync(g, key).status()));
  EXPECT_TRUE(c->calls.empty());
  // Once the transition is over, reads go to the owner only.
  g.store().EndTransition();
  b->calls.clear();
  c->calls.clear();
  ASSERT_TRUE(GetSync(g, key).ok());
  EXPECT_TRUE(b->calls.empty());
  EXPECT_EQ(c->calls.size(), 1u);
}

TEST_F(GroupTest, InATransitionAnUnreachableFormerHolderIsFollowedByTheOtherHolders) {
  auto b = std::make_shared<testing::UnreachablePeer>();
  auto c = std::make_shared<RecordingPeer>();
  auto picker = std::make_shared<NamedPicker>(
      std::map<std::string, std::shared_ptr<Peer>>{{"b", b}, {"c", c}});
  GroupOptions o = Options();
  o.replicas = 2;
  o.write_quorum = 1;
  Group g(o, nullptr, picker, &clock_);
  // c just joined; a key whose first holder was b and whose holders are now c, then b: the
  // read asks b (the former holder), which is down, then c, not b again.
  HashRing before;
  before.Reset({"a", "b"});
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    const std::string k = "t" + std::to_string(i);
    if (before.Snapshot()->Successors(k, 1).front() == "b" &&
        picker->Ring()->Successors(k, 2) == std::vector<std::string_view>{"c", "b"}) {
      key = k;
    }
  }
  g.store().BeginTransition(before.Snapshot());
  auto v = GetSync(g, key);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->data, "remote:" + key);
  EXPECT_EQ(b->calls(), 1);
  EXPECT_EQ(c->calls, (std::vector<std::string>{"get scores " + key}));
}

TEST_F(GroupTest, ANodeThatMayNotActAsPrimaryRefusesWritesAndPassesThemOn) {
  // (The node's check: it may have lost its etcd lease.)
  const auto lost = [] { return absl::UnavailableError("no lease"); };
  GroupOptions o = Options();
  o.primary_check = lost;
  int calls = 0;
  Group single(o, MapLoader({{"Tom", "630"}}, &calls), nullptr, &clock_);
  EXPECT_EQ(SetSync(single, "k", "v", kMinute, false).message(), "no lease");
  EXPECT_EQ(DeleteSync(single, "k").message(), "no lease");
  absl::Status forwarded = absl::UnknownError("no answer");
  single.SetLocal("k", "v", kMinute, false, [&](absl::Status s) { forwarded = s; });
  EXPECT_EQ(forwarded.message(), "no lease");
  EXPECT_EQ(GetSync(single, "Tom")->data, "630");  // reads (and loads) go on
  EXPECT_EQ(single.store().main().items(), 1u);    // only the loaded value

  // With R = 2 this node's writes as primary go to the next holder instead.
  auto b = std::make_shared<RecordingPeer>();
  o.replicas = 2;
  o.write_quorum = 2;
  Group pair(o, nullptr, FakePicker::OwnerOfAll({b}), &clock_);
  ASSERT_TRUE(SetSync(pair, "k", "v", kMinute, false).ok());
  ASSERT_TRUE(DeleteSync(pair, "k").ok());
  EXPECT_EQ(b->calls, (std::vector<std::string>{"set scores k=v ttl=60000", "delete scores k"}));
  EXPECT_EQ(pair.stats().fallbacks, 2u);
  EXPECT_EQ(pair.store().main().items(), 0u);
}

TEST_F(GroupTest, WithoutItsLeaseANodeReadsFromAnotherHolderFirst) {
  // (Cut off from etcd, or back from a partition and not registered again: the others may have
  // dropped it and taken newer writes for its keys.)
  bool lease = false;
  GroupOptions o = Options();
  o.replicas = 2;
  o.write_quorum = 1;
  o.primary_check = [&] { return lease ? absl::OkStatus() : absl::UnavailableError("no lease"); };
  auto b = std::make_shared<RecordingPeer>();
  Group pair(o, nullptr, FakePicker::OwnerOfAll({b}), &clock_);
  pair.store().main().Set("k", "older", clock_.NowMillis() + kMinute, {.version = 1});
  auto v = GetSync(pair, "k");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->data, "remote:k");
  EXPECT_EQ(b->calls, (std::vector<std::string>{"get scores k"}));
  // Holding it, the node serves its own copy.
  lease = true;
  EXPECT_EQ(GetSync(pair, "k")->data, "older");
  EXPECT_EQ(b->calls.size(), 1u);
  // Without it and no other holder reachable: its own copy rather than an error.
  lease = false;
  auto down = std::make_shared<testing::UnreachablePeer>();
  Group cut_off(o, nullptr, FakePicker::OwnerOfAll({down}), &clock_);
  cut_off.store().main().Set("k", "older", clock_.NowMillis() + kMinute, {.version = 1});
  v = GetSync(cut_off, "k");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->data, "older");
  EXPECT_EQ(down->calls(), 1);
  // With R = 1 its copy is the only one: served at once.
  GroupOptions single_options = Options();
  single_options.primary_check = o.primary_check;
  auto c = std::make_shared<RecordingPeer>();
  Group single(single_options, nullptr, FakePicker::OwnerOfAll({c}), &clock_);
  single.store().main().Set("k", "only", clock_.NowMillis() + kMinute, {.version = 1});
  EXPECT_EQ(GetSync(single, "k")->data, "only");
  EXPECT_TRUE(c->calls.empty());
}

TEST_F(GroupTest, ANodeThatLeftAnswersPeersReadsUnavailableWhenAnotherHolderHasTheKey) {
  // (SIGTERM: after the drain the node revoked its lease; writes go to the other holders now.)
  GroupOptions o = Options();
  o.replicas = 2;
  o.write_quorum = 1;
  Group pair(o, nullptr, FakePicker::OwnerOfAll({std::make_shared<RecordingPeer>()}), &clock_);
  pair.store().main().Set("k", "older", clock_.NowMillis() + kMinute, {.version = 1});
  pair.StopServingPeerReads();
  absl::StatusOr<CachedValue> got = absl::UnknownError("no answer");
  pair.GetLocal("k", [&](absl::StatusOr<CachedValue> r) { got = std::move(r); });
  EXPECT_TRUE(absl::IsUnavailable(got.status())) << got.status();  // the reader asks the next
  EXPECT_TRUE(absl::IsUnavailable(pair.Peek("k").status()));
  // With R = 1 its copy is the only one: still served.
  Group single(Options(), nullptr, nullptr, &clock_);
  single.store().main().Set("k", "only", clock_.NowMillis() + kMinute, {.version = 1});
  single.StopServingPeerReads();
  single.GetLocal("k", [&](absl::StatusOr<CachedValue> r) { got = std::move(r); });
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->data, "only");
}

TEST_F(GroupTest, OwnerPushesEveryChangeOfAHotKeyToTheReplicas) {
  auto others = std::make_shared<RecordingPeer>();
  Group g(Options(), nullptr, FakePicker::OwnerOfAll({others}), &clock_);
  ASSERT_TRUE(SetSync(g, "cold", "c", kMinute, false).ok());
  EXPECT_TRUE(others->replicas.empty());  // not hot: nothing to replicate

  ASSERT_TRUE(SetSync(g, "k", "v1", 10 * kMinute, true).ok());
  ASSERT_EQ(others->replicas.size(), 1u);
  const Replica first = others->replicas[0];
  EXPECT_EQ(first.key, "k");
  EXPECT_EQ(first.value, "v1");
  EXPECT_FALSE(first.remove);
  EXPECT_EQ(first.deadline, GetSync(g, "k")->deadline);  // the replica expires with the owner

  ASSERT_TRUE(SetSync(g, "k", "v2", 10 * kMinute, true).ok());
  ASSERT_EQ(others->replicas.size(), 2u);
  EXPECT_GT(others->replicas[1].version, first.version);

  // Set again as not hot: the replicas must drop theirs before the ack.
  ASSERT_TRUE(SetSync(g, "k", "v3", 10 * kMinute, false).ok());
  ASSERT_EQ(others->replicas.size(), 3u);
  EXPECT_TRUE(others->replicas[2].remove);
  EXPECT_GT(others->replicas[2].version, others->replicas[1].version);
  EXPECT_EQ(GetSync(g, "k")->data, "v3");

  ASSERT_TRUE(SetSync(g, "k", "v4", 10 * kMinute, true).ok());
  ASSERT_TRUE(DeleteSync(g, "k").ok());
  ASSERT_EQ(others->replicas.size(), 5u);
  EXPECT_TRUE(others->replicas[4].remove);
  EXPECT_TRUE(absl::IsNotFound(GetSync(g, "k").status()));
  EXPECT_EQ(g.stats().replication.pushes, 5u);
}

TEST_F(GroupTest, RemovalsKeepGoingOutUntilTheHotDeadlineEvenIfTheOwnerLostItsCopy) {
  auto others = std::make_shared<RecordingPeer>();
  Group g(Options(), nullptr, FakePicker::OwnerOfAll({others}), &clock_);
  ASSERT_TRUE(SetSync(g, "k", "hot", 10 * kMinute, true).ok());
  const UnixMillis hot_deadline = others->replicas[0].deadline;
  // The owner's hot cache evicts its copy; a later plain set must still clear the replicas.
  g.store().hot().Erase("k");
  ASSERT_TRUE(SetSync(g, "k", "plain1", kMinute, false).ok());
  ASSERT_EQ(others->replicas.size(), 2u);
  EXPECT_TRUE(others->replicas[1].remove);
  // The removal lives as long as the copy it removes, not as the new short TTL.
  EXPECT_EQ(others->replicas[1].deadline, hot_deadline);
  // A second plain set while the first removal might still be on its way: removed again.
  ASSERT_TRUE(SetSync(g, "k", "plain2", kMinute, false).ok());
  ASSERT_EQ(others->replicas.size(), 3u);
  EXPECT_TRUE(others->replicas[2].remove);
  EXPECT_GT(others->replicas[2].version, others->replicas[1].version);
  // After the hot deadline nobody can hold a copy: plain writes stop paying for removals.
  clock_.Set(hot_deadline);
  ASSERT_TRUE(SetSync(g, "k", "plain3", kMinute, false).ok());
  EXPECT_EQ(others->replicas.size(), 3u);
}

TEST_F(GroupTest, VersionsNeverGoBackwardsBelowWhatThisNodeHasSeen) {
  auto others = std::make_shared<RecordingPeer>();
  Group g(Options(), nullptr, FakePicker::OwnerOfAll({others}), &clock_);
  // A replica pushed by an earlier owner whose clock was ahead.
  const uint64_t ahead = (static_cast<uint64_t>(clock_.NowMillis()) + 3'600'000) << 20;
  ASSERT_TRUE(
      g.store().Apply({.key = "k", .value = "old", .deadline = kNoDeadline, .version = ahead}));
  ASSERT_TRUE(SetSync(g, "k", "new", kMinute, true).ok());
  ASSERT_EQ(others->replicas.size(), 1u);
  EXPECT_GT(others->replicas[0].version, ahead);
  EXPECT_EQ(GetSync(g, "k")->data, "new");
}

TEST_F(GroupTest, AFailedReplicaIsReportedButDoesNotFailTheWrite) {
  auto others = std::make_shared<RecordingPeer>();
  others->replica_error = absl::UnavailableError("peer svc3 unreachable");
  Group g(Options(), nullptr, FakePicker::OwnerOfAll({others}), &clock_);
  EXPECT_TRUE(SetSync(g, "k", "v", kMinute, true).ok());
  EXPECT_EQ(g.stats().replication.failures, 1u);
}

TEST_F(GroupTest, ReplicaKeepsTheNewestVersionAndServesLocally) {
  Group g(Options(), nullptr, nullptr, &clock_);
  const UnixMillis deadline = clock_.NowMillis() + 5 * kMinute;
  EXPECT_TRUE(g.store().Apply({.key = "k", .value = "v2", .deadline = deadline, .version = 20}));
  EXPECT_FALSE(g.store().Apply({.key = "k", .value = "v1", .deadline = deadline, .version = 10}));
  EXPECT_FALSE(g.store().Apply({.key = "k", .value = "v2", .deadline = deadline, .version = 20}));
  auto v = GetSync(g, "k");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->data, "v2");
  EXPECT_EQ(v->deadline, deadline);
  EXPECT_EQ(g.stats().replication.stale, 2u);

  // A removal leaves a tombstone: an older push arriving late cannot resurrect the key.
  EXPECT_TRUE(g.store().Apply({.key = "k", .deadline = deadline, .version = 30, .remove = true}));
  EXPECT_TRUE(absl::IsNotFound(GetSync(g, "k").status()));
  EXPECT_FALSE(g.store().Apply({.key = "k", .value = "v2", .deadline = deadline, .version = 25}));
  EXPECT_TRUE(absl::IsNotFound(GetSync(g, "k").status()));
  EXPECT_TRUE(g.store().Apply({.key = "k", .value = "v4", .deadline = deadline, .version = 40}));
  EXPECT_EQ(GetSync(g, "k")->data, "v4");

  // The replica expires at the owner's deadline.
  clock_.Set(deadline);
  EXPECT_TRUE(absl::IsNotFound(GetSync(g, "k").status()));
}

TEST_F(GroupTest, SetDrawsJitterOnceAndValidatesInput) {
  Group g(Options(), nullptr, nullptr, &clock_);
  const UnixMillis now = clock_.NowMillis();
  std::set<UnixMillis> deadlines;
  for (int i = 0; i < 100; ++i) {
    const std::string key = "k" + std::to_string(i);
    ASSERT_TRUE(SetSync(g, key, "v", 10 * kMinute, false).ok());
    auto v = GetSync(g, key);
    ASSERT_TRUE(v.ok());
    EXPECT_GE(v->deadline, now + 10 * kMinute);
    EXPECT_LE(v->deadline, now + 11 * kMinute);
    deadlines.insert(v->deadline);
    clock_.Advance(1);
    EXPECT_EQ(GetSync(g, key)->deadline, v->deadline);  // never re-drawn on reads
    clock_.Advance(-1);
  }
  EXPECT_GT(deadlines.size(), 90u);  // keys written together do not expire together
  EXPECT_EQ(SetSync(g, "k", "v", 0, false).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SetSync(g, "", "v", kMinute, false).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GetSync(g, "").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(GroupTest, JitterCapAndSeedAreConfigurable) {
  GroupOptions o = Options();
  o.jitter = {.fraction = 0.5, .cap_ms = 2 * kMinute};
  Group g(o, nullptr, nullptr, &clock_);
  const UnixMillis now = clock_.NowMillis();
  UnixMillis max_seen = 0;
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(SetSync(g, "k", "v", 60 * kMinute, false).ok());
    max_seen = std::max(max_seen, GetSync(g, "k")->deadline);
  }
  EXPECT_LE(max_seen, now + 62 * kMinute);
  EXPECT_GT(max_seen, now + 61 * kMinute);
  // Same seed, same deadlines.
  Group a(Options(), nullptr, nullptr, &clock_), b(Options(), nullptr, nullptr, &clock_);
  ASSERT_TRUE(SetSync(a, "k", "v", 30 * kMinute, false).ok());
  ASSERT_TRUE(SetSync(b, "k", "v", 30 * kMinute, false).ok());
  EXPECT_EQ(GetSync(a, "k")->deadline, GetSync(b, "k")->deadline);
}

TEST_F(GroupTest, HotKeysLiveInTheHotCacheWithItsOwnBudget) {
  Group g(Options(), nullptr, nullptr, &clock_);
  ASSERT_TRUE(SetSync(g, "hotkey", "h", kMinute, true).ok());
  EXPECT_EQ(g.store().hot().items(), 1u);
  EXPECT_EQ(g.store().main().items(), 0u);
  EXPECT_EQ(GetSync(g, "hotkey")->data, "h");
  // Re-set as a normal key: it moves, it is never in both caches.
  ASSERT_TRUE(SetSync(g, "hotkey", "n", kMinute, false).ok());
  EXPECT_EQ(g.store().hot().items(), 0u);
  EXPECT_EQ(GetSync(g, "hotkey")->data, "n");
  // The hot budget is separate: filling it does not evict main entries.
  for (int i = 0; i < 5000; ++i)
    SetSync(g, "h" + std::to_string(i), std::string(100, 'x'), kMinute, true).IgnoreError();
  EXPECT_LE(g.store().hot().bytes(), 256u << 10);
  EXPECT_EQ(GetSync(g, "hotkey")->data, "n");
}

TEST_F(GroupTest, OversizedValueIsRefusedClearly) {
  Group g(Options(), nullptr, nullptr, &clock_);
  const absl::Status s = SetSync(g, "big", std::string(2 << 20, 'x'), kMinute, false);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::IsNotFound(GetSync(g, "big").status()));
}

TEST_F(GroupTest, DeleteRemovesFromBothCaches) {
  Group g(Options(), nullptr, nullptr, &clock_);
  ASSERT_TRUE(SetSync(g, "a", "1", kMinute, false).ok());
  ASSERT_TRUE(SetSync(g, "b", "2", kMinute, true).ok());
  ASSERT_TRUE(DeleteSync(g, "a").ok());
  ASSERT_TRUE(DeleteSync(g, "b").ok());
  EXPECT_TRUE(absl::IsNotFound(GetSync(g, "a").status()));
  EXPECT_TRUE(absl::IsNotFound(GetSync(g, "b").status()));
  EXPECT_TRUE(DeleteSync(g, "never-there").ok());
}

TEST_F(GroupTest, RemoteKeysGoToTheOwnerAndNeverToTheLocalLoader) {
  auto peer = std::make_shared<RecordingPeer>();
  int calls = 0;
  Group g(Options(), MapLoader({{"remote1", "x"}, {"local", "y"}}, &calls),
          FakePicker::ByPrefix(peer, "r"), &clock_);
  auto v = GetSync(g, "remote1");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->data, "remote:remote1");
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(GetSync(g, "local")->data, "y");
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(SetSync(g, "r2", "val", 5 * kMinute, true).ok());
  ASSERT_TRUE(DeleteSync(g, "r3").ok());
  EXPECT_EQ(peer->calls,
            (std::vector<std::string>{"get scores remote1", "set scores r2=val ttl=300000 hot",
                                      "delete scores r3"}));
  EXPECT_EQ(g.stats().peer_gets, 1u);
  // Owner-side calls never forward. What they store for a key this node does not hold (a
  // member with another ring sent it) is seen by forwarded reads, not served to a client's
  // read here, which goes to the key's holder.
  absl::Status local = absl::UnknownError("not called");
  g.SetLocal("r9", "mine", kMinute, false, [&](absl::Status s) { local = s; });
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(peer->calls.size(), 3u);
  std::optional<absl::StatusOr<CachedValue>> forwarded;
  g.GetLocal("r9", [&](absl::StatusOr<CachedValue> r) { forwarded = std::move(r); });
  ASSERT_TRUE(forwarded.has_value() && forwarded->ok());
  EXPECT_EQ((*forwarded)->data, "mine");
  EXPECT_EQ(GetSync(g, "r9")->data, "remote:r9");
  EXPECT_EQ(g.stats().replication.strays, 1u);
}

TEST_F(GroupTest, PeerErrorsPropagateAndAreCounted) {
  auto peer = std::make_shared<RecordingPeer>();
  peer->error = absl::UnavailableError("peer svc2 unreachable");
  Group g(Options(), nullptr, FakePicker::ByPrefix(peer, "r"), &clock_);
  const auto r = GetSync(g, "remote");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(g.stats().peer_errors, 1u);
  peer->error = absl::NotFoundError("key not found");
  EXPECT_TRUE(absl::IsNotFound(GetSync(g, "remote").status()));
  EXPECT_EQ(g.stats().peer_errors, 1u);
}

TEST(GroupRegistryTest, FindsGroupsByNameAndRefusesDuplicates) {
  FakeClock clock;
  GroupRegistry registry;
  GroupOptions scores;
  scores.name = "scores";
  ASSERT_TRUE(registry.Add(std::make_unique<Group>(scores, nullptr, nullptr, &clock)).ok());
  EXPECT_EQ(registry.Add(std::make_unique<Group>(scores, nullptr, nullptr, &clock)).code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_NE(registry.Find("scores"), nullptr);
  EXPECT_EQ(registry.Find("scores")->name(), "scores");
  EXPECT_EQ(registry.Find("nope"), nullptr);
  EXPECT_EQ(registry.All().size(), 1u);
}

}  // namespace
}  // namespace nexus
