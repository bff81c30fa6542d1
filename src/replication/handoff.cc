#include "replication/handoff.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "absl/time/time.h"

namespace nexus {

namespace {

bool Contains(const std::vector<std::string_view>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

struct Handoff::Item {
  Replica copy;
  std::vector<std::string> targets;
  bool keep = true;     // this node still holds the key
  bool linger = false;  // not held, but kept until the transition ends (Walk::keep_all)
};

Handoff::Handoff(HandoffOptions options, ReplicatedStore* store, const Clock* clock)
    : options_(std::move(options)),
      store_(store),
      peers_(store->peers()),
      clock_(clock),
      self_(peers_.SelfName()) {}

Handoff::~Handoff() { Stop(); }

void Handoff::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void Handoff::Start() {
  absl::MutexLock lock(&mu_);
  if (thread_.joinable()) return;
  placed_ = peers_.Ring();
  thread_ = std::thread([this] { Run(); });
}

void Handoff::RingChanged() {
  absl::MutexLock lock(&mu_);
  store_->BeginTransition(placed_);
  changed_ = true;
}

void Handoff::RingChanging() {
  absl::MutexLock lock(&mu_);
  store_->BeginTransition(placed_);
  // (The thread must not take the ring as settled before the change it is told of.)
  last_change_ = clock_->NowMillis();
  changed_ = true;
}

void Handoff::Rejoined() { BeginRejoin(/*registering=*/false); }

void Handoff::Rejoining() { BeginRejoin(/*registering=*/true); }

void Handoff::BeginRejoin(bool registering) {
  const std::shared_ptr<const RingSnapshot> without = peers_.RingWithout(self_);
  absl::MutexLock lock(&mu_);
  store_->BeginTransition(without, /*replace=*/true);
  last_change_ = clock_->NowMillis();
  rejoining_ = registering;
  changed_ = true;
}

void Handoff::Resync(std::string name) {
  absl::MutexLock lock(&mu_);
  resync_.push_back(std::move(name));
  changed_ = true;
}

void Handoff::Run() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](Handoff* h) ABSL_EXCLUSIVE_LOCKS_REQUIRED(h->mu_) {
                               return h->stop_ || (h->changed_ && !h->draining_);
                             },
                             this),
                         absl::FromChrono(options_.poll));
    if (stop_) break;
    if (draining_) continue;
    changed_ = false;
    const std::shared_ptr<const RingSnapshot> current = peers_.Ring();
    if (current == nullptr || placed_ == nullptr) continue;  // no ring: nothing ever moves
    if (current->generation() != placed_->generation()) {
      spdlog::debug("group {}: walk from ring generation {} to {}", store_->options().group,
                    placed_->generation(), current->generation());
      store_->BeginTransition(placed_);
      const Walk walk{.before = placed_, .after = current, .keep_all = true};
      last_change_ = clock_->NowMillis();
      const WalkEnd end = WalkUnlocked(walk);
      if (end == WalkEnd::kDone) {
        placed_ = current;
        walks_.fetch_add(1, std::memory_order_relaxed);
      }
      changed_ = true;  // look again at once: the ring may have moved on meanwhile
      continue;
    }
    if (!resync_.empty()) {
      const std::string name = resync_.back();
      resync_.pop_back();
      std::shared_ptr<const RingSnapshot> without = peers_.RingWithout(name);
      if (without == nullptr || !current->Contains(name)) continue;
      // As if `name` had just joined: it gets every copy it holds under the current ring.
      const WalkEnd end =
          WalkUnlocked({.before = std::move(without), .after = current, .keep_all = true});
      if (end == WalkEnd::kDone) {
        walks_.fetch_add(1, std::memory_order_relaxed);
      } else {
        resync_.push_back(name);  // the ring moved on: after the walk it needs
      }
      changed_ = true;
      continue;
    }
    // Every node has had time to see the ring this one has, and its walk is done: reads follow
    // the current ring; after as long again (the others' reads did too), the copies this node
    // stopped holding go, and so does the transition.
    if (rejoining_) continue;  // (the others may see this node any moment)
    const int64_t stable = clock_->NowMillis() - last_change_;
    if (stable < options_.stray_delay.count()) continue;
    if (store_->EndFormerReads()) {
      spdlog::debug("group {}: reads follow the current ring again", store_->options().group);
    }
    if (stable < 2 * options_.stray_delay.count()) continue;
    // (After each off-lock step: a membership change meanwhile began a transition of its own,
    // which must not be ended here, nor its reads stop checking holders.)
    const auto moved_on = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      const std::shared_ptr<const RingSnapshot> now = peers_.Ring();
      return changed_ || (now != nullptr && now->generation() != current->generation());
    };
    if (store_->in_transition()) {
      if (WalkUnlocked({.before = current, .after = current, .drop_only = true}) !=
              WalkEnd::kDone ||
          moved_on()) {
        continue;
      }
      store_->EndTransition();
      spdlog::debug("group {}: transition over", store_->options().group);
    }
    Unlocked([this] { DeliverStrays(); });
    // Reads stop checking holders once no copy here waits for a holder.
    if (!moved_on() && hints_pending_.load(std::memory_order_relaxed) == 0 &&
        store_->verifying_holders() && store_->StopVerifyingHolders()) {
      spdlog::debug("group {}: reads stop checking holders", store_->options().group);
    }
  }
}

