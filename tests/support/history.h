// History checking for fault tests: load clients record every operation with its start and end
// times and what it returned; the checker then reports, per key, every read that returned a
// value older than a write acknowledged before the read started (deletes included), and every
// acknowledged write that a later read found gone. Jepsen's register checkers are the model,
// cut down to what a cache promises: no stale reads, no lost acknowledged writes.
//
// Rules (times are the client's, one steady clock for every client):
//   - every write writes a value no other write writes (Record's callers make them unique), so
//     a read's value names the write it came from; a delete writes "nothing";
//   - a write was acknowledged when the cache answered OK. An acknowledged write took effect
//     somewhere in [start, end]; a write that failed or timed out may take effect at any time
//     after its start, or never (a partly applied quorum write is kept by the members that
//     stored it);
//   - a read that returned value v (or nothing) is stale when every write of v (or every
//     delete, and the key's initial absence) surely took effect before some write W did, and W
//     was acknowledged before the read started: W.start > end of v's write, W.end < read.start.
//     Reads of nothing that are stale that way are counted apart as lost writes when W was a
//     set (a cache may also drop a value by eviction or expiry; fault tests size it so it
//     does not);
//   - a read of a value no write wrote is an error (corruption).
//
// Thread-safety: Record may be called from any thread; Check after the clients stopped.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace nexus::testing {

struct Operation {
  enum class Kind { kRead, kWrite, kDelete };
  Kind kind = Kind::kRead;
  std::string key;
  // kWrite: the value written; kRead: the value returned (nullopt: not found).
  std::optional<std::string> value;
  std::chrono::steady_clock::time_point start;
  std::chrono::steady_clock::time_point end;
  // The cache answered: a write or delete acknowledged, a read with a value or "not found".
  // False: an error or no answer (the operation's effect is unknown).
  bool ok = false;
  std::string error;  // what the cache answered instead, for the report
  std::string via;    // which node the client asked, for the report
};

struct HistoryReport {
  uint64_t operations = 0;
  uint64_t reads = 0;
  uint64_t failed = 0;        // operations without an answer or with an error
  uint64_t failed_reads = 0;  // of them, reads
  uint64_t acknowledged_writes = 0;
  uint64_t stale_reads = 0;     // a value older than a write acknowledged before the read
  uint64_t lost_writes = 0;     // "not found" although a set was acknowledged before
  uint64_t unknown_values = 0;  // a value no write wrote
  // Who saw what, for scenarios where some of it is expected (a partitioned node's reads):
  // failed operations per node asked, and each stale read and lost write with the node asked
  // and the read's start.
  std::map<std::string, uint64_t> failed_via;
  std::vector<std::pair<std::string, std::chrono::steady_clock::time_point>> stale_at, lost_at;
  std::vector<std::string> examples;  // the first few violations, described
  std::vector<std::string> failures;  // the first few failed operations, described

  // One line of figures, for the test's output.
  std::string Summary() const;
};

class History {
 public:
  void Record(Operation op);
  HistoryReport Check() const;
  size_t size() const;
  // The first operation's start (reports print times relative to it).
  std::chrono::steady_clock::time_point epoch() const;
  // How many operations satisfy `pred`.
  template <typename Pred>
  size_t Count(Pred pred) const {
    std::lock_guard<std::mutex> lock(mu_);
    size_t n = 0;
    for (const Operation& op : ops_) n += pred(op) ? 1 : 0;
    return n;
  }
  // The median duration of the operations through `via`, in ms (0 if none).
  double MedianMillis(const std::string& via) const;

 private:
  std::chrono::steady_clock::time_point EpochLocked() const;  // mu_ held
  mutable std::mutex mu_;
  std::vector<Operation> ops_;
};

// A value unique to one write: "<key>#<writer>.<sequence>".
std::string UniqueValue(const std::string& key, int writer, uint64_t sequence);

}  // namespace nexus::testing
