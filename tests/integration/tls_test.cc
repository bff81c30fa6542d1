// Mutual TLS on the cluster plane (--tls-cert, --tls-key, --tls-ca) with real nexuscache
// processes and certificates made at test time by scripts/make-certs (openssl): a TLS cluster
// serves, forwards over TLS on the event loops and replicates over gRPC with TLS; a call
// without a certificate, with one from another CA, with an expired one or in plaintext is
// refused with a logged reason and a metric while the cluster goes on serving; a member with
// another CA's certificate is cut off while the others serve; bad flags stop the start. And
// membership through a secured etcd: TLS with client certificates and user/password auth.
// HTTPS clients are real curl (with and without a client certificate) and the real gRPC client
// (GrpcPeer).
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <future>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "peer/grpc_peer.h"
#include "support/certs.h"
#include "support/cluster.h"
#include "support/etcd.h"
#include "support/process.h"
#include "support/wait.h"

namespace nexus::testing {
namespace {

using std::chrono::seconds;

struct CurlResult {
  int exit_code = -1;  // curl's: 0 when an answer came, 35/56/58: TLS refusals
  std::string out;     // the body, then the status code on the last line
};

// GET (or with `post`, POST that form to) https://NAME:PORT`target` with curl, NAME resolving to
// 127.0.0.1 (the certificate carries the member name), trusting `ca`, presenting `cert`/`key` when
// given.
CurlResult Curl(const std::string& name, uint16_t port, const std::string& target,
                const std::string& ca, const std::string& cert = "", const std::string& key = "",
                const std::string& post = "") {
  const std::string p = std::to_string(port);
  std::string command = "curl -s --max-time 10 -w '\\n%{http_code}' --cacert " + ca +
                        " --resolve " + name + ":" + p + ":127.0.0.1";
  if (!cert.empty()) command += " --cert " + cert + " --key " + key;
  if (!post.empty()) command += " --data '" + post + "'";
  command += " 'https://" + name + ":" + p + target + "' 2>&1";
  const ShellResult r = RunShell(command);
  return {r.exit_code, r.out};
}

// A Get over gRPC with the real client, as member `name` is called, with `tls` (empty: none).
absl::StatusOr<CachedValue> GrpcGet(uint16_t port, const std::string& name, const std::string& key,
                                    tls::Pem tls) {
  GrpcPeer peer(name, "127.0.0.1:" + std::to_string(port),
                GrpcPeerOptions{.deadline = seconds(5), .tls = std::move(tls)});
  std::promise<absl::StatusOr<CachedValue>> answer;
  peer.Get("scores", key, [&](absl::StatusOr<CachedValue> r) { answer.set_value(std::move(r)); });
  return answer.get_future().get();
}

tls::Pem PemOf(const std::string& dir, const std::string& name, const std::string& ca_dir = "") {
  absl::StatusOr<tls::Pem> pem =
      tls::Pem::Read({.cert = dir + "/" + name + ".pem",
                      .key = dir + "/" + name + ".key",
                      .ca = (ca_dir.empty() ? dir : ca_dir) + "/ca.pem"});
  EXPECT_TRUE(pem.ok()) << pem.status();
  return pem.ok() ? *pem : tls::Pem{};
}

double Failures(uint16_t port, const std::string& side, const std::string& reason) {
  const std::string series =
      "nexuscache_tls_handshake_failures_total{side=\"" + side + "\",reason=\"" + reason + "\"} ";
  const std::string metrics = Http(port, "GET", "/metrics").body;
  const size_t at = metrics.find(series);
  return at == std::string::npos ? -1 : std::stod(metrics.substr(at + series.size()));
}

void AddTls(Cluster& c, const std::string& certs) {
  for (size_t i = 0; i < c.size(); ++i) {
    for (const std::string& flag : TlsFlags(certs, c.node(i).name)) {
      c.node(i).argv.push_back(flag);
    }
  }
}

TEST(Tls, AMutualTlsClusterServesAndRefusesCallsWithoutAClusterCertificate) {
  const std::string certs = MakeCerts("tls", {"svc1", "svc2", "svc3"});
  const std::string expired = MakeCerts("tls", {"expired"}, -1);  // same CA, expired
  const std::string rogue = MakeCerts("tls-rogue", {"svc2"});     // another CA
  Cluster c(3, {});
  AddTls(c, certs);
  std::string error;
  ASSERT_TRUE(c.Start(&error)) << error;

  // Writes through every node reach their owners (HTTP forwarding over TLS), reads through
  // the others find them, a hot key reaches every node (replication).
  EXPECT_EQ(ServesThroughEveryNode(c), "");
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_GT(MetricSum(c.node(i).http_port, "nexuscache_peer_requests_served_total"), 0);
    EXPECT_EQ(MetricSum(c.node(i).http_port, "nexuscache_tls_handshake_failures_total"), 0);
  }
  // The dashboard's cluster view fetches every member's metrics over gRPC (with TLS).
  const nlohmann::json cluster =
      nlohmann::json::parse(Http(c.node(0).http_port, "GET", "/api/cluster").body);
  for (const auto& node : cluster["nodes"]) {
    EXPECT_FALSE(node.contains("error")) << node.dump().substr(0, 300);
  }

