// Client: a small asynchronous HTTP/1.1 GET client for the read-through origin loader.
//
// Deliberately minimal: plain http:// only (no TLS), GET only, one fresh connection per request
// sent with "Connection: close" (no pooling: origin loads are deduplicated and rare compared
// with cache hits, so connection reuse is not worth its complexity yet). Resolve, connect,
// write and read all run under one overall deadline.
//
// Thread-safety: Get may be called from any thread, concurrently. `done` is called exactly
// once, on a thread running the io_context (never inline from Get), unless the io_context is
// stopped or destroyed first, in which case `done` is destroyed uncalled. The Client object
// itself need not outlive the requests it started; the io_context must.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace nexus::http {

struct ClientResponse {
  int status = 0;
  std::string body;
  std::string content_type;  // empty if the origin sent none
};

struct ParsedUrl {
  std::string host;  // host name or IP literal (IPv6 without brackets)
  uint16_t port = 80;
  std::string target = "/";  // path and query, never empty; the fragment is dropped
  std::string host_header;   // value of the Host header ("host" or "host:port")
};

// Parses "http://host[:port][/path][?query]". Anything else (https, user info, a bad port,
// spaces or control characters) is InvalidArgument.
[[nodiscard]] absl::StatusOr<ParsedUrl> ParseHttpUrl(std::string_view url);

struct ClientOptions {
  // Larger origin responses fail with ResourceExhausted.
  size_t max_body_bytes = 64 << 20;
  std::string user_agent = "nexuscache";
};

class Client {
 public:
  explicit Client(boost::asio::io_context& ioc, ClientOptions options = {});

  // Fetches `url`. Results: the origin's status and body (any status, 404 included);
  // InvalidArgument for a bad URL; DeadlineExceeded("origin timed out after N ms") when the
  // whole exchange takes longer than `timeout`; Unavailable for resolve/connect/IO errors;
  // ResourceExhausted when the body exceeds max_body_bytes.
  void Get(std::string url, std::chrono::milliseconds timeout,
           absl::AnyInvocable<void(absl::StatusOr<ClientResponse>)> done);

 private:
  boost::asio::io_context& ioc_;
  const ClientOptions options_;
};

}  // namespace nexus::http
