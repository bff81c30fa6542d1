// The event-loop layer on its own: a line protocol served on two listeners of the same loops,
// a client socket on a loop driven by RunOnce, connect failures, the mailbox, draining; TLS on
// both sides of the socket state machine (certificates made by scripts/make-certs).
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
#include "support/certs.h"
#include "support/process.h"

namespace nexus::io {
namespace {

using std::chrono::milliseconds;

// A tiny line protocol: each "\n"-terminated line is answered with `prefix` + the line, or with
// the line upper-cased when `upper`. "quit" closes after answering "bye". With a TLS server
// context, lines from a client with a verified certificate are answered with "tls" before the
// prefix.
class LineConnection final : public Connection {
 public:
  LineConnection(Loop* loop, std::string remote, std::string prefix, bool upper,
                 std::shared_ptr<const tls::Context> tls = nullptr)
      : Connection(loop, std::move(remote), 16), prefix_(std::move(prefix)), upper_(upper) {
    if (tls != nullptr) UseTls(std::move(tls), {}, this->remote());
  }

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
        if (tls_peer_verified()) output() += "tls";
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
  LineFactory(std::string prefix, bool upper, std::shared_ptr<const tls::Context> tls = nullptr)
      : prefix_(std::move(prefix)), upper_(upper), tls_(std::move(tls)) {}
  std::unique_ptr<Connection> Create(Loop& loop, int, std::string remote) override {
    return std::make_unique<LineConnection>(&loop, std::move(remote), prefix_, upper_, tls_);
  }

 private:
  const std::string prefix_;
  const bool upper_;
  const std::shared_ptr<const tls::Context> tls_;
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
  using BufferedSocket::UseTls;
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
      if (r == ReadResult::kError) failed = true;
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

// Runs `loop` until `done` or 5 s.
template <typename Done>
bool RunUntil(Loop& loop, Done done) {
  const auto deadline = SteadyClock::now() + std::chrono::seconds(5);
  while (!done() && SteadyClock::now() < deadline) loop.RunOnce(milliseconds(20));
  return done();
}

std::shared_ptr<const tls::Context> TlsContext(tls::Side side, const std::string& dir,
                                               const std::string& name,
                                               tls::HandshakeFailures* failures,
                                               const std::string& ca_dir = "") {
  absl::StatusOr<std::shared_ptr<const tls::Context>> ctx =
      tls::Context::Create({.side = side,
                            .files = {.cert = dir + "/" + name + ".pem",
                                      .key = dir + "/" + name + ".key",
                                      .ca = (ca_dir.empty() ? dir : ca_dir) + "/ca.pem"},
                            .failures = failures});
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return ctx.ok() ? *ctx : nullptr;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = testing::MakeCerts("io-tls", {"svc1", "svc2"});
    other_ca_ = testing::MakeCerts("io-tls-other", {"svc2"});
    server_ctx_ = TlsContext(tls::Side::kServer, certs_, "svc1", &server_failures_);
    ASSERT_NE(server_ctx_, nullptr);
    absl::StatusOr<uint16_t> port =
        server_.Listen("127.0.0.1", 0, std::make_shared<LineFactory>("> ", false, server_ctx_));
    ASSERT_TRUE(port.ok());
    port_ = *port;
    ASSERT_TRUE(server_.Start().ok());
    ASSERT_TRUE(loop_.Init().ok());
  }
  void TearDown() override { server_.Stop(milliseconds(1000)); }

  // A client of the server with `ctx`, expecting the server's certificate to carry `name`.
  std::unique_ptr<LineClient> Client(std::shared_ptr<const tls::Context> ctx,
                                     const std::string& name = "svc1") {
    auto client = std::make_unique<LineClient>(&loop_);
    client->UseTls(std::move(ctx), name, "the test server");
    EXPECT_TRUE(client->Connect(*ParseNumericAddress("127.0.0.1:" + std::to_string(port_))).ok());
    return client;
  }

