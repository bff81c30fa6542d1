// nexus-bench: the seed's load test (benchmark/loadtest.go) with its flags, keys, values and
// summary, rebuilt as an event-driven client that records every latency. See load.h for the
// model and report.h for the output.
//
//   nexus-bench -url http://localhost:9999 -duration 30s -concurrency 50 -keys 100 -read-ratio 0.8
//   nexus-bench -urls http://127.0.0.1:9999,http://127.0.0.1:9998 -rate 20000 -json
//   nexus-bench -url memcache://127.0.0.1:11211     (the same workload against memcached)
//
// Exit status: 0 after a run (even one with errors: they are in the report), 1 if the run
// could not start (a target refuses connections), 2 for bad flags.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tools/bench/flags.h"
#include "tools/bench/load.h"
#include "tools/bench/report.h"

namespace {

std::string DefaultLabel() {
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  return absl::StrCat(host, " (", std::thread::hardware_concurrency(), " cores)");
}

int Main(int argc, char** argv) {
  using nexus::bench::FlagSet;
  std::string url = "http://localhost:9999";
  std::string urls;
  std::chrono::nanoseconds duration = std::chrono::seconds(30);
  std::chrono::nanoseconds warmup = std::chrono::seconds(5);
  int concurrency = 50;
  int keys = 100;
  double read_ratio = 0.8;
  int value_size = 100;
  bool hot = false;
  bool json = false;
  double rate = 0;
  int threads = 1;
  int expire = 60;
  std::string label = DefaultLabel();

  FlagSet flags("nexus-bench");
  flags.String("url", &url, "Base URL of a node (http://host:port), or memcache://host:port");
  flags.String("urls", &urls,
               "Comma-separated base URLs; connections are spread over them (overrides -url)");
  flags.Duration("duration", &duration, "Measured test duration");
  flags.Duration("warmup", &warmup, "Warmup before measuring (same load, not counted)");
  flags.Int("concurrency", &concurrency, "Number of concurrent clients (connections)");
  flags.Int("keys", &keys, "Number of distinct keys (bench_key_0 ...)");
  flags.Double("read-ratio", &read_ratio, "Fraction of requests that are reads (0.0-1.0)");
  flags.Int("value-size", &value_size, "Bytes per written value");
  flags.Bool("hot", &hot, "Write with hot=true (replicated to every node)");
  flags.Bool("json", &json, "Print the result as JSON");
  flags.Double("rate", &rate,
               "Open loop: send this many requests/s in total whatever the latency (0 = closed "
               "loop, the seed's model)");
  flags.Int("threads", &threads, "Event-loop threads sharing the connections");
  flags.Int("expire", &expire, "expire (minutes) sent with every write");
  flags.String("label", &label, "Environment column of the markdown row");

  bool help = false;
  if (absl::Status s = flags.Parse(argc, argv, &help); !s.ok()) {
    std::cerr << s.message() << "\n" << flags.Usage();
    return 2;
  }
  if (help) {
    std::cout << flags.Usage();
    return 0;
  }
  auto usage_error = [&](const std::string& message) {
    std::cerr << "nexus-bench: " << message << "\n" << flags.Usage();
    return 2;
  };
  if (concurrency < 1) return usage_error("-concurrency must be at least 1");
  if (keys < 1) return usage_error("-keys must be at least 1");
  if (read_ratio < 0 || read_ratio > 1) return usage_error("-read-ratio must be within 0..1");
  if (duration.count() <= 0) return usage_error("-duration must be positive");
  if (warmup.count() < 0) return usage_error("-warmup must not be negative");
  if (value_size < 1 || value_size > (1 << 20))
    return usage_error("-value-size must be 1..1048576");
  if (rate < 0) return usage_error("-rate must not be negative");
  if (threads < 1 || threads > concurrency) return usage_error("-threads must be 1..concurrency");
  if (expire < 1 || expire > 4320) return usage_error("-expire must be 1..4320 minutes");

  nexus::bench::LoadOptions options;
  for (absl::string_view piece :
       absl::StrSplit(urls.empty() ? url : urls, ',', absl::SkipWhitespace())) {
    auto target = nexus::bench::ParseTarget(std::string_view(piece.data(), piece.size()));
    if (!target.ok()) return usage_error(std::string(target.status().message()));
    options.targets.push_back(*std::move(target));
  }
  if (options.targets.empty()) return usage_error("no URL given");
  options.workload = {.keys = keys,
                      .read_ratio = read_ratio,
                      .value_size = static_cast<size_t>(value_size),
                      .hot = hot,
                      .expire_minutes = expire};
  options.concurrency = concurrency;
  options.rate = rate;
  options.warmup = warmup;
  options.duration = duration;
  options.threads = threads;

  if (!json) {
    std::cerr << "nexus-bench: " << concurrency << " connections, warming up for "
              << nexus::bench::FormatGoDuration(warmup) << ", then measuring for "
              << nexus::bench::FormatGoDuration(duration) << "\n";
  }
  auto result = nexus::bench::RunLoad(options);
  if (!result.ok()) {
    std::cerr << "nexus-bench: " << result.status().message() << "\n";
    return 1;
  }
  if (json) {
    std::cout << nexus::bench::ToJson(options, *result, label).dump(2) << "\n";
  } else {
    std::cout << nexus::bench::FormatText(options, *result, label);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
