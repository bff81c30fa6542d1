#include "replication/handoff.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "support/fake_peers.h"
#include "support/wait.h"

namespace nexus {
namespace {

using testing::UnusedPeer;
using testing::WaitFor;

constexpr int64_t kHour = 3'600'000;

class Member;

// A member as another member reaches it: pushes and handed-over copies go straight into its
// store (Apply), or fail as a refused connection does while it is down.
class LocalPeer final : public UnusedPeer {
 public:
  explicit LocalPeer(Member* member) : member_(member) {}
  void Replicate(std::string_view group, const Replica& r, StatusCallback done) override;
  std::atomic<bool> down{false};    // answers as a refused connection
  std::atomic<bool> refuse{false};  // answers, but takes nothing

 private:
  Member* const member_;
};

// Guards the directory of members: the test thread adds and replaces members while the
// members' handoff threads look them up.
std::mutex& DirectoryMutex() {
  static std::mutex mu;
  return mu;
}

// One member's view of the cluster: a ring of its own (views change one member at a time, as
// etcd's watch delivers them) over the shared directory of members.
class ViewPicker final : public PeerPicker {
 public:
  ViewPicker(std::string self, std::map<std::string, std::shared_ptr<LocalPeer>>* directory)
      : self_(std::move(self)), directory_(directory) {
    ring_.Add(self_);
  }
  void SetView(const std::vector<std::string>& names) { ring_.Reset(names); }

  std::shared_ptr<Peer> PickPeer(std::string_view key) override {
    const std::optional<std::string> owner = ring_.Owner(key);
    return !owner || *owner == self_ ? nullptr : PeerNamed(*owner);
  }
  ReplicaSet PickReplicas(std::string_view key, size_t n) override {
    ReplicaSet out;
    const std::shared_ptr<const RingSnapshot> ring = ring_.Snapshot();
    out.generation = ring->generation();
    for (std::string_view name : ring->Successors(key, n)) {
      out.members.push_back(name == self_ ? nullptr : PeerNamed(name));
    }
    return out;
  }
  std::shared_ptr<const RingSnapshot> Ring() override { return ring_.Snapshot(); }
  std::string_view SelfName() const override { return self_; }
  std::shared_ptr<const RingSnapshot> RingWithout(std::string_view name) override {
    std::vector<std::string> others;
    for (const std::string& m : ring_.Snapshot()->members()) {
      if (m != name) others.push_back(m);
    }
    HashRing ring;
    ring.Reset(others);
    return ring.Snapshot();
  }
  std::shared_ptr<Peer> PeerNamed(std::string_view name) override {
    if (name == self_) return nullptr;
    std::lock_guard<std::mutex> lock(DirectoryMutex());
    auto it = directory_->find(std::string(name));
    return it == directory_->end() ? nullptr : it->second;
  }

 private:
  const std::string self_;
  std::map<std::string, std::shared_ptr<LocalPeer>>* const directory_;
  HashRing ring_;
};

class Member {
 public:
  Member(std::string name, size_t replicas, HandoffOptions handoff, const Clock* clock,
         std::map<std::string, std::shared_ptr<LocalPeer>>* directory)
      : name(std::move(name)),
        picker(std::make_shared<ViewPicker>(this->name, directory)),
        store({.group = "scores",
               .main_bytes = 16 << 20,
               .hot_bytes = 1 << 20,
               .shard_bits = 2,
               .replicas = replicas,
               .write_quorum = 1},
              picker, clock),
        handoff(handoff, &store, clock) {}

  std::string Value(const std::string& key) {
    CachedValue v;
    return store.main().Get(key, &v.data, &v.deadline) ? v.data : "";
  }