void Handoff::Unlocked(absl::FunctionRef<void()> work) {
  walking_ = true;
  mu_.Unlock();
  work();
  mu_.Lock();
  walking_ = false;
}

Handoff::WalkEnd Handoff::WalkUnlocked(const Walk& walk) {
  WalkEnd end = WalkEnd::kDone;
  Unlocked([&] { end = RunWalk(walk, nullptr); });
  return end;
}

void Handoff::Place(const Walk& walk, std::string_view key, std::vector<std::string>* targets,
                    bool* keep) const {
  const size_t n = store_->options().replicas;
  const std::vector<std::string_view> before = walk.before->Successors(key, n);
  const std::vector<std::string_view> after = walk.after->Successors(key, n);
  const bool held_before = Contains(before, self_);
  *keep = walk.leaving || Contains(after, self_);
  if (walk.drop_only) return;
  bool sender = walk.leaving || !held_before;
  if (!sender) {
    // The first holder under `before` that is still a member sends: each copy travels once.
    for (std::string_view name : before) {
      if (walk.after->Contains(name)) {
        sender = name == self_;
        break;
      }
    }
  }
  if (!sender) return;
  for (std::string_view name : after) {
    // A stray (not held here before) goes to every holder: which of them has it is unknown.
    if (name != self_ && (!held_before || !Contains(before, name))) targets->emplace_back(name);
  }
}

Handoff::WalkEnd Handoff::RunWalk(const Walk& walk, DrainResult* result) {
  ShardedCache& main = store_->main();
  ShardedCache::Crawl crawl(&main);
  examined_.store(0, std::memory_order_relaxed);
  to_examine_.store(main.items(), std::memory_order_relaxed);
  in_walk_.store(true, std::memory_order_relaxed);
  struct Reset {
    std::atomic<bool>* flag;
    ~Reset() { flag->store(false, std::memory_order_relaxed); }
  } reset{&in_walk_};

  // Copies handed here early are placed (kept if held under walk.after, else dropped) by a
  // walk that started after they arrived, by a ring newer than the one they arrived under.
  const uint64_t early_mark = store_->EarlyCopiesMark();
  const auto start = std::chrono::steady_clock::now();
  uint64_t bytes = 0;
  std::vector<Item> batch;
  size_t batch_bytes = 0;
  bool more = true;
  while (more) {
    more = crawl.Step(options_.entries_per_step, [&](const EntryView& e) {
      examined_.fetch_add(1, std::memory_order_relaxed);
      if (e.meta.version == 0 || e.meta.version <= walk.since_version) return;
      Item item;
      Place(walk, e.key, &item.targets, &item.keep);
      // A copy handed here before this node's ring changed the way its sender's had: it stays.
      if (!item.keep && store_->EarlyCopyWaits(e.key, walk.after->generation())) item.keep = true;
      item.linger = walk.keep_all;
      if (item.targets.empty() && (item.keep || item.linger)) return;
      item.copy = Replica{.key = std::string(e.key),
                          .value = std::string(e.value),
                          .deadline = e.deadline,
                          .version = e.meta.version,
                          .remove = e.meta.tombstone,
                          .ring = true,
                          .handoff = true};
      batch_bytes += (e.key.size() + e.value.size()) * item.targets.size();
      batch.push_back(std::move(item));
    });
    if (!crawl.ok()) {
      spdlog::warn("group {}: handoff walk found no free crawl slot; it will run again",
                   store_->options().group);
      return WalkEnd::kInterrupted;
    }
    if (batch.size() >= options_.batch_entries || batch_bytes >= options_.batch_bytes ||
        (!more && !batch.empty())) {
      Send(batch, result);
      bytes += batch_bytes;
      batch.clear();
      batch_bytes = 0;
      if (!Pace(start, bytes, walk.leaving)) return WalkEnd::kInterrupted;
    }
    if (walk.deadline != kNoDeadline && clock_->NowMillis() >= walk.deadline) {
      if (!batch.empty()) Send(batch, result);
      return WalkEnd::kOutOfTime;
    }
    if (Interrupted(walk)) {
      if (!batch.empty()) Send(batch, result);
      return WalkEnd::kInterrupted;
    }
  }
  if (!walk.leaving) store_->EarlyCopiesPlaced(early_mark, walk.after->generation());
  return WalkEnd::kDone;
}

