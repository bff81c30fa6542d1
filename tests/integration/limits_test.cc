// A node under hostile or broken clients, as real processes: thousands of idle connections and
// slowloris clients do not stop a normal client, a client that pipelines requests and never
// reads does not grow the node's memory, and --max-connections closes what is beyond it.
// Each test prints its figures; none asserts on time (a normal client must get its answers).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/cluster.h"
#include "support/process.h"
#include "support/wait.h"

namespace nexus::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Raw client sockets, closed when it goes.
class Sockets {
 public:
  ~Sockets() {
    for (int fd : fds_) ::close(fd);
  }
  // A connected socket to 127.0.0.1:port, or -1.
  int Connect(uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
    fds_.push_back(fd);
    return fd;
  }
  size_t size() const { return fds_.size(); }
  const std::vector<int>& fds() const { return fds_; }

 private:
  std::vector<int> fds_;
};

// Open files this process (and the node it starts) may have; raises the limit where allowed.
rlim_t RaiseFileLimit(rlim_t want) {
  rlimit l{};
  ::getrlimit(RLIMIT_NOFILE, &l);
  if (l.rlim_cur >= want) return l.rlim_cur;
  rlimit raised{.rlim_cur = want, .rlim_max = std::max(want, l.rlim_max)};
  if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) {
    raised = {.rlim_cur = l.rlim_max, .rlim_max = l.rlim_max};
    ::setrlimit(RLIMIT_NOFILE, &raised);
  }
  ::getrlimit(RLIMIT_NOFILE, &l);
  return l.rlim_cur;
}

// Resident memory of process `pid` in bytes (0 if unknown).
size_t RssBytes(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6)) * 1024;
  }
  return 0;
}