  const std::string name;
  std::shared_ptr<ViewPicker> picker;
  ReplicatedStore store;
  Handoff handoff;
};

void LocalPeer::Replicate(std::string_view, const Replica& r, StatusCallback done) {
  if (down) return done(absl::UnavailableError("connection refused"));
  if (refuse) return done(absl::InvalidArgumentError("refused"));
  member_->store.Apply(r);
  done(absl::OkStatus());
}

class HandoffTest : public ::testing::Test {
 protected:
  // Every member's thread stops before any member goes: a walk calls the others directly.
  void TearDown() override {
    for (auto& m : members_) m->handoff.Stop();
  }
  Member& Add(const std::string& name) {
    members_.push_back(std::make_unique<Member>(name, replicas_, options_, &clock_, &directory_));
    std::lock_guard<std::mutex> lock(DirectoryMutex());
    directory_[name] = std::make_shared<LocalPeer>(members_.back().get());
    return *members_.back();
  }
  // A restart: the member comes back empty, with a ring of its own only.
  Member& Restart(const std::string& name) {
    for (auto& m : members_) {
      if (m->name == name) {
        auto fresh = std::make_unique<Member>(name, replicas_, options_, &clock_, &directory_);
        {
          std::lock_guard<std::mutex> lock(DirectoryMutex());
          directory_[name] = std::make_shared<LocalPeer>(fresh.get());
        }
        // The old one may still be called through a peer taken before the swap: it stays
        // (stopped) until the test ends.
        m->handoff.Stop();
        retired_.push_back(std::exchange(m, std::move(fresh)));
        return *m;
      }
    }
    throw std::out_of_range(name);
  }
  Member& Get(const std::string& name) {
    for (auto& m : members_) {
      if (m->name == name) return *m;
    }
    throw std::out_of_range(name);
  }
  // Every listed member adopts `names` as the membership (and is told).
  void View(const std::vector<std::string>& names, const std::vector<std::string>& told) {
    for (const std::string& n : told) {
      Get(n).picker->SetView(names);
      Get(n).handoff.RingChanged();
    }
  }
  std::map<std::string, uint64_t> Walks(const std::vector<std::string>& names) {
    std::map<std::string, uint64_t> out;
    for (const std::string& n : names) out[n] = Get(n).handoff.stats().walks;
    return out;
  }
  // Each member finished a walk since `before`, and none has a walk running or strays waiting.
  void WaitWalked(const std::map<std::string, uint64_t>& before) {
    ASSERT_TRUE(WaitFor([&] {
      for (const auto& [n, walks] : before) {
        Member& m = Get(n);
        if (m.handoff.stats().walks <= walks || m.handoff.stats().backlog != 0 ||
            m.store.verifying_holders()) {
          return false;
        }
      }
      return true;
    })) << "handoff did not settle";
  }
  // Starts `names`, gives them the membership `names` and waits for their first walks.
  void Form(const std::vector<std::string>& names) {
    for (const auto& n : names) Add(n).handoff.Start();
    const auto before = Walks(names);
    View(names, names);
    WaitWalked(before);
  }
  // Writes `count` keys through their primaries under `names`' common view.
  void WriteAll(int count, const std::string& prefix = "k") {
    for (int i = 0; i < count; ++i) {
      const std::string key = prefix + std::to_string(i);
      const std::string owner(*members_.front()->picker->Ring()->OwnerView(key));
      absl::Status status = absl::UnknownError("no answer");
      Get(owner).store.Write(key, "v" + std::to_string(i), clock_.NowMillis() + kHour, false,
                             [&](absl::Status s) { status = s; });
      ASSERT_TRUE(status.ok()) << status;
    }
  }
  // a, b and c with 3,000 keys written, and the ring a leaves them with.
  std::shared_ptr<const RingSnapshot> FormABCWithKeysAsALeaves() {
    Form({"a", "b", "c"});
    WriteAll(3000);
    HashRing without;
    without.Reset({"b", "c"});
    return without.Snapshot();
  }
  // How many members hold a live value for `key`.
  int Copies(const std::string& key) {
    int n = 0;
    for (auto& m : members_) n += !m->Value(key).empty();
    return n;
  }

