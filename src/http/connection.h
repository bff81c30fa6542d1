// The HTTP/1.1 server connection: the HTTP codec (Boost.Beast's request parser, our response
// writer) on io's buffered connection, dispatching each request to a Router. Installed on a
// listener of io::EventLoops through HttpConnections(); http::Server (http/server.h) is the
// ready-made server of one HTTP listener.
//
// A connection reads one request (whole request within read_timeout), dispatches it and reads
// the next only once the handler's Responder has answered, so pipelined requests are answered
// in order; answers to several pipelined requests leave in one send(). A Responder called on
// the connection's loop thread (a cache hit) writes at once; from any other thread (a peer
// fetch) it goes through the loop's mailbox.
//
// Protocol behaviour: body > max_body_bytes -> 413 and close; header > max_header_bytes -> 431
// and close; malformed request -> 400 and close; timeout, EOF or reset mid-request -> quiet
// close; a client that half-closes after its requests gets their answers, then the close.
// "Expect: 100-continue" is answered before the body is read (curl sends it for bodies over
// 1 KiB). After a response that closes the connection the server half-closes and drains what
// the client still sends for a short while (kMaxLinger), so a client still uploading a
// rejected body reads the error instead of a TCP reset. While the loops drain (a stop), idle
// connections close and the answer in progress says Connection: close.
//
// Thread-safety: the factory is immutable and shared by the loops; each connection lives on
// its loop's thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "http/router.h"
#include "io/loop.h"
#include "tls/context.h"

namespace nexus::http {

struct ProtocolOptions {
  // Request line + header fields.
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 2 << 20;
  // The whole request (header and body) must arrive within this; also the keep-alive idle
  // timeout between requests. Handler time is not counted.
  std::chrono::milliseconds read_timeout{30000};
  // Writing one response must finish within this.
  std::chrono::milliseconds write_timeout{30000};
  // Value of the Server header.
  std::string server_name = "nexuscache";
  // A server context (tls/context.h): connections that open with a TLS handshake speak TLS
  // (requests from them carry peer_certificate_verified); the others stay plaintext. Null: all
  // plaintext.
  std::shared_ptr<const tls::Context> tls;
};

// The connection factory of an HTTP listener serving `router`.
std::shared_ptr<io::ConnectionFactory> HttpConnections(ProtocolOptions options,
                                                       std::shared_ptr<const Router> router);

}  // namespace nexus::http