TEST(Limits, IdleAndSlowlorisConnectionsDoNotStopANormalClient) {
  constexpr int kIdle = 5000, kSlow = 100;
  const rlim_t files = RaiseFileLimit(2 * (kIdle + kSlow) + 1024);
  if (files < kIdle + kSlow + 512) {
    GTEST_SKIP() << "the open-file limit is " << files << " and cannot be raised here";
  }
  Cluster c(1, {});
  std::string error;
  ASSERT_TRUE(c.Start(&error)) << error;
  const uint16_t port = c.node(0).http_port;
  ASSERT_EQ(Http(port, "POST", "/api/set", "key=k&value=v&expire=5").status, 200);

  Sockets idle, slow;
  for (int i = 0; i < kIdle; ++i) ASSERT_GE(idle.Connect(port), 0) << "connection " << i;
  for (int i = 0; i < kSlow; ++i) {
    const int fd = slow.Connect(port);
    ASSERT_GE(fd, 0);
    const std::string start = "GET /api/get?key=k HTTP/1.1\r\nHost: x\r\n";
    ASSERT_EQ(::send(fd, start.data(), start.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(start.size()));
  }
  ASSERT_TRUE(
      WaitFor([&] { return MetricSum(port, "nexuscache_http_connections") >= kIdle + kSlow; },
              seconds(20)));

  // For 3 s the slowloris clients trickle a header line each every 100 ms and never end their
  // requests; meanwhile a normal client asks, one request after another.
  int answered = 0, failed = 0;
  double worst_ms = 0, total_ms = 0;
  const auto until = Clock::now() + seconds(3);
  std::thread trickle([&] {
    for (int round = 0; Clock::now() < until; ++round) {
      const std::string line = "X-Slow-" + std::to_string(round) + ": 1\r\n";
      for (int fd : slow.fds()) ::send(fd, line.data(), line.size(), MSG_NOSIGNAL);
      std::this_thread::sleep_for(milliseconds(100));
    }
  });
  while (Clock::now() < until) {
    const auto start = Clock::now();
    const HttpResult r = Http(port, "GET", "/api/get?key=k", "", seconds(5));
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    if (r.status == 200 && r.body == "value=v\n") {
      ++answered;
    } else {
      ++failed;
    }
    worst_ms = std::max(worst_ms, ms);
    total_ms += ms;
  }
  trickle.join();
  EXPECT_GE(MetricSum(port, "nexuscache_http_connections"), kIdle + kSlow)
      << "the node closed connections it should have kept (none timed out yet)";
  std::printf(
      "[limits] %d idle + %d slowloris connections: %d requests answered, %d failed, "
      "mean %.2f ms, worst %.2f ms\n",
      kIdle, kSlow, answered, failed, total_ms / std::max(1, answered + failed), worst_ms);
  EXPECT_GT(answered, 0);
  EXPECT_EQ(failed, 0);
}

TEST(Limits, APipelinerThatNeverReadsDoesNotGrowTheNodesMemory) {
  Cluster c(1, {});
  std::string error;
  ASSERT_TRUE(c.Start(&error)) << error;
  const uint16_t port = c.node(0).http_port;
  // Every answer is 100 KB: a node that queued them all would grow by 100 KB per request.
  ASSERT_EQ(
      Http(port, "POST", "/api/set", "key=big&value=" + std::string(100'000, 'v') + "&expire=5")
          .status,
      200);
  const pid_t pid = c.node(0).process->pid();
  const size_t before = RssBytes(pid);
  ASSERT_GT(before, 0u);
  Sockets sockets;
  const int fd = sockets.Connect(port);
  ASSERT_GE(fd, 0);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  const std::string get = "GET /api/get?key=big HTTP/1.1\r\nHost: x\r\n\r\n";
  std::string batch;
  for (int i = 0; i < 1000; ++i) batch += get;
  // For 3 s: as many GETs as the socket takes, never reading an answer.
  uint64_t sent_bytes = 0;
  size_t peak = before;
  const auto until = Clock::now() + seconds(3);
  while (Clock::now() < until) {
    const ssize_t n = ::send(fd, batch.data(), batch.size(), MSG_NOSIGNAL);
    if (n > 0) {
      sent_bytes += static_cast<uint64_t>(n);
    } else {
      std::this_thread::sleep_for(milliseconds(10));
    }
    peak = std::max(peak, RssBytes(pid));
  }
  // The node serves others meanwhile.
  EXPECT_EQ(Http(port, "GET", "/healthz").status, 200);
  const uint64_t requests = sent_bytes / get.size();
  std::printf(
      "[limits] never-reading pipeliner: %llu GETs of 100 KB answers sent in 3 s; node "
      "RSS %.1f MB before, %.1f MB at most during (%+.1f MB)\n",
      static_cast<unsigned long long>(requests), before / 1e6, peak / 1e6,
      (static_cast<double>(peak) - static_cast<double>(before)) / 1e6);
  EXPECT_GT(requests, 100u) << "the test did not get its requests out";
  EXPECT_LT(peak, before + (64u << 20)) << "the node queued the answers nobody reads";
}

TEST(Limits, BeyondMaxConnectionsNewConnectionsAreClosedAndCounted) {
  Cluster c(1, {"--max-connections", "20"});
  std::string error;
  ASSERT_TRUE(c.Start(&error)) << error;
  const uint16_t port = c.node(0).http_port;
  int refused = 0, retried = 0;
  {
    // 20 keep-alive connections, each answered once (the connections of earlier requests may
    // still linger at the node for a moment: one refused then is tried again, and counted).
    std::vector<std::unique_ptr<LineClient>> held;
    while (held.size() < 20) {
      auto conn = std::make_unique<LineClient>(port);
      ASSERT_TRUE(conn->connected());
      conn->Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
      if (conn->ReadHttpResponse().status == 200) {
        held.push_back(std::move(conn));
      } else {
        ASSERT_LT(++retried, 100);
        std::this_thread::sleep_for(milliseconds(20));
      }
    }
    // Beyond 20 open: accepted by the kernel, then closed by the node at once.
    for (int i = 0; i < 5; ++i) {
      LineClient extra(port);
      ASSERT_TRUE(extra.connected());
      refused += extra.ReadsEof();
    }
    // The count, asked on a connection the node holds.
    held[0]->Send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    const HttpResult metrics = held[0]->ReadHttpResponse();
    ASSERT_EQ(metrics.status, 200);
    EXPECT_EQ(MetricSumIn(metrics.body, "nexuscache_http_connections_refused_total"), 5 + retried);
  }
  EXPECT_EQ(refused, 5);
  // Once the 20 went, the node takes connections again.
  EXPECT_TRUE(WaitFor([&] { return Http(port, "GET", "/healthz").status == 200; }));
}

}  // namespace
}  // namespace nexus::testing
