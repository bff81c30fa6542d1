#include "http/message.h"

#include <cctype>

#include "common/ascii.h"

namespace nexus::http {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

const std::string* Request::Param(std::string_view name) const {
  if (auto it = form.find(name); it != form.end()) return &it->second;
  if (auto it = query.find(name); it != query.end()) return &it->second;
  return nullptr;
}

const std::string* Request::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (EqualsIgnoreCase(key, name)) return &value;
  }
  return nullptr;
}

Response Text(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

void AppendUrlEncoded(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
}

std::string UrlEncode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  AppendUrlEncoded(out, s);
  return out;
}

std::string UrlDecode(std::string_view s, bool plus_as_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '+' && plus_as_space) {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Params ParseQuery(std::string_view s) {
  Params params;
  while (!s.empty()) {
    const size_t amp = s.find('&');
    std::string_view piece = s.substr(0, amp);
    s = amp == std::string_view::npos ? std::string_view() : s.substr(amp + 1);
    if (piece.empty()) continue;
    const size_t eq = piece.find('=');
    std::string key = UrlDecode(piece.substr(0, eq));
    std::string value =
        eq == std::string_view::npos ? std::string() : UrlDecode(piece.substr(eq + 1));
    params.emplace(std::move(key), std::move(value));  // keeps the first occurrence
  }
  return params;
}

void DecodeRequest(Request& req) {
  std::string_view target = req.target;
  // Absolute-form targets ("GET http://host/path", sent to proxies) carry the path after the
  // authority.
  if (target.size() > 7 && EqualsIgnoreCase(target.substr(0, 7), "http://")) {
    const size_t slash = target.find_first_of("/?", 7);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  const size_t fragment = target.find('#');
  if (fragment != std::string_view::npos) target = target.substr(0, fragment);
  const size_t qmark = target.find('?');
  req.path = UrlDecode(target.substr(0, qmark), /*plus_as_space=*/false);
  if (req.path.empty()) req.path = "/";
  req.query = qmark == std::string_view::npos ? Params() : ParseQuery(target.substr(qmark + 1));

  bool is_form = false;
  if (const std::string* ct = req.Header("Content-Type"); ct != nullptr) {
    std::string_view media = *ct;
    media = Trim(media.substr(0, media.find(';')));
    is_form = EqualsIgnoreCase(media, "application/x-www-form-urlencoded");
  } else {
    is_form = req.method == "POST";
  }
  req.form = is_form ? ParseQuery(req.body) : Params();
}

int HttpStatusFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kResourceExhausted:
      return 413;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kUnavailable:
      return 503;  // a peer (or, later, etcd) is down: retrying elsewhere/later may work
    default:
      return 502;  // the origin or a peer failed or timed out
  }
}

}  // namespace nexus::http
