// Client and admin authentication on real nexuscache processes: the seed's open flows without
// tokens (and /setpeer limited to members the node knows), Bearer tokens with their roles, a
// reload on SIGHUP that keeps connections open, the flags that close reads, /metrics and the
// dashboard, a bad token file at start, /setpeer against etcd's membership; and the cluster
// secret on the node-to-node plane (gRPC with the real client, /peer/v1 over raw HTTP).
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "peer/grpc_peer.h"
#include "support/cluster.h"
#include "support/etcd.h"
#include "support/process.h"
#include "support/wait.h"

namespace nexus::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string WriteTokens(const std::string& name, const std::string& text) {
  return WriteTempFile(name, text);
}

HttpResult As(uint16_t port, const std::string& token, const std::string& method,
              const std::string& target, const std::string& body = "") {
  return HttpWithHeaders(port, method, target, body, {"Authorization: Bearer " + token});
}

// The gRPC address of `member` in the ring of the node on `port` ("" if not a member).
std::string RingAddress(uint16_t port, const std::string& member) {
  const nlohmann::json ring = nlohmann::json::parse(Http(port, "GET", "/api/ring").body);
  for (const auto& m : ring["members"]) {
    if (m["name"] == member) return m["grpc"].get<std::string>();
  }
  return "";
}

// Runs a node with `flags` that must not start: expects exit code `code` and `message` in its
// log.
void ExpectNoStart(const std::vector<std::string>& flags, int code, const std::string& message) {
  EXPECT_EQ(StartFails(flags, code, message), "");
}

TEST(Auth, WithoutTokensTheSeedsFlowsWorkAndSetPeerOnlyReAddsKnownMembers) {
  Cluster c(2, {});
  std::string error;
  ASSERT_TRUE(c.Start(&error)) << error;
  const uint16_t port = c.node(0).http_port;
  ASSERT_EQ(Http(port, "POST", "/api/set", "key=k&value=v&expire=5").status, 200);
  EXPECT_EQ(Http(port, "GET", "/api/get?key=k").body, "value=v\n");
  // A token is ignored where none is configured.
  EXPECT_EQ(As(port, "anything", "GET", "/api/get?key=k").status, 200);

  const std::string svc2 = RingAddress(port, "svc2");
  ASSERT_FALSE(svc2.empty());
  // The seed's "re-add a recovered node": by name, or at the address the node knows.
  EXPECT_EQ(Http(port, "POST", "/setpeer", "peer=svc2").body, "set peer svc2 successful\n");
  EXPECT_EQ(Http(port, "POST", "/setpeer", "peer=svc2&addr=" + svc2).status, 200);
  // Never a new member, never a new address (svc2's keys would go there).
  const HttpResult added = Http(port, "POST", "/setpeer", "peer=svc9&addr=127.0.0.1:1");
  EXPECT_EQ(added.status, 403);
  EXPECT_EQ(added.body,
            "peer svc9 is not a known member (from --peer or etcd): adding a new member needs "
            "the admin role (--auth-token-file)\n");
  const HttpResult moved = Http(port, "POST", "/setpeer", "peer=svc2&addr=127.0.0.1:1");
  EXPECT_EQ(moved.status, 403);
  EXPECT_EQ(moved.body, "peer svc2 is known at " + svc2 +
                            ": giving it a new address needs the admin role "
                            "(--auth-token-file)\n");
  EXPECT_EQ(RingAddress(port, "svc2"), svc2);
  EXPECT_EQ(RingAddress(port, "svc9"), "");
  EXPECT_EQ(Http(port, "GET", "/api/get?key=k").body, "value=v\n");
}