  const uint16_t http = c.node(0).http_port, grpc = c.node(0).grpc_port;
  const std::string owned = KeyOwnedBy(http, "svc1", "own");
  ASSERT_EQ(Http(http, "POST", "/api/set", "key=" + owned + "&value=mine&expire=5").status, 200);
  const std::string get = "/peer/v1/get?group=scores&key=" + owned;

  // /peer/v1 over HTTPS: a member's certificate is answered...
  const CurlResult ok =
      Curl("svc1", http, get, certs + "/ca.pem", certs + "/svc2.pem", certs + "/svc2.key");
  EXPECT_EQ(ok.exit_code, 0);
  EXPECT_EQ(ok.out, "mine\n200");
  // ... no certificate, another CA's and an expired one are refused in the handshake.
  EXPECT_NE(Curl("svc1", http, get, certs + "/ca.pem").exit_code, 0);
  EXPECT_NE(Curl("svc1", http, get, certs + "/ca.pem", rogue + "/svc2.pem", rogue + "/svc2.key")
                .exit_code,
            0);
  EXPECT_NE(
      Curl("svc1", http, get, certs + "/ca.pem", expired + "/expired.pem", expired + "/expired.key")
          .exit_code,
      0);
  EXPECT_TRUE(WaitFor([&] {
    return Failures(http, "server", "no_certificate") >= 1 &&
           Failures(http, "server", "untrusted") >= 1 && Failures(http, "server", "expired") >= 1;
  })) << Http(http, "GET", "/metrics").body;
  const std::string log = c.node(0).process->Log();
  for (const char* reason :
       {"peer did not return a certificate (no_certificate",
        "unable to get local issuer certificate (untrusted", "certificate has expired (expired"}) {
    EXPECT_NE(log.find(reason), std::string::npos) << reason;
  }
  // In plaintext, with or without the secret header, the routes answer Unauthenticated.
  const HttpResult plain = Http(http, "GET", get);
  EXPECT_EQ(plain.headers.at("x-nexus-status"), "16");
  EXPECT_EQ(plain.body,
            "this node takes peer calls only over mutual TLS with a cluster certificate "
            "(--tls-cert, --tls-key, --tls-ca)");
  const HttpResult poison = Http(http, "POST",
                                 "/peer/v1/replicate?group=scores&key=" + owned +
                                     "&deadline_ms=0&version=999999999999999999&remove=0&ring=1",
                                 "poison");
  EXPECT_EQ(poison.headers.at("x-nexus-status"), "16");
  EXPECT_EQ(MetricSum(http, "nexuscache_peer_auth_refused_total"), 2);

