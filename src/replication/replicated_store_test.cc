#include "replication/replicated_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "support/fake_peers.h"

namespace nexus {
namespace {

using testing::FakePicker;
using testing::RecordingPeer;

constexpr int64_t kMinute = 60'000;

ReplicatedStoreOptions Options() {
  return {.group = "scores", .main_bytes = 1 << 20, .hot_bytes = 256 << 10, .shard_bits = 2};
}

ReplicatedStoreOptions Replicated(size_t r, size_t w) {
  ReplicatedStoreOptions o = Options();
  o.replicas = r;
  o.write_quorum = w;
  return o;
}

absl::Status WriteSync(ReplicatedStore& store, std::string_view key, std::string_view value,
                       UnixMillis deadline, bool hot) {
  absl::Status out = absl::UnknownError("no answer");
  store.Write(key, value, deadline, hot, [&](absl::Status s) { out = std::move(s); });
  return out;
}

absl::Status RemoveSync(ReplicatedStore& store, std::string_view key) {
  absl::Status out = absl::UnknownError("no answer");
  store.Remove(key, [&](absl::Status s) { out = std::move(s); });
  return out;
}

class ReplicatedStoreTest : public ::testing::Test {
 protected:
  FakeClock clock_{1'700'000'000'000};
  UnixMillis In(int64_t ms) { return clock_.NowMillis() + ms; }
};

TEST_F(ReplicatedStoreTest, HotWritesGoToEveryOtherMemberWithTheVersionInTheEntryHeader) {
  auto b = std::make_shared<RecordingPeer>();
  auto c = std::make_shared<RecordingPeer>();
  ReplicatedStore store(Options(), FakePicker::OwnerOfAll({b, c}), &clock_);
  ASSERT_TRUE(WriteSync(store, "k", "v1", In(kMinute), true).ok());
  ASSERT_EQ(b->replicas.size(), 1u);
  ASSERT_EQ(c->replicas.size(), 1u);
  EXPECT_EQ(b->replicas[0].value, "v1");
  EXPECT_EQ(b->replicas[0].version, c->replicas[0].version);
  // The owner's copy: the client's bytes as the value, the pushed version in the header.
  std::string value;
  EntryMeta meta;
  ASSERT_TRUE(store.hot().Get("k", &value, nullptr, &meta));
  EXPECT_EQ(value, "v1");
  EXPECT_EQ(meta.version, b->replicas[0].version);
  EXPECT_FALSE(meta.tombstone);
  EXPECT_EQ(store.main().items(), 0u);
  EXPECT_EQ(store.stats().pushes, 2u);

  // A hot write with R = 2 is only a hot push: every member's copy of it replaces its plain
  // copy (no separate ring push).
  auto d = std::make_shared<RecordingPeer>();
  ReplicatedStore r2(Replicated(2, 2), FakePicker::OwnerOfAll({d}), &clock_);
  ASSERT_TRUE(WriteSync(r2, "hk", "hv", In(kMinute), true).ok());
  ASSERT_EQ(d->replicas.size(), 1u);
  EXPECT_FALSE(d->replicas[0].ring);
  EXPECT_EQ(r2.stats().ring_pushes, 0u);

  // A plain write of a key that is not and never was hot pushes nothing with R = 1: its
  // replica set is the owner alone. Its entry is versioned all the same (a copy handed over on
  // a membership change must lose to a newer write at the receiver).
  ASSERT_TRUE(WriteSync(store, "cold", "c", In(kMinute), false).ok());
  EXPECT_EQ(b->replicas.size(), 1u);
  ASSERT_TRUE(store.main().Get("cold", &value, nullptr, &meta));
  EXPECT_GT(meta.version, b->replicas[0].version);
  EXPECT_FALSE(meta.tombstone);
}

TEST_F(ReplicatedStoreTest, RemovalsOfHotKeysReachEveryMemberAndCountAsInvalidations) {
  auto b = std::make_shared<RecordingPeer>();
  auto c = std::make_shared<RecordingPeer>();
  ReplicatedStore store(Options(), FakePicker::OwnerOfAll({b, c}), &clock_);
  ASSERT_TRUE(WriteSync(store, "k", "v", In(10 * kMinute), true).ok());
  ASSERT_TRUE(RemoveSync(store, "k").ok());
  ASSERT_EQ(c->replicas.size(), 2u);
  EXPECT_TRUE(c->replicas[1].remove);
  EXPECT_GT(c->replicas[1].version, c->replicas[0].version);
  EXPECT_EQ(c->replicas[1].deadline, c->replicas[0].deadline);
  CachedValue out;
  EXPECT_FALSE(store.Lookup("k", &out));
  EXPECT_EQ(store.stats().invalidations, 2u);
  // Removing a key that was never hot pushes nothing.
  ASSERT_TRUE(RemoveSync(store, "never").ok());
  EXPECT_EQ(store.stats().pushes, 4u);
}

TEST_F(ReplicatedStoreTest, AppliedRemovalsAreTombstonesInTheHeaderNotValues) {
  ReplicatedStore store(Options(), std::make_shared<NoPeers>(), &clock_);
  ASSERT_TRUE(store.Apply({.key = "k", .value = "v", .deadline = In(kMinute), .version = 10}));
  ASSERT_TRUE(store.Apply({.key = "k", .deadline = In(kMinute), .version = 11, .remove = true}));
  EntryMeta meta;
  ASSERT_TRUE(store.hot().Peek("k", &meta));
  EXPECT_EQ(meta, (EntryMeta{.version = 11, .tombstone = true}));
  CachedValue out;
  EXPECT_FALSE(store.Lookup("k", &out));
  // A stale copy cannot come back; a newer one does.
  EXPECT_FALSE(store.Apply({.key = "k", .value = "v", .deadline = In(kMinute), .version = 10}));
  EXPECT_TRUE(store.Apply({.key = "k", .value = "v12", .deadline = In(kMinute), .version = 12}));
  ASSERT_TRUE(store.Lookup("k", &out));
  EXPECT_EQ(out.data, "v12");
  EXPECT_EQ(store.stats().applied, 3u);
  EXPECT_EQ(store.stats().stale, 1u);
}

TEST_F(ReplicatedStoreTest, AFillNeverOverwritesAClientsWriteInEitherCache) {
  ReplicatedStore store(Options(), std::make_shared<NoPeers>(), &clock_);
  const CachedValue loaded{.data = "from-origin", .deadline = In(kMinute)};
  // Nothing there: the loaded value is stored and returned.
  EXPECT_EQ(store.Fill("a", loaded), loaded);
  CachedValue out;
  ASSERT_TRUE(store.Lookup("a", &out));
  EXPECT_EQ(out, loaded);
  // A plain write got there first: it wins.
  ASSERT_TRUE(WriteSync(store, "b", "client", In(2 * kMinute), false).ok());
  EXPECT_EQ(store.Fill("b", loaded).data, "client");
  // A hot write got there first: it wins and the key stays in the hot cache only.
  ASSERT_TRUE(WriteSync(store, "c", "hot-client", In(2 * kMinute), true).ok());
  EXPECT_EQ(store.Fill("c", loaded).data, "hot-client");
  EXPECT_FALSE(store.main().Get("c", &out.data));
  // A value too large for a shard is answered but not stored.
  const CachedValue huge{.data = std::string(2 << 20, 'x'), .deadline = In(kMinute)};
  EXPECT_EQ(store.Fill("d", huge).data.size(), huge.data.size());
  EXPECT_FALSE(store.Lookup("d", &out));
}

TEST_F(ReplicatedStoreTest, AJoiningMemberGetsTheLiveHotKeysItOrThisNodeOwns) {
  auto joined = std::make_shared<RecordingPeer>();
  auto third = std::make_shared<RecordingPeer>();
  // "j..." keys are the newcomer's, "t..." the third member's, the rest this node's.
  auto picker = std::make_shared<FakePicker>(std::vector<std::shared_ptr<Peer>>{joined, third},
                                             [&](std::string_view key) -> std::shared_ptr<Peer> {
                                               if (key.starts_with("j")) return joined;
                                               if (key.starts_with("t")) return third;
                                               return nullptr;
                                             });
  ReplicatedStore store(Options(), picker, &clock_);
  // Replicas this node holds (pushed by their owners) and a hot key it owns.
  ASSERT_TRUE(store.Apply({.key = "j1", .value = "a", .deadline = In(kMinute), .version = 5}));
  ASSERT_TRUE(store.Apply({.key = "t1", .value = "b", .deadline = In(kMinute), .version = 6}));
  ASSERT_TRUE(store.Apply({.key = "j2", .deadline = In(kMinute), .version = 7, .remove = true}));
  ASSERT_TRUE(store.Apply({.key = "j3", .value = "gone", .deadline = In(1), .version = 8}));
  ASSERT_TRUE(WriteSync(store, "mine", "m", In(kMinute), true).ok());
  joined->replicas.clear();
  clock_.Advance(1);  // j3 expires

  store.PushTo(joined);
  std::vector<std::string> keys;
  for (const Replica& r : joined->replicas) {
    keys.push_back(r.key);
    EXPECT_FALSE(r.remove);
  }
  std::sort(keys.begin(), keys.end());
  // Not t1 (its owner pushes it), not the tombstone j2, not the expired j3.
  EXPECT_EQ(keys, (std::vector<std::string>{"j1", "mine"}));
  for (const Replica& r : joined->replicas) {
    if (r.key == "j1") {
      EXPECT_EQ(r.version, 5u);  // the version travels with the copy
    }
  }
}

TEST_F(ReplicatedStoreTest, AFailedPushIsCountedButTheWriteIsAcknowledged) {
  auto b = std::make_shared<RecordingPeer>();
  b->replica_error = absl::UnavailableError("peer svc2 unreachable");
  ReplicatedStore store(Options(), FakePicker::OwnerOfAll({b}), &clock_);
  EXPECT_TRUE(WriteSync(store, "k", "v", In(kMinute), true).ok());
  EXPECT_EQ(store.stats().failures, 1u);
}

TEST_F(ReplicatedStoreTest, WithTwoReplicasAWriteReachesTheNextMemberBeforeItsAck) {
  auto b = std::make_shared<RecordingPeer>();
  auto c = std::make_shared<RecordingPeer>();
  // This node owns every key; its replica set of 2 is {this node, b}.
  ReplicatedStore store(Replicated(2, 2), FakePicker::OwnerOfAll({b, c}), &clock_);
  ASSERT_TRUE(WriteSync(store, "k", "v", In(kMinute), false).ok());
  ASSERT_EQ(b->replicas.size(), 1u);
  EXPECT_TRUE(c->replicas.empty());     // not in the key's replica set
  const Replica copy = b->replicas[0];  // a copy: the vector grows below
  EXPECT_TRUE(copy.ring);
  EXPECT_FALSE(copy.remove);
  EXPECT_EQ(copy.value, "v");
  EXPECT_EQ(copy.deadline, In(kMinute));
  // The primary's own copy carries the same version, in its header.
  EntryMeta meta;
  ASSERT_TRUE(store.main().Peek("k", &meta));
  EXPECT_EQ(meta.version, copy.version);
  EXPECT_EQ(store.stats().ring_pushes, 1u);
  EXPECT_EQ(store.stats().under_replicated, 0u);

  // A delete leaves a tombstone here and there.
  ASSERT_TRUE(RemoveSync(store, "k").ok());
  ASSERT_EQ(b->replicas.size(), 2u);
  EXPECT_TRUE(b->replicas[1].remove && b->replicas[1].ring);
  EXPECT_GT(b->replicas[1].version, copy.version);
  ASSERT_TRUE(store.main().Peek("k", &meta));
  EXPECT_TRUE(meta.tombstone);
  CachedValue out;
  EXPECT_FALSE(store.Lookup("k", &out));
}

TEST_F(ReplicatedStoreTest, AWriteThatReachesFewerThanWMembersFailsClearly) {
  auto down = std::make_shared<testing::UnreachablePeer>();
  ReplicatedStore strict(Replicated(2, 2), FakePicker::OwnerOfAll({down}), &clock_);
  const absl::Status s = WriteSync(strict, "k", "v", In(kMinute), false);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("stored on 1 of 2 required members: peer down"),
            std::string_view::npos)
      << s;
  EXPECT_EQ(strict.stats().quorum_failures, 1u);
  EXPECT_EQ(strict.stats().under_replicated, 1u);
  EXPECT_EQ(strict.stats().ring_failures, 1u);

