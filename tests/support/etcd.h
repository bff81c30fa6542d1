// Test support: a real, single-member etcd (/usr/bin/etcd, or $NEXUS_ETCD_BIN) on free loopback
// ports with a fresh data dir, for integration tests of the discovery layer. Killed by PID
// (SIGTERM, then SIGKILL) and its data dir removed when the EtcdServer goes away.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "support/netns.h"
#include "support/process.h"

namespace nexus::testing {

// A secured etcd: TLS on its client port (etcd's --cert-file, --key-file, --trusted-ca-file;
// empty cert: plaintext) and its auth's token lifetime.
struct EtcdSecurity {
  std::string cert;  // the server's certificate: must carry 127.0.0.1 (make-certs --ip)
  std::string key;
  std::string ca;  // the CA clients' certificates chain to
  // --client-cert-auth: clients must present a certificate of `ca`.
  bool client_cert_auth = false;
  // --auth-token-ttl in seconds (0: etcd's default, 300), for token expiry tests.
  int auth_token_ttl = 0;
};

class EtcdServer {
 public:
  // The etcd binary to run; empty if it does not exist (tests should GTEST_SKIP then).
  static std::string Binary();

  // Starts etcd and waits (up to `ready_timeout`) until GET /health on its client port answers
  // 200, i.e. it has elected itself leader and serves requests. Null on failure, with the reason
  // (and the tail of etcd's log) in *error. With a `host` of a TestNetwork (which must outlive
  // it), etcd runs in that host's namespace and serves clients on its address (and on the
  // namespace's loopback).
  // With `security`'s cert, the client port speaks only TLS (health is then checked on a
  // plaintext --listen-metrics-urls port).
  static std::unique_ptr<EtcdServer> Start(
      std::chrono::milliseconds ready_timeout = std::chrono::seconds(20),
      std::string* error = nullptr, const NetnsHost* host = nullptr,
      const EtcdSecurity* security = nullptr);

  // Turns on etcd's auth with etcdctl: a root user (password "root-password"), and `user`
  // with `password` and read-write access to the keys under `prefix`. False (with etcdctl's
  // output in *error) on failure.
  bool EnableAuth(const std::string& user, const std::string& password, const std::string& prefix,
                  std::string* error);

  ~EtcdServer();  // Stop()
  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;

  // SIGTERM, up to 5 s to exit, then SIGKILL; removes the data dir. Idempotent.
  void Stop();
  // SIGKILL at once (a crash); the data dir is still removed by Stop() / the destructor.
  void Kill();
  // Stops etcd (SIGTERM) but keeps its data and ports, for an outage; Resume() starts it again
  // on the same ports and data and waits until it is healthy.
  void Pause();
  bool Resume(std::chrono::milliseconds ready_timeout = std::chrono::seconds(20),
              std::string* error = nullptr);

  // Sends `signal` to etcd: SIGSTOP hangs it (connections stay open, nothing answers: to its
  // clients, a partition), SIGCONT lets it go on.
  void Signal(int signal);

  // "<address>:<client port>" (127.0.0.1, or the host's address), the form
  // EtcdClientOptions::endpoints takes.
  std::string endpoint() const;
  uint16_t client_port() const { return client_port_; }
  uint16_t peer_port() const { return peer_port_; }
  const std::string& data_dir() const { return data_dir_; }
  std::string Log() const;

 private:
  EtcdServer() = default;
  bool Launch(std::chrono::milliseconds ready_timeout, std::string* error);
  std::vector<std::string> argv_;
  std::unique_ptr<Process> process_;
  std::string address_ = "127.0.0.1";
  std::string netns_;  // "" = the test's own
  uint16_t client_port_ = 0;
  uint16_t health_port_ = 0;  // the client port, or the metrics port under TLS
  std::string scheme_ = "http";
  EtcdSecurity tls_;
  uint16_t peer_port_ = 0;
  std::string data_dir_;
  std::string log_path_;
};

}  // namespace nexus::testing
