// --replicas R on real nexuscache processes on loopback: a kill -9 of one node of three, and
// what clients see afterwards through the survivors.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/cluster.h"
#include "support/process.h"
#include "support/wait.h"

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
  int reads_failed_via_restarted = 0;  // through the killed node, restarted
  double substitutes = 0;              // pushes that went to a stand-in for it
  std::string first_failure;
};

// Three nodes with `args`; every key written and acknowledged, svc3 killed with SIGKILL, then
// every key read through the two survivors, written again through them and read again; then
// svc3 restarted (empty) and, once the survivors delivered what they kept for it, every key
// read through svc3 alone.
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
  // With W = 1 a write is acknowledged before its push to the second holder answered; a kill
  // right then loses it (as documented). Kill once every push was applied.
  EXPECT_TRUE(WaitFor(
      [&] {
        double pushed = 0, applied = 0;
        for (size_t i = 0; i < cluster.size(); ++i) {
          pushed += MetricSum(cluster.node(i).http_port, "nexuscache_replica_copies_total");
          applied +=
              MetricSum(cluster.node(i).http_port, "nexuscache_replica_copies_applied_total");
        }
        return applied == pushed;
      },
      seconds(10)));
  cluster.node(2).process->Signal(SIGKILL);
  EXPECT_TRUE(cluster.node(2).process->WaitExit(seconds(5), nullptr));
  out.reads_failed_after_kill = ReadAll(cluster, {0, 1}, "a", &out.first_failure);
  out.writes_failed_after_kill = WriteAll(cluster, {0, 1}, "b");
  out.reads_failed_after_rewrite = ReadAll(cluster, {0, 1}, "b", &out.first_failure);
  const auto hints = [&] {
    return MetricSum(cluster.node(0).http_port, "nexuscache_handoff_hints") +
           MetricSum(cluster.node(1).http_port, "nexuscache_handoff_hints");
  };
  // Counted by the primaries when they pushed (before the ack), so it is exact here; the hints
  // gauge counts copies whose delivery was already tried once, which takes up to a second.
  out.substitutes = MetricSum(cluster.node(0).http_port, "nexuscache_replica_substitutes_total") +
                    MetricSum(cluster.node(1).http_port, "nexuscache_replica_substitutes_total");
  if (!cluster.Restart(2, &failure)) {
    ADD_FAILURE() << failure;
    return out;
  }
  // The hints go out every second; the survivors then drop their copies.
  EXPECT_TRUE(WaitFor(
      [&] {
        return hints() == 0 &&
               MetricSum(cluster.node(2).http_port, "nexuscache_handoff_keys_received_total") >=
                   out.substitutes;
      },
      seconds(20)));
  std::string via_restarted;
  out.reads_failed_via_restarted = ReadAll(cluster, {2}, "b", &via_restarted);
  if (out.first_failure.empty()) out.first_failure = via_restarted;
  std::printf(
      "[figures] %d keys, flags '%s': writes failed %d; after kill -9 of 1 of 3 nodes: reads "
      "failed %d, writes failed %d (stored on a substitute: %.0f), reads of the new values failed "
      "%d; "
      "after its restart, reads through it failed %d\n",
      kKeys, label.c_str(), out.writes_failed, out.reads_failed_after_kill,
      out.writes_failed_after_kill, out.substitutes, out.reads_failed_after_rewrite,
      out.reads_failed_via_restarted);
  return out;
}

TEST(ReplicasTest, WithOneReplicaADeadNodesKeysFailUntilItReturns) {
  // The seed's behaviour, and what makes the next test meaningful: a third of the keys are
  // gone with their only holder.
  const KillResult r = KillOneOfThree({});
  EXPECT_EQ(r.writes_failed, 0);
  EXPECT_GT(r.reads_failed_after_kill, kKeys / 6) << r.first_failure;
  EXPECT_GT(r.writes_failed_after_kill, kKeys / 6);
  EXPECT_EQ(r.substitutes, 0);
  EXPECT_GT(r.reads_failed_via_restarted, kKeys / 6);
}

TEST(ReplicasTest, WithTwoReplicasAKillMinusNineFailsNoReadOfAnAcknowledgedWrite) {
  const KillResult r = KillOneOfThree({"--replicas", "2"});
  EXPECT_EQ(r.writes_failed, 0);
  // Every acknowledged write is on two members, and a read whose primary is dead goes to the
  // next holder at once.
  EXPECT_EQ(r.reads_failed_after_kill, 0) << r.first_failure;
  // W = 2 with one of the two holders dead: the third node stands in for it (a sloppy
  // quorum), keeping those writes (2/3 of them) as hints, so none fails.
  EXPECT_EQ(r.writes_failed_after_kill, 0);
  EXPECT_GT(r.substitutes, kKeys / 2);
  EXPECT_EQ(r.reads_failed_after_rewrite, 0) << r.first_failure;
  // The restarted node got every hint: it serves the new values itself.
  EXPECT_EQ(r.reads_failed_via_restarted, 0) << r.first_failure;
}

TEST(ReplicasTest, WithWriteQuorumOneWritesKeepBeingAcknowledgedAndRead) {
  const KillResult r = KillOneOfThree({"--replicas", "2", "--write-quorum", "1"});
  EXPECT_EQ(r.writes_failed, 0);
  EXPECT_EQ(r.reads_failed_after_kill, 0) << r.first_failure;
  // The survivor holding each of the dead node's keys acts as its primary.
  EXPECT_EQ(r.writes_failed_after_kill, 0);
  EXPECT_EQ(r.reads_failed_after_rewrite, 0) << r.first_failure;
  EXPECT_EQ(r.reads_failed_via_restarted, 0) << r.first_failure;
}