  // W = 1: acknowledged at once with this node's copy, and counted as under-replicated.
  ReplicatedStore lenient(Replicated(2, 1), FakePicker::OwnerOfAll({down}), &clock_);
  EXPECT_TRUE(WriteSync(lenient, "k", "v", In(kMinute), false).ok());
  EXPECT_EQ(lenient.stats().under_replicated, 1u);
  EXPECT_EQ(lenient.stats().quorum_failures, 0u);

  // A cluster smaller than R cannot store W copies.
  ReplicatedStore alone(Replicated(2, 2), std::make_shared<NoPeers>(), &clock_);
  EXPECT_NE(WriteSync(alone, "k", "v", In(kMinute), false)
                .message()
                .find("stored on 1 of 2 required members: no other member holds the key"),
            std::string_view::npos);
}

TEST_F(ReplicatedStoreTest, AnUnreachableHolderIsReplacedByTheNextMemberForThatWrite) {
  // Ring order: this node, the dead holder, then two spares (the first one down as well).
  auto dead = std::make_shared<testing::UnreachablePeer>();
  auto spare_down = std::make_shared<testing::UnreachablePeer>();
  auto spare = std::make_shared<RecordingPeer>();
  ReplicatedStore store(Replicated(2, 2), FakePicker::OwnerOfAll({dead, spare_down, spare}),
                        &clock_);
  ASSERT_TRUE(WriteSync(store, "k", "v", In(kMinute), false).ok());
  // The substitute got the ring copy (it keeps it as a hint for the holder) and its copy
  // counted toward W = 2.
  ASSERT_EQ(spare->replicas.size(), 1u);
  EXPECT_TRUE(spare->replicas[0].ring);
  EXPECT_EQ(spare->replicas[0].value, "v");
  EXPECT_EQ(dead->calls(), 1);
  EXPECT_EQ(spare_down->calls(), 1);
  EXPECT_EQ(store.stats().substitutes, 2u);
  EXPECT_EQ(store.stats().quorum_failures, 0u);
  EXPECT_EQ(store.stats().under_replicated, 0u);
  // Deletes go the same way.
  ASSERT_TRUE(RemoveSync(store, "k").ok());
  ASSERT_EQ(spare->replicas.size(), 2u);
  EXPECT_TRUE(spare->replicas[1].remove);

  // Every member beyond the holders down as well: the write fails, naming each failure.
  ReplicatedStore none(Replicated(2, 2), FakePicker::OwnerOfAll({dead, spare_down}), &clock_);
  const absl::Status s = WriteSync(none, "k", "v", In(kMinute), false);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("stored on 1 of 2 required members: peer down: connection refused; "
                             "peer down: connection refused"),
            std::string_view::npos)
      << s;
}

