// Fuzz target: a node's HTTP request path, from bytes to answers. The input goes through the
// server's RequestDecoder (Beast's parser with the server's limits) and the query/form
// decoding, and every request it yields is dispatched by the node's real router to the real
// routes (Api and /peer/v1) over a one-node CacheService, OwnerService and Group, with client
// tokens and a cluster secret configured (the seed corpus holds the write token and the secret;
// the admin token is random, so /setpeer can never add a member to dial).
//
// Checked beyond the sanitizers: the same bytes split into pieces (sizes from the first byte)
// decode into the same requests and end the same way (an error may show only once more bytes
// arrive); every request is answered exactly once,
// at once (nothing here waits for a peer or a loader), with a status in 100..599.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "auth/cluster_secret.h"
#include "auth/tokens.h"
#include "http/decoder.h"
#include "http/router.h"
#include "metrics/metrics.h"
#include "node/api.h"
#include "node/config.h"
#include "one_node.h"
#include "peer/http_routes.h"
#include "peer/peer_traffic.h"
#include "peer/ring_picker.h"
#include "pieces.h"
#include "service/cache_service.h"

namespace nexus {
namespace {

constexpr size_t kMaxHeaderBytes = 16 * 1024;
constexpr size_t kMaxBodyBytes = fuzz::kMaxValueBytes;

std::string WriteTemp(const std::string& text) {
  char path[] = "/tmp/nexus-fuzz-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) std::abort();
  close(fd);
  std::ofstream(path, std::ios::trunc) << text;
  return path;
}

// One node's HTTP front, built once per process; its cache state carries over between inputs,
// as a real node's does between requests.
struct Front {
  Front() {
    config.name = "fuzz";
    std::random_device random;
    const std::string admin = "admin-" + std::to_string(random()) + std::to_string(random());
    const std::string tokens = WriteTemp("read fuzz-read\nwrite fuzz-write\nadmin " + admin + "\n");
    auth = std::move(*auth::Authenticator::FromFile(tokens));
    std::remove(tokens.c_str());
    secret = std::move(*auth::ClusterSecret::FromText("fuzz-cluster-secret-0123"));
    traffic.secret = secret.get();
    picker = std::make_shared<RingPeerPicker>("fuzz", "127.0.0.1:1");
    node = std::make_unique<fuzz::OneNode>(picker);
    service = std::make_unique<CacheService>(
        CacheServiceOptions{.max_value_bytes = kMaxBodyBytes, .auth_metrics = true}, &node->groups,
        picker.get(), &metrics, auth.get());
    api = std::make_unique<Api>(&config, service.get(), picker.get(), &metrics);
    router = std::make_shared<http::Router>();
    api->Install(*router);
    InstallPeerRoutes(*router, node->owner.get(), &traffic);
  }

  Config config;
  std::unique_ptr<auth::Authenticator> auth;
  std::unique_ptr<auth::ClusterSecret> secret;
  PeerTraffic traffic;
  std::shared_ptr<RingPeerPicker> picker;
  std::unique_ptr<fuzz::OneNode> node;
  metrics::Registry metrics;
  std::unique_ptr<CacheService> service;
  std::unique_ptr<Api> api;
  std::shared_ptr<http::Router> router;
};

// What decoding yielded, to compare two splittings of the same bytes.
struct Decoded {
  std::vector<http::Request> requests;
  std::vector<unsigned> versions;
  int error = 0;            // the rejection's status, 0 for none
  bool incomplete = false;  // the input ended inside a request
};

// Feeds `bytes` in pieces of `piece` bytes (0: all at once), as a connection receives them.
Decoded Decode(std::string_view bytes, size_t piece) {
  Decoded out;
  http::RequestDecoder decoder(kMaxHeaderBytes, kMaxBodyBytes);
  std::string pending;
  fuzz::FeedInPieces(bytes, piece, pending, [&](std::string& in) {
    while (!in.empty()) {
      const http::RequestDecoder::Fed fed = decoder.Feed(in);
      in.erase(0, fed.used);
      if (fed.state == http::RequestDecoder::State::kError) {
        out.error = decoder.Rejection().status;
        return false;
      }
      if (fed.state == http::RequestDecoder::State::kNeedMore) break;
      out.requests.push_back(decoder.Take());
      out.versions.push_back(decoder.version());
      decoder.Reset();
    }
    return true;
  });
  out.incomplete = out.error == 0 && (!pending.empty() || decoder.got_some());
  return out;
}

bool Same(const http::Request& a, const http::Request& b) {
  return a.method == b.method && a.target == b.target && a.path == b.path && a.query == b.query &&
         a.form == b.form && a.headers == b.headers && a.body == b.body &&
         a.keep_alive == b.keep_alive;
}

}  // namespace
}  // namespace nexus

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nexus;
  static Front* const front = new Front();
  if (size == 0) return 0;
  const size_t piece = data[0] % 32;  // 0: the whole input at once
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);

  Decoded whole = Decode(bytes, 0);
  if (piece != 0) {
    const Decoded split = Decode(bytes, piece);
    // Beast may see a bad header field before the header's end has arrived, or only once it
    // has: an error on one side may be an input that ended inside a request on the other
    // (the connection then waits for more, and fails the request when it comes or times out).
    // A request with two faults is refused either way, with the status of whichever fault the
    // parser meets first: a chunk size over the limit (413) as soon as it is read, or a bad
    // chunk extension behind it (400) when the line arrives whole. Never a request more or
    // less, or a different one.
    const bool same_end = split.error == whole.error || (split.error != 0 && whole.error != 0) ||
                          (split.error == 0 && split.incomplete) ||
                          (whole.error == 0 && whole.incomplete);
    if (!same_end || split.requests.size() != whole.requests.size() ||
        split.versions != whole.versions) {
      std::fprintf(stderr,
                   "splitting in pieces of %zu changed the decoding: whole %zu requests, error "
                   "%d, incomplete %d; split %zu requests, error %d, incomplete %d\n",
                   piece, whole.requests.size(), whole.error, whole.incomplete,
                   split.requests.size(), split.error, split.incomplete);
      std::abort();
    }
    for (size_t i = 0; i < whole.requests.size(); ++i) {
      if (!Same(whole.requests[i], split.requests[i])) {
        std::fprintf(stderr, "splitting in pieces of %zu changed request %zu\n", piece, i);
        std::abort();
      }
    }
  }
  if (whole.error != 0 && whole.error != 400 && whole.error != 413 && whole.error != 431) {
    std::abort();
  }
  for (http::Request& req : whole.requests) {
    req.remote = "127.0.0.1:1";
    int answers = 0;
    front->router->Dispatch(std::move(req), [&answers](http::Response r) {
      ++answers;
      if (r.status < 100 || r.status > 599) {
        std::fprintf(stderr, "answered status %d\n", r.status);
        std::abort();
      }
    });
    if (answers != 1) {
      std::fprintf(stderr, "a request was answered %d times at once\n", answers);
      std::abort();
    }
  }
  return 0;
}
