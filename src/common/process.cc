#include "common/process.h"

#include "absl/synchronization/mutex.h"

namespace nexus {

void ConfigureMutexesForProduction() {
#ifdef NDEBUG
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
}

}  // namespace nexus
