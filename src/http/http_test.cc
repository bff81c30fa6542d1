// Tests for nexus_http: decoding helpers, Router, and a real Server on 127.0.0.1 driven by raw
// sockets (so malformed, pipelined and half-sent requests can be produced) and by the Client.
#include "boost/beast/http.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "boost/asio.hpp"
#include "boost/beast/core.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/client.h"
#include "http/message.h"
#include "http/router.h"
#include "http/server.h"

namespace nexus::http {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using std::chrono::milliseconds;
using ::testing::HasSubstr;

using RawResponse = bhttp::response<bhttp::string_body>;

std::string Field(const RawResponse& r, bhttp::field f) { return std::string(r[f]); }
std::string Field(const RawResponse& r, std::string_view name) {
  return std::string(r[beast::string_view(name.data(), name.size())]);
}

// ---------------------------------------------------------------------------------------------
// Decoding helpers.

TEST(UrlDecodeTest, DecodesEscapesAndPlus) {
  EXPECT_EQ(UrlDecode("a%20b"), "a b");
  EXPECT_EQ(UrlDecode("a+b"), "a b");
  EXPECT_EQ(UrlDecode("a+b", /*plus_as_space=*/false), "a+b");
  EXPECT_EQ(UrlDecode("%41%42%2f%2F"), "AB//");
  EXPECT_EQ(UrlDecode("%e4%b8%ad"), "\xe4\xb8\xad");
}

TEST(UrlDecodeTest, KeepsInvalidEscapesAndRawSpaces) {
  EXPECT_EQ(UrlDecode("100%"), "100%");
  EXPECT_EQ(UrlDecode("%4"), "%4");
  EXPECT_EQ(UrlDecode("%zz%4g"), "%zz%4g");
  EXPECT_EQ(UrlDecode("John Doe"), "John Doe");
  EXPECT_EQ(UrlDecode(""), "");
}

TEST(ParseQueryTest, ParsesPairs) {
  const Params p = ParseQuery("key=a%20b&x=1&&flag&=empty&a=1&a=2");
  EXPECT_EQ(p.at("key"), "a b");
  EXPECT_EQ(p.at("x"), "1");
  EXPECT_EQ(p.at("flag"), "");
  EXPECT_EQ(p.at(""), "empty");
  EXPECT_EQ(p.at("a"), "1");  // first wins, like Go's FormValue
  EXPECT_EQ(p.size(), 5u);
  EXPECT_TRUE(ParseQuery("").empty());
}

TEST(DecodeRequestTest, FormOnlyForUrlencodedOrPostWithoutContentType) {
  Request r;
  r.method = "POST";
  r.target = "/api/set?key=q";
  r.body = "key=f&value=John Doe";
  DecodeRequest(r);
  EXPECT_EQ(r.path, "/api/set");
  EXPECT_EQ(r.form.at("value"), "John Doe");
  ASSERT_NE(r.Param("key"), nullptr);
  EXPECT_EQ(*r.Param("key"), "f");  // form before query
  EXPECT_EQ(r.Param("missing"), nullptr);

  r.headers = {{"content-type", "application/json"}};
  DecodeRequest(r);
  EXPECT_TRUE(r.form.empty());
  EXPECT_EQ(*r.Param("key"), "q");

  r.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
  r.method = "PUT";
  DecodeRequest(r);
  EXPECT_EQ(r.form.at("key"), "f");

  r.headers.clear();
  r.method = "GET";
  r.target = "/a%20b+c?x";
  DecodeRequest(r);
  EXPECT_TRUE(r.form.empty());
  EXPECT_EQ(r.path, "/a b+c");
}

// ---------------------------------------------------------------------------------------------
// Router without a server.

struct Captured {
  std::optional<Response> response;
  Responder responder() {
    return [this](Response r) { response = std::move(r); };
  }
};

Request MakeRequest(std::string method, std::string target) {
  Request r;
  r.method = std::move(method);
  r.target = std::move(target);
  DecodeRequest(r);
  return r;
}

TEST(RouterTest, DispatchesNotFoundAndMethodNotAllowed) {
  Router router;
  router.Handle("GET", "/x", [](Request&& req, Responder respond) {
    respond(Text(200, "got " + req.method + "\n"));
  });
  router.Handle("DELETE", "/x", [](Request&&, Responder respond) { respond(Text(200, "del")); });

  Captured ok;
  router.Dispatch(MakeRequest("GET", "/x?a=1"), ok.responder());
  ASSERT_TRUE(ok.response);
  EXPECT_EQ(ok.response->body, "got GET\n");

  Captured head;
  router.Dispatch(MakeRequest("HEAD", "/x"), head.responder());
  ASSERT_TRUE(head.response);
  EXPECT_EQ(head.response->body, "got HEAD\n");

  Captured missing;
  router.Dispatch(MakeRequest("GET", "/y"), missing.responder());
  ASSERT_TRUE(missing.response);
  EXPECT_EQ(missing.response->status, 404);
  EXPECT_EQ(missing.response->body, "404 page not found\n");

  Captured wrong;
  router.Dispatch(MakeRequest("POST", "/x"), wrong.responder());
  ASSERT_TRUE(wrong.response);
  EXPECT_EQ(wrong.response->status, 405);
  EXPECT_EQ(wrong.response->body, "method not allowed\n");
  ASSERT_EQ(wrong.response->headers.size(), 1u);
  EXPECT_EQ(wrong.response->headers[0].first, "Allow");
  EXPECT_EQ(wrong.response->headers[0].second, "DELETE, GET, HEAD");
}

// ---------------------------------------------------------------------------------------------
// ParseHttpUrl.

TEST(ParseHttpUrlTest, AcceptsHttpUrls) {
  auto u = ParseHttpUrl("http://example.com:8080/v1/get?key=a%20b#frag");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->host, "example.com");
  EXPECT_EQ(u->port, 8080);
  EXPECT_EQ(u->target, "/v1/get?key=a%20b");
  EXPECT_EQ(u->host_header, "example.com:8080");

