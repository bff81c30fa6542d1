// ExportGroupMetrics: the metrics of a node's groups (their caches, lookups, loads and hot-key
// replication), summed over the groups and read from them at render time.
//
// Thread-safety: the collectors run on whatever thread renders; the registry's groups must
// outlive the metrics registry's renders.
#pragma once

#include "group/registry.h"
#include "metrics/metrics.h"

namespace nexus {

void ExportGroupMetrics(GroupRegistry& groups, metrics::Registry& registry);

}  // namespace nexus
