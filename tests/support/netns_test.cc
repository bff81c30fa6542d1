// The fault tests' network (netns.h): hosts reach each other on the test network, Isolate cuts
// a host off both ways while its loopback keeps working, Heal undoes it, processes started in a
// host's namespace run there, and nothing is left behind. Skips when not root.
#include "support/netns.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "support/process.h"
#include "support/wait.h"

namespace nexus::testing {
namespace {

// A socket listening on 0.0.0.0:`port` in the calling thread's namespace.
int Listen(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 16) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Whether a TCP connection to `address`:`port` is established within 300 ms (the backlog
// completes the handshake: nobody needs to accept).
bool Connects(const std::string& address, uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, address.c_str(), &a.sin_addr);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  if (!ok && errno == EINPROGRESS) {
    pollfd p{.fd = fd, .events = POLLOUT, .revents = 0};
    int err = 0;
    socklen_t len = sizeof err;
    ok = poll(&p, 1, 300) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
  }
  close(fd);
  return ok;
}

bool Exists(const std::string& netns) {
  struct stat st;
  return stat(("/run/netns/" + netns).c_str(), &st) == 0;
}

class NetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = TestNetwork::Unavailable(); !why.empty()) GTEST_SKIP() << why;
  }
};

TEST_F(NetnsTest, HostsReachEachOtherUntilIsolated) {
  std::string error;
  std::unique_ptr<TestNetwork> net = TestNetwork::Create({"a", "b"}, &error);
  ASSERT_NE(net, nullptr) << error;
  const NetnsHost* a = net->host("a");
  const NetnsHost* b = net->host("b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(net->host("c"), nullptr);
  EXPECT_NE(a->netns, b->netns);
  EXPECT_NE(a->address, b->address);

  constexpr uint16_t kPort = 7001;
  int listener;
  {
    InNetns in(a->netns);
    listener = Listen(kPort);
  }
  ASSERT_GE(listener, 0);
  auto from_b = [&] {
    InNetns in(b->netns);
    return Connects(a->address, kPort);
  };
  auto inside_a = [&] {
    InNetns in(a->netns);
    return Connects("127.0.0.1", kPort);
  };
  // (The first packets wait for ARP.)
  EXPECT_TRUE(WaitFor(from_b, std::chrono::seconds(5)));
  EXPECT_TRUE(inside_a());

  ASSERT_TRUE(net->Isolate("a", &error)) << error;
  ASSERT_TRUE(net->Isolate("a", &error)) << error;  // idempotent
  EXPECT_FALSE(from_b());
  EXPECT_TRUE(inside_a()) << "loopback inside an isolated host must keep working";

  ASSERT_TRUE(net->Heal("a", &error)) << error;
  ASSERT_TRUE(net->Heal("a", &error)) << error;  // idempotent
  EXPECT_TRUE(WaitFor(from_b, std::chrono::seconds(5)));
  EXPECT_FALSE(net->Isolate("c", &error));
  EXPECT_NE(error.find("no host c"), std::string::npos) << error;
  close(listener);
}

TEST_F(NetnsTest, ProcessesStartedInsideRunThere) {
  std::string error;
  std::unique_ptr<TestNetwork> net = TestNetwork::Create({"a"}, &error);
  ASSERT_NE(net, nullptr) << error;
  const std::string log = TempDir() + "/netns-process.log";
  std::unique_ptr<Process> p;
  {
    InNetns in(net->host("a")->netns);
    p = Process::Start({"/bin/sh", "-c", "ip -4 -o addr show"}, {}, log);
  }
  ASSERT_NE(p, nullptr);
  int code = -1;
  ASSERT_TRUE(p->WaitExit(std::chrono::seconds(10), &code));
  EXPECT_EQ(code, 0) << p->Log();
  EXPECT_NE(p->Log().find("eth0    inet " + net->host("a")->address + "/24"), std::string::npos)
      << p->Log();
}

TEST_F(NetnsTest, NothingIsLeftBehind) {
  // A namespace left by a test process that died is deleted by the next Create.
  const pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  waitpid(child, nullptr, 0);
  const std::string leftover = "nx" + std::to_string(child) + "-0-a";
  std::string error;
  ASSERT_EQ(std::system(("ip netns add " + leftover).c_str()), 0);
  ASSERT_TRUE(Exists(leftover));

  std::vector<std::string> created;
  {
    std::unique_ptr<TestNetwork> net = TestNetwork::Create({"a", "b"}, &error);
    ASSERT_NE(net, nullptr) << error;
    EXPECT_FALSE(Exists(leftover));
    for (const char* h : {"a", "b"}) created.push_back(net->host(h)->netns);
    for (const std::string& n : created) EXPECT_TRUE(Exists(n)) << n;
  }
  for (const std::string& n : created) EXPECT_FALSE(Exists(n)) << n;
}

}  // namespace
}  // namespace nexus::testing