bool Handoff::Interrupted(const Walk& walk) {
  {
    absl::MutexLock lock(&mu_);
    // A drain waits for the background walk: it gives way (and runs again afterwards).
    if (stop_ || (draining_ && !walk.leaving)) return true;
  }
  if (walk.leaving) return false;
  const std::shared_ptr<const RingSnapshot> current = peers_.Ring();
  return current != nullptr && current->generation() != walk.after->generation();
}

void Handoff::Send(std::vector<Item>& batch, DrainResult* result) {
  struct Pending {
    absl::Mutex mu;
    size_t left ABSL_GUARDED_BY(mu) = 0;
    std::vector<bool> failed ABSL_GUARDED_BY(mu);
    std::vector<bool> unreachable ABSL_GUARDED_BY(mu);  // a holder may take it later
  };
  auto pending = std::make_shared<Pending>();
  {
    absl::MutexLock lock(&pending->mu);
    pending->failed.assign(batch.size(), false);
    pending->unreachable.assign(batch.size(), false);
    for (const Item& item : batch) pending->left += item.targets.size();
  }
  const std::string& group = store_->options().group;
  for (size_t i = 0; i < batch.size(); ++i) {
    for (const std::string& target : batch[i].targets) {
      const auto answered = [pending, i](absl::Status s) {
        absl::MutexLock lock(&pending->mu);
        if (!s.ok()) pending->failed[i] = true;
        if (IsUnreachable(s)) pending->unreachable[i] = true;
        --pending->left;
      };
      std::shared_ptr<Peer> peer = peers_.PeerNamed(target);
      if (peer == nullptr) {
        answered(absl::UnavailableError("no longer a member"));
        continue;
      }
      peer->Replicate(group, batch[i].copy, answered);
    }
  }
  std::vector<bool> failed;
  std::vector<bool> unreachable;
  {
    absl::MutexLock lock(&pending->mu);
    pending->mu.Await(absl::Condition(
        +[](Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu) { return p->left == 0; },
        pending.get()));
    failed = pending->failed;
    unreachable = pending->unreachable;
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    const Item& item = batch[i];
    const uint64_t n = item.targets.size();
    if (!failed[i] && n > 0) ForgetHint(item.copy.key);  // delivered
    if (failed[i]) {
      send_failures_.fetch_add(1, std::memory_order_relaxed);
      if (result != nullptr) ++result->send_failures;
    } else {
      keys_sent_.fetch_add(n, std::memory_order_relaxed);
      bytes_sent_.fetch_add(n * (item.copy.key.size() + item.copy.value.size()),
                            std::memory_order_relaxed);
      if (result != nullptr) result->keys_sent += n;
    }
    if (item.keep) continue;
    // A copy this node does not hold, for a holder that was unreachable: kept as a hint and
    // sent again until the holder takes it, it leaves the ring or kHintLifetime passes (reads
    // here keep checking holders meanwhile, so it is never served).
    if (unreachable[i] && KeepHint(item.copy.key)) continue;
    // Readers whose ring is the one before may still ask here until the transition ends; the
    // walk that ends it drops the copy (unless it waits as a hint).
    if (item.linger || (item.targets.empty() && Hinted(item.copy.key))) continue;
    // Else dropped, also when a holder refused it: a copy this node no longer holds must not be
    // served later, when reads stop checking holders.
    if (store_->EraseIfVersion(item.copy.key, item.copy.version)) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

bool Handoff::Hinted(const std::string& key) {
  absl::MutexLock lock(&hints_mu_);
  return hints_.contains(key);
}

bool Handoff::KeepHint(const std::string& key) {
  const UnixMillis now = clock_->NowMillis();
  absl::MutexLock lock(&hints_mu_);
  auto [it, added] = hints_.try_emplace(key, now);
  if (added && hints_.size() > ReplicatedStore::kMaxStrays) {
    hints_.erase(it);
    return false;
  }
  if (now - it->second >= options_.hint_lifetime.count()) {
    hints_.erase(it);
    hints_pending_.store(hints_.size(), std::memory_order_relaxed);
    return false;
  }
  hints_pending_.store(hints_.size(), std::memory_order_relaxed);
  return true;
}

void Handoff::ForgetHint(const std::string& key) {
  absl::MutexLock lock(&hints_mu_);
  if (hints_.erase(key) > 0) hints_pending_.store(hints_.size(), std::memory_order_relaxed);
}

void Handoff::DeliverStrays() {
  bool overflowed = false;
  std::vector<std::string> keys = store_->TakeStrays(&overflowed);
  {
    // Hints are sent again at most once per stray_delay.
    absl::MutexLock lock(&hints_mu_);
    const UnixMillis now = clock_->NowMillis();
    if (!hints_.empty() && now - last_hint_round_ >= options_.stray_delay.count()) {
      last_hint_round_ = now;
      for (const auto& [key, since] : hints_) keys.push_back(key);
    }
  }
  const std::shared_ptr<const RingSnapshot> current = peers_.Ring();
  if (current == nullptr) return;
  if (overflowed) {
    // Too many to list: a walk against the ring itself finds every copy not held here.
    RunWalk({.before = current, .after = current}, nullptr);
    return;
  }
  const size_t n = store_->options().replicas;
  std::vector<Item> batch;
  for (const std::string& key : keys) {
    std::optional<Replica> copy;
    // Held here now (the ring moved to us), or gone (expired, evicted, dropped): no hint left.
    if (peers_.Holds(key, n) || !(copy = store_->HandoffCopy(key))) {
      ForgetHint(key);
      continue;
    }
    Item item{.copy = std::move(*copy), .keep = false};
    for (std::string_view name : current->Successors(key, n)) {
      if (name != self_) item.targets.emplace_back(name);
    }
    batch.push_back(std::move(item));
    if (batch.size() >= options_.batch_entries) {
      Send(batch, nullptr);
      batch.clear();
    }
  }
  if (!batch.empty()) Send(batch, nullptr);
}

bool Handoff::Pace(std::chrono::steady_clock::time_point start, uint64_t bytes, bool leaving) {
  absl::MutexLock lock(&mu_);
  if (options_.rate_bytes > 0) {
    const auto due = start + std::chrono::microseconds(static_cast<int64_t>(
                                 static_cast<double>(bytes) * 1e6 / options_.rate_bytes));
    const auto now = std::chrono::steady_clock::now();
    if (due > now) {
      // A background walk also wakes for a drain (it gives way to it).
      struct Wake {
        Handoff* h;
        bool leaving;
      } wake{this, leaving};
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](Wake* w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                 return w->h->stop_ || (w->h->draining_ && !w->leaving);
                               },
                               &wake),
                           absl::FromChrono(due - now));
    }
  }
  return !stop_;
}

