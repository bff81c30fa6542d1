// Client and admin authentication on real nexuscache processes: the seed's open flows without
// tokens (and /setpeer limited to members the node knows), Bearer tokens with their roles, a
// reload on SIGHUP that keeps connections open, the flags that close reads, /metrics and the
// dashboard, a bad token file at start, and /setpeer against etcd's membership.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support/cluster.h"
#include "support/etcd.h"
#include "support/process.h"
#include "support/wait.h"

namespace nexus::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string WriteTokens(const std::string& name, const std::string& text) {
  const std::string path = TempDir() + "/" + name;
  std::ofstream(path, std::ios::trunc) << text;
  return path;
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
  Cluster c(1, {"--auth-token-file", tokens});
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
  Cluster c(1, {"--auth-token-file", tokens, "--auth-reads", "--auth-metrics", "--auth-dashboard"});
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
  const std::string log = TempDir() + "/bad-tokens.log";
  auto p = Process::Start({NEXUSCACHE_BIN, "--name", "svc1", "--port", std::to_string(FreePort()),
                           "--http-port", std::to_string(FreePort()), "--auth-token-file", tokens},
                          {}, log);
  ASSERT_NE(p, nullptr);
  int code = 0;
  ASSERT_TRUE(p->WaitExit(seconds(10), &code));
  EXPECT_EQ(code, 1);
  EXPECT_NE(p->Log().find("cannot start: token file " + tokens +
                          ": line 2: expected ROLE TOKEN (two fields), found 1"),
            std::string::npos)
      << p->Log();

  auto flag = Process::Start({NEXUSCACHE_BIN, "--name", "svc1", "--auth-reads"}, {},
                             TempDir() + "/flag.log");
  ASSERT_NE(flag, nullptr);
  ASSERT_TRUE(flag->WaitExit(seconds(10), &code));
  EXPECT_EQ(code, 2);
  EXPECT_NE(flag->Log().find("--auth-reads needs --auth-token-file"), std::string::npos)
      << flag->Log();
}

TEST(Auth, WithEtcdAManualAddDoesNotOutliveTheNextMembershipUpdate) {
  std::string error;
  auto etcd = EtcdServer::Start(seconds(20), &error);
  ASSERT_NE(etcd, nullptr) << error;
  const std::string tokens = WriteTokens("tokens4", "admin boss\n");
  Cluster c(2, {"--etcd", etcd->endpoint(), "--lease-ttl", "2", "--auth-token-file", tokens},
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

}  // namespace
}  // namespace nexus::testing
