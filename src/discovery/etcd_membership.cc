#include "discovery/etcd_membership.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace nexus {

namespace {

// The first retry after a failed etcd call (registration, keepalive or watch); it doubles up to
// the options' max_backoff.
constexpr std::chrono::milliseconds kInitialBackoff{100};

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

std::chrono::milliseconds NextBackoff(std::chrono::milliseconds current,
                                      std::chrono::milliseconds cap) {
  return std::min(cap, current * 2);
}

// Retries must come back well within a lease TTL: when etcd returns it restores the old
// leases, which then expire one TTL later; a node that re-registers after that drops out of
// every ring for a moment.
EtcdMembershipOptions CapBackoff(EtcdMembershipOptions o) {
  const auto quarter_ttl = std::chrono::milliseconds(o.lease_ttl_seconds * 1000 / 4);
  o.max_backoff = std::max(kInitialBackoff, std::min(o.max_backoff, quarter_ttl));
  return o;
}

}  // namespace

EtcdMembership::EtcdMembership(EtcdMembershipOptions options, OnChange on_change)
    : options_(CapBackoff(std::move(options))),
      on_change_(std::move(on_change)),
      client_(EtcdClientOptions{.endpoints = options_.endpoints,
                                .unary_timeout = options_.unary_timeout,
                                .credentials = options_.credentials}),
      view_(options_.prefix) {}

EtcdMembership::~EtcdMembership() { Stop(); }

void EtcdMembership::Start() {
  register_thread_ = std::thread([this] { RegisterLoop(); });
  watch_thread_ = std::thread([this] { WatchLoop(); });
}

void EtcdMembership::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (register_thread_.joinable()) register_thread_.join();
  if (watch_thread_.joinable()) watch_thread_.join();
}

std::map<std::string, MemberInfo> EtcdMembership::members() const {
  absl::MutexLock lock(&mu_);
  return members_;
}

bool EtcdMembership::SleepUnlessStopping(std::chrono::milliseconds d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::FromChrono(d));
  return !stopping_;
}

void EtcdMembership::Publish(const std::map<std::string, MemberInfo>& members) {
  {
    absl::MutexLock lock(&mu_);
    members_ = members;
  }
  std::string names;
  for (const auto& [name, addr] : members) names += (names.empty() ? "" : ", ") + name;
  spdlog::info("discovery: members from etcd: [{}]", names);
  on_change_(members);
}