  u = ParseHttpUrl("HTTP://127.0.0.1");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->target, "/");

  u = ParseHttpUrl("http://h?x=1");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->target, "/?x=1");

  u = ParseHttpUrl("http://[::1]:81/p");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 81);
  EXPECT_EQ(u->host_header, "[::1]:81");
}

TEST(ParseHttpUrlTest, RejectsOthers) {
  for (const char* url :
       {"https://example.com/", "ftp://x", "example.com/path", "http://", "http:///path",
        "http://host:/p", "http://host:0/", "http://host:65536/", "http://host:8x/",
        "http://user@host/", "http://host/a b", "http://[::1/", "http://[::1]x/", ""}) {
    auto u = ParseHttpUrl(url);
    EXPECT_EQ(u.status().code(), absl::StatusCode::kInvalidArgument) << url;
  }
}

// ---------------------------------------------------------------------------------------------
// Server, driven by raw sockets.

// A blocking-looking connection whose reads are bounded by timeouts (async ops run with
// io_context::run_for), so a server bug fails the test instead of hanging it.
class RawConn {
 public:
  explicit RawConn(uint16_t port) : socket_(ioc_) {
    socket_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  }

  void Send(std::string_view data) { net::write(socket_, net::buffer(data.data(), data.size())); }

  // One response, or nullopt on error/timeout. `head` for responses to HEAD (no body).
  std::optional<RawResponse> Read(milliseconds timeout = milliseconds(5000), bool head = false) {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(64 << 20);
    parser.skip(head);
    bool done = false;
    beast::error_code error;
    bhttp::async_read(socket_, buffer_, parser, [&](beast::error_code ec, size_t) {
      error = ec;
      done = true;
    });
    if (!RunUntil(done, timeout) || error) return std::nullopt;
    return parser.release();
  }

