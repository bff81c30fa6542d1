// The trace log (--log-level trace): every write, copy, drop and read with its version, for
// following a key through a failure test. Callers check TraceLogOn() before building a
// message, so the log costs one level check when it is off.
#pragma once

#include <spdlog/spdlog.h>

namespace nexus {

inline bool TraceLogOn() { return spdlog::default_logger_raw()->should_log(spdlog::level::trace); }

}  // namespace nexus
