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

  // A plain write of a key that is not and never was hot pushes nothing: its replica set is
  // the owner alone, and its entry carries no version bytes.
  ASSERT_TRUE(WriteSync(store, "cold", "c", In(kMinute), false).ok());
  EXPECT_EQ(b->replicas.size(), 1u);
  ASSERT_TRUE(store.main().Get("cold", &value, nullptr, &meta));
  EXPECT_EQ(meta, EntryMeta{});
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
