#include "support/netns.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace nexus::testing {
namespace {

constexpr char kNetnsDir[] = "/run/netns/";
// The table Isolate adds in a host's namespace (and Heal deletes).
constexpr char kDropTable[] = "inet nexus_fault";

// Runs `command` with /bin/sh, its output (stdout and stderr) in *output; whether it exited 0.
bool Run(const std::string& command, std::string* output) {
  output->clear();
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) {
    *output = "popen failed: " + std::string(std::strerror(errno));
    return false;
  }
  char buf[512];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) output->append(buf, n);
  const int status = pclose(pipe);
  return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool OnPath(const char* tool) {
  std::string out;
  return Run(std::string("command -v ") + tool, &out);
}

// Namespaces named nx<pid>-... whose test process no longer runs (it was killed before its
// TestNetwork could delete them).
void DeleteLeftovers() {
  DIR* dir = opendir(kNetnsDir);
  if (dir == nullptr) return;
  std::vector<std::string> stale;
  while (const dirent* e = readdir(dir)) {
    const std::string name = e->d_name;
    if (name.size() < 4 || name.compare(0, 2, "nx") != 0) continue;
    char* end = nullptr;
    const long pid = std::strtol(name.c_str() + 2, &end, 10);
    if (end == name.c_str() + 2 || *end != '-' || pid <= 0) continue;
    if (kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) stale.push_back(name);
  }
  closedir(dir);
  std::string out;
  for (const std::string& name : stale) Run("ip netns delete " + name, &out);
}

}  // namespace

std::string TestNetwork::Unavailable() {
  if (geteuid() != 0)
    return "network namespaces need root (this test runs as uid " + std::to_string(geteuid()) + ")";
  if (!OnPath("ip")) return "ip (iproute2) is not installed: run scripts/setup";
  if (!OnPath("nft")) return "nft (nftables) is not installed: run scripts/setup";
  // (A container may deny it to root too.) Tried once per process.
  static const std::string probe = [] {
    const std::string netns = "nx" + std::to_string(getpid()) + "-probe";
    std::string out;
    if (!Run("ip netns add " + netns, &out)) {
      return "cannot create a network namespace here ('ip netns add' failed: " + out + ")";
    }
    const bool ok = Run("ip netns exec " + netns + " nft list ruleset", &out);
    std::string ignored;
    Run("ip netns delete " + netns, &ignored);
    return ok ? std::string() : "nft does not work in a network namespace here: " + out;
  }();
  return probe;
}

std::unique_ptr<TestNetwork> TestNetwork::Create(const std::vector<std::string>& hosts,
                                                 std::string* error) {
  if (const std::string why = Unavailable(); !why.empty()) {
    *error = why;
    return nullptr;
  }
  if (hosts.size() > 200) {
    *error = "at most 200 hosts";
    return nullptr;
  }
  DeleteLeftovers();
  static std::atomic<int> networks{0};
  std::unique_ptr<TestNetwork> net(new TestNetwork());
  net->prefix_ = "nx" + std::to_string(getpid()) + "-" + std::to_string(networks++) + "-";
  net->bridge_netns_ = net->prefix_ + "bridge";
  std::string out;
  auto run = [&](const std::string& command) {
    if (Run(command, &out)) return true;
    *error = "'" + command + "' failed: " + out;
    return false;
  };
  auto add_netns = [&](const std::string& netns) {
    if (!run("ip netns add " + netns)) return false;
    net->created_.push_back(netns);
    return run("ip -n " + netns + " link set lo up");
  };
  const std::string& bridge = net->bridge_netns_;
  if (!add_netns(bridge) || !run("ip -n " + bridge + " link add br0 type bridge") ||
      !run("ip -n " + bridge + " link set br0 up")) {
    return nullptr;  // (the destructor deletes what was created)
  }
  for (size_t i = 0; i < hosts.size(); ++i) {
    NetnsHost h{.name = hosts[i],
                .netns = net->prefix_ + hosts[i],
                .address = "10.213.0." + std::to_string(i + 1)};
    const std::string port = "p" + std::to_string(i);
    if (!add_netns(h.netns) ||
        !run("ip -n " + bridge + " link add " + port + " type veth peer name eth0 netns " +
             h.netns) ||
        !run("ip -n " + bridge + " link set " + port + " master br0 up") ||
        !run("ip -n " + h.netns + " addr add " + h.address + "/24 dev eth0") ||
        !run("ip -n " + h.netns + " link set eth0 up")) {
      return nullptr;
    }
    net->hosts_.push_back(std::move(h));
  }
  return net;
}

TestNetwork::~TestNetwork() { Destroy(); }

void TestNetwork::Destroy() {
  std::string out;
  // Deleting a namespace deletes its links, and a veth goes with its peer.
  for (auto it = created_.rbegin(); it != created_.rend(); ++it)
    Run("ip netns delete " + *it, &out);
  created_.clear();
}

const NetnsHost* TestNetwork::host(const std::string& name) const {
  for (const NetnsHost& h : hosts_) {
    if (h.name == name) return &h;
  }
  return nullptr;
}

bool TestNetwork::Isolate(const std::string& name, std::string* error) {
  const NetnsHost* h = host(name);
  if (h == nullptr) {
    *error = "no host " + name;
    return false;
  }
  // Replaces any earlier table, so that a second Isolate adds no second set of rules.
  const std::string rules = std::string("add table ") + kDropTable + "; delete table " +
                            kDropTable + "; add table " + kDropTable +
                            " { chain in { type filter hook input priority 0; iifname \\\"eth0\\\" "
                            "drop; } ; chain out { type filter hook output priority 0; oifname "
                            "\\\"eth0\\\" drop; } ; }";
  std::string out;
  if (Run("ip netns exec " + h->netns + " nft \"" + rules + "\"", &out)) return true;
  *error = "nft in " + h->netns + " failed: " + out;
  return false;
}

bool TestNetwork::Heal(const std::string& name, std::string* error) {
  const NetnsHost* h = host(name);
  if (h == nullptr) {
    *error = "no host " + name;
    return false;
  }
  std::string out;
  if (Run("ip netns exec " + h->netns + " nft \"add table " + kDropTable + "; delete table " +
              kDropTable + "\"",
          &out)) {
    return true;
  }
  *error = "nft in " + h->netns + " failed: " + out;
  return false;
}

InNetns::InNetns(const std::string& netns) {
  if (netns.empty()) return;
  saved_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  const int target = open((kNetnsDir + netns).c_str(), O_RDONLY | O_CLOEXEC);
  if (saved_ < 0 || target < 0 || setns(target, CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "cannot enter network namespace %s: %s\n", netns.c_str(),
                 std::strerror(errno));
    std::abort();
  }
  close(target);
}

InNetns::~InNetns() {
  if (saved_ < 0) return;
  if (setns(saved_, CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "cannot return to the test's network namespace: %s\n",
                 std::strerror(errno));
    std::abort();
  }
  close(saved_);
}

}  // namespace nexus::testing
