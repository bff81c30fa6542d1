// The RESP port with real Redis tools on a real 3-node cluster: a scripted redis-cli session,
// Python's redis client (pipelines, multi-key commands across owners), redis-benchmark, and keys
// crossing between RESP and HTTP on different nodes, hot keys included.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include "support/cluster.h"
#include "support/process.h"

namespace nexus::testing {
namespace {

class RespCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(RunShell("command -v redis-cli redis-benchmark >/dev/null").exit_code, 0)
        << "redis-cli and redis-benchmark are needed (Debian's redis-tools: scripts/setup)";
    std::string error;
    ASSERT_TRUE(cluster_.Start(&error)) << error;
  }
  // redis-cli on node i with `script` on its stdin (one command per line), output as text.
  ShellResult Cli(size_t i, const std::string& script, const std::string& flags = "") {
    return RunShell("printf '%s' '" + script + "' | redis-cli " + flags + " -p " +
                    std::to_string(cluster_.node(i).resp_port) + " 2>&1");
  }
  std::string CliOne(size_t i, const std::string& command) {
    return RunShell("redis-cli -p " + std::to_string(cluster_.node(i).resp_port) + " " + command +
                    " 2>&1")
        .out;
  }

  Cluster cluster_{3, {}};
};

TEST_F(RespCluster, AScriptedRedisCliSessionGetsRedisReplies) {
  // Keys owned by each node, so the session's commands are served and forwarded.
  const std::string here = KeyOwnedBy(cluster_.node(0).http_port, "svc1", "a");
  const std::string there = KeyOwnedBy(cluster_.node(0).http_port, "svc2", "b");
  const std::string far = KeyOwnedBy(cluster_.node(0).http_port, "svc3", "c");
  const ShellResult r = Cli(0,
                            "PING\n"
                            "SET " +
                                here +
                                " one\n"
                                "SET " +
                                there +
                                " two EX 100\n"
                                "set " +
                                far +
                                " three px 5000\n"
                                "GET " +
                                here +
                                "\n"
                                "GET " +
                                there +
                                "\n"
                                "MGET " +
                                here + " " + there + " " + far +
                                " missing\n"
                                "TTL " +
                                here +
                                "\n"
                                "TTL " +
                                there +
                                "\n"
                                "EXISTS " +
                                here + " " + there +
                                " missing\n"
                                "TYPE " +
                                far +
                                "\n"
                                "STRLEN " +
                                far +
                                "\n"
                                "DEL " +
                                here + " " + far +
                                " missing\n"
                                "GET " +
                                here +
                                "\n"
                                "SELECT 1\n"
                                "NOSUCH x\n"
                                "GET\n"
                                "SET k v EX 0\n"
                                "ECHO \"a b\"\n");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out,
            "PONG\nOK\nOK\nOK\none\ntwo\none\ntwo\nthree\n\n-1\n100\n2\nstring\n5\n2\n\n"
            // (redis-cli prints a blank line after an error when its output is not a terminal)
            "ERR DB index is out of range\n\n"
            "ERR unknown command 'NOSUCH', with args beginning with: 'x' \n\n"
            "ERR wrong number of arguments for 'get' command\n\n"
            "ERR invalid expire time in 'set' command\n\n"
            "a b\n");
}

TEST_F(RespCluster, Resp3AfterHelloThree) {
  // redis-cli -3 sends HELLO 3 first; nulls, maps and verbatim strings come back in RESP3.
  const std::string key = KeyOwnedBy(cluster_.node(0).http_port, "svc2", "r3");
  const ShellResult r =
      Cli(0, "SET " + key + " v\nMGET " + key + " none\nHELLO\nCLIENT INFO\n", "-3");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("OK\nv\n\nserver redis\nversion 7.0.0\nproto 3\n"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(" db=0 resp=3"), std::string::npos) << r.out;
}

TEST_F(RespCluster, PythonsRedisClientPipelinesAndMultiKeyCommandsAcrossOwners) {
  const std::string script = R"PY(
import sys, redis
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]))
p = r.pipeline(transaction=False)
for i in range(300):
    p.set("k%d" % i, "v%d" % i)
for i in range(300):
    p.get("k%d" % i)