  // True if the server closes (EOF or reset) within `timeout`; data before that is discarded.
  bool WaitForClose(milliseconds timeout = milliseconds(5000)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    buffer_.consume(buffer_.size());
    for (;;) {
      const auto left =
          std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      bool done = false;
      beast::error_code error;
      socket_.async_read_some(net::buffer(scratch_), [&](beast::error_code ec, size_t) {
        error = ec;
        done = true;
      });
      if (!RunUntil(done, left)) return false;
      if (error) return error == net::error::eof || error == net::error::connection_reset;
    }
  }

  void Close() {
    beast::error_code ec;
    socket_.close(ec);
  }

  // Half-closes: the server reads EOF after what was sent.
  void ShutdownSend() {
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
  }

 private:
  bool RunUntil(const bool& done, milliseconds timeout) {
    ioc_.restart();
    ioc_.run_for(timeout);
    if (done) return true;
    beast::error_code ec;
    socket_.cancel(ec);
    ioc_.restart();
    ioc_.run();
    return false;
  }

  net::io_context ioc_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
  std::array<char, 4096> scratch_;
};

std::string Get(std::string_view target, std::string_view extra_headers = "") {
  return std::string("GET ")
      .append(target)
      .append(" HTTP/1.1\r\nHost: test\r\n")
      .append(extra_headers)
      .append("\r\n");
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_ = std::make_shared<Router>();
    router_->Handle("GET", "/echo", [](Request&& req, Responder respond) {
      const std::string* key = req.Param("key");
      respond(Text(200, "path=" + req.path + " key=" + (key ? *key : "<none>") + "\n"));
    });
    router_->Handle("POST", "/api/set", [](Request&& req, Responder respond) {
      std::string out;
      for (const auto& [k, v] : req.form) out += k + "=[" + v + "]\n";
      respond(Text(200, out));
    });
    router_->Handle("GET", "/drop", [](Request&&, Responder) {});
    router_->Handle("GET", "/close", [](Request&&, Responder respond) {
      Response r = Text(200, "bye\n");
      r.close = true;
      respond(std::move(r));
    });
    router_->Handle("GET", "/headers", [](Request&&, Responder respond) {
      Response r = Text(201, "{}");
      r.content_type = "application/json";
      r.headers.emplace_back("X-Test", "1");
      respond(std::move(r));
    });
    // Parks the Responder; the test answers it (from another thread) via Answer().
    router_->Handle("GET", "/park", [this](Request&&, Responder respond) {
      absl::MutexLock lock(&mu_);
      parked_.push_back(std::move(respond));
    });
  }

  void TearDown() override {
    for (auto& t : threads_) t.join();
    if (server_) server_->Stop(milliseconds(0));
  }

  void StartServer(ServerOptions options = {}) {
    options.address = "127.0.0.1";
    options.port = 0;
    options.threads = 2;
    server_ = std::make_unique<Server>(options, router_);
    const absl::Status status = server_->Start();
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_NE(server_->port(), 0);
  }

  bool WaitParked(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() { return parked_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(5));
  }

  // Answers the oldest parked request from a new thread after `delay`.
  void AnswerLater(Response response, milliseconds delay) {
    Responder respond;
    {
      absl::MutexLock lock(&mu_);
      respond = std::move(parked_.front());
      parked_.erase(parked_.begin());
    }
    threads_.emplace_back(
        [respond = std::move(respond), response = std::move(response), delay]() mutable {
          std::this_thread::sleep_for(delay);
          respond(std::move(response));
        });
  }

  bool WaitForConnections(size_t n, milliseconds timeout = milliseconds(5000)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (server_->active_connections() != n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return true;
  }

  std::shared_ptr<Router> router_;
  std::unique_ptr<Server> server_;
  absl::Mutex mu_;
  std::vector<Responder> parked_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

TEST_F(ServerTest, GetDecodesQuery) {
  StartServer();
  RawConn c(server_->port());
  c.Send(Get("/echo?key=a%20b&other=1"));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200u);
  EXPECT_EQ(r->body(), "path=/echo key=a b\n");
  EXPECT_EQ(Field(*r, bhttp::field::content_type), "text/plain; charset=utf-8");
  EXPECT_EQ(Field(*r, bhttp::field::server), "nexuscache");
  EXPECT_EQ(Field(*r, bhttp::field::content_length), "19");
  EXPECT_TRUE(r->keep_alive());
}

