// --replicas R on real nexuscache processes on loopback: a kill -9 of one node of three, and
// what clients see afterwards through the survivors.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "support/cluster.h"
#include "support/process.h"

namespace nexus::testing {
namespace {

using std::chrono::seconds;

constexpr int kKeys = 300;

std::string Key(int i) { return "user:" + std::to_string(i); }
std::string Value(int i, const std::string& round) { return "v" + std::to_string(i) + round; }

// Writes every key through the nodes in turn; returns how many were not acknowledged.
int WriteAll(Cluster& cluster, const std::vector<size_t>& via, const std::string& round) {
  int failed = 0;
  for (int i = 0; i < kKeys; ++i) {
    const uint16_t port = cluster.node(via[i % via.size()]).http_port;
    const HttpResult r = Http(port, "POST", "/api/set",
                              "key=" + Key(i) + "&value=" + Value(i, round) + "&expire=10");
    if (r.status != 200) ++failed;
  }
  return failed;
}

// Reads every key through the nodes in turn; returns how many did not answer `round`'s value.
int ReadAll(Cluster& cluster, const std::vector<size_t>& via, const std::string& round,
            std::string* first_failure) {
  int failed = 0;
  for (int i = 0; i < kKeys; ++i) {
    const uint16_t port = cluster.node(via[i % via.size()]).http_port;
    const HttpResult r = Http(port, "GET", "/api/get?key=" + Key(i), "", seconds(10));
    if (r.status == 200 && r.body == "value=" + Value(i, round) + "\n") continue;
    if (failed++ == 0) *first_failure = std::to_string(r.status) + " " + r.body;
  }
  return failed;
}

struct KillResult {
  int writes_failed = 0;
  int reads_failed_after_kill = 0;
  int writes_failed_after_kill = 0;
  int reads_failed_after_rewrite = 0;
  std::string first_failure;
};

// Three nodes with `args`; every key written and acknowledged, svc3 killed with SIGKILL, then
// every key read through the two survivors, written again through them and read again.
KillResult KillOneOfThree(std::vector<std::string> args) {
  std::string label;
  for (const std::string& a : args) label += (label.empty() ? "" : " ") + a;
  KillResult out;
  Cluster cluster(3, std::move(args));
  std::string failure;
  if (!cluster.Start(&failure)) {
    ADD_FAILURE() << failure;
    return out;
  }
  out.writes_failed = WriteAll(cluster, {0, 1, 2}, "a");
  cluster.node(2).process->Signal(SIGKILL);
  EXPECT_TRUE(cluster.node(2).process->WaitExit(seconds(5), nullptr));
  out.reads_failed_after_kill = ReadAll(cluster, {0, 1}, "a", &out.first_failure);
  out.writes_failed_after_kill = WriteAll(cluster, {0, 1}, "b");
  out.reads_failed_after_rewrite = ReadAll(cluster, {0, 1}, "b", &out.first_failure);
  std::printf(
      "[figures] %d keys, flags '%s': writes failed %d; after kill -9 of 1 of 3 nodes: reads "
      "failed %d, writes failed %d, reads of the new values failed %d\n",
      kKeys, label.c_str(), out.writes_failed, out.reads_failed_after_kill,
      out.writes_failed_after_kill, out.reads_failed_after_rewrite);
  return out;
}

TEST(ReplicasTest, WithOneReplicaADeadNodesKeysFailUntilItReturns) {
  // The seed's behaviour, and what makes the next test meaningful: a third of the keys are
  // gone with their only holder.
  const KillResult r = KillOneOfThree({});
  EXPECT_EQ(r.writes_failed, 0);
  EXPECT_GT(r.reads_failed_after_kill, kKeys / 6) << r.first_failure;
  EXPECT_GT(r.writes_failed_after_kill, kKeys / 6);
}

TEST(ReplicasTest, WithTwoReplicasAKillMinusNineFailsNoReadOfAnAcknowledgedWrite) {
  const KillResult r = KillOneOfThree({"--replicas", "2"});
  EXPECT_EQ(r.writes_failed, 0);
  // Every acknowledged write is on two members, and a read whose primary is dead goes to the
  // next holder at once.
  EXPECT_EQ(r.reads_failed_after_kill, 0) << r.first_failure;
  // W = 2 with one of the two holders dead cannot be met for the keys the dead node held (2/3
  // of them) until a substitute takes its place: those writes answer 503. The survivor's copy
  // was stored, so reads see the new value (a failed quorum write may be partly applied).
  EXPECT_GT(r.writes_failed_after_kill, kKeys / 2);
  EXPECT_EQ(r.reads_failed_after_rewrite, 0) << r.first_failure;
}

TEST(ReplicasTest, WithWriteQuorumOneWritesKeepBeingAcknowledgedAndRead) {
  const KillResult r = KillOneOfThree({"--replicas", "2", "--write-quorum", "1"});
  EXPECT_EQ(r.writes_failed, 0);
  EXPECT_EQ(r.reads_failed_after_kill, 0) << r.first_failure;
  // The survivor holding each of the dead node's keys acts as its primary.
  EXPECT_EQ(r.writes_failed_after_kill, 0);
  EXPECT_EQ(r.reads_failed_after_rewrite, 0) << r.first_failure;
}

}  // namespace
}  // namespace nexus::testing
