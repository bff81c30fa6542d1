#include "support/history.h"

#include <gtest/gtest.h>

namespace nexus::testing {
namespace {

using Kind = Operation::Kind;
using std::chrono::milliseconds;

class HistoryTest : public ::testing::Test {
 protected:
  // An operation from `from` to `to` ms after the test's epoch.
  void Op(Kind kind, std::optional<std::string> value, int from, int to, bool ok = true,
          const std::string& key = "k", const std::string& via = "") {
    history_.Record({.kind = kind,
                     .key = key,
                     .value = std::move(value),
                     .start = epoch_ + milliseconds(from),
                     .end = epoch_ + milliseconds(to),
                     .ok = ok,
                     .via = via});
  }
  std::chrono::steady_clock::time_point epoch_ = std::chrono::steady_clock::now();
  History history_;
};

TEST_F(HistoryTest, ReadsOfTheLatestOrAConcurrentWriteAreFine) {
  Op(Kind::kWrite, "a", 0, 10);
  Op(Kind::kRead, "a", 20, 21);
  Op(Kind::kWrite, "b", 30, 40);
  Op(Kind::kRead, "a", 32, 33);  // b not acknowledged yet: a or b
  Op(Kind::kRead, "b", 35, 36);
  Op(Kind::kRead, std::nullopt, 0, 1, true, "never-written");
  const HistoryReport r = history_.Check();
  EXPECT_EQ(r.stale_reads, 0u) << r.Summary();
  EXPECT_EQ(r.lost_writes, 0u);
  EXPECT_EQ(r.reads, 4u);
  EXPECT_EQ(r.acknowledged_writes, 2u);
}

TEST_F(HistoryTest, AReadOfAnOlderValueAfterAnAcknowledgedWriteIsStale) {
  Op(Kind::kWrite, "a", 0, 10);
  Op(Kind::kWrite, "b", 20, 30);
  Op(Kind::kRead, "a", 40, 41);  // b was acknowledged at 30
  const HistoryReport r = history_.Check();
  EXPECT_EQ(r.stale_reads, 1u) << r.Summary();
  ASSERT_EQ(r.examples.size(), 1u);
  EXPECT_NE(r.examples[0].find("read of 'k' -> 'a'"), std::string::npos) << r.examples[0];
}

TEST_F(HistoryTest, DeletesCountAndAMissingAcknowledgedSetIsALostWrite) {
  Op(Kind::kWrite, "a", 0, 10);
  Op(Kind::kDelete, std::nullopt, 20, 30);
  Op(Kind::kRead, "a", 40, 41);           // stale: the delete was acknowledged
  Op(Kind::kRead, std::nullopt, 42, 43);  // fine
  Op(Kind::kWrite, "b", 50, 60);
  Op(Kind::kRead, std::nullopt, 70, 71);  // b lost
  const HistoryReport r = history_.Check();
  EXPECT_EQ(r.stale_reads, 1u) << r.Summary();
  EXPECT_EQ(r.lost_writes, 1u);
}

TEST_F(HistoryTest, AWriteThatFailedMayHaveTakenEffectAtAnyTime) {
  Op(Kind::kWrite, "a", 0, 10);
  Op(Kind::kWrite, "x", 12, 14, /*ok=*/false);  // 503: maybe stored on some member
  Op(Kind::kWrite, "b", 20, 30);
  Op(Kind::kRead, "x", 40, 41);  // could have been applied late: not provably stale
  Op(Kind::kRead, "zzz", 42, 43);
  const HistoryReport r = history_.Check();
  EXPECT_EQ(r.stale_reads, 0u) << r.Summary();
  EXPECT_EQ(r.unknown_values, 1u);
  EXPECT_EQ(r.failed, 1u);
}

TEST_F(HistoryTest, SaysWhichNodeSawWhatAndWhen) {
  Op(Kind::kWrite, "a", 0, 10, true, "k", "n1");
  Op(Kind::kWrite, "b", 20, 30, true, "k", "n1");
  Op(Kind::kRead, "a", 40, 41, true, "k", "n2");  // stale, through n2 at 40 ms
  Op(Kind::kWrite, "c", 50, 60, false, "k", "n2");
  Op(Kind::kWrite, "d", 70, 80, true, "j", "n1");
  Op(Kind::kRead, std::nullopt, 90, 91, true, "j", "n3");  // lost, through n3 at 90 ms
  const HistoryReport r = history_.Check();
  ASSERT_EQ(r.stale_at.size(), 1u) << r.Summary();
  EXPECT_EQ(r.stale_at[0].first, "n2");
  EXPECT_EQ(r.stale_at[0].second, epoch_ + milliseconds(40));
  ASSERT_EQ(r.lost_at.size(), 1u);
  EXPECT_EQ(r.lost_at[0].first, "n3");
  EXPECT_EQ(r.lost_at[0].second, epoch_ + milliseconds(90));
  EXPECT_EQ(r.failed_via, (std::map<std::string, uint64_t>{{"n2", 1}}));
}

TEST_F(HistoryTest, KeysAreCheckedApartAndValuesAreUnique) {
  Op(Kind::kWrite, UniqueValue("k1", 1, 1), 0, 10, true, "k1");
  Op(Kind::kWrite, UniqueValue("k2", 1, 2), 20, 30, true, "k2");
  Op(Kind::kRead, UniqueValue("k1", 1, 1), 40, 41, true, "k1");
  EXPECT_EQ(history_.Check().stale_reads, 0u);
  EXPECT_NE(UniqueValue("k", 1, 2), UniqueValue("k", 2, 1));
}

}  // namespace
}  // namespace nexus::testing