TEST_F(ServerTest, PostFormWithRawSpace) {
  StartServer();
  RawConn c(server_->port());
  const std::string body = "key=user1&value=John Doe&expire=5&hot=false";
  c.Send(
      "POST /api/set HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body);
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200u);
  EXPECT_EQ(r->body(), "expire=[5]\nhot=[false]\nkey=[user1]\nvalue=[John Doe]\n");

  // Without a Content-Type a POST body is still parsed as a form.
  c.Send("POST /api/set HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nkey=a+b%21");
  r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), "key=[a b!]\n");
}

TEST_F(ServerTest, ExpectContinue) {
  StartServer();
  RawConn c(server_->port());
  c.Send(
      "POST /api/set HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
      "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\n\r\n");
  auto interim = c.Read();
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->result_int(), 100u);
  c.Send("key=k");
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), "key=[k]\n");
}

TEST_F(ServerTest, NotFoundAndMethodNotAllowed) {
  StartServer();
  RawConn c(server_->port());
  c.Send(Get("/nope"));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 404u);
  EXPECT_EQ(r->body(), "404 page not found\n");

  c.Send("DELETE /echo HTTP/1.1\r\nHost: t\r\n\r\n");
  r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 405u);
  EXPECT_EQ(r->body(), "method not allowed\n");
  EXPECT_EQ(Field(*r, "Allow"), "GET, HEAD");
}

TEST_F(ServerTest, CustomHeadersAndHead) {
  StartServer();
  RawConn c(server_->port());
  c.Send(Get("/headers"));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 201u);
  EXPECT_EQ(Field(*r, bhttp::field::content_type), "application/json");
  EXPECT_EQ(Field(*r, "X-Test"), "1");

  c.Send("HEAD /echo?key=k HTTP/1.1\r\nHost: t\r\n\r\n");
  r = c.Read(milliseconds(5000), /*head=*/true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200u);
  EXPECT_EQ(Field(*r, bhttp::field::content_length), "17");  // "path=/echo key=k\n"
  EXPECT_EQ(r->body(), "");
  // The connection is still in sync: no stray body bytes before the next response.
  c.Send(Get("/echo?key=z"));
  r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), "path=/echo key=z\n");
}

TEST_F(ServerTest, KeepAliveServesSeveralRequests) {
  StartServer();
  RawConn c(server_->port());
  for (int i = 0; i < 3; ++i) {
    c.Send(Get("/echo?key=" + std::to_string(i)));
    auto r = c.Read();
    ASSERT_TRUE(r) << i;
    EXPECT_EQ(r->body(), "path=/echo key=" + std::to_string(i) + "\n");
  }
  EXPECT_EQ(server_->active_connections(), 1u);
}

TEST_F(ServerTest, PipelinedRequestsAnsweredInOrder) {
  StartServer();
  RawConn c(server_->port());
  // The first is answered late from another thread; the second must still come second.
  c.Send(Get("/park") + Get("/echo?key=second"));
  ASSERT_TRUE(WaitParked(1));
  AnswerLater(Text(200, "first\n"), milliseconds(20));
  auto r1 = c.Read();
  auto r2 = c.Read();
  ASSERT_TRUE(r1);
  ASSERT_TRUE(r2);
  EXPECT_EQ(r1->body(), "first\n");
  EXPECT_EQ(r2->body(), "path=/echo key=second\n");
}