TEST(Auth, TokensGuardWritesAndAdminAndASighupReloadKeepsConnectionsOpen) {
  const std::string tokens =
      WriteTokens("tokens1", "# test tokens\nread reader-1\nwrite writer-1\nadmin admin-1\n");
  Cluster c(1, {"--auth-token-file", tokens, "--cluster-secret-file", ClusterSecretFile()});
  std::string error;
  ASSERT_TRUE(c.Start(&error)) << error;
  const uint16_t port = c.node(0).http_port;

  // Reads stay open (--auth-reads is off): the seed's curl reads work without a token.
  EXPECT_EQ(Http(port, "GET", "/api/get?key=k").status, 404);
  EXPECT_EQ(Http(port, "GET", "/healthz").status, 200);
  EXPECT_EQ(Http(port, "GET", "/api/stats").status, 200);
  // Writes need the write role.
  const HttpResult anonymous = Http(port, "POST", "/api/set", "key=k&value=v&expire=5");
  EXPECT_EQ(anonymous.status, 401);
  EXPECT_EQ(anonymous.body,
            "set needs a token with the write role (send Authorization: Bearer <token>)\n");
  EXPECT_EQ(anonymous.headers.at("www-authenticate"), "Bearer realm=\"nexuscache\"");
  const HttpResult reader = As(port, "reader-1", "POST", "/api/set", "key=k&value=v&expire=5");
  EXPECT_EQ(reader.status, 403);
  EXPECT_EQ(reader.body, "the token's role read may not set (it needs write)\n");
  // The role before the form: a bad form without the role is still 401, with it 400.
  EXPECT_EQ(Http(port, "POST", "/api/set", "key=k&value=v&expire=x").status, 401);
  EXPECT_EQ(As(port, "writer-1", "POST", "/api/set", "key=k&value=v&expire=x").status, 400);
  EXPECT_EQ(As(port, "writer-1", "POST", "/api/set", "key=k&value=v&expire=5").status, 200);
  EXPECT_EQ(As(port, "reader-1", "GET", "/api/get?key=k").body, "value=v\n");
  EXPECT_EQ(Http(port, "DELETE", "/api/delete?key=k").status, 401);
  // A wrong token, or another scheme, is refused even for a read.
  const HttpResult wrong = As(port, "writer-2", "GET", "/api/get?key=k");
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(wrong.body, "invalid token (send Authorization: Bearer <token>)\n");
  EXPECT_EQ(
      HttpWithHeaders(port, "GET", "/api/get?key=k", "", {"Authorization: Basic d3JpdGVyLTE="})
          .status,
      401);
  EXPECT_EQ(
      HttpWithHeaders(port, "GET", "/api/get?key=k", "", {"authorization: bearer writer-1"}).status,
      200)
      << "the scheme is case-insensitive";
  // A keep-alive connection opened before the reload.
  LineClient conn(port);
  ASSERT_TRUE(conn.connected());
  auto on_conn = [&](const std::string& token) {
    EXPECT_TRUE(conn.Send(HttpRequestText(port, "POST", "/api/set", "key=c&value=1&expire=5",
                                          {"Authorization: Bearer " + token}, true)));
    return conn.ReadHttpResponse().status;
  };
  EXPECT_EQ(on_conn("writer-1"), 200);

  // SIGHUP with a new file: the old write token goes, the new one works, on the same
  // connection too.
  WriteTokens("tokens1", "write writer-2\nadmin admin-1\n");
  c.node(0).process->Signal(SIGHUP);
  ASSERT_TRUE(WaitFor(
      [&] {
        return MetricSumIn(Http(port, "GET", "/metrics").body, "nexuscache_auth_reloads_total") ==
               1;
      },
      seconds(10)));
  EXPECT_EQ(As(port, "writer-1", "POST", "/api/set", "key=k&value=v&expire=5").status, 401);
  EXPECT_EQ(As(port, "writer-2", "POST", "/api/set", "key=k&value=v&expire=5").status, 200);
  EXPECT_EQ(on_conn("writer-1"), 401);
  EXPECT_EQ(on_conn("writer-2"), 200);

  // A bad file keeps the tokens before it, and says why in the log.
  WriteTokens("tokens1", "write writer-3\nroot admin-9\n");
  c.node(0).process->Signal(SIGHUP);
  ASSERT_TRUE(WaitFor(
      [&] {
        return c.node(0).process->Log().find("auth: cannot reload: token file " + tokens +
                                             ": line 2: unknown role 'root'") != std::string::npos;
      },
      seconds(10)));
  EXPECT_EQ(As(port, "writer-2", "POST", "/api/set", "key=k&value=v&expire=5").status, 200);
  EXPECT_EQ(As(port, "writer-3", "POST", "/api/set", "key=k&value=v&expire=5").status, 401);
  EXPECT_EQ(on_conn("writer-2"), 200);

  // setpeer is the admin's; the admin may add a new member (last: its keys then fail).
  EXPECT_EQ(As(port, "writer-2", "POST", "/setpeer", "peer=svc9&addr=127.0.0.1:1").status, 403);
  EXPECT_EQ(Http(port, "POST", "/setpeer", "peer=svc9").status, 401);
  const int generation =
      nlohmann::json::parse(Http(port, "GET", "/api/ring").body)["generation"].get<int>();
  for (int i = 0; i < 2; ++i) {  // idempotent
    const HttpResult r = As(port, "admin-1", "POST", "/setpeer", "peer=svc9&addr=127.0.0.1:1");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "set peer svc9 successful\n");
  }
  EXPECT_EQ(RingAddress(port, "svc9"), "127.0.0.1:1");
  EXPECT_EQ(nlohmann::json::parse(Http(port, "GET", "/api/ring").body)["generation"].get<int>(),
            generation + 1);

  const std::string metrics = Http(port, "GET", "/metrics").body;
  EXPECT_NE(metrics.find(R"(nexuscache_auth_reloads_total{result="error"} 1)"), std::string::npos);
  EXPECT_NE(metrics.find(R"(nexuscache_auth_tokens{role="write"} 1)"), std::string::npos);
  EXPECT_GE(MetricSumIn(metrics, "nexuscache_auth_refused_total"), 9);
  EXPECT_NE(metrics.find(R"(nexuscache_auth_refused_total{protocol="http",reason="forbidden"} 2)"),
            std::string::npos);
}

