// nexus-microbench: google-benchmark micro benchmarks of the engine's hot paths, plus a memory
// benchmark. Not a test: figures and the command that produced them go to docs/benchmarks.md.
//
//   build/bin/nexus-microbench                              everything
//   build/bin/nexus-microbench --benchmark_filter=Sharded   the cache only
//
// Workload: 16-byte keys, 100-byte values, in a 256-shard cache large enough for
// the working set. Multi-threaded runs share one cache and report wall-clock rates
// (UseRealTime), so items_per_second at 2 threads is the aggregate throughput.
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cache/sharded_cache.h"
#include "common/clock.h"
#include "common/process.h"
#include "flight/flight.h"
#include "metrics/metrics.h"
#include "ring/hash_ring.h"

namespace nexus {
namespace {

constexpr size_t kValueSize = 100;
constexpr size_t kKeySize = 16;

// n 16-byte keys "k-00000000000042" packed in one array (no per-key allocation, so the
// benchmark's own memory traffic stays small next to the cache's).
class KeySet {
 public:
  KeySet(size_t n, char prefix) : n_(n), bytes_(n * kKeySize) {
    char buf[32];
    for (size_t i = 0; i < n; ++i) {
      std::snprintf(buf, sizeof buf, "%c-%014zu", prefix, i % 100'000'000'000'000);
      std::memcpy(&bytes_[i * kKeySize], buf, kKeySize);
    }
  }
  std::string_view operator[](size_t i) const { return {&bytes_[i * kKeySize], kKeySize}; }
  size_t size() const { return n_; }

 private:
  size_t n_;
  std::vector<char> bytes_;
};

// A filled cache per working-set size, shared by every benchmark and thread of that size
// (initialised once, under a lock, before the threads use it). The budget leaves room for
// every key, so Get hits always hit.
struct Fixture {
  explicit Fixture(size_t n)
      : present(n, 'k'),
        absent(n, 'm'),
        cache({.capacity_bytes = std::max<size_t>(n * 400, 64 << 20), .shard_bits = 8},
              &SystemClock::Get()) {
    const std::string value(kValueSize, 'v');
    for (size_t i = 0; i < n; ++i) cache.Set(present[i], value, kNoDeadline);
  }
  KeySet present;
  KeySet absent;
  ShardedCache cache;
};

Fixture& GetFixture(size_t n) {
  static std::mutex mu;
  static std::map<size_t, std::unique_ptr<Fixture>> fixtures;
  std::lock_guard<std::mutex> lock(mu);
  auto& f = fixtures[n];
  if (!f) f = std::make_unique<Fixture>(n);
  return *f;
}

// Each thread walks the key set from its own offset with a stride coprime to the size, so
// consecutive operations touch unrelated shards and cache lines (no prefetch-friendly order).
struct Walk {
  Walk(const benchmark::State& state, size_t n) : n(n), i((state.thread_index() * n) / 2 % n) {}
  size_t Next() {
    const size_t cur = i;
    i += 7919;
    if (i >= n) i -= n;
    return cur;
  }
  size_t n;
  size_t i;
};

void BM_ShardedGetHit(benchmark::State& state) {
  Fixture& f = GetFixture(state.range(0));
  Walk walk(state, f.present.size());
  std::string value;
  value.reserve(kValueSize);
  for (auto _ : state) benchmark::DoNotOptimize(f.cache.Get(f.present[walk.Next()], &value));
  state.SetItemsProcessed(state.iterations());
}

void BM_ShardedGetMiss(benchmark::State& state) {
  Fixture& f = GetFixture(state.range(0));
  Walk walk(state, f.absent.size());
  std::string value;
  for (auto _ : state) benchmark::DoNotOptimize(f.cache.Get(f.absent[walk.Next()], &value));
  state.SetItemsProcessed(state.iterations());
}

// Overwrites of present keys (same size: rewritten in place, as a steady-state Set would be).
void BM_ShardedSet(benchmark::State& state) {
  Fixture& f = GetFixture(state.range(0));
  Walk walk(state, f.present.size());
  const std::string value(kValueSize, 'w');
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.cache.Set(f.present[walk.Next()], value, kNoDeadline));
  }
  state.SetItemsProcessed(state.iterations());
}

