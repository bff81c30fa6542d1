// The RESP server connection: resp::Parser and resp::Writer on io's buffered connection,
// handing each command to a Handler (the commands live above, in the node's RESP API, as the
// HTTP API lives above http::Router). Installed on a listener of io::EventLoops through
// RespConnections(), next to HTTP on the same loops, so forwarded keys share the loops'
// forwarder pools.
//
// Pipelining: the connection parses every command that has arrived and dispatches each at once
// (so the forwarded keys of a pipeline travel to their owners together), and writes the replies
// in command order whatever order they complete in. A reply completed on the connection's
// loop thread (a cache hit) is written at once if every earlier one is out; from another
// thread (a gRPC call, an origin load) it comes through the loop's mailbox. Everything one turn
// produced leaves in one send().
//
// Limits (a client that pipelines without reading must not grow the node's memory): no more
// commands are parsed while max_in_flight are unanswered or max_pending_output bytes are
// unsent, and reading stops with them (the client's socket fills and TCP pushes back). A
// command must arrive whole within command_timeout from its first byte (slow-loris); a
// connection with nothing in flight closes after idle_timeout (0: never, like Redis's
// `timeout 0`); output must drain within write_timeout.
//
// Protocol errors (parser.h) are answered "-ERR Protocol error: ..." after the replies to the
// commands before them, then the connection closes, as Redis does. A reply may ask to close
// after it (QUIT). While the loops drain (a stop), no new commands are dispatched: the ones in
// flight are answered, then the connection closes.
//
// Thread-safety: the factory and the handler are shared by the loops (the handler must be
// thread-safe); a connection and its Session live on their loop's thread. A Reply may be
// completed from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "io/loop.h"
#include "io/mailbox.h"
#include "resp/parser.h"
#include "resp/writer.h"
#include "tls/context.h"

namespace nexus::resp {

// What a handler keeps per connection (an identity, a client name): subclass it.
class SessionData {
 public:
  virtual ~SessionData() = default;
};

// One client connection as the commands see it. Only on the connection's loop thread.
struct Session {
  uint64_t id = 0;     // unique in this process (CLIENT ID)
  std::string remote;  // "ip:port"
  bool tls = false;
  int protocol = 2;  // 2, or 3 after HELLO 3: the encoding of the replies that follow
  std::chrono::system_clock::time_point connected;
  std::unique_ptr<SessionData> data;  // the handler's (Handler::Open)
};

// The reply to one command: write it with out(), then Send (once). Move-only; one dropped
// unsent answers "-ERR internal error: the command dropped its reply". May be sent from any
// thread; a reply to a connection that closed meanwhile is dropped.
class Reply {
 public:
  Reply(Reply&& other) noexcept;
  Reply& operator=(Reply&&) = delete;
  ~Reply();

  Writer& out() { return writer_; }
  // Delivers what out() wrote. `close`: close the connection once it is written (QUIT).
  void Send(bool close = false);

 private:
  friend class RespConnection;
  Reply(io::Loop* loop, uint64_t conn_id, uint64_t seq, int protocol);

  io::Loop* loop_;
  std::shared_ptr<io::Mailbox> mailbox_;
  uint64_t conn_id_;
  uint64_t seq_;
  std::string data_;
  Writer writer_;
  bool armed_ = true;
};

class Handler {
 public:
  virtual ~Handler() = default;
  // A connection opened (set session.data here) / closed.
  virtual void Open(Session& session) { (void)session; }
  virtual void Closed(Session& session) { (void)session; }
  // One command: args[0] is its name, as sent (any case). On the loop's thread; the args are
  // valid only during the call. Changes to the session (protocol, data) apply to the commands
  // after this one.
  virtual void Dispatch(Session& session, std::span<const std::string_view> args, Reply reply) = 0;
};

struct ConnectionOptions {
  ParserLimits limits;
  size_t max_in_flight = 1024;
  size_t max_pending_output = 1 << 20;
  std::chrono::milliseconds command_timeout{30000};
  std::chrono::milliseconds idle_timeout{0};
  std::chrono::milliseconds write_timeout{30000};
  // A server context: connections that open with a TLS handshake speak TLS. Null: plaintext.
  std::shared_ptr<const tls::Context> tls;
};

// The connection factory of a RESP listener serving `handler`.
std::shared_ptr<io::ConnectionFactory> RespConnections(ConnectionOptions options,
                                                       std::shared_ptr<Handler> handler);

}  // namespace nexus::resp
