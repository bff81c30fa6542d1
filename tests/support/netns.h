// Test support: a private network of Linux network namespaces for fault tests. Each host (a
// node, etcd) gets its own namespace with one link, `eth0`, to a bridge that lives in a
// namespace of its own; addresses come from 10.213.0.0/24 and exist only inside those
// namespaces, so nothing a test sends leaves them. A host can be cut off (nftables drop rules
// on its link, both ways, established connections included: what a partition looks like) and
// healed again.
//
// A thread enters a host's namespace with InNetns: sockets it opens and processes it starts
// (fork inherits the namespace) are then in it, and 127.0.0.1 is that host's loopback.
//
// Needs root, `ip` (iproute2) and `nft` (nftables); Unavailable() says what is missing, for
// GTEST_SKIP. Everything a TestNetwork creates is deleted when it goes away, and namespaces
// left by a test process that died (named nx<pid>-...) are deleted by the next Create.
//
// Thread-safety: a TestNetwork's const methods may be called from any thread; Isolate and Heal
// from one thread at a time.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace nexus::testing {

struct NetnsHost {
  std::string name;     // as given to Create, e.g. "svc1"
  std::string netns;    // the namespace's name, under /run/netns
  std::string address;  // its address on the test network, e.g. "10.213.0.1"
};

class TestNetwork {
 public:
  // "" when this process can create namespaces (root, with ip and nft); otherwise the reason.
  static std::string Unavailable();
  // A network with one namespace per name in `hosts`. Null on failure, with the failing
  // command's output in *error (whatever was created is deleted again).
  static std::unique_ptr<TestNetwork> Create(const std::vector<std::string>& hosts,
                                             std::string* error);
  ~TestNetwork();
  TestNetwork(const TestNetwork&) = delete;
  TestNetwork& operator=(const TestNetwork&) = delete;

  // The host called `name`, or null.
  const NetnsHost* host(const std::string& name) const;

  // Drops every packet in and out of `name`'s link (loopback inside its namespace still
  // works). False with the reason if nft failed. Idempotent.
  bool Isolate(const std::string& name, std::string* error);
  // Removes Isolate's rules. Idempotent.
  bool Heal(const std::string& name, std::string* error);

 private:
  TestNetwork() = default;
  void Destroy();
  std::string prefix_;  // "nx<pid>-<n>-"
  std::string bridge_netns_;
  std::vector<NetnsHost> hosts_;
  std::vector<std::string> created_;  // namespaces to delete
};

// Enters namespace `netns` for the calling thread until it goes away; "" stays where it is.
// Aborts if the namespace cannot be entered: going on would talk to the wrong host.
class InNetns {
 public:
  explicit InNetns(const std::string& netns);
  ~InNetns();
  InNetns(const InNetns&) = delete;
  InNetns& operator=(const InNetns&) = delete;

 private:
  int saved_ = -1;  // the thread's namespace before, to return to
};

}  // namespace nexus::testing