// 90% Get hits, 10% Set overwrites, interleaved deterministically.
void BM_ShardedMix90Get10Set(benchmark::State& state) {
  Fixture& f = GetFixture(state.range(0));
  Walk walk(state, f.present.size());
  const std::string value(kValueSize, 'x');
  std::string out;
  out.reserve(kValueSize);
  unsigned n = 0;
  for (auto _ : state) {
    if (++n == 10) {
      n = 0;
      benchmark::DoNotOptimize(f.cache.Set(f.present[walk.Next()], value, kNoDeadline));
    } else {
      benchmark::DoNotOptimize(f.cache.Get(f.present[walk.Next()], &out));
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_RingOwner(benchmark::State& state) {
  HashRing ring({.vnodes = static_cast<int>(state.range(0))});
  for (int m = 0; m < 5; ++m) ring.Add("svc" + std::to_string(m + 1));
  const KeySet keys(10'000, 'k');
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(ring.Owner(keys[i]));
    if (++i == keys.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_FlightUncontended(benchmark::State& state) {
  Flight<int> flight;
  const KeySet keys(10'000, 'k');
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(flight.DoSync(keys[i], [] { return absl::StatusOr<int>(1); }));
    if (++i == keys.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

// What the HTTP layer adds per request for metrics: a counter increment, a histogram
// observation and the two clock reads around the request (Api::Finish).
void BM_RequestMetrics(benchmark::State& state) {
  static metrics::Registry* registry = new metrics::Registry();
  static auto* requests = registry->AddCounter("r_total", "r", {"op", "status"});
  static auto* latency =
      registry->AddHistogram("d_seconds", "d", {"op"}, metrics::Registry::LatencyBounds());
  static metrics::Counter* hit = requests->With({"get", "hit"});
  static metrics::Histogram* get = latency->With({"get"});
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    hit->Inc();
    get->Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  state.SetItemsProcessed(state.iterations());
}

size_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  size_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// Inserts 1M entries (16-byte key, 100-byte value) into a fresh cache and reports process RSS
// growth per entry, and the overhead beyond the 116 payload bytes.
void BM_MemoryPerEntry(benchmark::State& state) {
  constexpr size_t kEntries = 1'000'000;
  const std::string value(kValueSize, 'v');
  for (auto _ : state) {
    malloc_trim(0);
    const size_t before = ResidentBytes();
    auto* cache =
        new ShardedCache({.capacity_bytes = size_t{1} << 30, .shard_bits = 4}, &SystemClock::Get());
    char key[17];
    for (size_t i = 0; i < kEntries; ++i) {
      std::snprintf(key, sizeof key, "mem-%012zu", i);
      cache->Set(std::string_view(key, 16), value, kNoDeadline);
    }
    const double rss = static_cast<double>(ResidentBytes() - before) / kEntries;
    state.counters["rss_per_entry"] = rss;
    state.counters["overhead_per_entry"] = rss - 16 - kValueSize;
    state.counters["charged_per_entry"] = static_cast<double>(cache->bytes()) / kEntries;
    state.counters["items"] = static_cast<double>(cache->items());
    state.PauseTiming();
    delete cache;
    state.ResumeTiming();
  }
}

BENCHMARK(BM_MemoryPerEntry)->Iterations(1)->Unit(benchmark::kMillisecond);
// Working sets: 10k keys (~2 MB, cache-resident: measures the code path) and 1M keys
// (~180 MB: every operation misses the CPU caches, measures memory latency).
#define NEXUS_CACHE_BENCH(fn) \
  BENCHMARK(fn)->ArgName("keys")->Arg(10'000)->Arg(1'000'000)->Threads(1)->Threads(2)->UseRealTime()
NEXUS_CACHE_BENCH(BM_ShardedGetHit);
NEXUS_CACHE_BENCH(BM_ShardedGetMiss);
NEXUS_CACHE_BENCH(BM_ShardedSet);
NEXUS_CACHE_BENCH(BM_ShardedMix90Get10Set);
BENCHMARK(BM_RingOwner)->Arg(50)->Arg(200);
BENCHMARK(BM_FlightUncontended);
BENCHMARK(BM_RequestMetrics)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
}  // namespace nexus

int main(int argc, char** argv) {
  nexus::ConfigureMutexesForProduction();  // as the server does; see common/process.h
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
}
