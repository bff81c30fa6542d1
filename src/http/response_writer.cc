#include "http/response_writer.h"

#include "boost/beast/core/string.hpp"
#include "boost/beast/http/status.hpp"

namespace nexus::http {

namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

// Header names and values must not smuggle CR/LF (a handler bug must not split responses).
bool ValidHeader(std::string_view name, std::string_view value) {
  return !name.empty() && name.find_first_of("\r\n:") == std::string_view::npos &&
         value.find_first_of("\r\n") == std::string_view::npos;
}

}  // namespace

void AppendResponse(Response r, unsigned version, bool keep_alive, bool head,
                    std::string_view server_name, std::string& out) {
  int status = r.status;
  if (status < 100 || status > 999) status = 500;
  // These statuses must not carry a body.
  const bool bodiless = status / 100 == 1 || status == 204 || status == 304;
  if (bodiless) r.body.clear();
  out.reserve(out.size() + 160 + r.body.size());
  out += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  const auto reason = bhttp::obsolete_reason(static_cast<bhttp::status>(status));
  out.append(reason.data(), reason.size());
  out += "\r\nServer: ";
  out += server_name;
  bool has_content_type = false;
  for (const auto& [name, value] : r.headers) {
    if (beast::iequals(name, "Content-Length") || beast::iequals(name, "Transfer-Encoding") ||
        beast::iequals(name, "Connection") || beast::iequals(name, "Server") ||
        !ValidHeader(name, value)) {
      continue;
    }
    if (beast::iequals(name, "Content-Type")) has_content_type = true;
    out += "\r\n";
    out += name;
    out += ": ";
    out += value;
  }
  if (!has_content_type && ValidHeader("Content-Type", r.content_type)) {
    out += "\r\nContent-Type: ";
    out += r.content_type;
  }
  if (!bodiless) {
    // HEAD answers like GET without the body: same Content-Length, nothing after the header.
    out += "\r\nContent-Length: ";
    out += std::to_string(r.body.size());
  }
  if (!keep_alive) {
    out += "\r\nConnection: close";
  } else if (version == 10) {
    out += "\r\nConnection: keep-alive";
  }
  out += "\r\n\r\n";
  if (!head) out += r.body;
}

}  // namespace nexus::http