TEST(Auth, ReadsMetricsAndTheDashboardCanNeedAReadToken) {
  const std::string tokens = WriteTokens("tokens2", "read r\nwrite w\n");
  Cluster c(1, {"--auth-token-file", tokens, "--cluster-secret-file", ClusterSecretFile(),
                "--auth-reads", "--auth-metrics", "--auth-dashboard"});
  std::string error;
  ASSERT_TRUE(c.Start(&error)) << error;  // (readiness is /healthz: open)
  const uint16_t port = c.node(0).http_port;
  for (const char* target :
       {"/api/get?key=k", "/api/stats", "/api/ring", "/metrics", "/dashboard", "/api/cluster"}) {
    const HttpResult anonymous = Http(port, "GET", target);
    EXPECT_EQ(anonymous.status, 401) << target;
    EXPECT_NE(anonymous.body.find("needs a token with the read role"), std::string::npos)
        << target << ": " << anonymous.body;
    EXPECT_NE(As(port, "r", "GET", target).status, 401) << target;
  }
  EXPECT_EQ(As(port, "r", "GET", "/api/get?key=k").status, 404);
  EXPECT_EQ(As(port, "r", "GET", "/metrics").status, 200);
  EXPECT_EQ(As(port, "w", "GET", "/dashboard").status, 200);
  EXPECT_EQ(Http(port, "GET", "/healthz").status, 200);
}

TEST(Auth, ABadTokenFileStopsTheStartWithItsReason) {
  const std::string tokens = WriteTokens("tokens3", "read ok\nwrite\n");
  ExpectNoStart(
      {"--auth-token-file", tokens, "--cluster-secret-file", ClusterSecretFile()}, 1,
      "cannot start: token file " + tokens + ": line 2: expected ROLE TOKEN (two fields), found 1");
  ExpectNoStart({"--auth-reads"}, 2, "--auth-reads needs --auth-token-file");
  // Tokens without a cluster secret would leave /peer/v1 (on the same port) open for writes.
  ExpectNoStart({"--auth-token-file", WriteTokens("tokens3b", "write w\n")}, 2,
                "--auth-token-file needs --cluster-secret-file");
}

