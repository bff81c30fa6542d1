#include "support/etcd.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace nexus::testing {

std::string EtcdServer::Binary() {
  const char* env = std::getenv("NEXUS_ETCD_BIN");
  const std::string bin = env != nullptr && *env != '\0' ? env : "/usr/bin/etcd";
  return access(bin.c_str(), X_OK) == 0 ? bin : "";
}

std::unique_ptr<EtcdServer> EtcdServer::Start(std::chrono::milliseconds ready_timeout,
                                              std::string* error, const NetnsHost* host,
                                              const EtcdSecurity* security) {
  const EtcdSecurity* tls = security != nullptr && !security->cert.empty() ? security : nullptr;
  auto fail = [error](const std::string& why) -> std::unique_ptr<EtcdServer> {
    if (error != nullptr) *error = why;
    return nullptr;
  };
  const std::string bin = Binary();
  if (bin.empty()) return fail("etcd binary not found (set NEXUS_ETCD_BIN)");

  std::unique_ptr<EtcdServer> server(new EtcdServer());
  std::string tmpl = TempDir() + "/etcd-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) return fail("mkdtemp failed for " + tmpl);
  server->data_dir_ = buf.data();
  server->log_path_ = server->data_dir_ + ".log";
  server->client_port_ = FreePort();
  server->peer_port_ = FreePort();
  if (host != nullptr) {
    server->address_ = host->address;
    server->netns_ = host->netns;
  }
  server->health_port_ = server->client_port_;
  if (tls != nullptr) {
    server->scheme_ = "https";
    server->tls_ = *tls;
    server->health_port_ = FreePort();
  }
  const std::string client_url =
      server->scheme_ + "://" + server->address_ + ":" + std::to_string(server->client_port_);
  // (In a namespace, also on its loopback: the health check below asks there.)
  const std::string listen_urls = host == nullptr
                                      ? client_url
                                      : client_url + "," + server->scheme_ +
                                            "://127.0.0.1:" + std::to_string(server->client_port_);
  const std::string peer_url = "http://127.0.0.1:" + std::to_string(server->peer_port_);
  // Short heartbeat/election timeouts: a single member on loopback elects itself in ~0.3 s
  // instead of ~1.5 s (and etcd's minimum lease TTL drops to 1 s).
  server->argv_ = {bin,
                   "--name",
                   "default",
                   "--data-dir",
                   server->data_dir_ + "/data",
                   "--listen-client-urls",
                   listen_urls,
                   "--advertise-client-urls",
                   client_url,
                   "--listen-peer-urls",
                   peer_url,
                   "--initial-advertise-peer-urls",
                   peer_url,
                   "--initial-cluster",
                   "default=" + peer_url,
                   "--initial-cluster-state",
                   "new",
                   "--heartbeat-interval",
                   "25",
                   "--election-timeout",
                   "250"};
  if (tls != nullptr) {
    for (const std::string& arg :
         {std::string("--cert-file"), tls->cert, std::string("--key-file"), tls->key,
          std::string("--trusted-ca-file"), tls->ca, std::string("--listen-metrics-urls"),
          "http://127.0.0.1:" + std::to_string(server->health_port_)}) {
      server->argv_.push_back(arg);
    }
    if (tls->client_cert_auth) server->argv_.push_back("--client-cert-auth");
  }
  if (security != nullptr && security->auth_token_ttl > 0) {
    server->argv_.push_back("--auth-token-ttl");
    server->argv_.push_back(std::to_string(security->auth_token_ttl));
  }
  std::string why;
  if (!server->Launch(ready_timeout, &why)) return fail(why);
  return server;
}

bool EtcdServer::Launch(std::chrono::milliseconds ready_timeout, std::string* error) {
  InNetns in(netns_);  // (the child starts in it; the health check asks there)
  process_ = Process::Start(argv_, {}, log_path_);
  if (process_ == nullptr) {
    *error = "fork failed";
    return false;
  }
  const auto give_up = std::chrono::steady_clock::now() + ready_timeout;
  while (std::chrono::steady_clock::now() < give_up) {
    if (!process_->Running()) {
      *error = "etcd exited during startup; log:\n" + Log();
      return false;
    }
    const HttpResult r = Http(health_port_, "GET", "/health", "", std::chrono::milliseconds(500));
    if (r.status == 200 && r.body.find("true") != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  *error =
      "etcd not healthy after " + std::to_string(ready_timeout.count()) + " ms; log:\n" + Log();
  return false;
}

bool EtcdServer::EnableAuth(const std::string& user, const std::string& password,
                            const std::string& prefix, std::string* error) {
  std::string base = "ETCDCTL_API=3 etcdctl --endpoints=" + scheme_ + "://" + endpoint();
  if (scheme_ == "https") {
    base += " --cacert=" + tls_.ca + " --cert=" + tls_.cert + " --key=" + tls_.key;
  }
  const std::vector<std::string> steps = {
      "user add root:root-password --interactive=false",
      "role add root",
      "user grant-role root root",
      "role add nexus-" + user,
      "role grant-permission nexus-" + user + " --prefix=true readwrite " + prefix,
      "user add " + user + ":" + password + " --interactive=false",
      "user grant-role " + user + " nexus-" + user,
      "auth enable",
  };
  for (const std::string& step : steps) {
    const std::string command = base + " " + step + " 2>&1";
    FILE* pipe = popen(command.c_str(), "r");
    if (pipe == nullptr) return false;
    std::string out;
    char buf[512];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
    if (pclose(pipe) != 0) {
      if (error != nullptr) *error = command + ": " + out;
      return false;
    }
  }
  return true;
}

void EtcdServer::Pause() {
  if (process_ != nullptr) {
    process_->Signal(SIGTERM);
    if (!process_->WaitExit(std::chrono::seconds(5), nullptr)) process_->Signal(SIGKILL);
    process_.reset();
  }
}

bool EtcdServer::Resume(std::chrono::milliseconds ready_timeout, std::string* error) {
  if (process_ != nullptr) return true;
  std::string why;
  const bool ok = Launch(ready_timeout, &why);
  if (!ok && error != nullptr) *error = why;
  return ok;
}

EtcdServer::~EtcdServer() { Stop(); }

void EtcdServer::Stop() {
  if (process_ != nullptr) {
    process_->Signal(SIGTERM);
    if (!process_->WaitExit(std::chrono::seconds(5), nullptr)) process_->Signal(SIGKILL);
    process_.reset();  // SIGKILL (if still running) + reap
  }
  if (!data_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(data_dir_, ec);
    data_dir_.clear();
  }
}

void EtcdServer::Signal(int signal) {
  if (process_ != nullptr) process_->Signal(signal);
}

void EtcdServer::Kill() {
  if (process_ != nullptr) {
    process_->Signal(SIGKILL);
    process_->WaitExit(std::chrono::seconds(5), nullptr);
  }
}

std::string EtcdServer::endpoint() const { return address_ + ":" + std::to_string(client_port_); }

std::string EtcdServer::Log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string log = ss.str();
  constexpr size_t kTail = 4000;
  return log.size() > kTail ? log.substr(log.size() - kTail) : log;
}

}  // namespace nexus::testing
