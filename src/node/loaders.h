// The loaders a node can be started with (the group's read-through origin).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "group/loader.h"
#include "http/client.h"

namespace nexus {

// The seed's demo store for group "scores": Tom=630, Jack=589, Sam=567; any other key is
// NotFound.
std::shared_ptr<Loader> MakeDemoLoader();

// Read-through from an HTTP origin. `url_template` contains "{key}", replaced by the
// percent-encoded key. 200 -> the body is the value; 404 -> NotFound (the client sees 404 and
// nothing is cached); anything else, a timeout or an unreachable origin -> an error the client
// sees as 502 (never Unavailable, which would read as "a peer is down").
//
// Thread-safety: Load may be called from any thread; fetches run on the client's io_context
// and `done` is called there.
class OriginLoader final : public Loader {
 public:
  OriginLoader(std::string url_template, http::Client* client, std::chrono::milliseconds timeout);
  void Load(std::string_view key, LoadCallback done) override;

  std::string UrlFor(std::string_view key) const;

 private:
  const std::string url_template_;
  http::Client* const client_;
  const std::chrono::milliseconds timeout_;
};

}  // namespace nexus
