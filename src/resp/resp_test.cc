#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "io/event_loops.h"
#include "resp/connection.h"
#include "resp/parser.h"
#include "resp/writer.h"
#include "support/process.h"
#include "support/wait.h"

namespace nexus::resp {
namespace {

using namespace std::chrono_literals;

// Every command in `input`, each as its arguments joined by '|', or "ERROR: ..." at the end.
std::vector<std::string> ParseAll(std::string_view input, ParserLimits limits = {}) {
  Parser parser(limits);
  std::vector<std::string> out;
  for (;;) {
    const Parser::Fed fed = parser.Feed(input);
    if (fed.state == Parser::State::kError) {
      out.push_back("ERROR: " + parser.error());
      return out;
    }
    if (fed.state == Parser::State::kNeedMore) {
      if (input.size() > fed.used) out.push_back("PARTIAL");
      return out;
    }
    std::string joined;
    for (std::string_view a : parser.args()) {
      if (!joined.empty()) joined += '|';
      joined += a;
    }
    out.push_back(joined);
    input.remove_prefix(fed.used);
  }
}

// The same, fed as a connection would: the bytes arrive in pieces of the given sizes and the
// buffer holds what was not consumed (it is copied each time, so views into an older copy
// would be caught by ASan).
std::vector<std::string> ParseInPieces(std::string_view input, const std::vector<size_t>& cuts,
                                       ParserLimits limits = {}) {
  Parser parser(limits);
  std::vector<std::string> out;
  std::string buffer;
  size_t given = 0;
  auto drain = [&] {
    for (;;) {
      std::string copy = buffer;
      const Parser::Fed fed = parser.Feed(copy);
      if (fed.state == Parser::State::kError) {
        out.push_back("ERROR: " + parser.error());
        buffer.clear();
        return false;
      }
      if (fed.state == Parser::State::kCommand) {
        std::string joined;
        for (std::string_view a : parser.args()) {
          if (!joined.empty()) joined += '|';
          joined += a;
        }
        out.push_back(joined);
      }
      buffer.erase(0, fed.used);
      if (fed.state == Parser::State::kNeedMore) return true;
    }
  };
  for (size_t cut : cuts) {
    buffer.append(input.substr(given, cut - given));
    given = cut;
    if (!drain()) return out;
  }
  buffer.append(input.substr(given));
  if (drain() && !buffer.empty()) out.push_back("PARTIAL");
  return out;
}

TEST(ParserTest, MultibulkAndInlineCommands) {
  EXPECT_EQ(ParseAll("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), std::vector<std::string>{"GET|k"});
  EXPECT_EQ(ParseAll("*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\na\r\nb\r\n"),
            std::vector<std::string>{"SET||a\r\nb"});
  EXPECT_EQ(ParseAll("PING\r\nGET  k\n  \r\nECHO \"a b\" 'c\\'d' \"\\x41\\n\"\r\n"),
            (std::vector<std::string>{"PING", "GET|k", "ECHO|a b|c'd|A\n"}));
  // Empty commands are skipped.
  EXPECT_EQ(ParseAll("*0\r\n*-1\r\n\r\n*1\r\n$4\r\nPING\r\n"), std::vector<std::string>{"PING"});
  EXPECT_EQ(ParseAll("*2\r\n$3\r\nGET\r\n$1\r\nk"), std::vector<std::string>{"PARTIAL"});
  EXPECT_EQ(ParseAll("GET k"), std::vector<std::string>{"PARTIAL"});
}

TEST(ParserTest, ProtocolErrorsHaveRedisTexts) {
  EXPECT_EQ(ParseAll("*x\r\n"),
            std::vector<std::string>{"ERROR: Protocol error: invalid multibulk length"});
  EXPECT_EQ(ParseAll("*2\r\n+GET\r\n"),
            std::vector<std::string>{"ERROR: Protocol error: expected '$', got '+'"});
  EXPECT_EQ(ParseAll("*1\r\n*1\r\n$1\r\na\r\n"),
            std::vector<std::string>{"ERROR: Protocol error: expected '$', got '*'"});
  EXPECT_EQ(ParseAll("*1\r\n$-3\r\n"),
            std::vector<std::string>{"ERROR: Protocol error: invalid bulk length"});
  EXPECT_EQ(ParseAll("*1\r\n$1\r\nab\r\n"),
            std::vector<std::string>{"ERROR: Protocol error: expected CRLF after a bulk string"});
  EXPECT_EQ(ParseAll("ECHO \"abc\r\n"),
            std::vector<std::string>{"ERROR: Protocol error: unbalanced quotes in request"});
  EXPECT_EQ(ParseAll("ECHO \"a\"b\r\n"),
            std::vector<std::string>{"ERROR: Protocol error: unbalanced quotes in request"});
  // A command before the error is still parsed.
  EXPECT_EQ(ParseAll("PING\r\n*1\r\n$x\r\n"),
            (std::vector<std::string>{"PING", "ERROR: Protocol error: invalid bulk length"}));
}

TEST(ParserTest, LimitsAreEnforced) {
  ParserLimits limits{
      .max_bulk_bytes = 10, .max_args = 3, .max_command_bytes = 40, .max_line_bytes = 16};
  EXPECT_EQ(ParseAll("*1\r\n$11\r\n", limits),
            std::vector<std::string>{"ERROR: Protocol error: invalid bulk length"});
  EXPECT_EQ(ParseAll("*1\r\n$10\r\n0123456789\r\n", limits),
            std::vector<std::string>{"0123456789"});
  EXPECT_EQ(ParseAll("*4\r\n", limits),
            std::vector<std::string>{"ERROR: Protocol error: invalid multibulk length"});
  EXPECT_EQ(ParseAll("*3\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n$10\r\n", limits),
            std::vector<std::string>{"ERROR: Protocol error: command longer than 40 bytes"});
  EXPECT_EQ(ParseAll(std::string(17, 'a'), limits),
            std::vector<std::string>{"ERROR: Protocol error: too big inline request"});
  EXPECT_EQ(ParseAll("*" + std::string(17, '1'), limits),
            std::vector<std::string>{"ERROR: Protocol error: too big mbulk count string"});
  EXPECT_EQ(ParseAll("*1\r\n$" + std::string(17, '1'), limits),
            std::vector<std::string>{"ERROR: Protocol error: too big bulk count string"});
  // A line exactly at the limit passes whichever way it arrives (the fuzzer found a '\r' whose
  // '\n' was still to come counted into the line).
  limits.max_line_bytes = 4;
  const std::string exact = "*-40\r\n*1\r\n$4\r\nPING\r\n";
  for (size_t cut = 0; cut <= exact.size(); ++cut) {
    EXPECT_EQ(ParseInPieces(exact, {cut}, limits), std::vector<std::string>{"PING"})
        << "split at " << cut;
  }
  // Huge numbers are refused, not wrapped.
  EXPECT_EQ(ParseAll("*99999999999999999999\r\n"),
            std::vector<std::string>{"ERROR: Protocol error: invalid multibulk length"});
}

TEST(ParserTest, EverySplitOfAPipelineYieldsTheSameCommands) {
  const std::string pipeline =
      "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n"
      "PING\r\n"
      "*0\r\n"
      "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"
      "ECHO \"x y\"\n"
      "*1\r\n$4\r\nQUIT\r\n";
  const std::vector<std::string> whole = ParseAll(pipeline);
  ASSERT_EQ(whole,
            (std::vector<std::string>{"SET|key|va\r\nl", "PING", "GET|key", "ECHO|x y", "QUIT"}));
  for (size_t i = 0; i <= pipeline.size(); ++i) {
    EXPECT_EQ(ParseInPieces(pipeline, {i}), whole) << "split at " << i;
    for (size_t j = i; j <= pipeline.size(); j += 7) {
      EXPECT_EQ(ParseInPieces(pipeline, {i, j}), whole) << "split at " << i << " and " << j;
    }
  }
  // Byte by byte.
  std::vector<size_t> every;
  for (size_t i = 1; i < pipeline.size(); ++i) every.push_back(i);
  EXPECT_EQ(ParseInPieces(pipeline, every), whole);
}

TEST(WriterTest, Resp2AndResp3Shapes) {
  std::string two, three;
  for (auto [out, protocol] : {std::pair{&two, 2}, std::pair{&three, 3}}) {
    Writer w(out, protocol);
    w.Ok();
    w.Error("ERR bad\r\nthing");
    w.Integer(-12);
    w.Bulk("ab");
    w.Null();
    w.NullArray();
    w.Map(1);
    w.Set(2);
    w.Bool(true);
    w.Double(1.5);
    w.Verbatim("hi");
  }
  EXPECT_EQ(two,
            "+OK\r\n-ERR bad  thing\r\n:-12\r\n$2\r\nab\r\n$-1\r\n*-1\r\n*2\r\n*2\r\n:1\r\n"
            "$3\r\n1.5\r\n$2\r\nhi\r\n");
  EXPECT_EQ(three,
            "+OK\r\n-ERR bad  thing\r\n:-12\r\n$2\r\nab\r\n_\r\n_\r\n%1\r\n~2\r\n#t\r\n"
            ",1.5\r\n=6\r\ntxt:hi\r\n");
}

// A handler for the connection tests: "ECHO x" answers at once; "LATER ms x" answers x from
// another thread after ms; "HOLD" answers only when released; "QUIT" answers +OK and closes;
// "HELLO3" switches to RESP3.
class TestHandler : public Handler {
 public:
  ~TestHandler() override { Release(); }
  void Dispatch(Session& session, std::span<const std::string_view> args, Reply reply) override {
    dispatched_.fetch_add(1);
    const std::string name(args[0]);
    if (name == "QUIT") {
      reply.out().Ok();
      return reply.Send(/*close=*/true);
    }
    if (name == "HELLO3") {
      session.protocol = 3;
      reply.out().set_protocol(3);
      reply.out().Map(0);
      return reply.Send();
    }
    if (name == "NULL") {
      reply.out().Null();
      return reply.Send();
    }
    if (name == "HOLD") {
      std::lock_guard lock(mu_);
      held_.push_back(std::move(reply));
      return;
    }
    if (name == "LATER" && args.size() == 3) {
      const int ms = std::stoi(std::string(args[1]));
      threads_.emplace_back([reply = std::move(reply), ms, value = std::string(args[2])]() mutable {
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        reply.out().Bulk(value);
        reply.Send();
      });
      return;
    }
    if (name == "DROP") return;  // the Reply dies unsent
    reply.out().Bulk(args.size() > 1 ? args[1] : "");
    reply.Send();
  }
  void Release() {
    std::vector<Reply> held;
    {
      std::lock_guard lock(mu_);
      held.swap(held_);
    }
    for (Reply& r : held) {
      r.out().Simple("RELEASED");
      r.Send();
    }
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }
  int dispatched() const { return dispatched_.load(); }

 private:
  std::atomic<int> dispatched_{0};
  std::mutex mu_;
  std::vector<Reply> held_;
  std::vector<std::thread> threads_;  // joined on the test's thread only
};

class ConnectionTest : public ::testing::Test {
 protected:
  void Start(ConnectionOptions options = {}) {
    auto listened = loops_.Listen("127.0.0.1", 0, RespConnections(options, handler_));
    ASSERT_TRUE(listened.ok()) << listened.status();
    port_ = *listened;
    ASSERT_TRUE(loops_.Start().ok());
  }
  void TearDown() override {
    handler_->Release();
    loops_.Stop(0ms);
  }

  std::shared_ptr<TestHandler> handler_ = std::make_shared<TestHandler>();
  io::EventLoops loops_{1, "resp"};
  uint16_t port_ = 0;
};

TEST_F(ConnectionTest, PipelinedRepliesComeBackInCommandOrder) {
  Start();
  nexus::testing::LineClient client(port_);
  ASSERT_TRUE(client.connected());
  // The first answers last (from another thread), the others at once.
  ASSERT_TRUE(
      client.Send("LATER 200 a\r\nECHO b\r\nLATER 50 c\r\n*2\r\n$4\r\nECHO\r\n$1\r\nd\r\n"
                  "NULL\r\n"));
  EXPECT_EQ(client.ReadLines(9), "$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n$-1\r\n");
  ASSERT_TRUE(client.Send("HELLO3\r\nNULL\r\n"));
  EXPECT_EQ(client.ReadLines(2), "%0\r\n_\r\n");
}

TEST_F(ConnectionTest, QuitAnswersThenCloses) {
  Start();
  nexus::testing::LineClient client(port_);
  ASSERT_TRUE(client.Send("ECHO a\r\nQUIT\r\nECHO never\r\n"));
  EXPECT_EQ(client.ReadLines(3), "$1\r\na\r\n+OK\r\n");
  EXPECT_TRUE(client.ReadsEof());
}

TEST_F(ConnectionTest, AProtocolErrorIsAnsweredAfterEarlierRepliesThenCloses) {
  Start();
  nexus::testing::LineClient client(port_);
  ASSERT_TRUE(client.Send("LATER 100 a\r\n*1\r\n$x\r\n"));
  EXPECT_EQ(client.ReadLines(3), "$1\r\na\r\n-ERR Protocol error: invalid bulk length\r\n");
  EXPECT_TRUE(client.ReadsEof());
  // The server goes on serving others.
  nexus::testing::LineClient other(port_);
  ASSERT_TRUE(other.Send("ECHO ok\r\n"));
  EXPECT_EQ(other.ReadLines(2), "$2\r\nok\r\n");
}

TEST_F(ConnectionTest, ADroppedReplyIsAnErrorNotAHang) {
  Start();
  nexus::testing::LineClient client(port_);
  ASSERT_TRUE(client.Send("DROP\r\nECHO b\r\n"));
  EXPECT_EQ(client.ReadLines(3),
            "-ERR internal error: the command dropped its reply\r\n$1\r\nb\r\n");
}

TEST_F(ConnectionTest, AClientThatNeverReadsHoldsAtMostMaxInFlightCommands) {
  ConnectionOptions options;
  options.max_in_flight = 16;
  Start(options);
  nexus::testing::LineClient client(port_);
  std::string many;
  for (int i = 0; i < 1000; ++i) many += "HOLD\r\n";
  ASSERT_TRUE(client.Send(many));
  ASSERT_TRUE(nexus::testing::WaitFor([&] { return handler_->dispatched() == 16; }, 5s));
  std::this_thread::sleep_for(100ms);  // (nothing more may come: give it the chance)
  EXPECT_EQ(handler_->dispatched(), 16);
  handler_->Release();  // answers the 16: the next 16 are parsed
  ASSERT_TRUE(nexus::testing::WaitFor([&] { return handler_->dispatched() == 32; }, 5s));
  EXPECT_EQ(client.ReadLines(16).size(), 16 * std::string("+RELEASED\r\n").size());
}

TEST_F(ConnectionTest, APartialCommandMustArriveWithinTheCommandTimeout) {
  ConnectionOptions options;
  options.command_timeout = 200ms;
  Start(options);
  nexus::testing::LineClient slow(port_);
  ASSERT_TRUE(slow.Send("*2\r\n$4\r\nECHO\r\n"));
  EXPECT_TRUE(slow.ReadsEof());
  // A connection between commands is not timed out (idle_timeout 0).
  nexus::testing::LineClient idle(port_);
  ASSERT_TRUE(idle.Send("ECHO a\r\n"));
  EXPECT_EQ(idle.ReadLines(2), "$1\r\na\r\n");
  std::this_thread::sleep_for(400ms);
  ASSERT_TRUE(idle.Send("ECHO b\r\n"));
  EXPECT_EQ(idle.ReadLines(2), "$1\r\nb\r\n");
}

TEST_F(ConnectionTest, AClientThatHalfClosesGetsItsReplies) {
  Start();
  const std::string got = nexus::testing::RawExchange(port_, "LATER 100 a\r\nECHO b\r\n", 3s,
                                                      /*half_close=*/true);
  EXPECT_EQ(got, "$1\r\na\r\n$1\r\nb\r\n");
}

}  // namespace
}  // namespace nexus::resp
