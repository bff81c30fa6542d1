// nexus-microbench: google-benchmark micro benchmarks of the engine's hot paths, plus a memory
// benchmark. Not a test: figures and the command that produced them go to docs/benchmarks.md.
//
//   build/bin/nexus-microbench                              everything
//   build/bin/nexus-microbench --benchmark_filter=Sharded   the cache only
//
// Workload (issue 2): 16-byte keys, 100-byte values, a 100k-key working set that fits in a
// 64 MiB, 16-shard cache. Multi-threaded runs share one cache and report wall-clock rates
// (UseRealTime), so items_per_second at 2 threads is the aggregate throughput.
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "cache/sharded_cache.h"
#include "common/clock.h"
#include "flight/flight.h"
#include "ring/hash_ring.h"

namespace nexus {
namespace {

constexpr size_t kKeys = 100'000;
constexpr size_t kValueSize = 100;

// 16-byte keys "key-000000000042".
std::string Key(size_t i, char prefix = 'k') {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%cey-%012zu", prefix, i);
  return std::string(buf, 16);
}

const std::vector<std::string>& Keys(char prefix) {
  static const auto* hits = new std::vector<std::string>([] {
    std::vector<std::string> v;
    for (size_t i = 0; i < kKeys; ++i) v.push_back(Key(i, 'k'));
    return v;
  }());
  static const auto* misses = new std::vector<std::string>([] {
    std::vector<std::string> v;
    for (size_t i = 0; i < kKeys; ++i) v.push_back(Key(i, 'm'));
    return v;
  }());
  return prefix == 'k' ? *hits : *misses;
}

// One filled cache shared by every benchmark and thread (function-local static: initialised
// once, thread-safely, before any thread uses it).
ShardedCache& FilledCache() {
  static ShardedCache* cache = [] {
    auto* c = new ShardedCache({.capacity_bytes = 64 << 20, .shard_bits = 4},
                               &SystemClock::Get());
    const std::string value(kValueSize, 'v');
    for (const std::string& k : Keys('k')) c->Set(k, value, kNoDeadline);
    return c;
  }();
  return *cache;
}

// Each thread walks the key set from its own offset with a stride coprime to kKeys.
size_t Start(const benchmark::State& state) { return state.thread_index() * 7919 % kKeys; }
constexpr size_t kStride = 7;

void BM_ShardedGetHit(benchmark::State& state) {
  ShardedCache& cache = FilledCache();
  const auto& keys = Keys('k');
  std::string value;
  value.reserve(kValueSize);
  size_t i = Start(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(cache.Get(keys[i], &value));
    i += kStride;
    if (i >= kKeys) i -= kKeys;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_ShardedGetMiss(benchmark::State& state) {
  ShardedCache& cache = FilledCache();
  const auto& keys = Keys('m');
  std::string value;
  size_t i = Start(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(cache.Get(keys[i], &value));
    i += kStride;
    if (i >= kKeys) i -= kKeys;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_ShardedSet(benchmark::State& state) {
  ShardedCache& cache = FilledCache();
  const auto& keys = Keys('k');
  const std::string value(kValueSize, 'w');
  size_t i = Start(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(cache.Set(keys[i], value, kNoDeadline));
    i += kStride;
    if (i >= kKeys) i -= kKeys;
  }
  state.SetItemsProcessed(state.iterations());
}

// 90% Get hits, 10% Set overwrites, interleaved deterministically.
void BM_ShardedMix90Get10Set(benchmark::State& state) {
  ShardedCache& cache = FilledCache();
  const auto& keys = Keys('k');
  const std::string value(kValueSize, 'x');
  std::string out;
  out.reserve(kValueSize);
  size_t i = Start(state);
  unsigned n = 0;
  for (auto _ : state) {
    if (++n == 10) {
      n = 0;
      benchmark::DoNotOptimize(cache.Set(keys[i], value, kNoDeadline));
    } else {
      benchmark::DoNotOptimize(cache.Get(keys[i], &out));
    }
    i += kStride;
    if (i >= kKeys) i -= kKeys;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_RingOwner(benchmark::State& state) {
  HashRing ring({.vnodes = static_cast<int>(state.range(0))});
  for (int m = 0; m < 5; ++m) ring.Add("svc" + std::to_string(m + 1));
  const auto& keys = Keys('k');
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(ring.Owner(keys[i]));
    if (++i == kKeys) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_FlightUncontended(benchmark::State& state) {
  Flight<int> flight;
  const auto& keys = Keys('k');
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(flight.DoSync(keys[i], [] { return absl::StatusOr<int>(1); }));
    if (++i == kKeys) i = 0;
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
    auto* cache = new ShardedCache({.capacity_bytes = size_t{1} << 30, .shard_bits = 4},
                                   &SystemClock::Get());
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
BENCHMARK(BM_ShardedGetHit)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_ShardedGetMiss)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_ShardedSet)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_ShardedMix90Get10Set)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_RingOwner)->Arg(50)->Arg(200);
BENCHMARK(BM_FlightUncontended);

}  // namespace
}  // namespace nexus

BENCHMARK_MAIN();
