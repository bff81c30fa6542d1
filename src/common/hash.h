// Key hashing shared by the cache shards, the ring and anything else that needs a stable,
// well-distributed 64-bit hash of bytes. XXH3 with seed 0: identical on every node and build.
#pragma once

#include <cstdint>
#include <string_view>

namespace nexus {

uint64_t HashBytes(std::string_view data);

}  // namespace nexus
