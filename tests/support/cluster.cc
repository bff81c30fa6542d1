#include "support/cluster.h"

namespace nexus::testing {

std::string NexusBinary() { return NEXUSCACHE_BIN; }

Cluster::Cluster(int nodes, std::vector<std::string> extra_args) {
  nodes_.resize(nodes);
  std::string peers;
  for (int i = 0; i < nodes; ++i) {
    NodeHandle& n = nodes_[i];
    n.name = "svc" + std::to_string(i + 1);
    n.http_port = FreePort();
    n.grpc_port = FreePort();
    peers += (peers.empty() ? "" : ",") + n.name + "=127.0.0.1:" + std::to_string(n.grpc_port);
  }
  for (NodeHandle& n : nodes_) {
    n.argv = {NexusBinary(), "--name", n.name, "--peer", peers,
              "--port", std::to_string(n.grpc_port), "--http-port", std::to_string(n.http_port),
              "--bind", "127.0.0.1", "--threads", "2", "--peer-timeout-ms", "1000"};
    n.argv.insert(n.argv.end(), extra_args.begin(), extra_args.end());
  }
}

bool Cluster::Launch(NodeHandle& n) {
  n.process = Process::Start(n.argv, {{"IP_ADDRESS", "127.0.0.1"}},
                             TempDir() + "/" + n.name + "-" + std::to_string(n.http_port) + ".log");
  return n.process != nullptr;
}

bool Cluster::Start(std::string* failure) {
  for (NodeHandle& n : nodes_) {
    if (!Launch(n)) {
      *failure = "cannot start " + n.name;
      return false;
    }
  }
  for (NodeHandle& n : nodes_) {
    if (!WaitHealthy(n.http_port, std::chrono::seconds(20))) {
      *failure = n.name + " not healthy; log:\n" + n.process->Log();
      return false;
    }
  }
  return true;
}

bool Cluster::Restart(size_t i, std::string* failure) {
  NodeHandle& n = nodes_[i];
  n.process.reset();
  if (!Launch(n) || !WaitHealthy(n.http_port, std::chrono::seconds(20))) {
    *failure = n.name + " did not restart; log:\n" + (n.process ? n.process->Log() : "");
    return false;
  }
  return true;
}

}  // namespace nexus::testing
