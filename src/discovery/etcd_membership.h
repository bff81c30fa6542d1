// EtcdMembership: live cluster membership from etcd.
//
// Register: grant a lease (lease_ttl), put `<prefix><name>` = {"name","grpc","http"} under it,
// keep it alive over one bidi stream; if etcd says the lease is gone (TTL 0) or the stream
// breaks, grant a new lease and put again. Discover: read the prefix, then watch it from the
// read's revision + 1; every change is applied through MembershipView (by revision, so
// duplicates and reorders are harmless) and the resulting member set is handed to `on_change`.
// A compacted, cancelled or broken watch reads the prefix again and re-watches.
//
// etcd down: both loops retry with capped exponential backoff and log once per outage; the
// node keeps serving with the last ring it had. Stop() revokes the lease so the node leaves
// every ring at once instead of after the TTL.
//
// Thread-safety: Start/Stop from one thread. `on_change` runs on the discovery threads (never
// concurrently with itself) and must be thread-safe with respect to the rest of the node.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "discovery/etcd_client.h"
#include "discovery/membership.h"

namespace nexus {

struct EtcdMembershipOptions {
  std::vector<std::string> endpoints;  // host:port of etcd members
  MemberInfo self;                     // what this node registers
  int64_t lease_ttl_seconds = 5;
  std::chrono::milliseconds unary_timeout{2000};  // deadline of each unary etcd call
  EtcdCredentials credentials;                    // TLS and auth (etcd_client.h)
  // Retry cap while etcd is unreachable (never more than a quarter of the lease TTL).
  std::chrono::milliseconds max_backoff{2000};
  std::string prefix = std::string(kNodesPrefix);
  // Called (on the registering thread) before each attempt to register again after the lease
  // was lost, so before the others can see this node again and before HoldsLease is true, and
  // after the attempt that succeeded: it may have been out of the others' rings meanwhile,
  // missing their writes.
  std::function<void()> on_reregistering;
  std::function<void()> on_reregistered;
};

class EtcdMembership {
 public:
  // name -> what the member registered (gRPC and HTTP addresses).
  using OnChange = std::function<void(const std::map<std::string, MemberInfo>& members)>;

  EtcdMembership(EtcdMembershipOptions options, OnChange on_change);
  ~EtcdMembership();
  EtcdMembership(const EtcdMembership&) = delete;
  EtcdMembership& operator=(const EtcdMembership&) = delete;

  void Start();
  // Stops both loops and revokes the lease (bounded by the unary timeout).
  void Stop();

  bool registered() const { return registered_.load(); }
  // Whether this node's lease is alive as far as it can tell: granted or kept alive less than
  // its TTL ago (minus a margin for the round trip), and not revoked or reported gone. A node
  // whose lease may have expired has been, or is about to be, dropped from the others' rings.
  bool HoldsLease() const;
  // Members as last read from etcd (empty until the first successful read).
  std::map<std::string, MemberInfo> members() const;

 private:
  void RegisterLoop();
  void WatchLoop();
  // Sleeps up to `d` or until Stop(); false when stopping.
  bool SleepUnlessStopping(std::chrono::milliseconds d);
  void Publish(const std::map<std::string, MemberInfo>& members);

  const EtcdMembershipOptions options_;
  const OnChange on_change_;
  EtcdClient client_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  MembershipView view_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, MemberInfo> members_ ABSL_GUARDED_BY(mu_);

  std::atomic<bool> registered_{false};
  // Steady-clock nanoseconds until which the lease is alive (0: none).
  std::atomic<int64_t> lease_valid_until_{0};
  void ExtendLease(int64_t ttl_seconds);
  std::thread register_thread_;
  std::thread watch_thread_;
};

}  // namespace nexus
