#include "common/hash.h"

#include <xxhash.h>

namespace nexus {

uint64_t HashBytes(std::string_view data) { return XXH3_64bits(data.data(), data.size()); }

}  // namespace nexus