namespace {

// A keepalive's TTL counts from when etcd handled it, a little before its answer arrived.
constexpr auto kLeaseMargin = std::chrono::milliseconds(500);

int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void EtcdMembership::ExtendLease(int64_t ttl_seconds) {
  const auto valid = std::chrono::seconds(ttl_seconds) - kLeaseMargin;
  lease_valid_until_.store(
      SteadyNanos() + std::chrono::duration_cast<std::chrono::nanoseconds>(valid).count(),
      std::memory_order_release);
}

bool EtcdMembership::HoldsLease() const {
  return SteadyNanos() < lease_valid_until_.load(std::memory_order_acquire);
}

void EtcdMembership::RegisterLoop() {
  const std::string key = options_.prefix + options_.self.name;
  const std::string value = MemberInfoToJson(options_.self);
  // Keepalives at a third of the TTL: two can be lost before the lease expires.
  const auto interval =
      std::chrono::milliseconds(std::max<int64_t>(300, options_.lease_ttl_seconds * 1000 / 3));
  auto backoff = kInitialBackoff;
  bool reported_outage = false;
  bool first = true;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    // (Before the Put: a read or write served between the others' seeing this node and the
    // callback would answer from copies that missed their writes.)
    if (!first && options_.on_reregistering) options_.on_reregistering();
    auto lease = client_.Grant(options_.lease_ttl_seconds);
    absl::StatusOr<int64_t> put =
        lease.ok() ? client_.Put(key, value, lease->id) : absl::StatusOr<int64_t>(lease.status());
    if (!put.ok()) {
      if (!reported_outage) {
        spdlog::warn(
            "discovery: cannot register with etcd at {} ({}); serving with the last "
            "known ring and retrying",
            Join(options_.endpoints), std::string(put.status().message()));
        reported_outage = true;
      }
      if (lease.ok()) client_.Revoke(lease->id).IgnoreError();
      if (!SleepUnlessStopping(backoff)) return;
      backoff = NextBackoff(backoff, options_.max_backoff);
      continue;
    }
    spdlog::info("discovery: registered {} (lease {:x}, ttl {} s)", key, lease->id,
                 lease->ttl_seconds);
    registered_ = true;
    ExtendLease(lease->ttl_seconds);
    reported_outage = false;
    if (!first && options_.on_reregistered) options_.on_reregistered();
    first = false;

    absl::Notification lost;
    std::atomic<bool> lost_flag{false};
    std::atomic<bool> kept_alive{false};
    auto mark_lost = [&lost, &lost_flag] {
      if (!lost_flag.exchange(true)) lost.Notify();
    };
    auto stream = client_.KeepAlive(
        lease->id, interval,
        [&](int64_t ttl) {
          if (ttl > 0) {
            kept_alive = true;
            ExtendLease(ttl);
          }
          if (ttl <= 0) {
            lease_valid_until_.store(0, std::memory_order_release);
            spdlog::warn("discovery: etcd says lease {:x} is gone", lease->id);
            mark_lost();
          }
        },
        [&](const absl::Status& s) {
          spdlog::warn("discovery: keepalive stream ended: {}", std::string(s.message()));
          mark_lost();
        });
    // Wait for the lease to be lost or for Stop().
    while (!lost.HasBeenNotified()) {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(100));
      if (stopping_) break;
    }
    stream->Stop();
    registered_ = false;
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      stopping = stopping_;
    }
    if (stopping) {
      // Leave every ring now rather than after the TTL (and stop acting on the lease first).
      lease_valid_until_.store(0, std::memory_order_release);
      if (absl::Status s = client_.Revoke(lease->id); s.ok()) {
        spdlog::info("discovery: revoked lease {:x}; {} left the cluster", lease->id, key);
      } else {
        spdlog::warn("discovery: could not revoke lease {:x}: {}", lease->id,
                     std::string(s.message()));
      }
      return;
    }
    // Best effort: the old lease may still be alive (the stream broke, not the lease); it must
    // not keep a stale registration around, and a stop during the sleep below must not leave
    // one behind either.
    // (While etcd is unreachable the revoke fails and the lease lives until its TTL ran out
    // since the last keepalive; HoldsLease says so.)
    if (client_.Revoke(lease->id).ok()) lease_valid_until_.store(0, std::memory_order_release);
    // Back off harder when the stream never carried a keepalive, so a stream that breaks at
    // once does not turn into a grant/put loop.
    backoff = kept_alive ? kInitialBackoff : NextBackoff(backoff, options_.max_backoff);
    spdlog::info("discovery: re-registering {}", key);
    if (!SleepUnlessStopping(backoff)) return;
  }
}

void EtcdMembership::WatchLoop() {
  auto backoff = kInitialBackoff;
  bool reported_outage = false;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    auto read = client_.RangePrefix(options_.prefix);
    if (!read.ok()) {
      if (!reported_outage) {
        spdlog::warn(
            "discovery: cannot read {} from etcd at {} ({}); keeping the last known "
            "ring and retrying",
            options_.prefix, Join(options_.endpoints), std::string(read.status().message()));
        reported_outage = true;
      }
      if (!SleepUnlessStopping(backoff)) return;
      backoff = NextBackoff(backoff, options_.max_backoff);
      continue;
    }
    reported_outage = false;
    backoff = kInitialBackoff;
    std::vector<MembershipEntry> entries;
    for (const auto& kv : read->kvs) entries.push_back({kv.key, kv.value, kv.mod_revision});
    std::map<std::string, MemberInfo> members;
    bool changed;
    {
      absl::MutexLock lock(&mu_);
      changed = view_.Reset(entries, read->revision) || members_.empty();
      members = view_.Nodes();
    }
    if (changed) Publish(members);

    absl::Notification ended;
    auto watch = client_.WatchPrefix(
        options_.prefix, read->revision + 1,
        [this](const std::vector<WatchEvent>& events, int64_t /*revision*/) {
          bool any = false;
          std::map<std::string, MemberInfo> now;
          {
            absl::MutexLock lock(&mu_);
            for (const WatchEvent& e : events) {
              any |= view_.Apply({e.type == WatchEvent::Type::kPut ? MembershipEvent::Type::kPut
                                                                   : MembershipEvent::Type::kDelete,
                                  e.key, e.value, e.mod_revision});
            }
            now = view_.Nodes();
          }
          if (any) Publish(now);
        },
        [&ended](const absl::Status& s, int64_t compact_revision) {
          if (compact_revision > 0) {
            spdlog::info("discovery: watch compacted at revision {}; reading again",
                         compact_revision);
          } else {
            spdlog::warn("discovery: watch ended: {}", std::string(s.message()));
          }
          ended.Notify();
        });
    while (!ended.HasBeenNotified()) {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(100));
      if (stopping_) break;
    }
    watch->Stop();
    if (!SleepUnlessStopping(backoff)) return;
  }
}

}  // namespace nexus
