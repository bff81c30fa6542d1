// scripts/demo, as a new user runs it: etcd and three nodes come up, the nodes find each other
// through etcd, the seed's curl examples work, and stopping the script stops everything.
#include <gtest/gtest.h>
#include <signal.h>

#include <thread>

#include "support/cluster.h"
#include "support/process.h"

namespace nexus::testing {
namespace {

TEST(DemoScript, StartsThreeNodesServesTheSeedFlowAndStopsThemAll) {
  std::vector<uint16_t> http, grpc, resp;
  for (int i = 0; i < 3; ++i) {
    http.push_back(FreePort());
    grpc.push_back(FreePort());
    resp.push_back(FreePort());
  }
  const uint16_t etcd_client = FreePort(), etcd_peer = FreePort(), prometheus = FreePort();
  auto join = [](const std::vector<uint16_t>& ports) {
    return std::to_string(ports[0]) + " " + std::to_string(ports[1]) + " " +
           std::to_string(ports[2]);
  };
  auto demo = Process::Start(
      {"/bin/bash", std::string(NEXUS_SOURCE_DIR) + "/scripts/demo"},
      {{"NEXUS_BIN", NexusBinary()},
       {"DEMO_HTTP_PORTS", join(http)},
       {"DEMO_GRPC_PORTS", join(grpc)},
       {"DEMO_RESP_PORTS", join(resp)},
       {"DEMO_ETCD_PORTS", std::to_string(etcd_client) + " " + std::to_string(etcd_peer)},
       {"DEMO_PROM_PORT", std::to_string(prometheus)}},
      TempDir() + "/demo.log");
  ASSERT_NE(demo, nullptr);
  for (uint16_t port : http) {
    ASSERT_TRUE(WaitHealthy(port, std::chrono::seconds(30))) << demo->Log();
  }
  // The script prints its instructions once it has seen every node healthy.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (demo->Log().find("Press Ctrl-C") == std::string::npos &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(demo->Log().find("curl \"http://localhost:"), std::string::npos) << demo->Log();
  const std::string dashboard = "http://127.0.0.1:" + std::to_string(http[0]) + "/dashboard";
  EXPECT_NE(demo->Log().find(dashboard), std::string::npos) << demo->Log();
  EXPECT_EQ(Http(http[0], "GET", "/dashboard").status, 200);
  for (uint16_t port : http) {
    const std::string ring = Http(port, "GET", "/api/ring").body;
    EXPECT_NE(ring.find("\"svc1\""), std::string::npos) << ring;
    EXPECT_NE(ring.find("\"svc2\""), std::string::npos) << ring;
    EXPECT_NE(ring.find("\"svc3\""), std::string::npos) << ring;
  }
  ASSERT_EQ(Http(http[0], "POST", "/api/set", "key=user1&value=John Doe&expire=5&hot=false").body,
            "done\n");
  EXPECT_EQ(Http(http[0], "GET", "/api/get?key=user1").body, "value=John Doe\n");
  ASSERT_EQ(Http(http[0], "POST", "/api/set", "key=popular&value=Hot Data!&expire=5&hot=true").body,
            "done\n");
  EXPECT_EQ(Http(http[2], "GET", "/api/get?key=popular").body, "value=Hot Data!\n");
  EXPECT_EQ(Http(http[1], "GET", "/api/get?key=popular").body, "value=Hot Data!\n");
  EXPECT_EQ(Http(http[1], "GET", "/api/get?key=Tom").body, "value=630\n");
  // The Redis protocol on every node, as the instructions say.
  EXPECT_NE(demo->Log().find("redis-cli -p " + std::to_string(resp[0])), std::string::npos);
  EXPECT_EQ(RawExchange(resp[2], "GET Tom\r\nQUIT\r\n"), "$3\r\n630\r\n+OK\r\n");

  // The demo's Prometheus comes up and answers.
  bool prometheus_ready = false;
  for (int i = 0; i < 200 && !prometheus_ready; ++i) {
    prometheus_ready =
        Http(prometheus, "GET", "/-/ready", "", std::chrono::milliseconds(500)).status == 200;
    if (!prometheus_ready) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(prometheus_ready) << demo->Log();
  EXPECT_NE(demo->Log().find("Prometheus: http://127.0.0.1:" + std::to_string(prometheus)),
            std::string::npos);

  demo->Signal(SIGINT);
  int code = 0;
  ASSERT_TRUE(demo->WaitExit(std::chrono::seconds(20), &code)) << demo->Log();
  for (uint16_t port : http) {
    EXPECT_EQ(Http(port, "GET", "/healthz", "", std::chrono::milliseconds(500)).status, 0)
        << "a node outlived the demo script";
  }
  EXPECT_EQ(Http(etcd_client, "GET", "/health", "", std::chrono::milliseconds(500)).status, 0)
      << "etcd outlived the demo script";
  EXPECT_EQ(Http(prometheus, "GET", "/-/ready", "", std::chrono::milliseconds(500)).status, 0)
      << "prometheus outlived the demo script";
}

}  // namespace
}  // namespace nexus::testing
