// /dashboard in a real browser: headless Debian Chromium, driven by playwright-core
// (tests/e2e/browser/dashboard.mjs), opens the page of a live 3-node cluster, sees every member
// up, sees the numbers move from zero once traffic flows, and saves a screenshot under the
// build directory (dashboard.png).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/cluster.h"
#include "support/process.h"

namespace nexus::testing {
namespace {

// The full path of `program` on $PATH ("" if absent): Process::Start execs without a search.
std::string FindOnPath(const std::string& program) {
  const char* path = getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = dir + "/" + program;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

TEST(DashboardInBrowser, ShowsTheWholeClusterAndItsNumbersChange) {
  const std::string browser_dir = std::string(NEXUS_SOURCE_DIR) + "/tests/e2e/browser";
  const std::string node = FindOnPath("node");
  ASSERT_FALSE(node.empty()) << "Node.js is needed; scripts/setup installs it";
  const char* chromium_env = getenv("CHROMIUM");
  const std::string chromium = chromium_env != nullptr ? chromium_env : "/usr/bin/chromium";
  ASSERT_EQ(access(chromium.c_str(), X_OK), 0)
      << chromium << " is missing; scripts/setup installs Debian's chromium";
  ASSERT_EQ(access((browser_dir + "/node_modules/playwright-core").c_str(), F_OK), 0)
      << "playwright-core is missing; scripts/setup runs npm ci in " << browser_dir;

  Cluster cluster(3, {});
  std::string failure;
  ASSERT_TRUE(cluster.Start(&failure)) << failure;

  const std::string screenshot = std::string(NEXUS_BINARY_DIR) + "/dashboard.png";
  unlink(screenshot.c_str());
  std::vector<std::string> argv = {node, browser_dir + "/dashboard.mjs", screenshot};
  for (size_t i = 0; i < cluster.size(); ++i) {
    argv.push_back("http://127.0.0.1:" + std::to_string(cluster.node(i).http_port));
  }
  const std::string log = TempDir() + "/browser.log";
  auto run = Process::Start(argv, {}, log);
  ASSERT_NE(run, nullptr);
  int code = -1;
  if (!run->WaitExit(std::chrono::seconds(90), &code)) {
    // SIGTERM lets playwright close the browser it started; the destructor SIGKILLs after.
    run->Signal(SIGTERM);
    run->WaitExit(std::chrono::seconds(10), &code);
    FAIL() << "the browser test did not finish in 90 s:\n" << run->Log();
  }
  const std::string output = run->Log();
  ASSERT_EQ(code, 0) << output;

  // The last line is what the page showed.
  const std::string last = output.substr(output.rfind('{'));
  const nlohmann::json shown = nlohmann::json::parse(last);
  EXPECT_EQ(shown["idle_rps"].get<double>(), 0) << last;  // before traffic
  EXPECT_GT(shown["rps"].get<double>(), 5) << last;
  ASSERT_EQ(shown["node_rps"].size(), 3u) << last;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(shown["node_rps"][i][0], cluster.node(i).name) << last;
    EXPECT_GT(shown["node_rps"][i][1].get<double>(), 0) << last;
  }
  // Half of the GETs hit (the script alternates a stored key and a missing one).
  const double hit = std::stod(shown["hit"].get<std::string>());
  EXPECT_GE(hit, 30) << last;
  EXPECT_LE(hit, 70) << last;
  EXPECT_EQ(shown["up"], "3 / 3") << last;
  EXPECT_NE(shown["latency"].get<std::string>().find("s"), std::string::npos) << last;
  EXPECT_TRUE(shown["page_errors"].empty()) << last;

  std::ifstream png(screenshot, std::ios::binary);
  ASSERT_TRUE(png.good()) << screenshot;
  std::string magic(8, '\0');
  png.read(magic.data(), 8);
  EXPECT_EQ(magic, "\x89PNG\r\n\x1a\n");
}

}  // namespace
}  // namespace nexus::testing