TEST_F(ServerTest, ManyPipelinedRequestsInOneWriteAnsweredInOrder) {
  StartServer();
  RawConn c(server_->port());
  // 3000 requests (~120 KiB) in one write: more input than one connection may consume in one
  // loop turn, and answers (~330 KiB) past the output the server queues before it stops
  // parsing, so both limits are crossed and resumed.
  std::string batch;
  for (int i = 0; i < 3000; ++i) batch += Get("/echo?key=" + std::to_string(i));
  c.Send(batch);
  for (int i = 0; i < 3000; ++i) {
    auto r = c.Read();
    ASSERT_TRUE(r) << i;
    ASSERT_EQ(r->body(), "path=/echo key=" + std::to_string(i) + "\n");
  }
  // Still usable afterwards.
  c.Send(Get("/echo?key=after"));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), "path=/echo key=after\n");
}

TEST_F(ServerTest, LargeResponseReachesSlowReader) {
  // 16 MiB is far more than the socket buffers: the server must wait for room (EPOLLOUT) and
  // finish the write later while serving other connections.
  const std::string big(16 << 20, 'x');
  router_->Handle("GET", "/big", [&big](Request&&, Responder respond) { respond(Text(200, big)); });
  StartServer();
  RawConn slow(server_->port());
  slow.Send(Get("/big"));
  std::this_thread::sleep_for(milliseconds(200));  // the server fills the buffers and waits
  RawConn other(server_->port());
  other.Send(Get("/echo?key=meanwhile"));
  auto o = other.Read();
  ASSERT_TRUE(o);
  EXPECT_EQ(o->body(), "path=/echo key=meanwhile\n");
  auto r = slow.Read(milliseconds(20000));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body().size(), big.size());
  EXPECT_EQ(r->body(), big);
}

TEST_F(ServerTest, ManyConcurrentConnections) {
  StartServer();
  std::vector<std::unique_ptr<RawConn>> conns;
  for (int i = 0; i < 200; ++i) {
    conns.push_back(std::make_unique<RawConn>(server_->port()));
    conns.back()->Send(Get("/echo?key=" + std::to_string(i)));
  }
  for (int i = 0; i < 200; ++i) {
    auto r = conns[i]->Read();
    ASSERT_TRUE(r) << i;
    EXPECT_EQ(r->body(), "path=/echo key=" + std::to_string(i) + "\n");
  }
  EXPECT_TRUE(WaitForConnections(200));
  conns.clear();
  EXPECT_TRUE(WaitForConnections(0));
}

TEST_F(ServerTest, BeyondMaxConnectionsANewConnectionIsClosedAtOnceAndCounted) {
  StartServer({.max_connections = 3});
  std::vector<std::unique_ptr<RawConn>> conns;
  for (int i = 0; i < 3; ++i) conns.push_back(std::make_unique<RawConn>(server_->port()));
  ASSERT_TRUE(WaitForConnections(3));
  RawConn extra(server_->port());
  EXPECT_TRUE(extra.WaitForClose()) << "the fourth connection stays open";
  EXPECT_EQ(server_->refused_connections(), 1u);
  // The three keep being served; once one goes, a new one is taken.
  for (auto& c : conns) {
    c->Send(Get("/echo?key=a"));
    ASSERT_TRUE(c->Read());
  }
  conns.pop_back();
  ASSERT_TRUE(WaitForConnections(2));
  RawConn next(server_->port());
  next.Send(Get("/echo?key=b"));
  auto r = next.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), "path=/echo key=b\n");
  EXPECT_EQ(server_->refused_connections(), 1u);
}

TEST_F(ServerTest, LateAnswerFromOtherThreadDoesNotBlockOthers) {
  StartServer();
  RawConn slow(server_->port());
  slow.Send(Get("/park"));
  ASSERT_TRUE(WaitParked(1));
  // Served while the first request is still waiting for its handler.
  RawConn fast(server_->port());
  fast.Send(Get("/echo?key=fast"));
  auto r = fast.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), "path=/echo key=fast\n");

  AnswerLater(Text(200, "late\n"), milliseconds(20));
  r = slow.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), "late\n");
  // And the slow connection keeps working.
  slow.Send(Get("/echo?key=again"));
  r = slow.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), "path=/echo key=again\n");
}

