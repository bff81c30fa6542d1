#include "support/cluster.h"

#include <algorithm>
#include <cstdlib>
#include <thread>

namespace nexus::testing {

std::string NexusBinary() {
  // An A/B run can point the tests at another build's binary.
  const char* other = std::getenv("NEXUSCACHE_BIN_UNDER_TEST");
  return other != nullptr && *other != '\0' ? other : NEXUSCACHE_BIN;
}

Cluster::Cluster(int nodes, std::vector<std::string> extra_args, bool static_peers,
                 const TestNetwork* network)
    : extra_args_(std::move(extra_args)), static_peers_(static_peers), network_(network) {
  nodes_.resize(nodes);
  AssignPorts();
}

void Cluster::AssignPorts() {
  std::string peers;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    NodeHandle& n = nodes_[i];
    n.name = "svc" + std::to_string(i + 1);
    n.http_port = FreePort();
    n.grpc_port = FreePort();
    n.resp_port = FreePort();
    // NAME=HOST:GRPC_PORT/HTTP_PORT: forwarding over HTTP, as with etcd membership.
    peers += (peers.empty() ? "" : ",") + n.name + "=" + Address(n) + ":" +
             std::to_string(n.grpc_port) + "/" + std::to_string(n.http_port);
  }
  for (NodeHandle& n : nodes_) BuildArgv(n, peers);
}

void Cluster::BuildArgv(NodeHandle& n, const std::string& peers) {
  n.argv = {NexusBinary(),
            "--name",
            n.name,
            "--port",
            std::to_string(n.grpc_port),
            "--http-port",
            std::to_string(n.http_port),
            "--resp-port",
            std::to_string(n.resp_port),
            "--bind",
            network_ != nullptr ? "0.0.0.0" : "127.0.0.1",
            "--threads",
            "2"};
  if (static_peers_) {
    n.argv.push_back("--peer");
    n.argv.push_back(peers);
  }
  if (std::find(extra_args_.begin(), extra_args_.end(), "--peer-timeout-ms") == extra_args_.end()) {
    n.argv.push_back("--peer-timeout-ms");
    n.argv.push_back("2000");
  }
  n.argv.insert(n.argv.end(), extra_args_.begin(), extra_args_.end());
}

int Cluster::AddNode(std::string* failure) {
  NodeHandle n;
  n.name = "svc" + std::to_string(nodes_.size() + 1);
  if (network_ != nullptr && network_->host(n.name) == nullptr) {
    *failure = "the test network has no host " + n.name;
    return -1;
  }
  n.http_port = FreePort();
  n.grpc_port = FreePort();
  n.resp_port = FreePort();
  BuildArgv(n, "");
  nodes_.push_back(std::move(n));
  NodeHandle& added = nodes_.back();
  if (!Launch(added) || !Ready(added)) {
    *failure = added.name + " not ready; log:\n" + (added.process ? added.process->Log() : "");
    return -1;
  }
  return static_cast<int>(nodes_.size() - 1);
}

// Really this node (not another test's process that got the port), and ready (/healthz 200: with
// --etcd, once it has read the membership).
bool Cluster::Ready(NodeHandle& n) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  bool ours = false;
  InNetns in(n.netns);
  while (std::chrono::steady_clock::now() < give_up) {
    if (!n.process->Running()) return false;
    if (!ours) {
      const HttpResult r =
          Http(n.http_port, "GET", "/api/ring", "", std::chrono::milliseconds(500));
      if (r.status == 200 && r.body.find("\"self\":\"" + n.name + "\"") == std::string::npos) {
        return false;
      }
      // (401: the node needs a read token for /api/ring, --auth-reads; a node of another
      // test would not have this one's token file either. 400 for --http-tls-only: it takes
      // no plaintext client requests.)
      ours = r.status == 200 || r.status == 401 ||
             (r.status == 400 && r.body.find("--http-tls-only") != std::string::npos);
    }
    if (ours &&
        Http(n.http_port, "GET", "/healthz", "", std::chrono::milliseconds(500)).status == 200) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::string Cluster::Address(NodeHandle& n) const {
  if (network_ == nullptr) return "127.0.0.1";
  const NetnsHost* host = network_->host(n.name);
  if (host == nullptr) return "";  // (Start fails: the node cannot be placed)
  n.netns = host->netns;
  return host->address;
}

bool Cluster::Launch(NodeHandle& n) {
  const std::string address = Address(n);
  if (address.empty()) return false;
  InNetns in(n.netns);  // (the child starts in it)
  n.process = Process::Start(n.argv, {{"IP_ADDRESS", address}},
                             TempDir() + "/" + n.name + "-" + std::to_string(n.http_port) + ".log");
  return n.process != nullptr;
}

bool Cluster::Start(std::string* failure) {
  // A port can still be taken by someone else between choosing and binding it: then start
  // the whole cluster again on fresh ports.
  for (NodeHandle& n : nodes_) {
    if (Address(n).empty()) {
      *failure = "the test network has no host " + n.name;
      return false;
    }
  }
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (attempt > 0) {
      for (NodeHandle& n : nodes_) n.process.reset();
      AssignPorts();
    }
    bool all = true;
    for (NodeHandle& n : nodes_) all = all && Launch(n);
    for (NodeHandle& n : nodes_) {
      if (all && !Ready(n)) {
        *failure = n.name + " not ready; log:\n" + n.process->Log();
        all = false;
      }
    }
    if (all) return true;
  }
  return false;
}