TEST(Auth, WithEtcdAManualAddDoesNotOutliveTheNextMembershipUpdate) {
  std::string error;
  auto etcd = EtcdServer::Start(seconds(20), &error);
  ASSERT_NE(etcd, nullptr) << error;
  const std::string tokens = WriteTokens("tokens4", "admin boss\n");
  Cluster c(2,
            {"--etcd", etcd->endpoint(), "--lease-ttl", "2", "--auth-token-file", tokens,
             "--cluster-secret-file", ClusterSecretFile()},
            /*static_peers=*/false);
  ASSERT_TRUE(c.Start(&error)) << error;
  ASSERT_TRUE(c.RingsHave(2, {0, 1}));
  const uint16_t port = c.node(0).http_port;
  const std::string real = RingAddress(port, "svc2");
  ASSERT_FALSE(real.empty());
  // An admin moves svc2 by hand...
  ASSERT_EQ(As(port, "boss", "POST", "/setpeer", "peer=svc2&addr=127.0.0.1:1").status, 200);
  EXPECT_EQ(RingAddress(port, "svc2"), "127.0.0.1:1");
  // ...and the next membership update from etcd (a node joins) puts etcd's address back.
  ASSERT_GE(c.AddNode(&error), 0) << error;
  ASSERT_TRUE(WaitFor([&] { return RingAddress(port, "svc2") == real; }, seconds(10)))
      << RingAddress(port, "svc2");
}

// A peer call over gRPC with the real client (GrpcPeer), with `secret` (empty: none).
absl::StatusOr<CachedValue> GrpcGet(uint16_t port, const std::string& secret,
                                    const std::string& key) {
  GrpcPeer peer("svc1", "127.0.0.1:" + std::to_string(port),
                GrpcPeerOptions{.deadline = seconds(5), .cluster_secret = secret});
  std::promise<absl::StatusOr<CachedValue>> answer;
  peer.Get("scores", key, [&](absl::StatusOr<CachedValue> r) { answer.set_value(std::move(r)); });
  return answer.get_future().get();
}

TEST(ClusterSecret, OnlyCallsWithTheSecretReachTheOwnerOverEitherTransport) {
  const std::string secret = "0123456789abcdef0123456789abcdef";
  const std::string file = WriteTokens("secret", secret + "\n");
  Cluster c(3, {"--cluster-secret-file", file});
  std::string error;
  ASSERT_TRUE(c.Start(&error)) << error;
  // The cluster works: writes and reads through every node reach the owners (HTTP
  // forwarding), hot keys reach every node (gRPC).
  EXPECT_EQ(ServesThroughEveryNode(c), "");
  EXPECT_GT(MetricSum(c.node(0).http_port, "nexuscache_peer_requests_served_total"), 0);

  const uint16_t grpc = c.node(0).grpc_port, http = c.node(0).http_port;
  const std::string owned = KeyOwnedBy(http, "svc1", "own");
  ASSERT_EQ(Http(http, "POST", "/api/set", "key=" + owned + "&value=mine&expire=5").status, 200);
  // gRPC: the seed's Get with the secret answers; without it, or with another, it does not.
  absl::StatusOr<CachedValue> with = GrpcGet(grpc, secret, owned);
  ASSERT_TRUE(with.ok()) << with.status();
  EXPECT_EQ(with->data, "mine");
  for (const std::string& presented : {std::string(), std::string("fedcba9876543210fedcba98")}) {
    absl::StatusOr<CachedValue> refused = GrpcGet(grpc, presented, owned);
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.status().message().find(
                  "refused the call: this node takes peer calls only with the cluster secret"),
              std::string::npos)
        << refused.status();
  }
  // /peer/v1 over HTTP: the same.
  const std::string get = "/peer/v1/get?group=scores&key=" + owned;
  const HttpResult ok =
      HttpWithHeaders(http, "GET", get, "", {"X-Nexus-Cluster-Secret: " + secret});
  EXPECT_EQ(ok.body, "mine");
  EXPECT_EQ(ok.headers.at("x-nexus-status"), "0");
  const HttpResult missing = Http(http, "GET", get);
  EXPECT_EQ(missing.headers.at("x-nexus-status"), "16");  // Unauthenticated
  EXPECT_EQ(missing.body,
            "this node takes peer calls only with the cluster secret (--cluster-secret-file)");
  const HttpResult wrong =
      HttpWithHeaders(http, "POST",
                      "/peer/v1/replicate?group=scores&key=" + owned +
                          "&deadline_ms=0&version=999999999999999999&remove=0&ring=1",
                      "poison", {"X-Nexus-Cluster-Secret: not-the-secret-0123456789"});
  EXPECT_EQ(wrong.headers.at("x-nexus-status"), "16");
  EXPECT_EQ(Http(http, "GET", "/api/get?key=" + owned).body, "value=mine\n")
      << "a refused replicate changed nothing";

  const std::string metrics = Http(http, "GET", "/metrics").body;
  for (const char* series : {
           R"(nexuscache_peer_auth_refused_total{transport="grpc",reason="missing"} 1)",
           R"(nexuscache_peer_auth_refused_total{transport="grpc",reason="wrong"} 1)",
           R"(nexuscache_peer_auth_refused_total{transport="http",reason="missing"} 1)",
           R"(nexuscache_peer_auth_refused_total{transport="http",reason="wrong"} 1)",
       }) {
    EXPECT_NE(metrics.find(series), std::string::npos) << series;
  }
  EXPECT_NE(c.node(0).process->Log().find("peer: refused a gRPC call from"), std::string::npos);
}