TEST_F(ServerTest, DroppedResponderAnswers500) {
  StartServer();
  RawConn c(server_->port());
  c.Send(Get("/drop"));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 500u);
  EXPECT_EQ(r->body(), "internal error: handler dropped the request\n");
  c.Send(Get("/echo?key=after"));
  r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200u);
}

TEST_F(ServerTest, ResponderAfterClientLeftIsHarmless) {
  StartServer();
  {
    RawConn c(server_->port());
    c.Send(Get("/park"));
    ASSERT_TRUE(WaitParked(1));
    c.Close();
  }
  AnswerLater(Text(200, "nobody listens\n"), milliseconds(20));
  for (auto& t : threads_) t.join();
  threads_.clear();
  EXPECT_TRUE(WaitForConnections(0));
  RawConn c(server_->port());
  c.Send(Get("/echo?key=ok"));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), "path=/echo key=ok\n");
}

TEST_F(ServerTest, BodyOverLimitIs413AndCloses) {
  ServerOptions options;
  options.max_body_bytes = 1024;
  StartServer(options);
  RawConn c(server_->port());
  const std::string body(4000, 'x');
  c.Send("POST /api/set HTTP/1.1\r\nHost: t\r\nContent-Length: 4000\r\n\r\n" + body);
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 413u);
  EXPECT_EQ(r->body(), "request body too large\n");
  EXPECT_FALSE(r->keep_alive());
  EXPECT_TRUE(c.WaitForClose());

  // A body exactly at the limit is fine.
  RawConn ok(server_->port());
  ok.Send("POST /api/set HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\nk=" +
          std::string(1022, 'v'));
  r = ok.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200u);

  // Chunked bodies are limited too.
  RawConn chunked(server_->port());
  chunked.Send(
      "POST /api/set HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
      "800\r\n" +
      std::string(2048, 'y') + "\r\n0\r\n\r\n");
  r = chunked.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 413u);
}

TEST_F(ServerTest, HeaderOverLimitIs431) {
  ServerOptions options;
  options.max_header_bytes = 1024;
  StartServer(options);
  RawConn c(server_->port());
  c.Send(Get("/echo", "X-Big: " + std::string(2000, 'h') + "\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 431u);
  EXPECT_EQ(r->body(), "request header too large\n");
  EXPECT_TRUE(c.WaitForClose());
}

TEST_F(ServerTest, MalformedRequestIs400AndCloses) {
  StartServer();
  RawConn c(server_->port());
  c.Send("THIS IS NOT HTTP\r\n\r\n");
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 400u);
  EXPECT_EQ(r->body(), "bad request\n");
  EXPECT_TRUE(c.WaitForClose());

  RawConn bad_length(server_->port());
  bad_length.Send("POST /api/set HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n");
  r = bad_length.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 400u);
}

TEST_F(ServerTest, ConnectionCloseHonoured) {
  StartServer();
  RawConn c(server_->port());
  c.Send(Get("/echo?key=x", "Connection: close\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), "path=/echo key=x\n");
  EXPECT_EQ(Field(*r, bhttp::field::connection), "close");
  EXPECT_TRUE(c.WaitForClose());

  // HTTP/1.0 without keep-alive closes as well.
  RawConn old(server_->port());
  old.Send("GET /echo?key=y HTTP/1.0\r\n\r\n");
  r = old.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->version(), 10u);
  EXPECT_TRUE(old.WaitForClose());

  // Response.close from the handler.
  RawConn forced(server_->port());
  forced.Send(Get("/close"));
  r = forced.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(Field(*r, bhttp::field::connection), "close");
  EXPECT_TRUE(forced.WaitForClose());
}

TEST_F(ServerTest, HalfRequestThenDisconnect) {
  StartServer();
  {
    RawConn c(server_->port());
    c.Send("POST /api/set HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nkey=");
    c.Close();
  }
  {
    RawConn c(server_->port());
    c.Send("GET /echo?ke");
    c.Close();
  }
  EXPECT_TRUE(WaitForConnections(0));
  RawConn c(server_->port());
  c.Send(Get("/echo?key=healthy"));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), "path=/echo key=healthy\n");
}