  FakeClock clock_{1'700'000'000'000};
  size_t replicas_ = 1;
  HandoffOptions options_{.rate_bytes = 0,
                          .stray_delay = std::chrono::milliseconds(0),
                          .poll = std::chrono::milliseconds(5)};
  std::map<std::string, std::shared_ptr<LocalPeer>> directory_;
  std::vector<std::unique_ptr<Member>> members_;
  std::vector<std::unique_ptr<Member>> retired_;  // replaced by Restart
};

TEST_F(HandoffTest, AJoinMovesTheNewcomersRangeToItAndTheOldHoldersDropIt) {
  const std::vector<std::string> abc = {"a", "b", "c"};
  Form(abc);
  WriteAll(3000);
  Member& d = Add("d");
  d.handoff.Start();
  const std::vector<std::string> abcd = {"a", "b", "c", "d"};
  const auto before = Walks(abcd);
  View(abcd, abcd);
  WaitWalked(before);
  size_t moved = 0;
  for (int i = 0; i < 3000; ++i) {
    const std::string key = "k" + std::to_string(i);
    const std::string owner(*d.picker->Ring()->OwnerView(key));
    ASSERT_EQ(Get(owner).Value(key), "v" + std::to_string(i)) << key << " on " << owner;
    ASSERT_EQ(Copies(key), 1) << key;  // the old owner dropped its copy
    moved += owner == "d";
  }
  // About a quarter of the keys moved, all of them to d, each sent once.
  EXPECT_GT(moved, 500u);
  EXPECT_EQ(d.store.stats().handoff_received, moved);
  uint64_t sent = 0;
  uint64_t dropped = 0;
  for (const auto& n : abc) {
    sent += Get(n).handoff.stats().keys_sent;
    dropped += Get(n).handoff.stats().dropped;
  }
  EXPECT_EQ(sent, moved);
  EXPECT_EQ(dropped, moved);
}

TEST_F(HandoffTest, SurvivorsOfADeathRestoreRCopiesAndARestartGetsItsRangeBack) {
  replicas_ = 2;
  const std::vector<std::string> abc = {"a", "b", "c"};
  Form(abc);
  WriteAll(2000);
  for (int i = 0; i < 2000; ++i) ASSERT_EQ(Copies("k" + std::to_string(i)), 2);

  // c dies (kill -9): its copies are gone; the survivors learn it from the membership.
  directory_["c"]->down = true;
  auto before = Walks({"a", "b"});
  View({"a", "b"}, {"a", "b"});
  WaitWalked(before);
  for (int i = 0; i < 2000; ++i) {
    const std::string key = "k" + std::to_string(i);
    ASSERT_EQ(Get("a").Value(key), "v" + std::to_string(i)) << key;
    ASSERT_EQ(Get("b").Value(key), "v" + std::to_string(i)) << key;
  }

  // c comes back empty and joins: it gets its ranges, and whoever stopped holding them drops
  // them, so every key again has exactly R copies, on its holders.
  Restart("c").handoff.Start();
  before = Walks(abc);
  View(abc, abc);
  WaitWalked(before);
  const std::shared_ptr<const RingSnapshot> ring = Get("a").picker->Ring();
  for (int i = 0; i < 2000; ++i) {
    const std::string key = "k" + std::to_string(i);
    ASSERT_EQ(Copies(key), 2) << key;
    for (std::string_view holder : ring->Successors(key, 2)) {
      ASSERT_EQ(Get(std::string(holder)).Value(key), "v" + std::to_string(i)) << key;
    }
  }
}

TEST_F(HandoffTest, ANewerVersionAtTheReceiverWinsAndTombstonesTravel) {
  const std::vector<std::string> ab = {"a", "b"};
  Form(ab);
  WriteAll(500);
  Member& c = Add("c");
  const std::vector<std::string> abc = {"a", "b", "c"};
  // c knows the new membership first and takes writes and deletes of its keys before the
  // others hand them over.
  c.picker->SetView(abc);
  std::vector<std::string> rewritten;
  std::vector<std::string> deleted;
  for (int i = 0; i < 500; ++i) {
    const std::string key = "k" + std::to_string(i);
    if (*c.picker->Ring()->OwnerView(key) != "c") continue;
    clock_.Advance(1);
    if (rewritten.size() <= deleted.size()) {
      c.store.Write(key, "new", clock_.NowMillis() + kHour, false, [](absl::Status) {});
      rewritten.push_back(key);
    } else {
      c.store.Remove(key, [](absl::Status) {});
      deleted.push_back(key);
    }
  }
  ASSERT_FALSE(rewritten.empty());
  ASSERT_FALSE(deleted.empty());
  const auto before = Walks(ab);
  View(abc, ab);
  WaitWalked(before);
  for (const std::string& key : rewritten) EXPECT_EQ(c.Value(key), "new") << key;
  for (const std::string& key : deleted) {
    EXPECT_EQ(Copies(key), 0) << key;  // the old copy did not bring it back
  }
  EXPECT_GT(c.store.stats().stale, 0u);
}

TEST_F(HandoffTest, ALeavingMemberDrainsToTheNewHoldersThenSendsOnlyWhatChangedSince) {
  const std::shared_ptr<const RingSnapshot> after = FormABCWithKeysAsALeaves();
  Member& a = Get("a");
  const size_t owned = a.store.main().items();
  ASSERT_GT(owned, 500u);
  const DrainResult first = a.handoff.Drain(after, std::chrono::seconds(30));
  EXPECT_TRUE(first.complete);
  EXPECT_EQ(first.send_failures, 0u);
  EXPECT_EQ(first.keys_sent, owned);
  // a keeps serving meanwhile: its copies stay until it exits.
  EXPECT_EQ(a.store.main().items(), owned);
  for (int i = 0; i < 3000; ++i) {
    const std::string key = "k" + std::to_string(i);
    const std::string holder(*after->OwnerView(key));
    ASSERT_EQ(Get(holder).Value(key), "v" + std::to_string(i)) << key;
  }
  // A write that reached a after the first pass goes out with the second, alone.
  std::string late;
  for (int i = 0; i < 3000 && late.empty(); ++i) {
    if (*a.picker->Ring()->OwnerView("k" + std::to_string(i)) == "a")
      late = "k" + std::to_string(i);
  }
  clock_.Advance(1);
  a.store.Write(late, "late", clock_.NowMillis() + kHour, false, [](absl::Status) {});
  const DrainResult second = a.handoff.Drain(after, std::chrono::seconds(30), first.watermark);
  EXPECT_TRUE(second.complete);
  EXPECT_EQ(second.keys_sent, 1u);
  EXPECT_EQ(Get(std::string(*after->OwnerView(late))).Value(late), "late");
}

TEST_F(HandoffTest, DrainedCopiesOutlastTheReceiversWalksUntilTheirRingDropsTheLeaver) {
  const std::shared_ptr<const RingSnapshot> after = FormABCWithKeysAsALeaves();
  Member& a = Get("a");
  const DrainResult drained = a.handoff.Drain(after, std::chrono::seconds(30));
  ASSERT_TRUE(drained.complete);
  ASSERT_GT(drained.keys_sent, 500u);
  // b and c still have a in their rings: the copies are early, not served yet.
  for (const char* n : {"b", "c"}) EXPECT_TRUE(Get(n).store.verifying_holders()) << n;
  // A walk by that ring on each of them (here the one that ends a transition, as when an
  // earlier change settles while a drains) keeps the early copies.
  for (const char* n : {"b", "c"}) {
    Get(n).handoff.RingChanged();
    ASSERT_TRUE(WaitFor([&] { return !Get(n).store.in_transition(); })) << n;
    EXPECT_EQ(Get(n).handoff.stats().dropped, 0u) << n;
  }
  // a leaves; b and c see it: every key is on its holder, once.
  const auto before = Walks({"b", "c"});
  a.handoff.Stop();
  View({"b", "c"}, {"b", "c"});
  WaitWalked(before);
  for (int i = 0; i < 3000; ++i) {
    const std::string key = "k" + std::to_string(i);
    ASSERT_EQ(Get(std::string(*after->OwnerView(key))).Value(key), "v" + std::to_string(i)) << key;
    ASSERT_EQ(Copies(key) - !a.Value(key).empty(), 1) << key;
  }
}

TEST_F(HandoffTest, AStrayIsDeliveredToItsHolderAndNotServedMeanwhile) {
  const std::vector<std::string> ab = {"a", "b"};
  for (const auto& n : ab) Add(n);
  View(ab, ab);
  Member& a = Get("a");
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    if (*a.picker->Ring()->OwnerView("s" + std::to_string(i)) == "b") key = "s" + std::to_string(i);
  }
  // A member with an older view sends a a write for a key b holds.
  a.store.Write(key, "stray", clock_.NowMillis() + kHour, false, [](absl::Status) {});
  EXPECT_EQ(a.store.stats().strays, 1u);
  CachedValue v;
  EXPECT_FALSE(a.store.Lookup(key, &v, /*held_only=*/true));  // not served to a client here
  EXPECT_TRUE(a.store.Lookup(key, &v, /*held_only=*/false));  // a forwarded read still sees it
  a.handoff.Start();
  ASSERT_TRUE(WaitFor([&] { return Get("b").Value(key) == "stray" && a.Value(key).empty(); }));
  ASSERT_TRUE(WaitFor([&] { return !a.store.verifying_holders(); }));
}

TEST_F(HandoffTest, CopiesForAnUnreachableHolderWaitAsHintsAndRefusedOnesAreDropped) {
  Member& a = Add("a");
  View({"a"}, {"a"});
  WriteAll(300);  // all on a
  Add("c");
  directory_["c"]->down = true;
  a.handoff.Start();
  View({"a", "c"}, {"a"});
  // c's share cannot be delivered: a keeps it, as hints, and does not serve it meanwhile.
  ASSERT_TRUE(WaitFor([&] { return a.handoff.stats().walks == 1 && a.handoff.stats().hints > 0; }));
  const uint64_t moved = a.handoff.stats().hints;
  EXPECT_EQ(a.store.main().items(), 300u);
  EXPECT_TRUE(a.store.verifying_holders());
  EXPECT_GT(a.handoff.stats().send_failures, 0u);
  // c answers again: every hint reaches it and a drops its copies.
  directory_["c"]->down = false;
  ASSERT_TRUE(
      WaitFor([&] { return a.handoff.stats().hints == 0 && !a.store.verifying_holders(); }));
  EXPECT_EQ(Get("c").store.main().items(), moved);
  EXPECT_EQ(a.store.main().items(), 300u - moved);
  EXPECT_EQ(a.handoff.stats().dropped, moved);

  // A member that answers but refuses copies (not a transport failure): dropped at once,
  // counted, never served here again.
  Add("d");
  directory_["d"]->refuse = true;
  const auto before = Walks({"a"});
  View({"a", "c", "d"}, {"a"});
  WaitWalked(before);
  const HandoffStats s = a.handoff.stats();
  EXPECT_EQ(s.hints, 0u);
  EXPECT_GT(s.dropped, moved);
  EXPECT_EQ(Get("d").store.main().items(), 0u);
}

TEST_F(HandoffTest, ASubstituteKeepsAWriteForAnUnreachableHolderAndHandsItOverLater) {
  replicas_ = 2;
  const std::vector<std::string> abc = {"a", "b", "c"};
  Form(abc);
  // A key whose holders are a (primary) and b; b is unreachable but still in every ring.
  Member& a = Get("a");
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    const std::string k = "h" + std::to_string(i);
    const auto holders = a.picker->Ring()->Successors(k, 2);
    if (holders[0] == "a" && holders[1] == "b") key = k;
  }
  directory_["b"]->down = true;
  absl::Status status = absl::UnknownError("no answer");
  // W = 2 (the store's quorum here is 1; the sloppy quorum is what replicated_store_test
  // checks): c stands in for b.
  a.store.Write(key, "hinted", clock_.NowMillis() + kHour, false,
                [&](absl::Status s) { status = s; });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(a.store.stats().substitutes, 1u);
  Member& c = Get("c");
  EXPECT_EQ(c.Value(key), "hinted");
  // c keeps it while b cannot take it, and does not serve it to its own clients.
  ASSERT_TRUE(WaitFor([&] { return c.handoff.stats().hints == 1; }));
  CachedValue v;
  EXPECT_FALSE(c.store.Lookup(key, &v, /*held_only=*/true));
  EXPECT_EQ(c.Value(key), "hinted");
  // b answers again: the hint reaches it, and c drops its copy.
  directory_["b"]->down = false;
  ASSERT_TRUE(WaitFor([&] { return Get("b").Value(key) == "hinted" && c.Value(key).empty(); }));
  ASSERT_TRUE(
      WaitFor([&] { return c.handoff.stats().hints == 0 && !c.store.verifying_holders(); }));
}

