// AppendResponse: serializes a Response as HTTP/1.x. Written by hand because, for the small
// answers a cache serves, Beast's generic serializer cost more CPU than the whole lookup
// (measured with perf under wrk).
//
// Every response carries Server, Content-Type and (unless the status forbids a body)
// Content-Length; the handler's Content-Length, Transfer-Encoding, Connection and Server fields
// are ignored, and fields with CR, LF or ':' in the wrong place are dropped, so a handler bug
// cannot split responses. A HEAD answer has the GET's Content-Length and no body.
//
// Thread-safety: a pure function.
#pragma once

#include <string>
#include <string_view>

#include "http/message.h"

namespace nexus::http {

// `version`: 10 or 11 (the request's); `keep_alive` false adds "Connection: close", true on
// HTTP/1.0 adds "Connection: keep-alive".
void AppendResponse(Response response, unsigned version, bool keep_alive, bool head,
                    std::string_view server_name, std::string& out);

}  // namespace nexus::http
