// What nexus-bench prints: the seed's summary (total requests, throughput, hit rate,
// avg/P50/P95/P99, error rate) plus P99.9 and max, the seed's markdown table row, and the same
// figures as JSON for scripts.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "tools/bench/load.h"

namespace nexus::bench {

// "713µs", "1.81ms", "2.50s" (the seed's table style).
std::string FormatLatency(uint64_t nanos);

// The seed's table header and one row: | label | ops/sec | P50 | P95 | P99 | hit rate |.
std::string MarkdownHeader();
std::string MarkdownRow(const std::string& label, const LoadResult& r);

std::string FormatText(const LoadOptions& options, const LoadResult& r, const std::string& label);
nlohmann::json ToJson(const LoadOptions& options, const LoadResult& r, const std::string& label);

}  // namespace nexus::bench