TEST(ClusterSecret, ANodeWithoutTheSecretGetsNoAnswerFromOneWithIt) {
  // svc2 has the secret, svc1 does not: svc1's forwarded requests are refused by svc2, and
  // svc1's client hears that its peer refused the call (a 502, not a 401 for the client).
  const std::string file = WriteTokens("secret2", "0123456789abcdef0123456789abcdef\n");
  Cluster c(2, {});
  c.node(1).argv.push_back("--cluster-secret-file");
  c.node(1).argv.push_back(file);
  std::string error;
  ASSERT_TRUE(c.Start(&error)) << error;
  const std::string key = KeyOwnedBy(c.node(0).http_port, "svc2", "x");
  const HttpResult r =
      Http(c.node(0).http_port, "POST", "/api/set", "key=" + key + "&value=v&expire=5");
  EXPECT_EQ(r.status, 502);
  EXPECT_NE(r.body.find("peer svc2"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("refused the call"), std::string::npos) << r.body;
}

TEST(ReplicaVersions, APushFarAheadOfTheReceiversClockIsRefused) {
  // The issue's attack, without a cluster secret: a Replicate with a version an hour ahead
  // would pin its value in the replica against every later write for that hour.
  Cluster c(1, {});
  std::string error;
  ASSERT_TRUE(c.Start(&error)) << error;
  const uint16_t port = c.node(0).http_port;
  ASSERT_EQ(Http(port, "POST", "/api/set", "key=h&value=good&expire=5&hot=true").status, 200);
  const int64_t hour_ahead =
      std::chrono::duration_cast<milliseconds>(
          (std::chrono::system_clock::now() + std::chrono::hours(1)).time_since_epoch())
          .count();
  const std::string push =
      "/peer/v1/replicate?group=scores&key=h&deadline_ms=0&remove=0&ring=0&version=";
  const HttpResult refused = Http(port, "POST", push + std::to_string(hour_ahead << 20), "poison");
  EXPECT_EQ(refused.headers.at("x-nexus-status"), "11");  // OutOfRange
  EXPECT_NE(
      refused.body.find("ms ahead of this node's clock (at most 60000 ms: --max-version-skew)"),
      std::string::npos)
      << refused.body;
  EXPECT_EQ(Http(port, "GET", "/api/get?key=h").body, "value=good\n");
  EXPECT_EQ(MetricSum(port, "nexuscache_replica_versions_refused_total"), 1);
  ASSERT_EQ(Http(port, "POST", "/api/set", "key=h&value=newer&expire=5&hot=true").status, 200);
  EXPECT_EQ(Http(port, "GET", "/api/get?key=h").body, "value=newer\n");
}

TEST(ClusterSecret, ABadSecretFileStopsTheStart) {
  const std::string file = WriteTokens("secret3", "short\n");
  ExpectNoStart({"--cluster-secret-file", file}, 1,
                "cannot start: " + file +
                    ": the cluster secret must be 16 to 4096 printable ASCII characters");
}

}  // namespace
}  // namespace nexus::testing
