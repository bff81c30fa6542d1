// RunLoad: the seed's load test as an event-driven engine. `concurrency` keep-alive
// connections, spread round-robin over the targets, over `threads` threads (each an epoll loop
// owning its share). Every request is a read (probability read_ratio) or a write of a uniformly
// random key among `keys`.
//
// Closed loop (rate == 0, the seed's model): each connection sends its next request as soon as
// the previous answer arrives; latency = answer - send.
// Open loop (rate > 0): requests are due at fixed intervals (rate per second in total) whether
// or not the server keeps up; a due request waits for a free connection, and its latency is
// measured from when it was due, so a stalled server shows up in the percentiles instead of
// silently lowering the request rate (coordinated omission).
//
// Phases: warmup (counted apart, no latencies), then `duration` (measured), then at most
// `drain` to collect the answers still in flight (counted in answered, not in the figures).
// A request is attributed to the phase in which its answer (or failure) arrived. Every latency
// of the measured phase is recorded (LatencyHistogram, no sampling).
//
// Errors: an answer that is neither a hit, a miss nor an ok (e.g. a 5xx), a connection that
// breaks or times out (request_timeout) with a request in flight. The engine reconnects and
// keeps going. RunLoad fails up front (Unavailable) only if a target cannot be connected to.
//
// Thread-safety: RunLoad may be called from any thread; it blocks for the whole run.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/bench/histogram.h"
#include "tools/bench/protocol.h"

namespace nexus::bench {

struct LoadOptions {
  std::vector<Target> targets;
  Workload workload;
  int concurrency = 50;
  double rate = 0;  // requests/s over all connections; 0 = closed loop
  std::chrono::nanoseconds warmup = std::chrono::seconds(5);
  std::chrono::nanoseconds duration = std::chrono::seconds(30);
  int threads = 1;
  uint64_t seed = 0;  // 0 = a random seed
  std::chrono::milliseconds drain{2000};
  std::chrono::milliseconds request_timeout{10000};
};

struct PhaseCounts {
  uint64_t reads = 0;   // read requests finished (answered or failed)
  uint64_t writes = 0;  // write requests finished
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t errors = 0;  // reads + writes that failed
  uint64_t total() const { return reads + writes; }
  void Add(const PhaseCounts& o);
};

struct LoadResult {
  PhaseCounts warmup;
  PhaseCounts measured;
  LatencyHistogram latency;  // measured phase, reads and writes
  LatencyHistogram read_latency;
  LatencyHistogram write_latency;
  double measured_seconds = 0;
  // Over the whole run (warmup, measured, drain):
  uint64_t sent = 0;              // requests written to a connection
  uint64_t answered = 0;          // answers parsed (hits, misses, oks and error answers)
  uint64_t lost = 0;              // requests whose connection broke or timed out
  uint64_t in_flight_at_end = 0;  // still unanswered when the drain time ran out
  // Open loop only:
  uint64_t scheduled = 0;   // requests due within the measured phase
  uint64_t never_sent = 0;  // due requests still waiting for a connection at the end
  uint64_t connect_failures = 0;
  std::vector<std::string> error_samples;  // the first few distinct error descriptions

  void Merge(const LoadResult& o);
};

absl::StatusOr<LoadResult> RunLoad(const LoadOptions& options);

}  // namespace nexus::bench
