// Singleflight end to end: 200 concurrent GETs of one cold key, spread over a 3-node cluster
// whose loader is a real HTTP origin that counts its fetches. Exactly one fetch may happen.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "http/router.h"
#include "http/server.h"
#include "support/cluster.h"
#include "support/process.h"

namespace nexus::testing {
namespace {

class CountingOrigin {
 public:
  CountingOrigin() {
    auto router = std::make_shared<http::Router>();
    router->Handle("GET", "/item", [this](http::Request&& req, http::Responder respond) {
      fetches_.fetch_add(1);
      const std::string* k = req.Param("k");
      const std::string key = k ? *k : "";
      // Answer slowly, from another thread, so every client request arrives while the one
      // fetch is still in flight.
      std::lock_guard<std::mutex> lock(mu_);
      threads_.emplace_back([key, respond = std::move(respond)]() mutable {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        http::Response r;
        if (key == "missing") {
          r.status = 404;
          r.body = "no\n";
        } else {
          r.body = "origin:" + key;
        }
        respond(std::move(r));
      });
    });
    http::ServerOptions options;
    options.address = "127.0.0.1";
    options.port = 0;
    options.threads = 1;
    server_ = std::make_unique<http::Server>(options, router);
  }
  ~CountingOrigin() {
    server_->Stop(std::chrono::milliseconds(1000));
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& t : threads_) t.join();
  }
  absl::Status Start() { return server_->Start(); }
  uint16_t port() const { return server_->port(); }
  int fetches() const { return fetches_.load(); }

 private:
  std::atomic<int> fetches_{0};
  std::mutex mu_;
  std::vector<std::thread> threads_;
  std::unique_ptr<http::Server> server_;
};

TEST(SingleflightEndToEnd, TwoHundredConcurrentGetsOneOriginFetch) {
  CountingOrigin origin;
  ASSERT_TRUE(origin.Start().ok());
  // Forwarded requests wait for the slow origin: give peer calls ample time (ASan, a loaded
  // machine); a deadline shorter than the origin's answer would make this test flaky.
  Cluster cluster(
      3, {"--origin", "http://127.0.0.1:" + std::to_string(origin.port()) + "/item?k={key}",
          "--peer-timeout-ms", "10000", "--origin-timeout-ms", "10000"});
  std::string failure;
  ASSERT_TRUE(cluster.Start(&failure)) << failure;

  constexpr int kClients = 200;
  std::vector<HttpResult> results(kClients);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      results[i] = Http(cluster.node(i % 3).http_port, "GET", "/api/get?key=cold-key", "",
                        std::chrono::seconds(20));
    });
  }
  for (auto& t : clients) t.join();
  int ok = 0;
  for (const HttpResult& r : results) {
    if (r.status == 200 && r.body == "value=origin:cold-key\n") ++ok;
  }
  EXPECT_EQ(ok, kClients);
  EXPECT_EQ(origin.fetches(), 1);

  // Now cached: no more fetches. A key the origin does not have is a 404, not cached.
  EXPECT_EQ(Http(cluster.node(1).http_port, "GET", "/api/get?key=cold-key").status, 200);
  EXPECT_EQ(origin.fetches(), 1);
  EXPECT_EQ(Http(cluster.node(2).http_port, "GET", "/api/get?key=missing").status, 404);
  EXPECT_EQ(Http(cluster.node(2).http_port, "GET", "/api/get?key=missing").status, 404);
  EXPECT_EQ(origin.fetches(), 3);
}

TEST(OriginEndToEnd, DeadOriginIsABadGateway) {
  const uint16_t nothing = FreePort();
  Cluster cluster(1, {"--origin", "http://127.0.0.1:" + std::to_string(nothing) + "/item?k={key}",
                      "--origin-timeout-ms", "500"});
  std::string failure;
  ASSERT_TRUE(cluster.Start(&failure)) << failure;
  const HttpResult r = Http(cluster.node(0).http_port, "GET", "/api/get?key=x");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_NE(r.body.find("origin"), std::string::npos) << r.body;
}

}  // namespace
}  // namespace nexus::testing