  // gRPC: with a member's certificate the seed's Get answers; in plaintext or with another
  // CA's certificate the call never reaches the service.
  absl::StatusOr<CachedValue> with = GrpcGet(grpc, "svc1", owned, PemOf(certs, "svc2"));
  ASSERT_TRUE(with.ok()) << with.status();
  EXPECT_EQ(with->data, "mine");
  EXPECT_FALSE(GrpcGet(grpc, "svc1", owned, {}).ok());
  // Another CA's, an expired or no certificate: refused in the handshake, counted and logged
  // like the HTTP port's refusals.
  const double untrusted = Failures(http, "server", "untrusted");
  const double expired_before = Failures(http, "server", "expired");
  EXPECT_FALSE(GrpcGet(grpc, "svc1", owned, PemOf(rogue, "svc2", certs)).ok());
  EXPECT_FALSE(GrpcGet(grpc, "svc1", owned, PemOf(expired, "expired", certs)).ok());
  EXPECT_EQ(Failures(http, "server", "untrusted"), untrusted + 1);
  EXPECT_EQ(Failures(http, "server", "expired"), expired_before + 1);
  tls::Pem ca_only = PemOf(certs, "svc2");
  ca_only.cert.clear();
  ca_only.key.clear();
  const double no_certificate = Failures(http, "server", "no_certificate");
  EXPECT_FALSE(GrpcGet(grpc, "svc1", owned, ca_only).ok());
  EXPECT_EQ(Failures(http, "server", "no_certificate"), no_certificate + 1);

  // Nothing refused changed anything, and the cluster goes on serving.
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(Http(c.node(i).http_port, "GET", "/api/get?key=" + owned).body, "value=mine\n");
  }
}

TEST(Tls, AMemberWithAnotherCasCertificateIsCutOffWhileTheOthersServe) {
  const std::string certs = MakeCerts("tls2", {"svc1", "svc2"});
  const std::string rogue = MakeCerts("tls2-rogue", {"svc3"});
  Cluster c(3, {});
  for (size_t i = 0; i < 2; ++i) {
    for (const std::string& flag : TlsFlags(certs, c.node(i).name)) c.node(i).argv.push_back(flag);
  }
  for (const std::string& flag : TlsFlags(rogue, "svc3")) c.node(2).argv.push_back(flag);
  std::string error;
  ASSERT_TRUE(c.Start(&error)) << error;
  const uint16_t http = c.node(0).http_port;
  // svc2's keys through svc1: served over TLS.
  const std::string good = KeyOwnedBy(http, "svc2", "g");
  ASSERT_EQ(Http(http, "POST", "/api/set", "key=" + good + "&value=ok&expire=5").status, 200);
  EXPECT_EQ(Http(c.node(1).http_port, "GET", "/api/get?key=" + good).body, "value=ok\n");
  // svc3's keys through svc1: an error soon (its certificate does not chain to svc1's CA),
  // counted on svc1's client side; no hang.
  const std::string cut = KeyOwnedBy(http, "svc3", "c");
  const auto start = std::chrono::steady_clock::now();
  const HttpResult r = Http(http, "POST", "/api/set", "key=" + cut + "&value=v&expire=5");
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5));
  // (The forward failed in its handshake, was retried over gRPC and failed there too.)
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_NE(r.body.find("peer svc3"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("certificate verify failed"), std::string::npos) << r.body;
  EXPECT_TRUE(WaitFor([&] { return Failures(http, "client", "untrusted") >= 1; }));
  EXPECT_NE(c.node(0).process->Log().find("tls: the handshake with peer svc3"), std::string::npos);
  EXPECT_EQ(Http(c.node(1).http_port, "GET", "/api/get?key=" + good).body, "value=ok\n");
}