bool Cluster::RingsHave(double members, const std::vector<size_t>& nodes) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < give_up) {
    bool all = true;
    for (size_t i : nodes) {
      InNetns in(nodes_[i].netns);
      all = all && MetricSum(nodes_[i].http_port, "nexuscache_ring_members") == members;
    }
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

bool Cluster::Restart(size_t i, std::string* failure) {
  NodeHandle& n = nodes_[i];
  if (n.process) n.earlier_logs += n.process->Log();
  n.process.reset();
  if (!Launch(n) || !Ready(n)) {
    *failure = n.name + " did not restart; log:\n" + (n.process ? n.process->Log() : "");
    return false;
  }
  return true;
}

std::string ServesThroughEveryNode(Cluster& c) {
  const size_t n = c.size();
  for (size_t i = 0; i < 30; ++i) {
    const std::string key = "k" + std::to_string(i);
    const HttpResult r = Http(c.node(i % n).http_port, "POST", "/api/set",
                              "key=" + key + "&value=v" + std::to_string(i) + "&expire=5");
    if (r.status != 200) return "set " + key + ": " + std::to_string(r.status) + " " + r.body;
  }
  const HttpResult hot =
      Http(c.node(0).http_port, "POST", "/api/set", "key=hot&value=h&expire=5&hot=true");
  if (hot.status != 200) return "hot set: " + std::to_string(hot.status) + " " + hot.body;
  for (size_t i = 0; i < 30; ++i) {
    const std::string key = "k" + std::to_string(i);
    const std::string body = Http(c.node((i + 1) % n).http_port, "GET", "/api/get?key=" + key).body;
    if (body != "value=v" + std::to_string(i) + "\n") return "get " + key + ": " + body;
  }
  for (size_t i = 0; i < n; ++i) {
    const std::string body = Http(c.node(i).http_port, "GET", "/api/get?key=hot").body;
    if (body != "value=h\n") return "hot get on " + c.node(i).name + ": " + body;
  }
  return "";
}

std::string StartFails(const std::vector<std::string>& flags, int code,
                       const std::string& message) {
  std::vector<std::string> argv = {NexusBinary(),
                                   "--name",
                                   "svc1",
                                   "--port",
                                   std::to_string(FreePort()),
                                   "--http-port",
                                   std::to_string(FreePort())};
  argv.insert(argv.end(), flags.begin(), flags.end());
  auto p = Process::Start(argv, {}, TempDir() + "/no-start-" + std::to_string(FreePort()) + ".log");
  if (p == nullptr) return "could not start the process";
  int exit_code = 0;
  if (!p->WaitExit(std::chrono::seconds(10), &exit_code)) return "still running after 10 s";
  if (exit_code != code) {
    return "exit code " + std::to_string(exit_code) + ", not " + std::to_string(code) + "; log:\n" +
           p->Log();
  }
  if (p->Log().find(message) == std::string::npos) return "no '" + message + "' in:\n" + p->Log();
  return "";
}

}  // namespace nexus::testing
