// Process-wide runtime settings that a server or benchmark binary applies once at startup.
#pragma once

namespace nexus {

// Turns off absl::Mutex's deadlock detection unless this is a debug build (NDEBUG unset).
//
// Why: Debian's libabsl is compiled without NDEBUG, so every absl::Mutex lock and unlock also
// updates abseil's global lock-order graph under a global lock. That serialises all threads:
// measured with nexus-microbench on 2 cores, ShardedCache Get hits went from 14.6M ops/s on one
// thread to 5.9M ops/s on two; with detection off, 17.4M and 30.0M. Unit tests keep detection
// on (they never call this), so lock-order bugs are still caught there.
void ConfigureMutexesForProduction();

// Raises the soft limit of open files to the hard limit (as Go's runtime does), so that
// --max-connections, not a default soft limit of 1024, bounds the connections a node takes.
// Returns the soft limit in force afterwards (0 if it cannot be read).
unsigned long RaiseOpenFileLimit();

}  // namespace nexus
