#include "node/config.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <set>

namespace nexus {

std::string Config::SelfGrpcAddress() const {
  return !advertise.grpc.empty() ? advertise.grpc : ip_address + ":" + std::to_string(grpc_port);
}

std::string Config::SelfHttpAddress(uint16_t bound_port) const {
  if (!advertise.http.empty()) return advertise.http;
  const std::string& grpc = SelfGrpcAddress();
  return grpc.substr(0, grpc.rfind(':') + 1) + std::to_string(bound_port);
}

namespace {

// "HOST:PORT" or "HOST:PORT/HTTP_PORT" (the HTTP port on the same host) into `spec`.
bool ParseMemberAddress(std::string_view address, MemberInfo* spec) {
  const size_t slash = address.find('/');
  spec->grpc = std::string(address.substr(0, slash));
  const size_t colon = spec->grpc.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == spec->grpc.size()) return false;
  if (slash == std::string_view::npos) return true;
  const std::string port(address.substr(slash + 1));
  if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos ||
      port.size() > 5 || std::stoi(port) <= 0 || std::stoi(port) > 65535) {
    return false;
  }
  spec->http = spec->grpc.substr(0, colon + 1) + port;
  return true;
}

}  // namespace

absl::StatusOr<size_t> ParseByteSize(std::string_view text) {
  size_t value = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || ptr == begin) {
    return absl::InvalidArgumentError("not a byte size: '" + std::string(text) + "'");
  }
  std::string unit(ptr, end);
  std::transform(unit.begin(), unit.end(), unit.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  size_t multiplier = 1;
  if (unit.empty() || unit == "B") {
    multiplier = 1;
  } else if (unit == "K" || unit == "KB" || unit == "KIB") {
    multiplier = size_t{1} << 10;
  } else if (unit == "M" || unit == "MB" || unit == "MIB") {
    multiplier = size_t{1} << 20;
  } else if (unit == "G" || unit == "GB" || unit == "GIB") {
    multiplier = size_t{1} << 30;
  } else {
    return absl::InvalidArgumentError("unknown size unit in '" + std::string(text) +
                                      "' (use K, M or G)");
  }
  if (value > SIZE_MAX / multiplier) {
    return absl::InvalidArgumentError("byte size too large: '" + std::string(text) + "'");
  }
  return value * multiplier;
}

absl::StatusOr<std::vector<MemberInfo>> ParsePeers(std::string_view text, uint16_t grpc_port,
                                                   uint16_t http_port) {
  std::vector<MemberInfo> peers;
  std::set<std::string> names;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = text.substr(start, comma - start);
    start = comma + 1;
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.front())))
      item.remove_prefix(1);
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.back())))
      item.remove_suffix(1);
    if (item.empty()) {
      if (comma == text.size()) break;
      continue;
    }
    MemberInfo spec;
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      spec.name = std::string(item);
      spec.grpc = spec.name + ":" + std::to_string(grpc_port);
      spec.http = spec.name + ":" + std::to_string(http_port);
    } else {
      spec.name = std::string(item.substr(0, eq));
      if (spec.name.empty() || !ParseMemberAddress(item.substr(eq + 1), &spec)) {
        return absl::InvalidArgumentError("--peer entry '" + std::string(item) +
                                          "' must be NAME, NAME=HOST:PORT or "
                                          "NAME=HOST:PORT/HTTP_PORT");
      }
    }
    if (!names.insert(spec.name).second) {
      return absl::InvalidArgumentError("--peer names '" + spec.name + "' twice");
    }
    peers.push_back(std::move(spec));
  }
  return peers;
}

absl::StatusOr<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  const std::string_view unit = text.substr(digits);
  int64_t scale = 0;
  if (unit.empty() || unit == "s") {
    scale = 1000;
  } else if (unit == "ms") {
    scale = 1;
  } else if (unit == "m") {
    scale = 60'000;
  } else if (unit == "h") {
    scale = 3'600'000;
  } else if (unit == "d") {
    scale = 86'400'000;
  }
  int64_t n = 0;
  if (digits == 0 || digits > 9 || scale == 0 ||
      std::from_chars(text.data(), text.data() + digits, n).ec != std::errc()) {
    return absl::InvalidArgumentError("'" + std::string(text) +
                                      "' is not a duration (e.g. 10s, 500ms, 2m, 1h, 30d)");
  }
  return std::chrono::milliseconds(n * scale);
}

