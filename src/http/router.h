// Router: maps (method, exact path) to a Handler, Go ServeMux style, for the HTTP server.
//
// Handlers are asynchronous: they receive the Request and a Responder and may answer at once or
// later from any thread (e.g. after a peer fetch). The server guarantees that a Responder that
// is destroyed without being called answers 500, so a forgotten path never hangs a connection.
//
// Thread-safety: register every route with Handle() before the Router is shared (the server
// takes a std::shared_ptr<const Router>); Dispatch() is const and may run concurrently on every
// server thread. Handlers themselves must therefore be thread-safe.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "http/message.h"

namespace nexus::http {

// Sends the response for one request. Call it exactly once, from any thread; further calls are
// ignored, and calling it after the client went away (or after the server stopped) is harmless.
// Destroying it uncalled answers 500 "internal error: handler dropped the request\n".
using Responder = absl::AnyInvocable<void(Response)>;
using Handler = std::function<void(Request&&, Responder)>;

class Router {
 public:
  // Registers `h` for exact `method` and `path` ("/api/get"), replacing a previous one. A GET
  // route also answers HEAD unless HEAD is registered itself: the handler then sees method
  // "HEAD" and the server sends the headers (with the GET Content-Length) without the body.
  void Handle(std::string method, std::string path, Handler h);

  // Runs the matching handler on the calling thread. Unknown path: 404 "404 page not found\n"
  // (Go's text); known path, other method: 405 "method not allowed\n" with an Allow header.
  void Dispatch(Request&& req, Responder respond) const;

  // A check every request passes before its route (e.g. "client requests over TLS only"): an
  // answer refuses the request with it, nullopt lets it through. Set before sharing.
  using Guard = std::function<std::optional<Response>(const Request&)>;
  void set_guard(Guard guard) { guard_ = std::move(guard); }

 private:
  Guard guard_;
  // path -> method -> handler.
  std::map<std::string, std::map<std::string, Handler, std::less<>>, std::less<>> routes_;
};

}  // namespace nexus::http
