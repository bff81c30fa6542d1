#include "peer/http_routes.h"

#include <charconv>
#include <memory>
#include <string>
#include <utility>

#include "group/group.h"
#include "peer/http_wire.h"

namespace nexus {

namespace {

// What the three handlers share: the groups served and the answer counter.
class PeerRoutes {
 public:
  PeerRoutes(GroupRegistry* groups, std::atomic<uint64_t>* served)
      : groups_(groups), served_(served) {}

  // An answer in the protocol's form (X-Nexus-Status; the message as the body for errors),
  // counted in `served`. Static: completions capture `served` only, as they may outlive the
  // router (an origin load finishing during shutdown).
  static http::Response Answer(std::atomic<uint64_t>* served, const absl::Status& status,
                               std::string body = {}) {
    if (served != nullptr) served->fetch_add(1, std::memory_order_relaxed);
    http::Response r;
    r.status = http::HttpStatusFor(status);  // informative, for people reading traces
    r.content_type = "application/octet-stream";
    r.body = status.ok() ? std::move(body) : std::string(status.message());
    r.headers.emplace_back(std::string(peerwire::kStatusHeader),
                           std::to_string(static_cast<int>(status.code())));
    return r;
  }

  // The request's group and key, or nullptr after answering the error.
  Group* Target(const http::Request& req, const std::string** key,
                http::Responder& respond) const {
    const std::string* group_name = req.Param("group");
    *key = req.Param("key");
    if (group_name == nullptr || *key == nullptr || (*key)->empty()) {
      respond(Answer(served_,
                     absl::InvalidArgumentError("group and a non-empty key are required")));
      return nullptr;
    }
    Group* group = groups_->Find(*group_name);
    if (group == nullptr) {
      respond(Answer(served_, absl::NotFoundError("no such group: " + *group_name)));
    }
    return group;
  }

  void Get(http::Request&& req, http::Responder respond) const {
    const std::string* key;
    Group* group = Target(req, &key, respond);
    if (group == nullptr) return;
    group->GetLocal(*key, [served = served_, respond = std::move(respond)](
                              absl::StatusOr<CachedValue> r) mutable {
      if (!r.ok()) return respond(Answer(served, r.status()));
      http::Response resp = Answer(served, absl::OkStatus(), std::move(r->data));
      resp.headers.emplace_back(std::string(peerwire::kDeadlineHeader),
                                std::to_string(r->deadline == kNoDeadline ? 0 : r->deadline));
      respond(std::move(resp));
    });
  }

  void Set(http::Request&& req, http::Responder respond) const {
    const std::string* key;
    Group* group = Target(req, &key, respond);
    if (group == nullptr) return;
    const std::string* ttl = req.Param("ttl_ms");
    int64_t ttl_ms = 0;
    if (ttl == nullptr || !ParseInt(*ttl, &ttl_ms) || ttl_ms <= 0) {
      return respond(Answer(served_, absl::InvalidArgumentError("ttl_ms must be positive")));
    }
    const std::string* hot = req.Param("hot");
    group->SetLocal(*key, req.body, ttl_ms, hot != nullptr && *hot == "1",
                    [served = served_, respond = std::move(respond)](absl::Status s) mutable {
                      respond(Answer(served, s));
                    });
  }

  void Delete(http::Request&& req, http::Responder respond) const {
    const std::string* key;
    Group* group = Target(req, &key, respond);
    if (group == nullptr) return;
    group->DeleteLocal(*key, [served = served_, respond = std::move(respond)](
                                 absl::Status s) mutable { respond(Answer(served, s)); });
  }

 private:
  static bool ParseInt(const std::string& text, int64_t* out) {
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, *out);
    return ec == std::errc() && ptr == end && !text.empty();
  }

  GroupRegistry* const groups_;
  std::atomic<uint64_t>* const served_;
};

}  // namespace

void InstallPeerRoutes(http::Router& router, GroupRegistry* groups,
                       std::atomic<uint64_t>* served) {
  // Shared by the handlers, which the router keeps as long as it lives.
  auto routes = std::make_shared<const PeerRoutes>(groups, served);
  router.Handle("GET", std::string(peerwire::kGetPath),
                [routes](http::Request&& req, http::Responder respond) {
                  routes->Get(std::move(req), std::move(respond));
                });
  router.Handle("POST", std::string(peerwire::kSetPath),
                [routes](http::Request&& req, http::Responder respond) {
                  routes->Set(std::move(req), std::move(respond));
                });
  router.Handle("POST", std::string(peerwire::kDeletePath),
                [routes](http::Request&& req, http::Responder respond) {
                  routes->Delete(std::move(req), std::move(respond));
                });
}

}  // namespace nexus