res = p.execute()
assert res[:300] == [True] * 300, res[:300]
assert res[300:] == [b"v%d" % i for i in range(300)], res[300:]
keys = ["k%d" % i for i in range(0, 300, 7)]
assert r.mget(keys + ["nope"]) == [b"v%d" % i for i in range(0, 300, 7)] + [None]
assert r.mset({"m%d" % i: str(i) for i in range(50)})
assert r.mget(["m%d" % i for i in range(50)]) == [str(i).encode() for i in range(50)]
assert r.exists(*keys) == len(keys)
assert r.delete(*keys, "nope") == len(keys)
assert r.exists(*keys) == 0
assert r.set("t", "x", ex=30) and 29 <= r.ttl("t") <= 30
assert r.set("t2", "x", px=1500) and 1000 < r.pttl("t2") <= 1500
assert r.setex("t3", 20, "y") and r.get("t3") == b"y"
assert r.ttl("k1") == -1 and r.ttl("nope") == -2
try:
    r.execute_command("SELECT", "2")
    raise SystemExit("SELECT 2 succeeded")
except redis.ResponseError as e:
    assert "out of range" in str(e)
print("ok")
)PY";
  const std::string path = WriteTempFile("resp_client.py", script);
  for (size_t i = 0; i < cluster_.size(); ++i) {
    const ShellResult r = RunShell("/usr/bin/python3 " + path + " " +
                                   std::to_string(cluster_.node(i).resp_port) + " 2>&1");
    EXPECT_EQ(r.exit_code, 0) << "through svc" << i + 1 << ": " << r.out;
    EXPECT_EQ(r.out, "ok\n");
  }
}

TEST_F(RespCluster, RedisBenchmarkRunsWithoutErrorsAgainstEveryNode) {
  for (size_t i = 0; i < cluster_.size(); ++i) {
    // It exits at the first error reply; -r spreads the keys over every owner.
    const ShellResult r =
        RunShell("timeout 120 redis-benchmark -p " + std::to_string(cluster_.node(i).resp_port) +
                 " -t set,get,mset -n 20000 -c 20 -P 8 -d 100 -r 10000 -q 2>&1");
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(r.out.find("WARNING"), std::string::npos) << r.out;  // e.g. CONFIG not fetched
    for (const char* test : {"SET: ", "GET: ", "MSET (10 keys): "}) {
      EXPECT_NE(r.out.find(test), std::string::npos) << test << " missing in " << r.out;
    }
  }
  EXPECT_GE(MetricSum(cluster_.node(0).http_port,
                      "nexuscache_requests_total{protocol=\"resp\",op=\"set\",status=\"ok\"}"),
            20000 + 20000 * 10);  // SET, then MSET's ten keys each
}

TEST_F(RespCluster, KeysCrossBetweenRespAndHttpOnOtherNodesHotKeysIncluded) {
  const std::string key = KeyOwnedBy(cluster_.node(0).http_port, "svc3", "x");
  EXPECT_EQ(CliOne(0, "SET " + key + " from-resp"), "OK\n");
  EXPECT_EQ(Http(cluster_.node(1).http_port, "GET", "/api/get?key=" + key).body,
            "value=from-resp\n");
  ASSERT_EQ(Http(cluster_.node(2).http_port, "POST", "/api/set",
                 "key=" + key + "&value=from-http&expire=5")
                .status,
            200);
  EXPECT_EQ(CliOne(1, "GET " + key), "from-http\n");
  // The seed's expire is 5 minutes plus jitter: TTL says so.
  const int ttl = std::stoi(CliOne(0, "TTL " + key));
  EXPECT_GE(ttl, 300);
  EXPECT_LE(ttl, 331);

  // A hot key set over RESP is on every node (served there without a peer call: a node whose
  // peers are stopped still answers it).
  EXPECT_EQ(CliOne(0, "SET celebrity star HOT"), "OK\n");
  for (size_t i = 0; i < cluster_.size(); ++i) {
    EXPECT_EQ(Http(cluster_.node(i).http_port, "GET", "/api/get?key=celebrity").body,
              "value=star\n");
    EXPECT_EQ(CliOne(i, "GET celebrity"), "star\n");
  }
  for (size_t i : {0, 1}) {
    int code = 0;
    cluster_.node(i).process->Signal(SIGKILL);
    ASSERT_TRUE(cluster_.node(i).process->WaitExit(std::chrono::seconds(5), &code));
  }
  EXPECT_EQ(CliOne(2, "GET celebrity"), "star\n");
}