TEST_F(ReplicatedStoreTest, AMemberThatBecameAHolderMeanwhileStandsInForTheDeadOne) {
  // The ring drops the dead holder while the write's push to it fails: the member that took its
  // place is now one of the key's two holders, not beyond them, and gets the write.
  struct Members {
    std::shared_ptr<Peer> dead, next;
    bool dropped = false;
  };
  class Picker final : public PeerPicker {
   public:
    explicit Picker(Members* ring) : ring_(ring) {}
    std::shared_ptr<Peer> PickPeer(std::string_view) override { return nullptr; }
    ReplicaSet PickReplicas(std::string_view, size_t) override {
      return {.generation = ring_->dropped ? 2u : 1u,
              .members = {nullptr, ring_->dropped ? ring_->next : ring_->dead}};
    }

   private:
    Members* const ring_;
  };
  class Dying final : public testing::UnusedPeer {
   public:
    explicit Dying(Members* ring) : ring_(ring) {}
    void Replicate(std::string_view, const Replica&, StatusCallback done) override {
      ring_->dropped = true;
      done(absl::UnavailableError("connection refused"));
    }

   private:
    Members* const ring_;
  };
  Members ring;
  ring.dead = std::make_shared<Dying>(&ring);
  auto next = std::make_shared<RecordingPeer>();
  ring.next = next;
  ReplicatedStore store(Replicated(2, 2), std::make_shared<Picker>(&ring), &clock_);
  ASSERT_TRUE(WriteSync(store, "k", "v", In(kMinute), false).ok());
  ASSERT_EQ(next->replicas.size(), 1u);
  EXPECT_EQ(next->replicas[0].value, "v");
  EXPECT_EQ(store.stats().substitutes, 1u);
}

