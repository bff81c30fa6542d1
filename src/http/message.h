// HTTP request/response values exchanged between the server (http/server.h) and route handlers
// (http/router.h), plus the URL/form decoding the server applies to every request.
//
// These are plain values with no Beast types, so handlers (src/node) compile without Beast.
//
// Decoding follows Go's net/url where the seed's clients depend on it (`%XX`, `+` as space in
// queries and forms, the first occurrence of a repeated parameter wins like Go's FormValue) but
// is lenient where Go would fail the whole request: an invalid escape ("%zz", a trailing "%")
// and a raw space (curl -d "value=John Doe" sends one) are kept literally.
//
// Thread-safety: plain values; the functions are pure and thread-safe.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace nexus::http {

// Decoded parameters by name. Repeated names keep their first value (Go's FormValue).
using Params = std::map<std::string, std::string, std::less<>>;

struct Request {
  std::string method;  // as sent, e.g. "GET"; methods are case-sensitive
  std::string path;    // percent-decoded ('+' stays '+'), without the query
  std::string target;  // raw request target, e.g. "/api/get?key=a%20b"
  Params query;        // decoded from the target's query string
  // Decoded from the body when Content-Type is application/x-www-form-urlencoded, or when the
  // method is POST and no Content-Type was given (the seed's clients rely on that).
  Params form;
  // Header fields in arrival order, names as sent (see Header() for a lookup).
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool keep_alive = false;  // what the client asked for (HTTP/1.0 vs 1.1 + Connection)
  std::string remote;       // peer address, "ip:port"
  // Received over TLS from a client whose certificate chains to the server context's CA (a
  // cluster member, under --tls-*).
  bool peer_certificate_verified = false;
  bool tls = false;  // received over TLS

  // The value of `name` in the form, else in the query, else nullptr (Go's FormValue order).
  const std::string* Param(std::string_view name) const;
  // The first header field named `name` (case-insensitive), else nullptr.
  const std::string* Header(std::string_view name) const;
};

struct Response {
  int status = 200;  // outside 100..999 is sent as 500
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Extra header fields. Content-Length, Transfer-Encoding and Connection are managed by the
  // server and ignored here; Content-Type and Server here replace the defaults.
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;  // close the connection after this response
};

// The one place mapping an absl::Status to an HTTP status code (the API's answers, and the
// informative code next to X-Nexus-Status on the forwarding routes).
int HttpStatusFor(const absl::Status& status);

// A text/plain response, e.g. Text(404, "key not found\n").
Response Text(int status, std::string body);

// Appends `s` percent-encoded: everything but RFC 3986's unreserved characters (A-Z a-z 0-9
// - . _ ~) becomes %XX, so the result is safe in a path segment, a query or a form.
void AppendUrlEncoded(std::string& out, std::string_view s);
std::string UrlEncode(std::string_view s);

// Decodes `%XX` escapes and, when `plus_as_space`, '+' as a space. Invalid escapes are kept.
std::string UrlDecode(std::string_view s, bool plus_as_space = true);

// Parses "a=1&b=x%20y" (query strings and urlencoded forms). Empty pieces are skipped, a piece
// without '=' has an empty value, and the first occurrence of a name wins.
Params ParseQuery(std::string_view s);

// Fills path/query/form from target/method/headers/body (what the server does for every
// request; exposed so handler tests can build Requests the same way).
void DecodeRequest(Request& req);

}  // namespace nexus::http
