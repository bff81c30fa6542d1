#include "node/config.h"

#include <gtest/gtest.h>

#include <vector>

namespace nexus {
namespace {

ParseOutcome Parse(std::vector<const char*> args, const char* ip = nullptr) {
  args.insert(args.begin(), "nexuscache");
  return ParseCommandLine(static_cast<int>(args.size()), args.data(), ip);
}

TEST(ConfigTest, DefaultsMatchTheSeed) {
  ParseOutcome o = Parse({"--name", "svc1"});
  ASSERT_TRUE(o.config) << o.message;
  const Config& c = *o.config;
  EXPECT_EQ(c.grpc_port, 8888);
  EXPECT_EQ(c.http_port, 9999);
  EXPECT_FALSE(c.metrics_port.has_value());
  EXPECT_EQ(c.vnodes, 50);
  EXPECT_EQ(c.group, "scores");
  EXPECT_EQ(c.ip_address, "127.0.0.1");
  ASSERT_EQ(c.peers.size(), 1u);  // self only
  EXPECT_EQ(c.peers[0].name, "svc1");
  EXPECT_EQ(c.peers[0].grpc, "127.0.0.1:8888");
}

TEST(ConfigTest, SeedStylePeerListResolvesNamesWithTheGrpcPort) {
  ParseOutcome o =
      Parse({"--name", "svc1", "--peer", "svc1,svc2,svc3", "--port", "8001"}, "10.0.0.5");
  ASSERT_TRUE(o.config) << o.message;
  ASSERT_EQ(o.config->peers.size(), 3u);
  EXPECT_EQ(o.config->peers[1].grpc, "svc2:8001");
  EXPECT_EQ(o.config->peers[1].http, "svc2:9999");  // the same --http-port everywhere
  EXPECT_EQ(o.config->ip_address, "10.0.0.5");
  EXPECT_EQ(o.config->SelfGrpcAddress(), "10.0.0.5:8001");
}

TEST(ConfigTest, ExplicitAddressesAndSizes) {
  ParseOutcome o =
      Parse({"--name", "a", "--peer", "a=127.0.0.1:8881,b=127.0.0.1:8882", "--cache-bytes", "128M",
             "--hot-cache-bytes", "64K", "--metrics-port", "9100", "--demo-data"});
  ASSERT_TRUE(o.config) << o.message;
  EXPECT_EQ(o.config->peers[1].grpc, "127.0.0.1:8882");
  EXPECT_EQ(o.config->peers[1].http, "");  // unknown: forwarded over gRPC
  EXPECT_EQ(o.config->cache_bytes, size_t{128} << 20);
  EXPECT_EQ(o.config->hot_cache_bytes, size_t{64} << 10);
  EXPECT_EQ(o.config->metrics_port, 9100);
  EXPECT_TRUE(o.config->demo_data);
}

TEST(ConfigTest, PeerHttpPortAfterASlash) {
  ParseOutcome o = Parse({"--name", "a", "--peer", "a=127.0.0.1:8881/9991,b=[::1]:8882/9992"});
  ASSERT_TRUE(o.config) << o.message;
  EXPECT_EQ(o.config->peers[0].grpc, "127.0.0.1:8881");
  EXPECT_EQ(o.config->peers[0].http, "127.0.0.1:9991");
  EXPECT_EQ(o.config->peers[1].grpc, "[::1]:8882");
  EXPECT_EQ(o.config->peers[1].http, "[::1]:9992");
  for (const char* bad :
       {"b=127.0.0.1:8882/", "b=127.0.0.1:8882/x", "b=127.0.0.1:8882/70000", "b=127.0.0.1/9992"}) {
    ParseOutcome r = Parse({"--name", "a", "--peer", bad});
    EXPECT_FALSE(r.config.has_value()) << bad;
    EXPECT_NE(r.message.find("NAME=HOST:PORT/HTTP_PORT"), std::string::npos) << r.message;
  }
}

TEST(ConfigTest, AdvertisedAddressesReplaceTheOnesPeersDial) {
  // Default: IP_ADDRESS with the ports this node listens on.
  ParseOutcome d = Parse({"--name", "a", "--port", "8001"}, "10.0.0.5");
  ASSERT_TRUE(d.config) << d.message;
  EXPECT_EQ(d.config->SelfGrpcAddress(), "10.0.0.5:8001");
  EXPECT_EQ(d.config->SelfHttpAddress(9001), "10.0.0.5:9001");
  // Behind a proxy or NAT: what peers dial instead, with or without its own HTTP port.
  ParseOutcome o = Parse({"--name", "a", "--advertise", "proxy.local:7001/7002"}, "10.0.0.5");
  ASSERT_TRUE(o.config) << o.message;
  EXPECT_EQ(o.config->SelfGrpcAddress(), "proxy.local:7001");
  EXPECT_EQ(o.config->SelfHttpAddress(9001), "proxy.local:7002");
  ParseOutcome g = Parse({"--name", "a", "--advertise", "proxy.local:7001"});
  ASSERT_TRUE(g.config) << g.message;
  EXPECT_EQ(g.config->SelfHttpAddress(9001), "proxy.local:9001");
  for (const char* bad : {"proxy.local", ":7001", "proxy.local:7001/", "proxy.local:7001/x"}) {
    ParseOutcome r = Parse({"--name", "a", "--advertise", bad});
    EXPECT_FALSE(r.config.has_value()) << bad;
    EXPECT_NE(r.message.find("--advertise '"), std::string::npos) << r.message;
  }
}

TEST(ConfigTest, RespPortAndMaxTtl) {
  ParseOutcome off = Parse({"--name", "svc1"});
  ASSERT_TRUE(off.config) << off.message;
  EXPECT_FALSE(off.config->resp_port.has_value());  // off unless given
  EXPECT_EQ(off.config->max_ttl.count(), 0);        // Redis's: no expiry means none
  ParseOutcome on = Parse({"--name", "svc1", "--resp-port", "6379", "--max-ttl", "30d"});
  ASSERT_TRUE(on.config) << on.message;
  EXPECT_EQ(on.config->resp_port, 6379);
  EXPECT_EQ(on.config->max_ttl.count(), 30LL * 86'400'000);
  EXPECT_EQ(Parse({"--name", "svc1", "--max-ttl", "12h"}).config->max_ttl.count(),
            12LL * 3'600'000);
  ParseOutcome bad = Parse({"--name", "svc1", "--resp-port", "70000"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.message.find("--resp-port out of range"), std::string::npos) << bad.message;
  bad = Parse({"--name", "svc1", "--max-ttl", "soon"});
  EXPECT_NE(bad.message.find("--max-ttl 'soon' is not a duration"), std::string::npos)
      << bad.message;
}

TEST(ConfigTest, LogLevel) {
  EXPECT_EQ(Parse({"--name", "a"}).config->log_level, "info");
  EXPECT_EQ(Parse({"--name", "a", "--log-level", "trace"}).config->log_level, "trace");
  ParseOutcome bad = Parse({"--name", "a", "--log-level", "verbose"});
  EXPECT_FALSE(bad.config.has_value());
  EXPECT_NE(bad.message.find("--log-level must be"), std::string::npos) << bad.message;
}

TEST(ConfigTest, ForwardTransport) {
  EXPECT_TRUE(Parse({"--name", "a"}).config->forward_over_http);
  EXPECT_FALSE(Parse({"--name", "a", "--forward", "grpc"}).config->forward_over_http);
  ParseOutcome bad = Parse({"--name", "a", "--forward", "carrier-pigeon"});
  EXPECT_FALSE(bad.config.has_value());
  EXPECT_EQ(bad.exit_code, 2);
}

TEST(ConfigTest, ReplicasAndWriteQuorum) {
  const Config one = *Parse({"--name", "a"}).config;
  EXPECT_EQ(one.replicas, 1);  // the seed's behaviour: the owner alone
  EXPECT_EQ(one.write_quorum, 1);
  const Config two = *Parse({"--name", "a", "--replicas", "2"}).config;
  EXPECT_EQ(two.replicas, 2);
  EXPECT_EQ(two.write_quorum, 2);  // W defaults to R
  EXPECT_EQ(Parse({"--name", "a", "--replicas", "3", "--write-quorum", "2"}).config->write_quorum,
            2);
  ParseOutcome bad = Parse({"--name", "a", "--replicas", "2", "--write-quorum", "3"});
  EXPECT_FALSE(bad.config.has_value());
  EXPECT_NE(bad.message.find("--write-quorum 3 is more than --replicas 2"), std::string::npos)
      << bad.message;
  EXPECT_FALSE(Parse({"--name", "a", "--replicas", "0"}).config.has_value());
}

TEST(ConfigTest, HandoffRateAndDrainTimeout) {
  const Config d = *Parse({"--name", "a"}).config;
  EXPECT_EQ(d.handoff_rate, size_t{64} << 20);
  EXPECT_EQ(d.drain_timeout, std::chrono::seconds(10));
  const Config c =
      *Parse({"--name", "a", "--handoff-rate", "8M", "--drain-timeout", "1500ms"}).config;
  EXPECT_EQ(c.handoff_rate, size_t{8} << 20);
  EXPECT_EQ(c.drain_timeout, std::chrono::milliseconds(1500));
  EXPECT_EQ(Parse({"--name", "a", "--drain-timeout", "30"}).config->drain_timeout,
            std::chrono::seconds(30));
  EXPECT_EQ(Parse({"--name", "a", "--handoff-rate", "0"}).config->handoff_rate, 0u);
  ParseOutcome bad = Parse({"--name", "a", "--drain-timeout", "soon"});
  EXPECT_FALSE(bad.config.has_value());
  EXPECT_NE(bad.message.find("--drain-timeout 'soon' is not a duration"), std::string::npos)
      << bad.message;
  EXPECT_FALSE(Parse({"--name", "a", "--handoff-rate", "fast"}).config.has_value());
}

TEST(ConfigTest, EtcdEndpoints) {
  ParseOutcome o =
      Parse({"--name", "a", "--etcd", "127.0.0.1:2379,http://10.0.0.2:2379", "--lease-ttl", "3"});
  ASSERT_TRUE(o.config) << o.message;
  EXPECT_EQ(o.config->etcd, (std::vector<std::string>{"127.0.0.1:2379", "10.0.0.2:2379"}));
  EXPECT_EQ(o.config->lease_ttl_seconds, 3);
  EXPECT_FALSE(Parse({"--name", "a", "--etcd", "nohost"}).config.has_value());
}

TEST(ConfigTest, BadFlagsExitTwoWithAUsageLine) {
  for (auto args : std::vector<std::vector<const char*>>{
           {},                                        // --name missing
           {"--name", "a", "--bogus"},                // unknown flag
           {"--name", "a", "--port", "http"},         // not a number
           {"--name", "a", "--port", "70000"},        // out of range
           {"--name", "a", "--cache-bytes", "12Q"},   // bad unit
           {"--name", "a", "--peer", "b=nowhere"},    // no port
           {"--name", "a", "--peer", "b,b"},          // duplicate
           {"--name", "a", "--origin", "http://x/"},  // no {key}
           {"--name", "a", "--vnodes", "0"},
       }) {
    ParseOutcome o = Parse(args);
    EXPECT_FALSE(o.config.has_value());
    EXPECT_EQ(o.exit_code, 2);
    EXPECT_NE(o.message.find("usage: nexuscache"), std::string::npos) << o.message;
  }
}

TEST(ConfigTest, TlsAndEtcdCredentialFlagsGoTogether) {
  for (const auto& [args, message] : std::vector<std::pair<std::vector<const char*>, std::string>>{
           {{"--name", "a", "--tls-cert", "c.pem", "--tls-key", "k.pem"},
            "--tls-cert, --tls-key and --tls-ca go together"},
           {{"--name", "a", "--etcd", "e:2379", "--etcd-cert", "c.pem", "--etcd-ca", "ca.pem"},
            "--etcd-cert and --etcd-key go together"},
           {{"--name", "a", "--etcd", "e:2379", "--etcd-cert", "c.pem", "--etcd-key", "k.pem"},
            "--etcd-cert needs --etcd-ca"},
           {{"--name", "a", "--etcd", "e:2379", "--etcd-user", "u"},
            "--etcd-user and --etcd-password-file go together"},
           {{"--name", "a", "--etcd-ca", "ca.pem"}, "need --etcd"},
           {{"--name", "a", "--etcd", "https://e:2379"}, "TLS to etcd needs --etcd-ca"},
           {{"--name", "a", "--http-tls-cert", "c.pem"},
            "--http-tls-cert and --http-tls-key go together"},
           {{"--name", "a", "--http-tls-only"}, "--http-tls-only needs --http-tls-cert"},
       }) {
    ParseOutcome o = Parse(args);
    EXPECT_EQ(o.exit_code, 2) << message;
    EXPECT_NE(o.message.find(message), std::string::npos) << o.message;
  }
  ParseOutcome ok = Parse({"--name", "a", "--tls-cert", "c", "--tls-key", "k", "--tls-ca", "ca",
                           "--auth-token-file", "tokens"});
  ASSERT_TRUE(ok.config.has_value()) << ok.message << " (mutual TLS stands in for a secret)";
  EXPECT_TRUE(ok.config->cluster_tls());
}

TEST(ConfigTest, HelpExitsZero) {
  ParseOutcome o = Parse({"--help"});
  EXPECT_FALSE(o.config.has_value());
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_NE(o.message.find("--http-port"), std::string::npos);
}

TEST(ConfigTest, ByteSizes) {
  EXPECT_EQ(*ParseByteSize("4096"), 4096u);
  EXPECT_EQ(*ParseByteSize("2k"), 2048u);
  EXPECT_EQ(*ParseByteSize("1GiB"), size_t{1} << 30);
  EXPECT_FALSE(ParseByteSize("").ok());
  EXPECT_FALSE(ParseByteSize("M").ok());
}

}  // namespace
}  // namespace nexus