TEST_F(ReplicatedStoreTest, RingCopiesKeepTheNewestVersionInTheMainCache) {
  ReplicatedStore store(Replicated(2, 2), std::make_shared<NoPeers>(), &clock_);
  const auto copy = [&](std::string value, uint64_t version, bool remove = false) {
    return Replica{.key = "k",
                   .value = std::move(value),
                   .deadline = In(kMinute),
                   .version = version,
                   .remove = remove,
                   .ring = true};
  };
  EXPECT_TRUE(store.Apply(copy("v2", 20)));
  EXPECT_FALSE(store.Apply(copy("v1", 10)));  // older: a replica never goes back
  std::string value;
  ASSERT_TRUE(store.main().Get("k", &value));
  EXPECT_EQ(value, "v2");
  EXPECT_EQ(store.hot().items(), 0u);  // a ring copy is not a hot copy
  EXPECT_TRUE(store.Apply(copy("", 30, true)));
  EXPECT_FALSE(store.Apply(copy("v2", 25)));  // the tombstone holds
  CachedValue out;
  EXPECT_FALSE(store.Lookup("k", &out));
  EXPECT_EQ(store.stats().ring_applied, 2u);
  EXPECT_EQ(store.stats().stale, 2u);
  // A write here afterwards (this node acting as primary) versions above what it has seen.
  ASSERT_TRUE(WriteSync(store, "k", "v4", In(kMinute), false).code() ==
              absl::StatusCode::kUnavailable);  // no other member: W = 2 not met, but stored
  EntryMeta meta;
  ASSERT_TRUE(store.main().Peek("k", &meta));
  EXPECT_GT(meta.version, 30u);
}