TEST(Tls, ClientsMayUseTlsOnTheHttpPortWhileMembersSeeTheClusterCertificate) {
  const std::string certs = MakeCerts("tls4", {"svc1", "svc2", "svc3"});
  // The client port's certificate comes from another CA (a public one, say) and another name.
  const std::string pub = MakeCerts("tls4-public", {"cache.example"});
  const std::vector<std::string> http_tls = {"--http-tls-cert", pub + "/cache.example.pem",
                                             "--http-tls-key", pub + "/cache.example.key"};
  Cluster c(3, http_tls);
  AddTls(c, certs);
  std::string error;
  ASSERT_TRUE(c.Start(&error)) << error;
  const std::string key = KeyOwnedBy(c.node(0).http_port, "svc3", "h");
  // Over HTTPS through svc1: forwarded to svc3, whose HTTP port shows members the cluster
  // certificate (SNI) and clients the public one.
  CurlResult set = Curl("cache.example", c.node(0).http_port, "/api/set", pub + "/ca.pem", "", "",
                        "key=" + key + "&value=secret&expire=5");
  EXPECT_EQ(set.exit_code, 0) << set.out;
  for (size_t i = 0; i < 3; ++i) {
    const CurlResult got =
        Curl("cache.example", c.node(i).http_port, "/api/get?key=" + key, pub + "/ca.pem");
    EXPECT_EQ(got.out, "value=secret\n\n200") << i;
  }
  EXPECT_GT(MetricSum(c.node(2).http_port, "nexuscache_peer_requests_served_total"), 0);
  EXPECT_EQ(MetricSum(c.node(0).http_port, "nexuscache_tls_handshake_failures_total"), 0);
  // A client that opens one connection after another (each may offer to resume the last
  // session: browsers, libcurl, proxies do) gets each answered.
  const std::string p = std::to_string(c.node(1).http_port);
  const std::string url = "https://cache.example:" + p + "/api/get?key=" + key;
  FILE* pipe =
      popen(("curl -s -H 'Connection: close' --cacert " + pub + "/ca.pem --resolve " +
             "cache.example:" + p + ":127.0.0.1 '" + url + "' '" + url + "' '" + url + "' 2>&1")
                .c_str(),
            "r");
  ASSERT_NE(pipe, nullptr);
  std::string three;
  std::array<char, 1024> buf;
  for (size_t n; (n = fread(buf.data(), 1, buf.size(), pipe)) > 0;) three.append(buf.data(), n);
  EXPECT_EQ(pclose(pipe), 0);
  EXPECT_EQ(three, "value=secret\nvalue=secret\nvalue=secret\n");
  // Plaintext clients are still served (no --http-tls-only).
  EXPECT_EQ(Http(c.node(1).http_port, "GET", "/api/get?key=" + key).body, "value=secret\n");

  // --http-tls-only: plaintext client requests are refused with the reason.
  Cluster only(1, {"--http-tls-cert", pub + "/cache.example.pem", "--http-tls-key",
                   pub + "/cache.example.key", "--http-tls-only"});
  ASSERT_TRUE(only.Start(&error)) << error;  // (/healthz stays plaintext for probes)
  const HttpResult plain =
      Http(only.node(0).http_port, "POST", "/api/set", "key=a&value=b&expire=5");
  EXPECT_EQ(plain.status, 400);
  EXPECT_EQ(plain.body,
            "this port takes client requests over TLS only (--http-tls-only): use https://\n");
  EXPECT_EQ(Http(only.node(0).http_port, "GET", "/api/get?key=a").status, 400);
  const CurlResult secure =
      Curl("cache.example", only.node(0).http_port, "/api/get?key=a", pub + "/ca.pem");
  EXPECT_EQ(secure.exit_code, 0);
  EXPECT_EQ(secure.out.substr(secure.out.size() - 3), "404") << secure.out;  // not found: no a
}

void ExpectNoStart(const std::vector<std::string>& flags, int code, const std::string& message) {
  EXPECT_EQ(StartFails(flags, code, message), "");
}

TEST(Tls, BadTlsFlagsStopTheStartWithTheirReason) {
  const std::string certs = MakeCerts("tls3", {"svc1", "svc2"});
  ExpectNoStart({"--tls-cert", certs + "/svc1.pem"}, 2,
                "--tls-cert, --tls-key and --tls-ca go together");
  ExpectNoStart(TlsFlags(certs, "svc2"), 1,
                "--tls-cert " + certs + "/svc2.pem: does not carry this node's name 'svc1'");
  ExpectNoStart({"--tls-cert", certs + "/svc1.pem", "--tls-key", certs + "/svc2.key", "--tls-ca",
                 certs + "/ca.pem"},
                1, "does not match --tls-cert");
  ExpectNoStart({"--tls-cert", certs + "/svc1.pem", "--tls-key", certs + "/svc1.key", "--tls-ca",
                 certs + "/missing.pem"},
                1, "--tls-ca " + certs + "/missing.pem: cannot be read");
}

