#include "node/loaders.h"

#include <map>

#include "http/message.h"

namespace nexus {

std::shared_ptr<Loader> MakeDemoLoader() {
  static const std::map<std::string, std::string, std::less<>> kScores = {
      {"Tom", "630"}, {"Jack", "589"}, {"Sam", "567"}};
  return std::make_shared<FunctionLoader>([](std::string_view key) -> absl::StatusOr<std::string> {
    auto it = kScores.find(key);
    if (it == kScores.end()) return absl::NotFoundError("key not found");
    return it->second;
  });
}

OriginLoader::OriginLoader(std::string url_template, http::Client* client,
                           std::chrono::milliseconds timeout)
    : url_template_(std::move(url_template)), client_(client), timeout_(timeout) {}

std::string OriginLoader::UrlFor(std::string_view key) const {
  std::string url = url_template_;
  const std::string encoded = http::UrlEncode(key);
  for (size_t pos = url.find("{key}"); pos != std::string::npos;
       pos = url.find("{key}", pos + encoded.size())) {
    url.replace(pos, 5, encoded);
  }
  return url;
}

void OriginLoader::Load(std::string_view key, LoadCallback done) {
  client_->Get(UrlFor(key), timeout_,
               [done = std::move(done)](absl::StatusOr<http::ClientResponse> r) mutable {
                 if (!r.ok()) {
                   // Timeouts stay DeadlineExceeded; an unreachable origin must not look like
                   // an unavailable peer.
                   if (absl::IsDeadlineExceeded(r.status())) return done(r.status());
                   return done(absl::InternalError("origin: " + std::string(r.status().message())));
                 }
                 if (r->status == 200) return done(std::move(r->body));
                 if (r->status == 404) return done(absl::NotFoundError("key not found"));
                 done(absl::InternalError("origin answered HTTP " + std::to_string(r->status)));
               });
}

}  // namespace nexus
