#include "tools/bench/protocol.h"

#include <charconv>
#include <cstring>
#include <memory>

#include "common/parse.h"
#include "tools/bench/strings.h"

namespace nexus::bench {

namespace {

constexpr std::string_view kKeyPrefix = "bench_key_";

bool StartsWith(std::string_view s, std::string_view prefix) { return s.starts_with(prefix); }

ptrdiff_t ParseHttp(bool is_read, std::string_view buf, Reply* reply) {
  const size_t header_end = buf.find("\r\n\r\n");
  if (header_end == std::string_view::npos) {
    return buf.size() > 64 * 1024 ? -1 : 0;  // a header that large is not ours
  }
  const std::string_view head = buf.substr(0, header_end);
  // "HTTP/1.1 200 OK"
  if (!StartsWith(head, "HTTP/1.") || head.size() < 12 || head[8] != ' ') return -1;
  int status = 0;
  if (std::from_chars(head.data() + 9, head.data() + 12, status).ec != std::errc()) return -1;
  size_t content_length = 0;
  bool has_length = false;
  bool close = StartsWith(head, "HTTP/1.0");
  size_t line_start = head.find("\r\n");
  while (line_start != std::string_view::npos) {
    line_start += 2;
    const size_t line_end = head.find("\r\n", line_start);
    const std::string_view line =
        head.substr(line_start, line_end == std::string_view::npos ? std::string_view::npos
                                                                   : line_end - line_start);
    const size_t colon = line.find(':');
    if (colon != std::string_view::npos) {
      const std::string_view name = line.substr(0, colon);
      const std::string_view value = StripSpaces(line.substr(colon + 1));
      if (EqualsIgnoreCase(name, "content-length")) {
        if (!ParseInt(value, &content_length)) return -1;
        has_length = true;
      } else if (EqualsIgnoreCase(name, "connection")) {
        close = EqualsIgnoreCase(value, "close");
      } else if (EqualsIgnoreCase(name, "transfer-encoding")) {
        return -1;  // chunked answers are not something a cache GET/SET sends
      }
    }
    line_start = line_end;
  }
  if (!has_length) return -1;
  const size_t total = header_end + 4 + content_length;
  if (buf.size() < total) return 0;
  const std::string_view body = buf.substr(header_end + 4, content_length);
  reply->status = status;
  reply->close = close;
  if (is_read) {
    reply->outcome = status == 200 && StartsWith(body, "value=") ? Outcome::kHit
                     : status == 404                             ? Outcome::kMiss
                                                                 : Outcome::kError;
  } else {
    reply->outcome = status == 200 ? Outcome::kOk : Outcome::kError;
  }
  return static_cast<ptrdiff_t>(total);
}

ptrdiff_t ParseMemcache(bool is_read, std::string_view buf, Reply* reply) {
  const size_t eol = buf.find("\r\n");
  if (eol == std::string_view::npos) return buf.size() > 4096 ? -1 : 0;
  const std::string_view line = buf.substr(0, eol);
  reply->status = 0;
  reply->close = false;
  if (is_read && StartsWith(line, "VALUE ")) {
    // VALUE <key> <flags> <bytes>\r\n<data>\r\nEND\r\n
    const size_t last_space = line.rfind(' ');
    size_t bytes = 0;
    if (!ParseInt(line.substr(last_space + 1), &bytes)) return -1;
    const size_t total = eol + 2 + bytes + 2 + 5;
    if (buf.size() < total) return 0;
    if (buf.substr(total - 5, 5) != "END\r\n") return -1;
    reply->outcome = Outcome::kHit;
    return static_cast<ptrdiff_t>(total);
  }
  if (is_read && line == "END") {
    reply->outcome = Outcome::kMiss;
  } else if (!is_read && line == "STORED") {
    reply->outcome = Outcome::kOk;
  } else {
    reply->outcome = Outcome::kError;  // ERROR, SERVER_ERROR ..., CLIENT_ERROR ...
  }
  return static_cast<ptrdiff_t>(eol + 2);
}

}  // namespace

absl::StatusOr<Target> ParseTarget(std::string_view url) {
  Target t;
  t.url = std::string(url);
  std::string_view rest;
  uint16_t default_port;
  if (StartsWith(url, "http://")) {
    t.protocol = Protocol::kHttp;
    rest = url.substr(7);
    default_port = 80;
  } else if (StartsWith(url, "memcache://")) {
    t.protocol = Protocol::kMemcache;
    rest = url.substr(11);
    default_port = 11211;
  } else {
    return absl::InvalidArgumentError(
        Cat("unsupported URL ", url, ": want http://host:port or memcache://host:port"));
  }
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        Cat("URL ", url, " has a path; give the node's base URL (the seed's -url)"));
  }
  std::string_view host = rest;
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {  // [v6]:port
    const size_t close = rest.find(']');
    if (close == std::string_view::npos)
      return absl::InvalidArgumentError(Cat("bad host in ", url));
    host = rest.substr(1, close - 1);
    const std::string_view after = rest.substr(close + 1);
    if (StartsWith(after, ":")) {
      port_text = after.substr(1);
    } else if (!after.empty()) {
      return absl::InvalidArgumentError(Cat("bad host in ", url));
    }
  } else if (const size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port_text = rest.substr(colon + 1);
  }
  t.port = default_port;
  if (!port_text.empty() || rest.ends_with(':')) {
    uint16_t port = 0;
    if (!ParseInt(port_text, &port) || port == 0) {
      return absl::InvalidArgumentError(Cat("bad port in ", url));
    }
    t.port = port;
  }
  if (host.empty()) return absl::InvalidArgumentError(Cat("no host in ", url));
  t.host = std::string(host);

  absl::StatusOr<io::SocketAddress> address = io::Resolve(t.host, t.port);
  if (!address.ok()) return address.status();
  t.address = *address;
  return t;
}

void AppendRead(const Target& target, int key, std::string& out) {
  if (target.protocol == Protocol::kMemcache) {
    AppendTo(out, "get ", kKeyPrefix, key, "\r\n");
    return;
  }
  AppendTo(out, "GET /api/get?key=", kKeyPrefix, key, " HTTP/1.1\r\nHost: ", target.host, ":",
           target.port, "\r\n\r\n");
}

void AppendWrite(const Target& target, const Workload& workload, int key, std::string_view value,
                 std::string& out) {
  if (target.protocol == Protocol::kMemcache) {
    AppendTo(out, "set ", kKeyPrefix, key, " 0 ", workload.expire_minutes * 60, " ", value.size(),
             "\r\n", value, "\r\n");
    return;
  }
  // The value is alphanumeric (see load.cc), so the form needs no escaping.
  const std::string body =
      Cat("key=", kKeyPrefix, key, "&value=", value, "&expire=", workload.expire_minutes,
          workload.hot ? "&hot=true" : "");
  AppendTo(out, "POST /api/set HTTP/1.1\r\nHost: ", target.host, ":", target.port,
           "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ", body.size(),
           "\r\n\r\n", body);
}

ptrdiff_t ParseReply(Protocol protocol, bool is_read, std::string_view buffer, Reply* reply) {
  return protocol == Protocol::kHttp ? ParseHttp(is_read, buffer, reply)
                                     : ParseMemcache(is_read, buffer, reply);
}

}  // namespace nexus::bench
