// Config: everything a nexuscache process is told at startup, with the seed's flag names.
// Every default is documented here and in `nexuscache --help`.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/member.h"

namespace nexus {

struct Config {
  std::string name;               // --name: this node's name in the ring (required)
  std::vector<MemberInfo> peers;  // --peer: static membership; always includes self
  std::vector<std::string> etcd;  // --etcd host:port[,...]: live membership from etcd
  int64_t lease_ttl_seconds = 5;  // --lease-ttl: etcd lease TTL
  // --etcd-ca (TLS to etcd), --etcd-cert/--etcd-key (a client certificate), --etcd-user and
  // --etcd-password-file (etcd's user/password auth): files, read at start.
  std::string etcd_ca;
  std::string etcd_cert;
  std::string etcd_key;
  std::string etcd_user;
  std::string etcd_password_file;
  uint16_t grpc_port = 8888;             // --port
  uint16_t http_port = 9999;             // --http-port
  std::optional<uint16_t> metrics_port;  // --metrics-port: extra /metrics listener (seed: 9100)
  // --resp-port: the Redis protocol (node/resp_api.h) on the HTTP port's loops; unset: off.
  std::optional<uint16_t> resp_port;
  // --max-ttl: keys written over RESP without an expiry (or a longer one) expire after this
  // ("30d", "3600s"; 0 = never, Redis's semantics).
  std::chrono::milliseconds max_ttl{0};
  std::string bind_address = "0.0.0.0";  // --bind: address the listeners bind
  std::string ip_address = "127.0.0.1";  // env IP_ADDRESS: the address peers dial to reach us
  // --advertise HOST:PORT[/HTTP_PORT]: what peers dial instead (a node behind a proxy or NAT);
  // empty members: IP_ADDRESS with the ports this node listens on.
  MemberInfo advertise;
  size_t cache_bytes = 64 << 20;        // --cache-bytes (K/M/G suffixes accepted)
  size_t hot_cache_bytes = 16 << 20;    // --hot-cache-bytes
  int vnodes = 50;                      // --vnodes
  int replicas = 1;                     // --replicas: members holding each key (R)
  int write_quorum = 0;                 // --write-quorum: copies before a write's ack (W; 0 = R)
  double ttl_jitter = 0.1;              // --ttl-jitter: max extra TTL as a fraction of the TTL
  int64_t ttl_jitter_cap_ms = 180'000;  // --ttl-jitter-cap: and at most this (seconds on CLI)
  int threads = 0;                      // --threads: HTTP event-loop threads (0 = cores)
  // --max-connections: open HTTP connections (clients and peers forwarding) beyond which a
  // new one is closed at once and counted; 0 = no limit.
  size_t max_connections = 10000;
  std::string origin;                    // --origin: read-through URL template with {key}
  bool demo_data = false;                // --demo-data: the seed's "scores" demo store
  std::string group = "scores";          // --group: the group served (the seed's default)
  int64_t default_ttl_ms = 60 * 60'000;  // --default-ttl (minutes): TTL of loaded values
  size_t max_key_bytes = 250;            // --max-key-bytes
  size_t max_value_bytes = 1 << 20;      // --max-value-bytes
  bool forward_over_http = true;         // --forward http|grpc: how requests reach their owner
  std::chrono::milliseconds peer_timeout{2000};    // --peer-timeout-ms: deadline of peer calls
  std::chrono::milliseconds origin_timeout{2000};  // --origin-timeout-ms
  std::chrono::milliseconds shutdown_grace{5000};  // --shutdown-grace-ms
  // --max-version-skew: a pushed change whose version was drawn further ahead of this node's
  // clock is refused and counted ("60s", "500ms"; 0 = no bound).
  std::chrono::milliseconds max_version_skew{60'000};
  // --handoff-rate: bytes per second of copies handed to new holders on a membership change
  // (K/M/G accepted; 0 = no limit).
  size_t handoff_rate = 64 << 20;
  // --drain-timeout: how long SIGTERM spends handing this node's copies to their next holders
  // before it leaves the membership (with --etcd; "10s", "500ms", plain numbers are seconds).
  std::chrono::milliseconds drain_timeout{10000};
  // --auth-token-file: "ROLE TOKEN" lines (read, write, admin; auth/tokens.h), read again on
  // SIGHUP. Empty: no tokens, the seed's open API, and /setpeer only re-adds known members.
  std::string auth_token_file;
  bool auth_reads = false;      // --auth-reads: gets, /api/stats and /api/ring need read
  bool auth_metrics = false;    // --auth-metrics: /metrics needs the read role
  bool auth_dashboard = false;  // --auth-dashboard: /dashboard and /api/cluster need read
  // --cluster-secret-file: a secret every node of the cluster shares (auth/cluster_secret.h),
  // sent with each node-to-node call; calls without it are refused. Empty: none.
  std::string cluster_secret_file;
  // --tls-cert, --tls-key, --tls-ca: mutual TLS on the cluster plane (tls/context.h). All three
  // or none. The certificate must carry --name (as a DNS subjectAltName).
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
  bool cluster_tls() const { return !tls_cert.empty(); }
  // --http-tls-cert, --http-tls-key: TLS for clients on the HTTP port (the same port; the first
  // byte tells); --http-tls-only: plaintext client requests are refused (/peer/v1 excepted).
  std::string http_tls_cert;
  std::string http_tls_key;
  bool http_tls_only = false;
  // --log-level: error, warn, info (the default), debug (membership transitions), trace (also
  // every write, copy, drop and read with its version: for following a key through a failure
  // test, not for production load).
  std::string log_level = "info";

  // This node's own addresses as peers see them (`bound_port`: the HTTP port it listens on).
  std::string SelfGrpcAddress() const;
  std::string SelfHttpAddress(uint16_t bound_port) const;
};

// Parses a duration: "10s", "500ms", "2m", "1h", "30d"; a plain number is seconds.
absl::StatusOr<std::chrono::milliseconds> ParseDuration(std::string_view text);

// Parses a byte size: "1048576", "64K", "64M", "1G" (powers of 1024; "KiB"/"MB" forms too).
absl::StatusOr<size_t> ParseByteSize(std::string_view text);

// Parses --peer: "svc1,svc2,svc3" (each NAME:<grpc_port>, HTTP on NAME:<http_port>, as in the
// seed's docker network) or "svc1=127.0.0.1:8881,svc2=127.0.0.1:8882" (gRPC only) or
// "svc1=127.0.0.1:8881/9991" (gRPC port, then the HTTP port on the same host), or a mix.
absl::StatusOr<std::vector<MemberInfo>> ParsePeers(std::string_view text, uint16_t grpc_port,
                                                   uint16_t http_port);

// Outcome of parsing the command line: a config, or an exit code with text for the terminal
// (--help: 0 and the help on stdout; a bad flag: 2 and a usage line on stderr).
struct ParseOutcome {
  std::optional<Config> config;
  int exit_code = 0;
  std::string message;
};

// `env_ip_address` is getenv("IP_ADDRESS") (nullptr when unset); passed in for tests.
ParseOutcome ParseCommandLine(int argc, const char* const* argv, const char* env_ip_address);

}  // namespace nexus