TEST_F(ReplicatedStoreTest, TheNewestVersionWinsAcrossTheTwoCaches) {
  ReplicatedStore store(Replicated(2, 2), std::make_shared<NoPeers>(), &clock_);
  // The key was made hot (version 20) after a plain write (version 10) whose ring copy arrives
  // late: it must not shadow the hot copy (reads look in the main cache first).
  ASSERT_TRUE(store.Apply({.key = "k", .value = "hot", .deadline = In(kMinute), .version = 20}));
  EXPECT_FALSE(store.Apply(
      {.key = "k", .value = "plain", .deadline = In(kMinute), .version = 10, .ring = true}));
  CachedValue out;
  ASSERT_TRUE(store.Lookup("k", &out));
  EXPECT_EQ(out.data, "hot");
  // A key made hot after its plain write: the hot copy replaces the ring copy here.
  ASSERT_TRUE(store.Apply(
      {.key = "h", .value = "plain", .deadline = In(kMinute), .version = 50, .ring = true}));
  ASSERT_TRUE(store.Apply({.key = "h", .value = "hot", .deadline = In(kMinute), .version = 60}));
  ASSERT_TRUE(store.Lookup("h", &out));
  EXPECT_EQ(out.data, "hot");
  EXPECT_FALSE(store.main().Get("h", &out.data));
  // And the other way: a late hot copy older than the ring copy here is ignored.
  ASSERT_TRUE(store.Apply(
      {.key = "j", .value = "plain", .deadline = In(kMinute), .version = 40, .ring = true}));
  EXPECT_FALSE(store.Apply({.key = "j", .value = "hot", .deadline = In(kMinute), .version = 30}));
  ASSERT_TRUE(store.Lookup("j", &out));
  EXPECT_EQ(out.data, "plain");
}

TEST_F(ReplicatedStoreTest, ALoadedValueIsVersionedAndCopiedWithoutWaiting) {
  auto b = std::make_shared<RecordingPeer>();
  ReplicatedStore store(Replicated(2, 2), FakePicker::OwnerOfAll({b}), &clock_);
  const CachedValue loaded{.data = "from-origin", .deadline = In(kMinute)};
  EXPECT_EQ(store.Fill("k", loaded), loaded);
  ASSERT_EQ(b->replicas.size(), 1u);
  EXPECT_EQ(b->replicas[0].value, "from-origin");
  EXPECT_TRUE(b->replicas[0].ring);
  EntryMeta meta;
  ASSERT_TRUE(store.main().Peek("k", &meta));
  EXPECT_EQ(meta.version, b->replicas[0].version);
}

// Answers Replicate from another thread, later.
class SlowPeer final : public testing::UnusedPeer {
 public:
  ~SlowPeer() override {
    for (std::thread& t : threads_) t.join();
  }
  void Replicate(std::string_view, const Replica&, StatusCallback done) override {
    std::lock_guard<std::mutex> lock(mu_);
    threads_.emplace_back([done = std::move(done)]() mutable {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      done(absl::DeadlineExceededError("slow"));
    });
  }

 private:
  std::mutex mu_;
  std::vector<std::thread> threads_;
};

TEST_F(ReplicatedStoreTest, DestructionWaitsForPushesStillInFlight) {
  auto slow = std::make_shared<SlowPeer>();
  absl::Notification acked;
  {
    ReplicatedStore store(Options(), FakePicker::OwnerOfAll({slow}), &clock_);
    store.Write("k", "v", In(kMinute), true, [&](absl::Status s) {
      EXPECT_TRUE(s.ok()) << s;
      acked.Notify();
    });
    EXPECT_FALSE(acked.HasBeenNotified());  // waits for the replica's answer
    // Destroyed here, while the push is still running: its callback must not touch freed
    // memory (ASan checks this run).
  }
  EXPECT_TRUE(acked.HasBeenNotified());
}

}  // namespace
}  // namespace nexus