TEST(ReplicasTest, ConcurrentWritesThroughEveryNodeNeverWaitOnEachOther) {
  // Writes forwarded to their primary wait for its push to the second holder; pushes between
  // two nodes crossing forwarded writes on the same pipelined connections would wait for each
  // other until the deadline (pushes have connections of their own). Half writes, 30 clients
  // spread over all three nodes.
  Cluster cluster(3, {"--replicas", "2"});
  std::string failure;
  ASSERT_TRUE(cluster.Start(&failure)) << failure;
  std::string urls;
  for (size_t i = 0; i < cluster.size(); ++i) {
    urls += (urls.empty() ? "" : ",") + std::string("http://127.0.0.1:") +
            std::to_string(cluster.node(i).http_port);
  }
  auto bench =
      Process::Start({NEXUS_BENCH_BIN, "-urls", urls, "-duration", "3s", "-warmup", "500ms",
                      "-concurrency", "30", "-keys", "200", "-read-ratio", "0.5", "-json"},
                     {}, TempDir() + "/replicas-bench.log");
  ASSERT_NE(bench, nullptr);
  int code = -1;
  ASSERT_TRUE(bench->WaitExit(seconds(60), &code));
  const std::string out = bench->Log();
  const nlohmann::json j =
      nlohmann::json::parse(out.substr(std::min(out.find('{'), out.size())), nullptr, false);
  ASSERT_TRUE(j.is_object()) << out;
  EXPECT_EQ(j["measured"]["errors"], 0) << out;
  EXPECT_GT(j["measured"]["requests"].get<double>(), 0) << out;
  // A push that waited behind a write until its deadline fails (and is counted) even when
  // the client's request got through on the fallback paths.
  double push_failures = 0, quorum_failures = 0, pushes = 0;
  for (size_t i = 0; i < cluster.size(); ++i) {
    pushes += MetricSum(cluster.node(i).http_port, "nexuscache_replica_copies_total");
    push_failures += MetricSum(cluster.node(i).http_port, "nexuscache_replica_copy_failures_total");
    quorum_failures +=
        MetricSum(cluster.node(i).http_port, "nexuscache_write_quorum_failures_total");
  }
  EXPECT_GT(pushes, 0);
  EXPECT_EQ(push_failures, 0);
  EXPECT_EQ(quorum_failures, 0);
  std::printf(
      "[figures] 3 nodes --replicas 2, 50%% writes, 30 clients: %s requests, %s errors, %.0f "
      "pushes, %.0f failed, %.0f quorum failures\n",
      j["measured"]["requests"].dump().c_str(), j["measured"]["errors"].dump().c_str(), pushes,
      push_failures, quorum_failures);
}

TEST(ReplicasTest, ConcurrentMissesThroughEveryNodeNeverWaitOnEachOther) {
  // A Get that misses at its primary asks the other holder for its copy (a peek) before it
  // answers "not found"; the peer Gets forwarded between two nodes missing at once would wait
  // behind each other's peeks on the same pipelined connections until the deadline (peeks
  // have connections of their own). Only reads, of keys nobody wrote: every one misses. 30
  // clients spread over all three nodes.
  Cluster cluster(3, {"--replicas", "2"});
  std::string failure;
  ASSERT_TRUE(cluster.Start(&failure)) << failure;
  std::string urls;
  for (size_t i = 0; i < cluster.size(); ++i) {
    urls += (urls.empty() ? "" : ",") + std::string("http://127.0.0.1:") +
            std::to_string(cluster.node(i).http_port);
  }
  auto bench = Process::Start({NEXUS_BENCH_BIN, "-urls", urls, "-duration", "3s", "-warmup", "0s",
                               "-concurrency", "30", "-keys", "2000", "-read-ratio", "1", "-json"},
                              {}, TempDir() + "/replicas-miss-bench.log");
  ASSERT_NE(bench, nullptr);
  int code = -1;
  ASSERT_TRUE(bench->WaitExit(seconds(60), &code));
  const std::string out = bench->Log();
  const nlohmann::json j =
      nlohmann::json::parse(out.substr(std::min(out.find('{'), out.size())), nullptr, false);
  ASSERT_TRUE(j.is_object()) << out;
  EXPECT_EQ(j["measured"]["errors"], 0) << out;
  // A peek that waited until its deadline is a failed peer call, even though the client got
  // its "not found" in the end.
  double peer_errors = 0, peer_calls = 0;
  for (size_t i = 0; i < cluster.size(); ++i) {
    const std::string metrics = Http(cluster.node(i).http_port, "GET", "/metrics").body;
    size_t pos = 0;
    while ((pos = metrics.find("\nnexuscache_peer_requests_total{", pos)) != std::string::npos) {
      const size_t eol = metrics.find('\n', pos + 1);
      const std::string line = metrics.substr(pos + 1, eol - pos - 1);
      const double n = std::stod(line.substr(line.rfind(' ') + 1));
      peer_calls += n;
      if (line.find("status=\"error\"") != std::string::npos) peer_errors += n;
      pos = eol;
    }
  }
  EXPECT_GT(peer_calls, 0);
  EXPECT_EQ(peer_errors, 0);
  std::printf(
      "[figures] 3 nodes --replicas 2, only misses, 30 clients: %s requests, %s errors, %.0f "
      "peer calls, %.0f failed\n",
      j["measured"]["requests"].dump().c_str(), j["measured"]["errors"].dump().c_str(), peer_calls,
      peer_errors);
}

}  // namespace
}  // namespace nexus::testing
