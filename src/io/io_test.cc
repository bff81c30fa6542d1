// The event-loop layer on its own: a line protocol served on two listeners of the same loops,
// a client socket on a loop driven by RunOnce, connect failures, the mailbox, draining.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "io/connection.h"
#include "io/event_loops.h"
#include "io/loop.h"
#include "io/socket.h"
#include "support/process.h"

namespace nexus::io {
namespace {

using std::chrono::milliseconds;

// A tiny line protocol: each "\n"-terminated line is answered with `prefix` + the line, or with
// the line upper-cased when `upper`. "quit" closes after answering "bye".
class LineConnection final : public Connection {
 public:
  LineConnection(Loop* loop, std::string remote, std::string prefix, bool upper)
      : Connection(loop, std::move(remote), 16), prefix_(std::move(prefix)), upper_(upper) {}

  void OnReady(uint32_t) override {
    for (;;) {
      const std::string_view in = input();
      const size_t nl = in.find('\n');
      if (nl != std::string_view::npos) {
        std::string line(in.substr(0, nl));
        Consume(nl + 1);
        if (line == "quit") {
          output() += "bye\n";
          closing_ = true;
          break;
        }
        output() += upper_ ? absl::AsciiStrToUpper(line) : prefix_ + line;
        output() += '\n';
        continue;
      }
      if (!readable()) break;
      const ReadResult r = ReadSome();
      if (r == ReadResult::kEof || r == ReadResult::kError) return Close();
      if (r == ReadResult::kDrained) break;
    }
    if (Flush() != 0) return Close();
    if (closing_ && !output_pending()) Close();
  }
  void OnDrain() override {
    if (input().empty() && !output_pending()) Close();
  }

 private:
  const std::string prefix_;
  const bool upper_;
  bool closing_ = false;
};

class LineFactory final : public ConnectionFactory {
 public:
  LineFactory(std::string prefix, bool upper) : prefix_(std::move(prefix)), upper_(upper) {}
  std::unique_ptr<Connection> Create(Loop& loop, int, std::string remote) override {
    return std::make_unique<LineConnection>(&loop, std::move(remote), prefix_, upper_);
  }

