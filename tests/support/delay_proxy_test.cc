#include "support/delay_proxy.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

namespace nexus::testing {
namespace {

using std::chrono::milliseconds;

int Connect(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// An echo server on loopback for one connection: sends back what it reads until the end.
class Echo {
 public:
  Echo() {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(listener_, 4);
    getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      const int fd = accept(listener_, nullptr, nullptr);
      char buf[8192];
      for (ssize_t n; fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0;) {
        for (ssize_t off = 0; off < n;) off += write(fd, buf + off, n - off);
      }
      if (fd >= 0) close(fd);
    });
  }
  ~Echo() {
    thread_.join();
    close(listener_);
  }
  uint16_t port() const { return port_; }

 private:
  int listener_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

TEST(DelayProxyTest, ForwardsEveryByteInOrderEachWayLaterAndPassesTheEndOn) {
  Echo echo;
  std::string error;
  auto proxy = DelayProxy::Start(echo.port(), milliseconds(100), &error);
  ASSERT_NE(proxy, nullptr) << error;
  const int fd = Connect(proxy->port());
  ASSERT_GE(fd, 0);
  // 4 MB, more than the sockets buffer: the proxy has to wait until the sides are writable.
  std::string sent(4 << 20, '\0');
  for (size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<char>(i * 7 + i / 4099);
  const auto start = std::chrono::steady_clock::now();
  std::thread writer([&] {
    for (size_t off = 0; off < sent.size();) {
      const ssize_t n = write(fd, sent.data() + off, sent.size() - off);
      ASSERT_GT(n, 0);
      off += n;
    }
    shutdown(fd, SHUT_WR);  // the echo server sees the end, ends too: read() below returns 0
  });
  std::string got;
  char buf[65536];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) got.append(buf, n);
  writer.join();
  close(fd);
  EXPECT_TRUE(got == sent) << got.size() << " of " << sent.size() << " bytes came back intact";
  // (A lower bound only: the proxy cannot be faster than its delay, a busy machine is slower.)
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(200));
  EXPECT_EQ(proxy->connections(), 1u);
}

TEST(DelayProxyTest, AConnectionToATargetThatIsDownIsClosedAtOnce) {
  uint16_t port = 0;
  {
    Echo unused;  // a port nobody listens on afterwards
    port = unused.port();
    close(Connect(port));
  }
  std::string error;
  auto proxy = DelayProxy::Start(port, milliseconds(100), &error);
  ASSERT_NE(proxy, nullptr) << error;
  const int fd = Connect(proxy->port());
  ASSERT_GE(fd, 0);
  char c;
  EXPECT_LE(read(fd, &c, 1), 0);
  close(fd);
}

}  // namespace
}  // namespace nexus::testing