  std::string certs_, other_ca_;
  tls::HandshakeFailures server_failures_, client_failures_;
  std::shared_ptr<const tls::Context> server_ctx_;
  EventLoops server_{1, "tls-test"};
  uint16_t port_ = 0;
  Loop loop_;
};

TEST_F(TlsTest, LinesOverMutualTlsAndPlaintextOnTheSameListener) {
  std::unique_ptr<LineClient> client =
      Client(TlsContext(tls::Side::kClient, certs_, "svc2", &client_failures_));
  client->Say("one");  // queued through the connect and the handshake
  ASSERT_TRUE(RunUntil(loop_, [&] { return client->received == "tls> one\n"; }))
      << client->received << " / " << client->tls_error();
  EXPECT_TRUE(client->tls_peer_verified());
  // A megabyte each way: partial TLS writes on both sides, many records per read.
  const std::string big(1 << 20, 'b');
  client->received.clear();
  client->Say(big);
  ASSERT_TRUE(RunUntil(loop_, [&] { return client->received.size() == big.size() + 6; }))
      << client->received.size();
  EXPECT_EQ(client->received, "tls> " + big + "\n");

  // The same listener still speaks plaintext to a client that does not open with TLS.
  testing::LineClient plain(port_);
  ASSERT_TRUE(plain.Send("two\n"));
  EXPECT_EQ(plain.ReadLines(1), "> two\n");

  client->Say("quit");
  EXPECT_TRUE(RunUntil(loop_, [&] { return client->eof; }));
  for (int f = 0; f < static_cast<int>(tls::Failure::kCount); ++f) {
    EXPECT_EQ(server_failures_.count(tls::Side::kServer, static_cast<tls::Failure>(f)), 0u);
    EXPECT_EQ(client_failures_.count(tls::Side::kClient, static_cast<tls::Failure>(f)), 0u);
  }
}

TEST_F(TlsTest, RefusedHandshakesAreCountedByReasonAndTheServerGoesOn) {
  struct Case {
    std::string what;
    std::shared_ptr<const tls::Context> ctx;
    std::string server_name;
    tls::Side counted_by;
    tls::Failure reason;
  };
  // (An expired client certificate: tests/integration/tls_test.cc, with curl, since a context
  // refuses to load one.)
  const std::vector<Case> cases = {
      // A client certificate from another CA: the server refuses it.
      {"another CA", TlsContext(tls::Side::kClient, other_ca_, "svc2", &client_failures_, certs_),
       "svc1", tls::Side::kServer, tls::Failure::kUntrusted},
      // The server's certificate is fine but not the member the client meant (svc2).
      {"wrong name", TlsContext(tls::Side::kClient, certs_, "svc2", &client_failures_), "svc2",
       tls::Side::kClient, tls::Failure::kWrongName},
      // The client trusts another CA only: the server's certificate does not chain to it.
      {"server untrusted",
       TlsContext(tls::Side::kClient, certs_, "svc2", &client_failures_, other_ca_), "svc1",
       tls::Side::kClient, tls::Failure::kUntrusted},
  };
  for (const Case& c : cases) {
    ASSERT_NE(c.ctx, nullptr) << c.what;
    tls::HandshakeFailures& failures =
        c.counted_by == tls::Side::kServer ? server_failures_ : client_failures_;
    const uint64_t before = failures.count(c.counted_by, c.reason);
    std::unique_ptr<LineClient> client = Client(c.ctx, c.server_name);
    client->Say("never answered");
    EXPECT_TRUE(RunUntil(loop_,
                         [&] {
                           return failures.count(c.counted_by, c.reason) == before + 1 &&
                                  (client->connect_error != 0 || client->failed || client->eof);
                         }))
        << c.what << ": " << client->tls_error();
    EXPECT_EQ(client->received, "") << c.what;
    if (client->connect_error == EPROTO) {
      EXPECT_NE(client->tls_error(), "") << c.what;
    }
  }
  // Server-side refusals leave the client with the server's alert: counted on its side too.
  EXPECT_GE(client_failures_.count(tls::Side::kClient, tls::Failure::kRefusedByPeer), 1u);

  // The server goes on serving.
  std::unique_ptr<LineClient> good =
      Client(TlsContext(tls::Side::kClient, certs_, "svc2", &client_failures_));
  good->Say("still here");
  EXPECT_TRUE(RunUntil(loop_, [&] { return good->received == "tls> still here\n"; }))
      << good->received;
}

TEST(TlsContextTest, BadFilesAreRefusedWithTheirFlagAndReason) {
  const std::string certs = testing::MakeCerts("io-tls-files", {"svc1", "svc2"});
  auto create = [&](const std::string& cert, const std::string& key, const std::string& ca,
                    const std::string& name) {
    return tls::Context::Create({.files = {.cert = cert, .key = key, .ca = ca}, .own_name = name})
        .status();
  };
  const std::string c1 = certs + "/svc1.pem", k1 = certs + "/svc1.key", ca = certs + "/ca.pem";
  EXPECT_TRUE(create(c1, k1, ca, "svc1").ok());
  EXPECT_EQ(create(certs + "/nope.pem", k1, ca, "svc1").message(),
            "--tls-cert " + certs + "/nope.pem: cannot be read");
  EXPECT_EQ(create(c1, certs + "/svc2.key", ca, "svc1").message(),
            "--tls-key " + certs + "/svc2.key: does not match --tls-cert " + c1);
  EXPECT_NE(create(c1, k1, k1, "svc1")
                .message()
                .find("--tls-ca " + k1 + ": holds no usable CA certificate: "),
            std::string::npos);
  EXPECT_EQ(create(c1, k1, ca, "svc2").message(),
            "--tls-cert " + c1 +
                ": does not carry this node's name 'svc2' (peers check it: add it as a DNS "
                "subjectAltName)");
  const std::string old = testing::MakeCerts("io-tls-files", {"old"}, -1);
  EXPECT_EQ(create(old + "/old.pem", old + "/old.key", ca, "").message(),
            "--tls-cert " + old + "/old.pem: has expired");
}

}  // namespace
}  // namespace nexus::io
