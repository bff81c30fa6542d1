// CallCounter: the outcome counts of calls to one peer, shared by both transports (gRPC in
// peer/grpc_peer.h, HTTP forwarding in peer/remote_peer.h), behind
// nexuscache_peer_requests_total{peer,op,status}.
//
// Thread-safety: all members may be called concurrently (relaxed atomics).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace nexus {

class CallCounter {
 public:
  enum Op { kGet = 0, kSet, kDelete, kReplicate, kOps };

  // A call was started.
  void Started() { calls_.fetch_add(1, std::memory_order_relaxed); }
  // A call of `op` ended with `s`: get -> hit / miss (NotFound) / error, others -> ok / error.
  // Errors other than NotFound also count as failures.
  void Finished(Op op, const absl::Status& s) {
    const int outcome = s.ok() ? 0 : (absl::IsNotFound(s) ? 1 : 2);
    outcomes_[op][outcome].fetch_add(1, std::memory_order_relaxed);
    if (outcome == 2) CountFailure();
  }
  // A failure outside Finished (e.g. a Set the peer answered but did not apply).
  void CountFailure() { failures_.fetch_add(1, std::memory_order_relaxed); }

  uint64_t calls() const { return calls_.load(std::memory_order_relaxed); }
  uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }

  struct Count {
    std::string op;
    std::string status;
    uint64_t count;
  };
  // Every (op, status) pair, zeros included: get hit/miss/error, others ok/error.
  std::vector<Count> Counts() const {
    static constexpr const char* kOpNames[] = {"get", "set", "delete", "replicate"};
    std::vector<Count> out;
    for (int op = 0; op < kOps; ++op) {
      for (int outcome = 0; outcome < 3; ++outcome) {
        if (op != kGet && outcome == 1) continue;  // only gets can miss
        const char* status =
            outcome == 2 ? "error" : (op == kGet ? (outcome == 0 ? "hit" : "miss") : "ok");
        out.push_back(
            {kOpNames[op], status, outcomes_[op][outcome].load(std::memory_order_relaxed)});
      }
    }
    return out;
  }

 private:
  std::atomic<uint64_t> calls_{0};
  std::atomic<uint64_t> failures_{0};
  // [op][0 = hit/ok, 1 = miss, 2 = error]
  std::atomic<uint64_t> outcomes_[kOps][3] = {};
};

}  // namespace nexus
