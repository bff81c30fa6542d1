#include "peer/http_routes.h"

#include <charconv>
#include <string>
#include <utility>

#include "group/group.h"
#include "peer/http_wire.h"

namespace nexus {

namespace {

http::Response Answer(const absl::Status& status, std::string body = {}) {
  http::Response r;
  r.status = http::HttpStatusFor(status);  // for people reading traces
  r.content_type = "application/octet-stream";
  r.body = status.ok() ? std::move(body) : std::string(status.message());
  r.headers.emplace_back(std::string(peerwire::kStatusHeader),
                         std::to_string(static_cast<int>(status.code())));
  return r;
}

bool ParseInt(const std::string& text, int64_t* out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *out);
  return ec == std::errc() && ptr == end && !text.empty();
}

// The request's group and key, or an error answered already.
Group* Target(GroupRegistry* groups, const http::Request& req, const std::string** key,
              http::Responder& respond) {
  const std::string* group_name = req.Param("group");
  *key = req.Param("key");
  if (group_name == nullptr || *key == nullptr || (*key)->empty()) {
    respond(Answer(absl::InvalidArgumentError("group and a non-empty key are required")));
    return nullptr;
  }
  Group* group = groups->Find(*group_name);
  if (group == nullptr) respond(Answer(absl::NotFoundError("no such group: " + *group_name)));
  return group;
}

}  // namespace

void InstallPeerRoutes(http::Router& router, GroupRegistry* groups,
                       std::atomic<uint64_t>* served) {
  // Every answer leaves through a Responder wrapped to count it.
  auto counted = [served](http::Responder respond) -> http::Responder {
    if (served == nullptr) return respond;
    return [served, respond = std::move(respond)](http::Response r) mutable {
      served->fetch_add(1, std::memory_order_relaxed);
      respond(std::move(r));
    };
  };
  router.Handle("GET", std::string(peerwire::kGetPath),
                [groups, counted](http::Request&& req, http::Responder raw) {
                  http::Responder respond = counted(std::move(raw));
                  const std::string* key;
                  Group* group = Target(groups, req, &key, respond);
                  if (group == nullptr) return;
                  group->GetLocal(*key, [respond = std::move(respond)](
                                            absl::StatusOr<CachedValue> r) mutable {
                    if (!r.ok()) return respond(Answer(r.status()));
                    http::Response resp = Answer(absl::OkStatus(), std::move(r->data));
                    resp.headers.emplace_back(
                        std::string(peerwire::kDeadlineHeader),
                        std::to_string(r->deadline == kNoDeadline ? 0 : r->deadline));
                    respond(std::move(resp));
                  });
                });
  router.Handle("POST", std::string(peerwire::kSetPath),
                [groups, counted](http::Request&& req, http::Responder raw) {
                  http::Responder respond = counted(std::move(raw));
                  const std::string* key;
                  Group* group = Target(groups, req, &key, respond);
                  if (group == nullptr) return;
                  const std::string* ttl = req.Param("ttl_ms");
                  int64_t ttl_ms = 0;
                  if (ttl == nullptr || !ParseInt(*ttl, &ttl_ms) || ttl_ms <= 0) {
                    return respond(Answer(absl::InvalidArgumentError("ttl_ms must be positive")));
                  }
                  const std::string* hot = req.Param("hot");
                  group->SetLocal(*key, req.body, ttl_ms, hot != nullptr && *hot == "1",
                                  [respond = std::move(respond)](absl::Status s) mutable {
                                    respond(Answer(s));
                                  });
                });
  router.Handle("POST", std::string(peerwire::kDeletePath),
                [groups, counted](http::Request&& req, http::Responder raw) {
                  http::Responder respond = counted(std::move(raw));
                  const std::string* key;
                  Group* group = Target(groups, req, &key, respond);
                  if (group == nullptr) return;
                  group->DeleteLocal(*key, [respond = std::move(respond)](absl::Status s) mutable {
                    respond(Answer(s));
                  });
                });
}

}  // namespace nexus
