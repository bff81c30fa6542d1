// nexuscache: one cache node. See README.md and `nexuscache --help`.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/process.h"
#include "node/config.h"
#include "node/node.h"

int main(int argc, char** argv) {
  nexus::ConfigureMutexesForProduction();
  nexus::ParseOutcome outcome = nexus::ParseCommandLine(argc, argv, std::getenv("IP_ADDRESS"));
  if (!outcome.config) {
    std::fputs(outcome.message.c_str(), outcome.exit_code == 0 ? stdout : stderr);
    return outcome.exit_code;
  }

  // SIGINT/SIGTERM/SIGHUP are blocked in every thread (threads inherit the mask) and taken by
  // sigwait below, so shutdown and reloads run on the main thread, not in a signal handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  const spdlog::level::level_enum level = spdlog::level::from_str(outcome.config->log_level);
  spdlog::set_level(level);
  // (Debug and trace logs are for following a failure: every line reaches the log at once, so
  // a kill -9 loses none of them.)
  if (level <= spdlog::level::debug) spdlog::flush_on(level);
  const unsigned long files = nexus::RaiseOpenFileLimit();
  if (outcome.config->max_connections != 0 && files != 0 &&
      files < outcome.config->max_connections + 256) {
    spdlog::warn(
        "the open-file limit ({}) is below --max-connections {} plus room for peers "
        "and files: connections beyond it fail to be accepted; raise it (ulimit -n, "
        "LimitNOFILE=) or lower --max-connections",
        files, outcome.config->max_connections);
  }
  nexus::Node node(std::move(*outcome.config));
  if (absl::Status s = node.Start(); !s.ok()) {
    spdlog::error("cannot start: {}", std::string(s.message()));
    return 1;
  }
  int sig = 0;
  // SIGHUP reads the token file again; the others stop the node.
  while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) node.ReloadTokens();
  spdlog::info("received {}, shutting down", strsignal(sig));
  node.Stop();
  return 0;
}