// `printf 'GET ...' | nc` style: whole requests, then the client's FIN in the same segment or
// right after. Every request is answered, then the server closes (it does not wait for the
// read timeout).
TEST_F(ServerTest, HalfCloseAfterRequestsGetsTheAnswersThenTheClose) {
  StartServer();
  RawConn c(server_->port());
  c.Send(Get("/echo?key=one") + Get("/echo?key=two"));
  c.ShutdownSend();
  auto first = c.Read();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->body(), "path=/echo key=one\n");
  auto second = c.Read();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->body(), "path=/echo key=two\n");
  EXPECT_TRUE(c.WaitForClose(milliseconds(2000)));
  EXPECT_TRUE(WaitForConnections(0));
}

TEST_F(ServerTest, ReadTimeoutClosesIdleAndSlowConnections) {
  ServerOptions options;
  options.read_timeout = milliseconds(200);
  StartServer(options);
  RawConn idle(server_->port());
  RawConn slow(server_->port());
  slow.Send("GET /echo HTTP/1.1\r\n");  // never finished
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(idle.WaitForClose(milliseconds(3000)));
  EXPECT_TRUE(slow.WaitForClose(milliseconds(3000)));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(150));

  // Keep-alive idle time after a response is limited too.
  RawConn c(server_->port());
  c.Send(Get("/echo"));
  ASSERT_TRUE(c.Read());
  EXPECT_TRUE(c.WaitForClose(milliseconds(3000)));
  EXPECT_TRUE(WaitForConnections(0));
}

TEST_F(ServerTest, StartOnPortInUseFails) {
  StartServer();
  ServerOptions options;
  options.address = "127.0.0.1";
  options.port = server_->port();
  options.threads = 1;
  Server second(options, router_);
  const absl::Status status = second.Start();
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(status.message(), HasSubstr(std::to_string(server_->port())));
  EXPECT_THAT(status.message(), HasSubstr("cannot listen"));
}

TEST_F(ServerTest, StopWaitsForInFlightRequest) {
  StartServer();
  RawConn busy(server_->port());
  busy.Send(Get("/park"));
  ASSERT_TRUE(WaitParked(1));
  RawConn idle(server_->port());
  ASSERT_TRUE(WaitForConnections(2));

  AnswerLater(Text(200, "finished\n"), milliseconds(100));
  const auto start = std::chrono::steady_clock::now();
  auto stopped = std::async(std::launch::async, [&] { server_->Stop(milliseconds(5000)); });
  EXPECT_TRUE(idle.WaitForClose(milliseconds(2000)));  // idle connections close at once
  auto r = busy.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body(), "finished\n");
  EXPECT_EQ(Field(*r, bhttp::field::connection), "close");
  EXPECT_TRUE(busy.WaitForClose(milliseconds(2000)));
  ASSERT_EQ(stopped.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(4000));
  EXPECT_EQ(server_->active_connections(), 0u);

  // No longer accepting.
  net::io_context ioc;
  tcp::socket s(ioc);
  beast::error_code ec;
  s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), server_->port()), ec);
  EXPECT_TRUE(ec);
  server_->Stop(milliseconds(0));  // idempotent
}