ParseOutcome ParseCommandLine(int argc, const char* const* argv, const char* env_ip_address) {
  Config c;
  std::string peers, etcd, cache_bytes = "64M", hot_cache_bytes = "16M";
  std::string handoff_rate = "64M", drain_timeout = "10s", advertise, version_skew = "60s";
  int metrics_port = 0;
  int resp_port = 0;
  std::string max_ttl = "0";
  int64_t default_ttl_minutes = 60, jitter_cap_seconds = 180;
  int64_t peer_timeout_ms = c.peer_timeout.count(), origin_timeout_ms = c.origin_timeout.count();
  int64_t grace_ms = c.shutdown_grace.count();

  CLI::App app{"nexuscache: a distributed in-memory cache node", "nexuscache"};
  app.add_option("--name", c.name, "This node's name in the ring (e.g. svc1)")->required();
  app.add_option("--peer", peers,
                 "Static members: svc1,svc2,svc3 (dialed as NAME:<--port>) or "
                 "svc1=127.0.0.1:8881[/9991 = its HTTP port],...; this node is always a member");
  app.add_option("--etcd", etcd,
                 "etcd endpoints host:port[,host:port...]: membership from etcd (register, "
                 "watch); --peer then only seeds the ring until etcd answers");
  app.add_option("--etcd-ca", c.etcd_ca,
                 "TLS to etcd: the CA certificate(s) (PEM) etcd's certificate must chain to");
  app.add_option("--etcd-cert", c.etcd_cert,
                 "TLS to etcd: a client certificate (PEM; for etcd's --client-cert-auth), with "
                 "--etcd-key and --etcd-ca");
  app.add_option("--etcd-key", c.etcd_key, "TLS to etcd: the key of --etcd-cert (PEM)");
  app.add_option("--etcd-user", c.etcd_user,
                 "etcd's user/password auth: the user (password from --etcd-password-file)");
  app.add_option("--etcd-password-file", c.etcd_password_file,
                 "etcd's user/password auth: a file whose first line is --etcd-user's password");
  app.add_option("--lease-ttl", c.lease_ttl_seconds, "etcd lease TTL in seconds")
      ->check(CLI::Range(int64_t{1}, int64_t{3600}))
      ->capture_default_str();
  app.add_option("--port", c.grpc_port, "gRPC port for peers")->capture_default_str();
  app.add_option("--http-port", c.http_port, "HTTP API port")->capture_default_str();
  app.add_option("--metrics-port", metrics_port, "Extra port serving only /metrics (0 = none)");
  app.add_option("--resp-port", resp_port,
                 "Port of the Redis protocol (redis-cli, every Redis client), on the HTTP "
                 "port's threads (0 = off)");
  app.add_option("--max-ttl", max_ttl,
                 "Keys written over RESP without an expiry, or a longer one, expire after this "
                 "(\"30d\", \"12h\", \"3600s\"; 0 = never, as in Redis)")
      ->capture_default_str();
  app.add_option("--bind", c.bind_address, "Address to listen on")->capture_default_str();
  app.add_option("--log-level", c.log_level,
                 "error, warn, info, debug (membership transitions) or trace (every write, copy "
                 "and read with its version; slow)")
      ->capture_default_str();
  app.add_option("--advertise", advertise,
                 "HOST:PORT[/HTTP_PORT] peers dial to reach this node, registered in etcd "
                 "(default: $IP_ADDRESS with --port and --http-port; for a node behind a proxy "
                 "or NAT)");
  app.add_option("--cache-bytes", cache_bytes, "Main cache budget (K/M/G)")->capture_default_str();
  app.add_option("--hot-cache-bytes", hot_cache_bytes, "Hot cache budget (K/M/G)")
      ->capture_default_str();
  app.add_option("--vnodes", c.vnodes, "Virtual nodes per member")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  app.add_option("--replicas", c.replicas,
                 "Members holding each key (R): the key's owner and the next R-1 members on the "
                 "ring; 2 survives the loss of any one node")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  app.add_option("--write-quorum", c.write_quorum,
                 "Copies stored before a write is acknowledged (W, 1..R; default R)")
      ->check(CLI::Range(0, 16));
  app.add_option("--handoff-rate", handoff_rate,
                 "Bytes per second of copies handed to their new holders when the membership "
                 "changes (K/M/G; 0 = no limit)")
      ->capture_default_str();
  app.add_option("--drain-timeout", drain_timeout,
                 "On SIGTERM with --etcd, how long to spend handing this node's copies to their "
                 "next holders before leaving (10s, 500ms; 0 = leave at once)")
      ->capture_default_str();
  app.add_option("--ttl-jitter", c.ttl_jitter, "Max random extra TTL, as a fraction of the TTL")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--ttl-jitter-cap", jitter_cap_seconds, "Max random extra TTL, in seconds")
      ->check(CLI::Range(int64_t{0}, int64_t{86400}))
      ->capture_default_str();
  app.add_option("--max-connections", c.max_connections,
                 "Open HTTP connections beyond which new ones are closed at once and counted "
                 "(0 = no limit)")
      ->capture_default_str();
  app.add_option("--threads", c.threads, "HTTP event-loop threads (0 = number of cores)")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  app.add_option("--origin", c.origin,
                 "Read-through origin, e.g. 'http://127.0.0.1:8080/item?k={key}'");
  app.add_flag("--demo-data", c.demo_data, "Serve the seed's demo store (Tom, Jack, Sam)");
  app.add_option("--group", c.group, "Group served")->capture_default_str();
  std::string forward = "http";
  app.add_option("--forward", forward,
                 "How requests reach the node that owns their key: http (from the event loop "
                 "to the owner's HTTP port; gRPC where the owner's HTTP address is unknown) "
                 "or grpc (always)")
      ->check(CLI::IsMember({"http", "grpc"}))
      ->capture_default_str();
  app.add_option("--default-ttl", default_ttl_minutes, "TTL of loaded values, in minutes")
      ->check(CLI::Range(int64_t{1}, int64_t{4320}))
      ->capture_default_str();
  app.add_option("--max-key-bytes", c.max_key_bytes, "Largest key accepted")->capture_default_str();
  app.add_option("--max-value-bytes", c.max_value_bytes, "Largest value accepted")
      ->capture_default_str();
  app.add_option("--peer-timeout-ms", peer_timeout_ms, "Deadline of every peer call")
      ->check(CLI::Range(int64_t{1}, int64_t{600000}))
      ->capture_default_str();
  app.add_option("--origin-timeout-ms", origin_timeout_ms, "Deadline of every origin fetch")
      ->check(CLI::Range(int64_t{1}, int64_t{600000}))
      ->capture_default_str();
  app.add_option("--auth-token-file", c.auth_token_file,
                 "Client tokens: one 'ROLE TOKEN' per line (roles read, write, admin; '#' "
                 "comments), sent as 'Authorization: Bearer TOKEN'; read again on SIGHUP. "
                 "Without it the API is open and /setpeer only re-adds known members");
  app.add_flag("--auth-reads", c.auth_reads,
               "With --auth-token-file: gets, /api/stats and /api/ring need a read token "
               "(default: open)");
  app.add_flag("--auth-metrics", c.auth_metrics,
               "With --auth-token-file: /metrics needs a read token (default: open)");
  app.add_flag("--auth-dashboard", c.auth_dashboard,
               "With --auth-token-file: /dashboard and /api/cluster need a read token "
               "(default: open)");
  app.add_option("--max-version-skew", version_skew,
                 "Refuse a replica change whose version was drawn further ahead of this node's "
                 "clock (e.g. 60s, 500ms; 0 = no bound)")
      ->capture_default_str();
  app.add_option("--cluster-secret-file", c.cluster_secret_file,
                 "A secret shared by every node (first line of the file, 16+ characters): sent "
                 "with each node-to-node call (gRPC, /peer/v1), and calls without it are refused");
  app.add_option("--tls-cert", c.tls_cert,
                 "Mutual TLS between nodes: this node's certificate (PEM), which must carry "
                 "--name as a DNS subjectAltName; with --tls-key and --tls-ca");
  app.add_option("--tls-key", c.tls_key, "Mutual TLS between nodes: the key of --tls-cert (PEM)");
  app.add_option("--tls-ca", c.tls_ca,
                 "Mutual TLS between nodes: the CA certificate(s) (PEM) every node's certificate "
                 "must chain to");
  app.add_option("--http-tls-cert", c.http_tls_cert,
                 "TLS for clients on the HTTP port (same port as plaintext): the certificate "
                 "(PEM), with --http-tls-key");
  app.add_option("--http-tls-key", c.http_tls_key, "The key of --http-tls-cert (PEM)");
  app.add_flag("--http-tls-only", c.http_tls_only,
               "With --http-tls-cert: refuse plaintext client requests on the HTTP port (the "
               "node-to-node /peer/v1 routes and /healthz excepted)");
  app.add_option("--shutdown-grace-ms", grace_ms, "How long SIGTERM waits for in-flight requests")
      ->check(CLI::Range(int64_t{0}, int64_t{600000}))
      ->capture_default_str();

  ParseOutcome out;
  auto fail = [&](const std::string& why) {
    out.exit_code = 2;
    out.message = "nexuscache: " + why +
                  "\nusage: nexuscache --name NAME [--peer LIST] "
                  "[--port N] [--http-port N] [options]; see nexuscache --help\n";
    return out;
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    out.exit_code = 0;
    out.message = app.help();
    return out;
  } catch (const CLI::ParseError& e) {
    return fail(e.what());
  }

  c.metrics_port = metrics_port > 0 ? std::optional<uint16_t>(metrics_port) : std::nullopt;
  if (metrics_port < 0 || metrics_port > 65535) return fail("--metrics-port out of range");
  c.resp_port = resp_port > 0 ? std::optional<uint16_t>(resp_port) : std::nullopt;
  if (resp_port < 0 || resp_port > 65535) return fail("--resp-port out of range");
  if (c.name.empty() || c.name.find_first_of(",= /") != std::string::npos ||
      !std::all_of(c.name.begin(), c.name.end(), [](char ch) { return ch > ' ' && ch < 127; })) {
    return fail("--name must be non-empty printable ASCII without ',', '=', '/' or spaces");
  }
  if (env_ip_address != nullptr && *env_ip_address != '\0') c.ip_address = env_ip_address;
  if (c.log_level != "error" && c.log_level != "warn" && c.log_level != "info" &&
      c.log_level != "debug" && c.log_level != "trace") {
    return fail("--log-level must be error, warn, info, debug or trace");
  }
  if (!advertise.empty() && !ParseMemberAddress(advertise, &c.advertise)) {
    return fail("--advertise '" + advertise + "' must be HOST:PORT or HOST:PORT/HTTP_PORT");
  }
  for (auto [text, target] :
       {std::pair{&cache_bytes, &c.cache_bytes}, std::pair{&hot_cache_bytes, &c.hot_cache_bytes},
        std::pair{&handoff_rate, &c.handoff_rate}}) {
    auto size = ParseByteSize(*text);
    if (!size.ok()) return fail(std::string(size.status().message()));
    *target = *size;
  }
  auto drain = ParseDuration(drain_timeout);
  if (!drain.ok()) return fail("--drain-timeout " + std::string(drain.status().message()));
  c.drain_timeout = *drain;
  auto ttl_cap = ParseDuration(max_ttl);
  if (!ttl_cap.ok()) return fail("--max-ttl " + std::string(ttl_cap.status().message()));
  c.max_ttl = *ttl_cap;
  auto skew = ParseDuration(version_skew);
  if (!skew.ok()) return fail("--max-version-skew " + std::string(skew.status().message()));
  c.max_version_skew = *skew;
  if (c.cache_bytes < 4096) return fail("--cache-bytes must be at least 4K");
  if (c.hot_cache_bytes < 4096) return fail("--hot-cache-bytes must be at least 4K");
  if (c.demo_data && !c.origin.empty()) return fail("--demo-data and --origin exclude each other");
  if (!c.origin.empty() && c.origin.find("{key}") == std::string::npos) {
    return fail("--origin must contain {key}");
  }
  if (c.auth_token_file.empty()) {
    for (auto [flag, set] :
         {std::pair{"--auth-reads", c.auth_reads}, std::pair{"--auth-metrics", c.auth_metrics},
          std::pair{"--auth-dashboard", c.auth_dashboard}}) {
      if (set) return fail(std::string(flag) + " needs --auth-token-file (the tokens to check)");
    }
  } else if (c.cluster_secret_file.empty() && !c.cluster_tls()) {
    // The /peer/v1 routes share the HTTP port and take writes, deletes and replica pushes from
    // any other node: without an authenticated cluster plane they would be a way around every
    // token.
    return fail(
        "--auth-token-file needs --cluster-secret-file or mutual TLS (--tls-cert, --tls-key, "
        "--tls-ca): without either the node-to-node routes on the same ports (/peer/v1, gRPC) "
        "take writes from anyone, around the tokens (make a secret with: head -c 24 "
        "/dev/urandom | base64 > cluster.secret)");
  }
  if (c.etcd_cert.empty() != c.etcd_key.empty()) {
    return fail("--etcd-cert and --etcd-key go together");
  }
  if (!c.etcd_cert.empty() && c.etcd_ca.empty()) {
    return fail("--etcd-cert needs --etcd-ca (the CA etcd's certificate chains to)");
  }
  if (c.etcd_user.empty() != c.etcd_password_file.empty()) {
    return fail("--etcd-user and --etcd-password-file go together");
  }
  if (etcd.empty() && (!c.etcd_ca.empty() || !c.etcd_user.empty())) {
    return fail("--etcd-ca, --etcd-cert, --etcd-user and --etcd-password-file need --etcd");
  }
  if (c.http_tls_cert.empty() != c.http_tls_key.empty()) {
    return fail("--http-tls-cert and --http-tls-key go together");
  }
  if (c.http_tls_only && c.http_tls_cert.empty()) {
    return fail("--http-tls-only needs --http-tls-cert and --http-tls-key");
  }
  if (c.tls_cert.empty() != c.tls_key.empty() || c.tls_cert.empty() != c.tls_ca.empty()) {
    return fail("--tls-cert, --tls-key and --tls-ca go together (all three or none)");
  }
  if (c.write_quorum == 0) c.write_quorum = c.replicas;
  if (c.write_quorum > c.replicas) {
    return fail("--write-quorum " + std::to_string(c.write_quorum) + " is more than --replicas " +
                std::to_string(c.replicas) +
                " (a write cannot be stored on more members than hold "
                "the key)");
  }
  c.default_ttl_ms = default_ttl_minutes * 60'000;
  c.ttl_jitter_cap_ms = jitter_cap_seconds * 1000;
  c.peer_timeout = std::chrono::milliseconds(peer_timeout_ms);
  c.forward_over_http = forward == "http";
  c.origin_timeout = std::chrono::milliseconds(origin_timeout_ms);
  c.shutdown_grace = std::chrono::milliseconds(grace_ms);

  for (size_t start = 0; start < etcd.size();) {
    size_t comma = etcd.find(',', start);
    if (comma == std::string::npos) comma = etcd.size();
    std::string endpoint = etcd.substr(start, comma - start);
    start = comma + 1;
    if (endpoint.empty()) continue;
    if (endpoint.rfind("http://", 0) == 0) endpoint = endpoint.substr(7);
    if (endpoint.rfind("https://", 0) == 0) {
      if (c.etcd_ca.empty()) {
        return fail("--etcd entry '" + endpoint +
                    "' is https: TLS to etcd needs --etcd-ca (the CA etcd's certificate "
                    "chains to)");
      }
      endpoint = endpoint.substr(8);
    }
    const size_t colon = endpoint.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == endpoint.size()) {
      return fail("--etcd entry '" + endpoint + "' must be HOST:PORT");
    }
    c.etcd.push_back(endpoint);
  }

  auto parsed = ParsePeers(peers, c.grpc_port, c.http_port);
  if (!parsed.ok()) return fail(std::string(parsed.status().message()));
  c.peers = std::move(*parsed);
  const bool self_listed = std::any_of(c.peers.begin(), c.peers.end(),
                                       [&](const MemberInfo& p) { return p.name == c.name; });
  if (!self_listed) c.peers.push_back({c.name, c.SelfGrpcAddress(), {}});
  out.config = std::move(c);
  return out;
}

}  // namespace nexus