DrainResult Handoff::Drain(const std::shared_ptr<const RingSnapshot>& after,
                           std::chrono::milliseconds budget, uint64_t since_version) {
  DrainResult result;
  std::shared_ptr<const RingSnapshot> before = peers_.Ring();
  if (before == nullptr || after == nullptr) return result;
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    mu_.Await(absl::Condition(
        +[](Handoff* h) ABSL_EXCLUSIVE_LOCKS_REQUIRED(h->mu_) { return !h->walking_; }, this));
  }
  result.watermark = store_->last_version();
  const WalkEnd end = RunWalk({.before = std::move(before),
                               .after = after,
                               .leaving = true,
                               .since_version = since_version,
                               .deadline = clock_->NowMillis() + budget.count()},
                              &result);
  result.complete = end == WalkEnd::kDone;
  {
    absl::MutexLock lock(&mu_);
    draining_ = false;
  }
  return result;
}

HandoffStats Handoff::stats() const {
  const uint64_t examined = examined_.load(std::memory_order_relaxed);
  const uint64_t total = to_examine_.load(std::memory_order_relaxed);
  return {.keys_sent = keys_sent_.load(std::memory_order_relaxed),
          .bytes_sent = bytes_sent_.load(std::memory_order_relaxed),
          .send_failures = send_failures_.load(std::memory_order_relaxed),
          .dropped = dropped_.load(std::memory_order_relaxed),
          .walks = walks_.load(std::memory_order_relaxed),
          .hints = hints_pending_.load(std::memory_order_relaxed),
          .backlog =
              in_walk_.load(std::memory_order_relaxed) && total > examined ? total - examined : 0};
}

}  // namespace nexus