TEST_F(ServerTest, StopGraceExpiresWithUnansweredHandler) {
  StartServer();
  RawConn busy(server_->port());
  busy.Send(Get("/park"));
  ASSERT_TRUE(WaitParked(1));
  const auto start = std::chrono::steady_clock::now();
  server_->Stop(milliseconds(100));
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(2000));
  EXPECT_TRUE(busy.WaitForClose(milliseconds(2000)));
  // The late answer goes nowhere (the parked Responder is destroyed in TearDown, also fine).
  AnswerLater(Text(200, "too late\n"), milliseconds(0));
}

// ---------------------------------------------------------------------------------------------
// Client.

class ClientTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    work_.emplace(net::make_work_guard(ioc_));
    io_thread_ = std::thread([this] { ioc_.run(); });
  }
  void TearDown() override {
    work_.reset();
    io_thread_.join();
    ServerTest::TearDown();
  }

  absl::StatusOr<ClientResponse> Fetch(std::string url, milliseconds timeout) {
    std::promise<absl::StatusOr<ClientResponse>> promise;
    auto future = promise.get_future();
    Client client(ioc_);
    client.Get(std::move(url), timeout,
               [&promise](absl::StatusOr<ClientResponse> r) { promise.set_value(std::move(r)); });
    if (future.wait_for(timeout + std::chrono::seconds(5)) != std::future_status::ready) {
      return absl::InternalError("done was not called");
    }
    return future.get();
  }

  net::io_context ioc_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  std::thread io_thread_;
};

TEST_F(ClientTest, GetPassesStatusAndBody) {
  StartServer();
  const std::string base = "http://127.0.0.1:" + std::to_string(server_->port());
  auto r = Fetch(base + "/echo?key=a%20b", milliseconds(5000));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "path=/echo key=a b\n");
  EXPECT_EQ(r->content_type, "text/plain; charset=utf-8");

  r = Fetch(base + "/missing", milliseconds(5000));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->body, "404 page not found\n");
}

TEST_F(ClientTest, ConnectionRefusedIsUnavailable) {
  uint16_t port;
  {
    net::io_context ioc;
    tcp::acceptor a(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    port = a.local_endpoint().port();
  }  // closed: nothing listens there now
  auto r = Fetch("http://127.0.0.1:" + std::to_string(port) + "/x", milliseconds(5000));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("connect"));
}

TEST_F(ClientTest, SilentServerTimesOut) {
  // Listens (the kernel completes the handshake) but never accepts or answers.
  net::io_context ioc;
  tcp::acceptor silent(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  const auto start = std::chrono::steady_clock::now();
  auto r = Fetch("http://127.0.0.1:" + std::to_string(silent.local_endpoint().port()) + "/x",
                 milliseconds(200));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_EQ(r.status().message(), "origin timed out after 200 ms");
  EXPECT_GE(elapsed, milliseconds(150));
  EXPECT_LT(elapsed, milliseconds(3000));
}

// Beast 1.74's eager read reserved the whole Content-Length before the limit (std::bad_alloc,
// the node ended); found by fuzz/peer_answer_fuzz in the same parser.
TEST_F(ClientTest, AnOriginClaimingAHugeBodyIsRefusedWithoutReservingIt) {
  net::io_context ioc;
  tcp::acceptor origin(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  const uint16_t port = origin.local_endpoint().port();
  std::thread answer([&origin] {
    tcp::socket s = origin.accept();
    std::array<char, 4096> request;
    beast::error_code ec;
    s.read_some(net::buffer(request), ec);
    net::write(s,
               net::buffer(std::string_view("HTTP/1.1 200 OK\r\nContent-Length: "
                                            "8888888888888880\r\n\r\nabc")),
               ec);
    s.shutdown(tcp::socket::shutdown_send, ec);
    s.read_some(net::buffer(request), ec);  // until the client closes
  });
  auto r = Fetch("http://127.0.0.1:" + std::to_string(port) + "/x", milliseconds(5000));
  answer.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("response body exceeds"));
}

TEST_F(ClientTest, BadUrlIsInvalidArgument) {
  auto r = Fetch("https://example.com/", milliseconds(1000));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace nexus::http
