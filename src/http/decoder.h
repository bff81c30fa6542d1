// Incremental, socket-free HTTP/1.1 decoders: the one place where bytes from a socket become
// requests (the server's connections, http/connection.h) or responses (the forwarder's
// upstream connections, peer/forwarder.h). Boost.Beast's parser does the parsing underneath,
// with our limits; no Beast type appears in this header.
//
// Both are fed whatever arrived, in pieces of any size: Feed() uses a prefix of the bytes
// (what is unused stays with the caller for the next call, e.g. an incomplete header) and
// reports what happened. Splitting the same bytes differently never changes the result (the
// fuzz target http_request_fuzz checks it).
//
// Thread-safety: none; each connection owns its decoder.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "http/message.h"

namespace nexus::http {

class RequestDecoder {
 public:
  enum class State {
    kNeedMore,  // every byte given was used; the request is not complete yet
    kRequest,   // a request is complete: Take() it
    kError,     // the input is not a request the server takes: answer Rejection() and close
  };
  struct Fed {
    State state;
    size_t used;  // bytes of the input used
  };

  RequestDecoder(size_t max_header_bytes, size_t max_body_bytes);
  ~RequestDecoder();
  RequestDecoder(const RequestDecoder&) = delete;
  RequestDecoder& operator=(const RequestDecoder&) = delete;

  // Feeds `bytes`, stopping after a complete request or at an error.
  Fed Feed(std::string_view bytes);
  // True once per request, after its header asked for "Expect: 100-continue" (HTTP/1.1) and
  // before its body is complete: the server answers "100 Continue" then (curl waits for it).
  bool TakeContinue();
  // Whether any byte of the next request has arrived (false on a fresh decoder).
  bool got_some() const;

  // After kRequest: the request, decoded (DecodeRequest; `remote` left empty), and its HTTP
  // version (10, 11). The decoder then waits for Reset().
  Request Take();
  unsigned version() const { return version_; }
  // After kError: the answer (400, 413 or 431, to be sent with Connection: close), and the
  // parser's reason for logs.
  Response Rejection() const;
  std::string error_text() const;

  // Ready for the next request.
  void Reset();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  unsigned version_ = 11;
};

class ResponseDecoder {
 public:
  enum class State {
    kNeedMore,  // every byte given was used; the response is not complete yet
    kResponse,  // a response is complete: read it with the accessors, then Next()
    kTooLarge,  // its body is larger than max_body_bytes
    kError,     // not an HTTP response
  };
  struct Fed {
    State state;
    size_t used;
  };

  explicit ResponseDecoder(size_t max_body_bytes);
  ~ResponseDecoder();
  ResponseDecoder(const ResponseDecoder&) = delete;
  ResponseDecoder& operator=(const ResponseDecoder&) = delete;

  Fed Feed(std::string_view bytes);
  // Whether any byte of the next response has arrived.
  bool got_some() const;

  // After kResponse, until Next(): its status code, whether the server keeps the connection,
  // the first header field named `name` (case-insensitive; the view lives until Next()), the
  // body (moved out).
  int status() const;
  bool keep_alive() const;
  std::optional<std::string_view> Header(std::string_view name) const;
  std::string TakeBody();
  // After kError: the parser's reason.
  std::string error_text() const;

  // Ready for the next response.
  void Next();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nexus::http
