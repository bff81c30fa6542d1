#include "http/router.h"

#include <set>
#include <string_view>
#include <utility>

namespace nexus::http {

void Router::Handle(std::string method, std::string path, Handler h) {
  routes_[std::move(path)][std::move(method)] = std::move(h);
}

void Router::Dispatch(Request&& req, Responder respond) const {
  if (guard_) {
    if (std::optional<Response> refused = guard_(req); refused.has_value()) {
      respond(*std::move(refused));
      return;
    }
  }
  const auto route = routes_.find(req.path);
  if (route == routes_.end()) {
    respond(Text(404, "404 page not found\n"));
    return;
  }
  const auto& methods = route->second;
  auto it = methods.find(req.method);
  if (it == methods.end() && req.method == "HEAD") it = methods.find("GET");
  if (it != methods.end()) {
    it->second(std::move(req), std::move(respond));
    return;
  }
  std::set<std::string_view> allowed;
  for (const auto& [method, handler] : methods) allowed.insert(method);
  if (allowed.count("GET") > 0) allowed.insert("HEAD");
  std::string allow;
  for (std::string_view method : allowed) {
    if (!allow.empty()) allow += ", ";
    allow += method;
  }
  Response r = Text(405, "method not allowed\n");
  r.headers.emplace_back("Allow", std::move(allow));
  respond(std::move(r));
}

}  // namespace nexus::http
