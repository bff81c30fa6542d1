#include "peer/http_routes.h"

#include <memory>
#include <string>
#include <utility>

#include "auth/cluster_secret.h"
#include "common/parse.h"
#include "peer/http_wire.h"

namespace nexus {

namespace {

// What the three handlers share: the owner service and the answer counter.
class PeerRoutes {
 public:
  PeerRoutes(OwnerService* owner, PeerTraffic* traffic)
      : owner_(owner),
        traffic_(traffic),
        served_(traffic != nullptr ? &traffic->served_http : nullptr) {}

  // Whether `req` passes the cluster plane's authentication (PeerTraffic::Admit); if not,
  // answers the refusal (Unauthenticated).
  bool Admitted(const http::Request& req, http::Responder& respond) const {
    if (traffic_ == nullptr || !traffic_->checks()) return true;
    const std::string* presented = req.Header(auth::kClusterSecretHeader);
    absl::Status admitted = traffic_->Admit(
        PeerTraffic::kHttp, req.peer_certificate_verified,
        presented == nullptr ? std::nullopt : std::optional<std::string_view>(*presented),
        req.remote);
    if (admitted.ok()) return true;
    respond(Answer(served_, admitted));
    return false;
  }

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

  void Get(http::Request&& req, http::Responder respond) const {
    owner_->Get(
        Param(req, "group"), Param(req, "key"), Param(req, "peek") == "1",
        [served = served_, respond = std::move(respond)](absl::StatusOr<CachedValue> r) mutable {
          if (!r.ok()) return respond(Answer(served, r.status()));
          http::Response resp = Answer(served, absl::OkStatus(), std::move(r->data));
          resp.headers.emplace_back(std::string(peerwire::kDeadlineHeader),
                                    std::to_string(r->deadline == kNoDeadline ? 0 : r->deadline));
          respond(std::move(resp));
        });
  }

  void Set(http::Request&& req, http::Responder respond) const {
    OwnerSet set{.group = Param(req, "group"), .key = Param(req, "key"), .value = req.body};
    for (auto [name, field] :
         {std::pair{"ttl_ms", &set.ttl_ms}, std::pair{"deadline_ms", &set.deadline_ms},
          std::pair{"expire", &set.expire_s}, std::pair{"answer_by", &set.answer_by}}) {
      const std::string_view text = Param(req, name);
      if (!text.empty() && !ParseInt(text, field)) {
        return respond(
            Answer(served_, absl::InvalidArgumentError(std::string(name) + " must be an integer")));
      }
    }
    set.hot = Param(req, "hot") == "1";
    owner_->Set(set, [served = served_, respond = std::move(respond)](absl::Status s) mutable {
      respond(Answer(served, s));
    });
  }

  void Replicate(http::Request&& req, http::Responder respond) const {
    Replica r{.key = std::string(Param(req, "key")), .value = std::move(req.body)};
    int64_t deadline_ms = 0;
    if (!ParseInt(Param(req, "deadline_ms"), &deadline_ms) ||
        !ParseInt(Param(req, "version"), &r.version)) {
      return respond(
          Answer(served_, absl::InvalidArgumentError("deadline_ms and version must be integers")));
    }
    r.deadline = deadline_ms == 0 ? kNoDeadline : deadline_ms;
    r.remove = Param(req, "remove") == "1";
    r.ring = Param(req, "ring") == "1";
    r.handoff = Param(req, "handoff") == "1";
    respond(Answer(served_, owner_->Replicate(Param(req, "group"), r).status()));
  }

  void Delete(http::Request&& req, http::Responder respond) const {
    int64_t answer_by = 0;
    if (const std::string_view text = Param(req, "answer_by");
        !text.empty() && !ParseInt(text, &answer_by)) {
      return respond(Answer(served_, absl::InvalidArgumentError("answer_by must be an integer")));
    }
    owner_->Delete(
        Param(req, "group"), Param(req, "key"),
        [served = served_, respond = std::move(respond)](absl::Status s) mutable {
          respond(Answer(served, s));
        },
        answer_by);
  }

 private:
  // The parameter's value, empty when absent.
  static std::string_view Param(const http::Request& req, std::string_view name) {
    const std::string* v = req.Param(name);
    return v == nullptr ? std::string_view() : std::string_view(*v);
  }

  OwnerService* const owner_;
  PeerTraffic* const traffic_;  // may be null
  std::atomic<uint64_t>* const served_;
};

}  // namespace

void InstallPeerRoutes(http::Router& router, OwnerService* owner, PeerTraffic* traffic) {
  // Shared by the handlers, which the router keeps as long as it lives.
  auto routes = std::make_shared<const PeerRoutes>(owner, traffic);
  router.Handle("GET", std::string(peerwire::kGetPath),
                [routes](http::Request&& req, http::Responder respond) {
                  if (!routes->Admitted(req, respond)) return;
                  routes->Get(std::move(req), std::move(respond));
                });
  router.Handle("POST", std::string(peerwire::kSetPath),
                [routes](http::Request&& req, http::Responder respond) {
                  if (!routes->Admitted(req, respond)) return;
                  routes->Set(std::move(req), std::move(respond));
                });
  router.Handle("POST", std::string(peerwire::kDeletePath),
                [routes](http::Request&& req, http::Responder respond) {
                  if (!routes->Admitted(req, respond)) return;
                  routes->Delete(std::move(req), std::move(respond));
                });
  router.Handle("POST", std::string(peerwire::kReplicatePath),
                [routes](http::Request&& req, http::Responder respond) {
                  if (!routes->Admitted(req, respond)) return;
                  routes->Replicate(std::move(req), std::move(respond));
                });
}

}  // namespace nexus