 private:
  const std::string prefix_;
  const bool upper_;
};

TEST(EventLoopsTest, TwoProtocolsOnTwoListenersOfTheSameLoops) {
  EventLoops loops(2, "test");
  absl::StatusOr<uint16_t> echo =
      loops.Listen("127.0.0.1", 0, std::make_shared<LineFactory>("echo: ", false));
  absl::StatusOr<uint16_t> upper =
      loops.Listen("127.0.0.1", 0, std::make_shared<LineFactory>("", true));
  ASSERT_TRUE(echo.ok()) << echo.status();
  ASSERT_TRUE(upper.ok()) << upper.status();
  ASSERT_NE(*echo, *upper);
  ASSERT_TRUE(loops.Start().ok());

  testing::LineClient a(*echo), b(*upper);
  ASSERT_TRUE(a.connected() && b.connected());
  // Pipelined lines, one of them longer than the connection's 16-byte first buffer.
  const std::string longer(100, 'x');
  ASSERT_TRUE(a.Send("hello\nworld\n" + longer + "\n"));
  EXPECT_EQ(a.ReadLines(3), "echo: hello\necho: world\necho: " + longer + "\n");
  ASSERT_TRUE(b.Send("hel"));
  ASSERT_TRUE(b.Send("lo\n"));
  EXPECT_EQ(b.ReadLines(1), "HELLO\n");
  ASSERT_TRUE(a.Send("quit\n"));
  EXPECT_EQ(a.ReadLines(1), "bye\n");
  EXPECT_TRUE(a.ReadsEof());
  loops.Stop(milliseconds(1000));
}

TEST(EventLoopsTest, StopClosesIdleConnectionsAndRefusesNewOnes) {
  EventLoops loops(1, "test");
  absl::StatusOr<uint16_t> port =
      loops.Listen("127.0.0.1", 0, std::make_shared<LineFactory>("", false));
  ASSERT_TRUE(port.ok());
  ASSERT_TRUE(loops.Start().ok());
  testing::LineClient idle(*port);
  ASSERT_TRUE(idle.Send("x\n"));
  EXPECT_EQ(idle.ReadLines(1), "x\n");
  EXPECT_EQ(loops.active_connections(), 1u);
  loops.Stop(milliseconds(2000));
  EXPECT_TRUE(idle.ReadsEof());
  EXPECT_EQ(loops.active_connections(), 0u);
  testing::LineClient late(*port);
  EXPECT_FALSE(late.connected());
}

TEST(EventLoopsTest, ListenOnPortInUseFailsWithTheAddress) {
  EventLoops first(1, "test");
  absl::StatusOr<uint16_t> port =
      first.Listen("127.0.0.1", 0, std::make_shared<LineFactory>("", false));
  ASSERT_TRUE(port.ok());
  EventLoops second(1, "test");
  absl::StatusOr<uint16_t> again =
      second.Listen("127.0.0.1", *port, std::make_shared<LineFactory>("", false));
  ASSERT_FALSE(again.ok());
  EXPECT_TRUE(absl::IsUnavailable(again.status()));
  EXPECT_NE(
      again.status().message().find("test: cannot listen on 127.0.0.1:" + std::to_string(*port)),
      std::string::npos)
      << again.status();
}

// A client on a loop that the test drives with RunOnce, as nexus-bench's workers do.
class LineClient final : public BufferedSocket {
 public:
  explicit LineClient(Loop* loop) : BufferedSocket(loop) {}
  using BufferedSocket::Connect;
  void Say(std::string_view line) {
    output().append(line).append("\n");
    if (!connecting()) Flush();
  }
  void OnConnected() override { connected = true; }
  void OnConnectFailed(int err) override { connect_error = err; }
  void OnReady(uint32_t) override {
    if (Flush() != 0) failed = true;
    while (readable()) {
      const ReadResult r = ReadSome();
      if (r == ReadResult::kEof) eof = true;
      if (r != ReadResult::kData) break;
    }
    received += std::string(input());
    ClearInput();
  }
  bool connected = false;
  bool eof = false;
  bool failed = false;
  int connect_error = 0;
  std::string received;
};

TEST(LoopTest, ClientSocketDrivenByRunOnce) {
  EventLoops server(1, "test");
  absl::StatusOr<uint16_t> port =
      server.Listen("127.0.0.1", 0, std::make_shared<LineFactory>("> ", false));
  ASSERT_TRUE(port.ok());
  ASSERT_TRUE(server.Start().ok());

  Loop loop;
  ASSERT_TRUE(loop.Init().ok());
  LineClient client(&loop);
  std::optional<SocketAddress> address = ParseNumericAddress("127.0.0.1:" + std::to_string(*port));
  ASSERT_TRUE(address.has_value());
  ASSERT_TRUE(client.Connect(*address).ok());
  client.Say("one");  // queued while connecting, sent once connected
  const auto deadline = SteadyClock::now() + std::chrono::seconds(5);
  while (client.received != "> one\n" && SteadyClock::now() < deadline)
    loop.RunOnce(milliseconds(50));
  EXPECT_TRUE(client.connected);
  EXPECT_EQ(client.received, "> one\n");
  client.Say("quit");
  while (!client.eof && SteadyClock::now() < deadline) loop.RunOnce(milliseconds(50));
  EXPECT_EQ(client.received, "> one\nbye\n");
  EXPECT_TRUE(client.eof);
}

TEST(LoopTest, RefusedConnectIsReported) {
  // A port that was just free: bind, read the port, close.
  absl::StatusOr<ListeningSocket> probe = Listen("test", "127.0.0.1", 0);
  ASSERT_TRUE(probe.ok());
  const uint16_t port = probe->port;
  ::close(probe->fd);

  Loop loop;
  ASSERT_TRUE(loop.Init().ok());
  LineClient client(&loop);
  const absl::Status started =
      client.Connect(*ParseNumericAddress("127.0.0.1:" + std::to_string(port)));
  if (started.ok()) {
    const auto deadline = SteadyClock::now() + std::chrono::seconds(5);
    while (client.connect_error == 0 && SteadyClock::now() < deadline)
      loop.RunOnce(milliseconds(50));
    EXPECT_EQ(client.connect_error, ECONNREFUSED);
    EXPECT_FALSE(client.is_open());
  } else {
    EXPECT_NE(started.message().find("Connection refused"), std::string::npos) << started;
  }
}

TEST(LoopTest, PostRunsOnTheLoopThread) {
  Loop loop;
  ASSERT_TRUE(loop.Init().ok());
  std::atomic<bool> ran{false};
  std::atomic<bool> on_loop{false};
  std::thread poster([&] {
    loop.Post([&] {
      on_loop = Loop::Current() == &loop;
      ran = true;
    });
  });
  poster.join();
  const auto deadline = SteadyClock::now() + std::chrono::seconds(5);
  while (!ran && SteadyClock::now() < deadline) loop.RunOnce(milliseconds(50));
  EXPECT_TRUE(ran);
  EXPECT_TRUE(on_loop);
  EXPECT_EQ(Loop::Current(), nullptr);
}

TEST(SocketTest, ParsesNumericAddressesOnly) {
  EXPECT_TRUE(ParseNumericAddress("127.0.0.1:80").has_value());
  EXPECT_TRUE(ParseNumericAddress("[::1]:80").has_value());
  EXPECT_TRUE(ParseNumericAddress("localhost:80").has_value());
  EXPECT_FALSE(ParseNumericAddress("example.com:80").has_value());
  EXPECT_FALSE(ParseNumericAddress("127.0.0.1").has_value());
  EXPECT_FALSE(ParseNumericAddress("127.0.0.1:0").has_value());
  EXPECT_FALSE(ParseNumericAddress("127.0.0.1:99999").has_value());
  EXPECT_EQ(AddressString(ParseNumericAddress("[::1]:8080")->get()), "[::1]:8080");
}

}  // namespace
}  // namespace nexus::io
