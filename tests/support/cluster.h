// A local cluster of real nexuscache processes on loopback, for integration tests. Ports are
// chosen at run time; every process is stopped (by PID) when the Cluster goes away.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "support/netns.h"
#include "support/process.h"

namespace nexus::testing {

struct NodeHandle {
  std::string name;
  // The network namespace it runs in ("" = the test's own, on loopback). Calls to its ports
  // must enter it first: InNetns in(node.netns).
  std::string netns;
  uint16_t http_port = 0;
  uint16_t grpc_port = 0;
  uint16_t resp_port = 0;  // every node serves RESP too (--resp-port)
  std::unique_ptr<Process> process;
  std::vector<std::string> argv;
  // The logs of this node's earlier processes (Restart), for failure reports.
  std::string earlier_logs;
};

class Cluster {
 public:
  // `extra_args` go to every node (e.g. {"--demo-data"}). With `static_peers` every node gets
  // `--peer` listing all of them; without, membership must come from elsewhere (--etcd).
  // With a `network`, node svcK runs in its host svcK's namespace, listens on every address
  // there and advertises the host's address; the network must outlive the Cluster.
  Cluster(int nodes, std::vector<std::string> extra_args, bool static_peers = true,
          const TestNetwork* network = nullptr);
  // Starts every node and waits until all answer /healthz; false (with logs in
  // `failure`) otherwise.
  bool Start(std::string* failure);

  NodeHandle& node(size_t i) { return nodes_[i]; }
  size_t size() const { return nodes_.size(); }
  // Restarts node i with the same arguments.
  bool Restart(size_t i, std::string* failure);
  // Starts one more node (dynamic-membership clusters only); returns its index, or -1.
  int AddNode(std::string* failure);
  // Whether every node in `nodes` reports `members` ring members (nexuscache_ring_members)
  // within 15 s.
  bool RingsHave(double members, const std::vector<size_t>& nodes);

 private:
  void AssignPorts();
  // The address node `n` listens on and advertises (and sets n.netns); "" if the network has
  // no host for it.
  std::string Address(NodeHandle& n) const;
  void BuildArgv(NodeHandle& n, const std::string& peers);
  bool Launch(NodeHandle& n);
  bool Ready(NodeHandle& n);
  std::vector<std::string> extra_args_;
  bool static_peers_;
  const TestNetwork* network_;
  std::vector<NodeHandle> nodes_;
};

// Path of the nexuscache binary under test: this build's, or $NEXUSCACHE_BIN_UNDER_TEST (to
// measure another build with the same tests).
std::string NexusBinary();

// Whether the cluster serves: 30 writes through every node reach their owners, reads through
// the others find them, a hot key reaches every node. "" if so, else the first thing wrong.
std::string ServesThroughEveryNode(Cluster& c);

// Starts a node (svc1, free ports) with `flags` and expects it to exit with `code` and
// `message` in its log: "" if it did, else what happened.
std::string StartFails(const std::vector<std::string>& flags, int code, const std::string& message);

}  // namespace nexus::testing