TEST_F(HandoffTest, AMemberThatRestartedWithinItsLeaseGetsItsCopiesAgain) {
  replicas_ = 2;
  const std::vector<std::string> abc = {"a", "b", "c"};
  Form(abc);
  WriteAll(1500);
  // c is killed and back under the same name before anyone saw it leave: same ring, empty c.
  Member& c = Restart("c");
  c.handoff.Start();
  c.picker->SetView(abc);
  const auto before = Walks({"a", "b"});
  for (const char* n : {"a", "b"}) Get(n).handoff.Resync("c");
  WaitWalked(before);
  const std::shared_ptr<const RingSnapshot> ring = Get("a").picker->Ring();
  size_t held_by_c = 0;
  for (int i = 0; i < 1500; ++i) {
    const std::string key = "k" + std::to_string(i);
    ASSERT_EQ(Copies(key), 2) << key;
    for (std::string_view holder : ring->Successors(key, 2)) {
      ASSERT_EQ(Get(std::string(holder)).Value(key), "v" + std::to_string(i)) << key;
      held_by_c += holder == "c";
    }
  }
  EXPECT_EQ(c.store.stats().handoff_received, held_by_c);
}

TEST_F(HandoffTest, ATransitionAfterTheLastOnesReadsSettledReadsFromTheRingBeforeIt) {
  // A rolling restart: `a` came back (its reads follow the ring without it), the ring settled
  // (reads follow the current ring again), and then `b` leaves before the transition is over.
  // The new transition reads from the ring before b left, where a holds the key and every
  // write since went: not from the ring without a (whose holders took none of those writes;
  // a rolling restart with R = 2 read stale copies there). No handoff thread runs: the
  // transitions are driven by hand.
  replicas_ = 2;
  for (const char* n : {"a", "b", "c"}) Add(n).picker->SetView({"a", "b", "c"});
  Member& a = Get("a");
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    const std::string k = "k" + std::to_string(i);
    const auto holders = a.picker->Ring()->Successors(k, 2);
    if (holders[0] == "b" && holders[1] == "a") key = k;
  }
  absl::Status status = absl::UnknownError("no answer");
  a.store.Write(key, "newest", clock_.NowMillis() + kHour, false,
                [&](absl::Status s) { status = s; });
  ASSERT_TRUE(status.ok()) << status;
  CachedValue v;

  a.store.BeginTransition(a.picker->RingWithout("a"), /*replace=*/true);  // Rejoined
  EXPECT_FALSE(a.store.Lookup(key, &v, /*held_only=*/true)) << "read from the ring without a";
  // b leaves while reads still follow the ring without a: that ring is kept.
  a.store.BeginTransition(a.picker->Ring());
  EXPECT_FALSE(a.store.Lookup(key, &v, /*held_only=*/true));

  ASSERT_TRUE(a.store.EndFormerReads());  // settled: reads follow the current ring
  ASSERT_TRUE(a.store.Lookup(key, &v, /*held_only=*/true));
  a.store.BeginTransition(a.picker->Ring());  // RingChanging: the ring a placed copies by
  a.picker->SetView({"a", "c"});
  ASSERT_TRUE(a.store.Lookup(key, &v, /*held_only=*/true)) << "read from the ring without a";
  EXPECT_EQ(v.data, "newest");
}