TEST_F(RespCluster, EverySplitOfAPipelineGetsTheSameReplies) {
  const std::string a = KeyOwnedBy(cluster_.node(0).http_port, "svc2", "p");
  const std::string b = KeyOwnedBy(cluster_.node(0).http_port, "svc3", "q");
  auto bulk = [](const std::string& s) {
    return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n";
  };
  const std::string pipeline =
      "*3\r\n" + bulk("SET") + bulk(a) + bulk("va\r\nl") +  // a value with CRLF in it
      "*3\r\n" + bulk("SET") + bulk(b) + bulk("w") + "PING\r\n" + "*4\r\n" + bulk("MGET") +
      bulk(a) + bulk(b) + bulk("none") + "GET " + b + "\r\n" + "*3\r\n" + bulk("EXISTS") + bulk(a) +
      bulk("none") + "ECHO \"x y\"\r\n";
  const std::string expected =
      "+OK\r\n+OK\r\n+PONG\r\n*3\r\n$5\r\nva\r\nl\r\n$1\r\nw\r\n$-1\r\n"
      "$1\r\nw\r\n:1\r\n$3\r\nx y\r\n";
  const int lines = static_cast<int>(std::count(expected.begin(), expected.end(), '\n'));
  const uint16_t port = cluster_.node(0).resp_port;
  for (size_t cut = 0; cut <= pipeline.size(); ++cut) {
    LineClient client(port);
    ASSERT_TRUE(client.connected());
    ASSERT_TRUE(client.Send(std::string_view(pipeline).substr(0, cut)));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // (two reads on the server)
    ASSERT_TRUE(client.Send(std::string_view(pipeline).substr(cut)));
    ASSERT_EQ(client.ReadLines(lines), expected) << "split at byte " << cut;
  }
}

TEST(RespOverGrpc, ExactExpiriesReachTheOwnerOverGrpcToo) {
  // --forward grpc: the fixed deadline travels in SetRequest.deadline_ms, not as a TTL.
  Cluster c(2, {"--forward", "grpc"});
  std::string error;
  ASSERT_TRUE(c.Start(&error)) << error;
  const std::string key = KeyOwnedBy(c.node(0).http_port, "svc2", "g");
  const std::string cli = "redis-cli -p " + std::to_string(c.node(0).resp_port) + " ";
  EXPECT_EQ(RunShell(cli + "SET " + key + " v EX 100").out, "OK\n");
  EXPECT_EQ(RunShell(cli + "TTL " + key).out, "100\n");  // exact: no jitter
  EXPECT_EQ(RunShell(cli + "SET " + key + " v").out, "OK\n");
  EXPECT_EQ(RunShell(cli + "TTL " + key).out, "-1\n");  // no expiry
  EXPECT_GE(MetricSum(c.node(0).http_port, "nexuscache_peer_requests_total"), 4);
}

TEST(RespAuth, TokensApplyOverResp) {
  const std::string tokens =
      WriteTempFile("resp_tokens", "read rtok-0123456789\nwrite wtok-0123456789\n");
  Cluster c(2, {"--auth-token-file", tokens, "--cluster-secret-file", ClusterSecretFile()});
  std::string error;
  ASSERT_TRUE(c.Start(&error)) << error;
  const std::string cli = "redis-cli --no-auth-warning -p " + std::to_string(c.node(0).resp_port);
  // Reads stay open (--auth-reads=false); writes need the write role.
  EXPECT_EQ(RunShell(cli + " GET k 2>&1").out, "\n");
  EXPECT_EQ(RunShell(cli + " SET k v 2>&1").out,
            "NOAUTH Authentication required (set needs a token with the write role: AUTH "
            "<token>).\n\n");
  EXPECT_EQ(RunShell(cli + " -a nope SET k v 2>&1").out,
            "AUTH failed: WRONGPASS invalid username-password pair or user is disabled.\nNOAUTH "
            "Authentication required (set needs a token with the write role: AUTH <token>).\n\n");
  EXPECT_EQ(RunShell(cli + " -a rtok-0123456789 SET k v 2>&1").out,
            "NOPERM the token's role read may not set (it needs write)\n\n");
  EXPECT_EQ(RunShell(cli + " -a wtok-0123456789 SET k v 2>&1").out, "OK\n");
  // HELLO's AUTH, and a token for the whole connection.
  EXPECT_EQ(RunShell("printf 'HELLO 2 AUTH default wtok-0123456789\\nSET k2 v2\\nGET k2\\n' | " +
                     cli + " 2>&1 | tail -n 2")
                .out,
            "OK\nv2\n");
  EXPECT_GE(MetricSum(c.node(0).http_port,
                      "nexuscache_auth_refused_total{protocol=\"resp\",reason=\"missing\"}"),
            2);
}

}  // namespace
}  // namespace nexus::testing