TEST(EtcdSecurity, NodesRegisterThroughAnEtcdWithClientCertificatesAndAuth) {
  if (EtcdServer::Binary().empty()) GTEST_SKIP() << "no etcd binary";
  const std::string certs =
      MakeCerts("etcd-sec", {"etcd", "svc1", "svc2", "svc3"}, 365, "127.0.0.1");
  const EtcdSecurity security{.cert = certs + "/etcd.pem",
                              .key = certs + "/etcd.key",
                              .ca = certs + "/ca.pem",
                              .client_cert_auth = true};
  std::string error;
  std::unique_ptr<EtcdServer> etcd = EtcdServer::Start(seconds(20), &error, nullptr, &security);
  ASSERT_NE(etcd, nullptr) << error;
  ASSERT_TRUE(etcd->EnableAuth("nexus", "s3cret-pw", "/nexuscache/", &error)) << error;
  const std::string password = WriteTempFile("etcd.password", "s3cret-pw\n");
  const std::vector<std::string> etcd_flags = {
      "--etcd", etcd->endpoint(),       "--etcd-ca", certs + "/ca.pem", "--etcd-user",
      "nexus",  "--etcd-password-file", password};
  // The whole secure profile: etcd over TLS with each node's certificate and a password,
  // mutual TLS between the nodes.
  Cluster c(2, etcd_flags, /*static_peers=*/false);
  for (size_t i = 0; i < 2; ++i) {
    const std::string& name = c.node(i).name;
    for (const std::string& flag : {std::string("--etcd-cert"), certs + "/" + name + ".pem",
                                    std::string("--etcd-key"), certs + "/" + name + ".key"}) {
      c.node(i).argv.push_back(flag);
    }
    for (const std::string& flag : TlsFlags(certs, name)) c.node(i).argv.push_back(flag);
  }
  ASSERT_TRUE(c.Start(&error)) << error;
  ASSERT_TRUE(c.RingsHave(2, {0, 1}));
  const std::string key = KeyOwnedBy(c.node(0).http_port, "svc2", "e");
  ASSERT_EQ(
      Http(c.node(0).http_port, "POST", "/api/set", "key=" + key + "&value=v&expire=5").status,
      200);
  EXPECT_EQ(Http(c.node(1).http_port, "GET", "/api/get?key=" + key).body, "value=v\n");

  // A node with a wrong password never registers, and says why.
  const std::string wrong = WriteTempFile("etcd.wrong", "not-the-password\n");
  std::vector<std::string> argv = {NexusBinary(),
                                   "--name",
                                   "svc3",
                                   "--port",
                                   std::to_string(FreePort()),
                                   "--http-port",
                                   std::to_string(FreePort()),
                                   "--etcd",
                                   etcd->endpoint(),
                                   "--etcd-ca",
                                   certs + "/ca.pem",
                                   "--etcd-cert",
                                   certs + "/svc3.pem",
                                   "--etcd-key",
                                   certs + "/svc3.key",
                                   "--etcd-user",
                                   "nexus",
                                   "--etcd-password-file",
                                   wrong};
  auto intruder =
      Process::Start(argv, {{"IP_ADDRESS", "127.0.0.1"}}, TempDir() + "/etcd-wrong-password.log");
  ASSERT_NE(intruder, nullptr);
  EXPECT_TRUE(WaitFor([&] {
    return intruder->Log().find("authentication failed, invalid user ID or password") !=
           std::string::npos;
  })) << intruder->Log();
  EXPECT_TRUE(c.RingsHave(2, {0, 1}));
}

}  // namespace
}  // namespace nexus::testing
