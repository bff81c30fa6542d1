#include "support/history.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>

namespace nexus::testing {

namespace {

using TimePoint = std::chrono::steady_clock::time_point;
constexpr size_t kExamples = 5;

// What the checker keeps of one write or delete.
struct Write {
  TimePoint start;
  TimePoint end;
  TimePoint effect_end;  // by when it surely took effect (max(): maybe never, maybe later)
  bool ok;
  bool remove;
  const Operation* op;
};

// " at S-E s": an operation's start and end, relative to `epoch`.
std::string Span(const Operation& op, TimePoint epoch) {
  char when[64];
  std::snprintf(when, sizeof when, " at %.3f-%.3f s",
                std::chrono::duration<double>(op.start - epoch).count(),
                std::chrono::duration<double>(op.end - epoch).count());
  return when;
}

// `epoch`: the first operation's start, times are printed relative to it.
std::string Describe(const Operation& read, TimePoint epoch, const std::string& why) {
  return "read of '" + read.key + "' -> " + (read.value ? "'" + *read.value + "'" : "not found") +
         (read.via.empty() ? "" : " through " + read.via) + Span(read, epoch) + ": " + why;
}

// The newest write acknowledged before `read` started (what it should have seen), described.
std::string Missed(const std::vector<Write>& writes, const Operation& read, TimePoint epoch) {
  const Write* missed = nullptr;
  for (const Write& x : writes) {
    if (x.ok && x.end < read.start && (missed == nullptr || x.start > missed->start)) missed = &x;
  }
  if (missed == nullptr) return "none found";
  return (missed->remove ? "a delete" : "'" + *missed->op->value + "'") +
         (missed->op->via.empty() ? "" : " through " + missed->op->via) + Span(*missed->op, epoch);
}

}  // namespace

std::string UniqueValue(const std::string& key, int writer, uint64_t sequence) {
  return key + "#" + std::to_string(writer) + "." + std::to_string(sequence);
}

void History::Record(Operation op) {
  std::lock_guard<std::mutex> lock(mu_);
  ops_.push_back(std::move(op));
}

size_t History::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ops_.size();
}

std::chrono::steady_clock::time_point History::epoch() const {
  std::lock_guard<std::mutex> lock(mu_);
  return EpochLocked();
}

double History::MedianMillis(const std::string& via) const {
  std::vector<double> ms;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Operation& op : ops_) {
      if (op.via == via)
        ms.push_back(std::chrono::duration<double, std::milli>(op.end - op.start).count());
    }
  }
  if (ms.empty()) return 0;
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  return ms[ms.size() / 2];
}

std::chrono::steady_clock::time_point History::EpochLocked() const {
  TimePoint epoch = TimePoint::max();
  for (const Operation& op : ops_) epoch = std::min(epoch, op.start);
  return epoch;
}

std::string HistoryReport::Summary() const {
  char line[256];
  std::snprintf(
      line, sizeof(line),
      "%llu operations (%llu reads, %llu acknowledged writes), %llu failed (%llu reads), %llu "
      "stale reads, %llu acknowledged writes lost, %llu unknown values",
      static_cast<unsigned long long>(operations), static_cast<unsigned long long>(reads),
      static_cast<unsigned long long>(acknowledged_writes), static_cast<unsigned long long>(failed),
      static_cast<unsigned long long>(failed_reads), static_cast<unsigned long long>(stale_reads),
      static_cast<unsigned long long>(lost_writes),
      static_cast<unsigned long long>(unknown_values));
  return line;
}

HistoryReport History::Check() const {
  std::lock_guard<std::mutex> lock(mu_);
  HistoryReport report;
  report.operations = ops_.size();
  // Per key: its writes, the value each set wrote, its reads.
  struct Key {
    std::vector<Write> writes;
    std::map<std::string, size_t> by_value;  // value -> index in writes
    std::vector<const Operation*> reads;
  };
  std::map<std::string, Key> keys;
  const TimePoint epoch = EpochLocked();
  for (const Operation& op : ops_) {
    if (!op.ok) {
      ++report.failed;
      ++report.failed_via[op.via];
      report.failed_reads += op.kind == Operation::Kind::kRead;
      if (report.failures.size() < kExamples) {
        static constexpr const char* kKinds[] = {"read", "write", "delete"};
        report.failures.push_back(std::string(kKinds[static_cast<int>(op.kind)]) + " of '" +
                                  op.key + "'" + Span(op, epoch) + ": " + op.error);
      }
    }
    Key& k = keys[op.key];
    if (op.kind == Operation::Kind::kRead) {
      ++report.reads;
      if (op.ok) k.reads.push_back(&op);
      continue;
    }
    if (op.ok) ++report.acknowledged_writes;
    k.writes.push_back({.start = op.start,
                        .end = op.end,
                        .effect_end = op.ok ? op.end : TimePoint::max(),
                        .ok = op.ok,
                        .remove = op.kind == Operation::Kind::kDelete,
                        .op = &op});
    if (op.kind == Operation::Kind::kWrite && op.value) {
      k.by_value[*op.value] = k.writes.size() - 1;
    }
  }
  const auto note = [&](std::string what) {
    if (report.examples.size() < kExamples) report.examples.push_back(std::move(what));
  };
  for (auto& [name, k] : keys) {
    // Acknowledged writes by end time, with the latest start among those that ended so far:
    // a read that started after a write's end must not see anything surely older than it.
    std::vector<std::pair<TimePoint, TimePoint>> acked;  // (end, max start up to here)
    for (const Write& w : k.writes) {
      if (w.ok) acked.emplace_back(w.end, w.start);
    }
    std::sort(acked.begin(), acked.end());
    for (size_t i = 1; i < acked.size(); ++i) {
      acked[i].second = std::max(acked[i].second, acked[i - 1].second);
    }
    // The latest a delete (or the key's initial absence) may have taken effect.
    TimePoint absent_until = TimePoint::min();
    for (const Write& w : k.writes) {
      if (w.remove) absent_until = std::max(absent_until, w.effect_end);
    }
    for (const Operation* read : k.reads) {
      auto it = std::lower_bound(acked.begin(), acked.end(),
                                 std::make_pair(read->start, TimePoint::min()));
      const bool constrained = it != acked.begin();
      const TimePoint latest = constrained ? std::prev(it)->second : TimePoint::min();
      if (read->value) {
        auto w = k.by_value.find(*read->value);
        if (w == k.by_value.end()) {
          ++report.unknown_values;
          note(Describe(*read, epoch, "no write wrote this value"));
          continue;
        }
        if (constrained && k.writes[w->second].effect_end < latest) {
          ++report.stale_reads;
          report.stale_at.emplace_back(read->via, read->start);
          note(Describe(*read, epoch,
                        "older than a write acknowledged before the read started (" +
                            Missed(k.writes, *read, epoch) + ")"));
        }
        continue;
      }
      if (constrained && absent_until < latest) {
        ++report.lost_writes;
        report.lost_at.emplace_back(read->via, read->start);
        note(Describe(*read, epoch,
                      "a set was acknowledged before the read started (" +
                          Missed(k.writes, *read, epoch) + ")"));
      }
    }
  }
  return report;
}

}  // namespace nexus::testing
