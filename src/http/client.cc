#include "http/client.h"

#include <cctype>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"

namespace nexus::http {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using Done = absl::AnyInvocable<void(absl::StatusOr<ClientResponse>)>;

// One request: resolve -> connect -> write -> read. Owned by its pending handlers.
class GetOp : public std::enable_shared_from_this<GetOp> {
 public:
  GetOp(net::io_context& ioc, ParsedUrl url, std::chrono::milliseconds timeout,
        const ClientOptions& options, Done done)
      : url_(std::move(url)),
        timeout_(timeout),
        options_(options),
        done_(std::move(done)),
        resolver_(ioc),
        stream_(ioc),
        resolve_timer_(ioc) {}

  void Start() {
    deadline_ = std::chrono::steady_clock::now() + timeout_;
    // The resolver has no timeout of its own; the stream's deadline covers the rest.
    resolve_timer_.expires_at(deadline_);
    resolve_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->resolved_) return;
      self->timed_out_ = true;
      self->resolver_.cancel();
    });
    resolver_.async_resolve(url_.host, std::to_string(url_.port),
                            beast::bind_front_handler(&GetOp::OnResolve, shared_from_this()));
  }

 private:
  void OnResolve(beast::error_code ec, tcp::resolver::results_type results) {
    resolved_ = true;
    resolve_timer_.cancel();
    if (timed_out_) return Finish(TimedOut());
    if (ec) return Fail("resolve", ec);
    stream_.expires_at(deadline_);
    stream_.async_connect(results,
                          beast::bind_front_handler(&GetOp::OnConnect, shared_from_this()));
  }

  void OnConnect(beast::error_code ec, const tcp::endpoint& /*endpoint*/) {
    if (ec) return Fail("connect", ec);
    request_.method(bhttp::verb::get);
    request_.target(url_.target);
    request_.version(11);
    request_.set(bhttp::field::host, url_.host_header);
    request_.set(bhttp::field::user_agent, options_.user_agent);
    request_.set(bhttp::field::accept, "*/*");
    request_.keep_alive(false);
    bhttp::async_write(stream_, request_,
                       beast::bind_front_handler(&GetOp::OnWrite, shared_from_this()));
  }

  void OnWrite(beast::error_code ec, size_t /*bytes*/) {
    if (ec) return Fail("write", ec);
    parser_.body_limit(static_cast<std::uint64_t>(options_.max_body_bytes));
    // The header alone first: Beast 1.74's async_read parses eagerly, and then drops the
    // body_limit error of the header and reserves the whole Content-Length (an origin
    // answering "Content-Length: 8888888888888880" ended the node in std::bad_alloc).
    bhttp::async_read_header(stream_, buffer_, parser_,
                             beast::bind_front_handler(&GetOp::OnHeader, shared_from_this()));
  }

  void OnHeader(beast::error_code ec, size_t /*bytes*/) {
    if (ec) return Fail("read", ec);
    bhttp::async_read(stream_, buffer_, parser_,
                      beast::bind_front_handler(&GetOp::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t /*bytes*/) {
    if (ec) return Fail("read", ec);
    auto& msg = parser_.get();
    ClientResponse response;
    response.status = static_cast<int>(msg.result_int());
    response.content_type = std::string(msg[bhttp::field::content_type]);
    response.body = std::move(msg.body());
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    Finish(std::move(response));
  }

  absl::Status TimedOut() const {
    return absl::DeadlineExceededError(
        absl::StrCat("origin timed out after ", timeout_.count(), " ms"));
  }

  void Fail(std::string_view stage, const beast::error_code& ec) {
    if (ec == beast::error::timeout || timed_out_) return Finish(TimedOut());
    if (ec == bhttp::error::body_limit) {
      return Finish(absl::ResourceExhaustedError(absl::StrCat("origin ", url_.host_header,
                                                              ": response body exceeds ",
                                                              options_.max_body_bytes, " bytes")));
    }
    Finish(absl::UnavailableError(
        absl::StrCat("origin ", url_.host_header, ": ", std::string(stage), ": ", ec.message())));
  }

  void Finish(absl::StatusOr<ClientResponse> result) {
    if (!done_) return;
    Done done = std::move(done_);
    done_ = nullptr;
    done(std::move(result));
  }

  const ParsedUrl url_;
  const std::chrono::milliseconds timeout_;
  const ClientOptions options_;
  Done done_;
  tcp::resolver resolver_;
  beast::tcp_stream stream_;
  net::steady_timer resolve_timer_;
  std::chrono::steady_clock::time_point deadline_;
  bool resolved_ = false;
  bool timed_out_ = false;
  beast::flat_buffer buffer_;
  bhttp::request<bhttp::empty_body> request_;
  bhttp::response_parser<bhttp::string_body> parser_;
};

bool HasPrefixIgnoreCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

bool ParsePort(std::string_view s, uint16_t* port) {
  if (s.empty() || s.size() > 5) return false;
  unsigned value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > 65535) return false;
  *port = static_cast<uint16_t>(value);
  return true;
}

}  // namespace

absl::StatusOr<ParsedUrl> ParseHttpUrl(std::string_view url) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid origin URL \"", std::string(url), "\": ", std::string(why)));
  };
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return bad("contains a space or control character");
    }
  }
  constexpr std::string_view kScheme = "http://";
  if (!HasPrefixIgnoreCase(url, kScheme)) {
    return bad("only http:// URLs are supported");
  }
  std::string_view rest = url.substr(kScheme.size());
  const size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  std::string_view target = end == std::string_view::npos ? "" : rest.substr(end);
  if (authority.find('@') != std::string_view::npos) return bad("user info is not supported");

  ParsedUrl parsed;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {  // [v6]:port
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("unterminated IPv6 literal");
    parsed.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("junk after IPv6 literal");
      port = after.substr(1);
      if (port.empty()) return bad("empty port");
    }
  } else {
    const size_t colon = authority.rfind(':');
    parsed.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) return bad("empty port");
    }
  }
  if (parsed.host.empty()) return bad("missing host");
  if (!port.empty() && !ParsePort(port, &parsed.port)) return bad("bad port");

  const size_t fragment = target.find('#');
  if (fragment != std::string_view::npos) target = target.substr(0, fragment);
  if (target.empty()) {
    parsed.target = "/";
  } else if (target.front() == '?') {
    parsed.target = absl::StrCat("/", std::string(target));
  } else {
    parsed.target = std::string(target);
  }
  parsed.host_header = std::string(authority);
  return parsed;
}

Client::Client(net::io_context& ioc, ClientOptions options)
    : ioc_(ioc), options_(std::move(options)) {}

void Client::Get(std::string url, std::chrono::milliseconds timeout, Done done) {
  absl::StatusOr<ParsedUrl> parsed = ParseHttpUrl(url);
  if (!parsed.ok()) {
    // Still asynchronous, so callers see one completion path.
    net::post(ioc_, [status = parsed.status(), done = std::move(done)]() mutable { done(status); });
    return;
  }
  auto op = std::make_shared<GetOp>(ioc_, *std::move(parsed), timeout, options_, std::move(done));
  net::post(ioc_, [op = std::move(op)] { op->Start(); });
}

}  // namespace nexus::http
