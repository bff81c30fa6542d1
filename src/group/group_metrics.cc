#include "group/group_metrics.h"

#include "group/group.h"

namespace nexus {

void ExportGroupMetrics(GroupRegistry& groups, metrics::Registry& registry) {
  using metrics::Registry;
  GroupRegistry* const all = &groups;
  // Sums one field over every group, per cache.
  auto per_cache = [all](uint64_t CacheStats::*field) {
    return [all, field] {
      double main = 0, hot = 0;
      for (Group* g : all->All()) {
        const GroupStats s = g->stats();
        main += static_cast<double>(s.main.*field);
        hot += static_cast<double>(s.hot.*field);
      }
      return Registry::Samples{{{"main"}, main}, {{"hot"}, hot}};
    };
  };
  // Sums one field of one kind of stats (`get` reads them from a group) over every group.
  auto sum = [all](auto get, auto field) {
    return [all, get, field] {
      double total = 0;
      for (Group* g : all->All()) total += static_cast<double>(get(*g).*field);
      return total;
    };
  };
  auto sum_groups = [sum](uint64_t GroupStats::*field) {
    return sum([](const Group& g) { return g.stats(); }, field);
  };
  auto sum_replication = [sum](uint64_t ReplicationStats::*field) {
    return sum([](Group& g) { return g.store().stats(); }, field);
  };
  auto sum_handoff = [sum](uint64_t HandoffStats::*field) {
    return sum([](Group& g) { return g.handoff().stats(); }, field);
  };
  registry.AddCollector("nexuscache_cache_size_bytes",
                        "Bytes held by each cache (entries, their overhead and the index).",
                        "gauge", {"cache"}, per_cache(&CacheStats::bytes));
  registry.AddCollector("nexuscache_cache_items", "Entries held by each cache.", "gauge", {"cache"},
                        per_cache(&CacheStats::items));
  registry.AddCollector("nexuscache_cache_evictions_total",
                        "Entries dropped to stay within the byte budget.", "counter", {"cache"},
                        per_cache(&CacheStats::evictions));
  registry.AddCollector("nexuscache_cache_expirations_total",
                        "Entries dropped because their deadline passed.", "counter", {"cache"},
                        per_cache(&CacheStats::expirations));
  registry.AddCounterFn("nexuscache_cache_hits_total", "Gets answered from this node's caches.",
                        sum_groups(&GroupStats::hits));
  registry.AddCounterFn("nexuscache_cache_misses_total", "Gets this node had to load or forward.",
                        sum_groups(&GroupStats::misses));
  registry.AddCounterFn("nexuscache_loads_total", "Loader (origin) calls made by this node.",
                        sum_groups(&GroupStats::loads));
  registry.AddCounterFn("nexuscache_loads_deduplicated_total",
                        "Gets that joined a load or peer fetch already in flight.",
                        sum_groups(&GroupStats::deduplicated));
  registry.AddCounterFn("nexuscache_load_errors_total",
                        "Loader calls that failed (not found excluded).",
                        sum_groups(&GroupStats::load_errors));
  registry.AddCounterFn("nexuscache_hot_replications_total",
                        "Hot-key changes this node pushed to other nodes (one per node).",
                        sum_replication(&ReplicationStats::pushes));
  registry.AddCounterFn("nexuscache_hot_replication_failures_total",
                        "Hot-key pushes that failed or timed out (the write was still acked).",
                        sum_replication(&ReplicationStats::failures));
  registry.AddCounterFn("nexuscache_hot_invalidations_total",
                        "Pushes that removed a hot key's replicas (deleted, or set not hot).",
                        sum_replication(&ReplicationStats::invalidations));
  registry.AddCounterFn("nexuscache_hot_replicas_applied_total",
                        "Hot-key changes received from their owner and applied here.",
                        sum_replication(&ReplicationStats::applied));
  registry.AddCounterFn("nexuscache_replica_copies_total",
                        "Changes of keys this node is primary for, pushed to their other "
                        "replicas (--replicas; one per replica).",
                        sum_replication(&ReplicationStats::ring_pushes));
  registry.AddCounterFn("nexuscache_replica_copy_failures_total",
                        "Pushes to other replicas that failed or timed out.",
                        sum_replication(&ReplicationStats::ring_failures));
  registry.AddCounterFn("nexuscache_replica_copies_applied_total",
                        "Copies received as one of a key's replicas and applied here.",
                        sum_replication(&ReplicationStats::ring_applied));
  registry.AddCounterFn("nexuscache_writes_under_replicated_total",
                        "Writes whose pushes ended with fewer than --replicas copies stored.",
                        sum_replication(&ReplicationStats::under_replicated));
  registry.AddCounterFn(
      "nexuscache_write_quorum_failures_total",
      "Writes answered 503 because fewer than --write-quorum members stored them.",
      sum_replication(&ReplicationStats::quorum_failures));
  registry.AddCounterFn("nexuscache_replica_fallbacks_total",
                        "Requests sent on to a key's next holder because the previous one was "
                        "unreachable.",
                        sum_groups(&GroupStats::fallbacks));
  registry.AddCounterFn("nexuscache_holder_reads_total",
                        "Gets that missed on the key's primary and were answered with another "
                        "holder's copy (a primary that restarted or joined, before its copies "
                        "arrived).",
                        sum_groups(&GroupStats::holder_reads));
  registry.AddCounterFn("nexuscache_handoff_keys_sent_total",
                        "Copies this node handed to a key's new holder after a membership change "
                        "(joins, graceful leaves, re-replication after a death; one per holder).",
                        sum_handoff(&HandoffStats::keys_sent));
  registry.AddCounterFn("nexuscache_handoff_bytes_sent_total",
                        "Key and value bytes of the copies handed over.",
                        sum_handoff(&HandoffStats::bytes_sent));
  registry.AddCounterFn("nexuscache_handoff_send_failures_total",
                        "Copies a new holder did not take (unreachable or refused).",
                        sum_handoff(&HandoffStats::send_failures));
  registry.AddCounterFn("nexuscache_handoff_dropped_total",
                        "Copies dropped here because this node no longer holds their keys.",
                        sum_handoff(&HandoffStats::dropped));
  registry.AddCounterFn("nexuscache_handoff_walks_total",
                        "Walks of the cache that placed every copy by a new membership.",
                        sum_handoff(&HandoffStats::walks));
  registry.AddCounterFn("nexuscache_handoff_keys_received_total",
                        "Copies handed to this node by members that held them before.",
                        sum_replication(&ReplicationStats::handoff_received));
  registry.AddCounterFn("nexuscache_handoff_bytes_received_total",
                        "Key and value bytes of the copies handed to this node.",
                        sum_replication(&ReplicationStats::handoff_received_bytes));
  registry.AddCounterFn("nexuscache_stray_writes_total",
                        "Keys stored here by a member whose ring named this node while this "
                        "node's did not (then handed to their holders).",
                        sum_replication(&ReplicationStats::strays));
  registry.AddGauge("nexuscache_handoff_backlog",
                    "Entries the running handoff walk has yet to examine (re-replication and "
                    "range moves after a membership change; 0 when none runs).",
                    sum_handoff(&HandoffStats::backlog));
  registry.AddGauge("nexuscache_handoff_hints",
                    "Copies kept here for holders that were unreachable (a substitute's writes "
                    "and handed-over copies), sent again every second until taken.",
                    sum_handoff(&HandoffStats::hints));
  registry.AddCounterFn("nexuscache_replica_substitutes_total",
                        "Ring pushes sent to the next member beyond a key's holders because a "
                        "holder was unreachable (sloppy quorum).",
                        sum_replication(&ReplicationStats::substitutes));
  registry.AddGauge("nexuscache_hot_replicas", "Entries held in the hot caches of this node.",
                    [all] {
                      double total = 0;
                      for (Group* g : all->All()) total += g->store().hot().items();
                      return total;
                    });
}

}  // namespace nexus