TEST_F(HandoffTest, ARejoinThatTakesLongDoesNotSettleBeforeTheRegistration) {
  // A node cut off from etcd tries to register again (Rejoining) and the attempt hangs until
  // the partition heals: however long that takes, its reads keep following the ring without
  // it until it registered (Rejoined), and only then does the transition settle.
  replicas_ = 2;
  options_.stray_delay = std::chrono::milliseconds(1000);
  for (const char* n : {"a", "b", "c"}) Add(n).picker->SetView({"a", "b", "c"});
  Member& a = Get("a");
  a.handoff.Start();
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    const std::string k = "k" + std::to_string(i);
    if (a.picker->Ring()->Successors(k, 2)[1] == "a") key = k;
  }
  absl::Status status = absl::UnknownError("no answer");
  a.store.Write(key, "mine", clock_.NowMillis() + kHour, false,
                [&](absl::Status s) { status = s; });
  ASSERT_TRUE(status.ok()) << status;
  CachedValue v;
  a.handoff.Rejoining();
  clock_.Advance(10'000);  // ten stray delays: a transition would have settled twice over
  // (Give the handoff thread many turns.)
  for (int i = 0; i < 20; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(a.store.in_transition());
  EXPECT_FALSE(a.store.Lookup(key, &v, /*held_only=*/true)) << "read from the ring without a";
  a.handoff.Rejoined();
  clock_.Advance(2'000);
  ASSERT_TRUE(WaitFor([&] { return !a.store.in_transition(); })) << "the rejoin never settled";
  EXPECT_TRUE(a.store.Lookup(key, &v, /*held_only=*/true));
}

TEST_F(HandoffTest, ADrainDoesNotWaitForASlowBackgroundWalk) {
  options_.rate_bytes = 2000;  // bytes per second: the join's walk below takes a while
  options_.batch_entries = 8;
  Member& a = Add("a");
  View({"a"}, {"a"});
  WriteAll(400);
  Add("c");
  a.handoff.Start();
  View({"a", "c"}, {"a"});
  ASSERT_TRUE(WaitFor([&] { return a.handoff.stats().keys_sent > 0; }));
  // SIGTERM now: the drain runs at once (the walk gives way), within its budget.
  HashRing without;
  without.Reset({"c"});
  const DrainResult drained = a.handoff.Drain(without.Snapshot(), std::chrono::milliseconds(300));
  EXPECT_EQ(a.handoff.stats().walks, 0u) << "the drain waited for the background walk";
  EXPECT_GT(drained.keys_sent, 0u);
  // The background walk then starts again and finishes.
  ASSERT_TRUE(WaitFor([&] { return a.handoff.stats().walks == 1; }, std::chrono::seconds(60)));
}

}  // namespace
}  // namespace nexus
