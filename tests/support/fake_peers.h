// In-process fakes of the cluster seam (cluster/peer.h) for unit tests: a peer that records what
// it was asked and answers at once, and a picker over this node plus fake members. Not for
// integration tests, which run real nodes (cluster.h).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cluster/peer.h"
#include "cluster/value.h"

namespace nexus::testing {

// A member for tests that use one or two of its calls: every call it does not override answers
// Unimplemented "not used".
class UnusedPeer : public Peer {
 public:
  void Get(std::string_view, std::string_view, ValueCallback done) override {
    done(absl::UnimplementedError("not used"));
  }
  void Peek(std::string_view, std::string_view, ValueCallback done) override {
    done(absl::UnimplementedError("not used"));
  }
  void Set(std::string_view, std::string_view, std::string_view, Expiry, bool,
           StatusCallback done) override {
    done(absl::UnimplementedError("not used"));
  }
  void Delete(std::string_view, std::string_view, StatusCallback done) override {
    done(absl::UnimplementedError("not used"));
  }
  void Replicate(std::string_view, const Replica&, StatusCallback done) override {
    done(absl::UnimplementedError("not used"));
  }
};

// A remote member that records every call and answers at once: Get with "remote:<key>"
// (deadline 42) or `error`, Set/Delete with OK, Replicate with OK or `replica_error`.
class RecordingPeer final : public Peer {
 public:
  void Get(std::string_view group, std::string_view key, ValueCallback done) override {
    calls.push_back("get " + std::string(group) + " " + std::string(key));
    if (error) return done(*error);
    done(CachedValue{.data = "remote:" + std::string(key), .deadline = 42});
  }
  // Answers with `copy` (deadline 42), else NotFound (or `error`).
  void Peek(std::string_view group, std::string_view key, ValueCallback done) override {
    calls.push_back("peek " + std::string(group) + " " + std::string(key));
    if (error) return done(*error);
    if (copy) return done(CachedValue{.data = *copy, .deadline = 42});
    done(absl::NotFoundError("no copy"));
  }
  void Set(std::string_view group, std::string_view key, std::string_view value, Expiry expiry,
           bool hot, StatusCallback done) override {
    calls.push_back("set " + std::string(group) + " " + std::string(key) + "=" +
                    std::string(value) +
                    (expiry.is_ttl() ? " ttl=" + std::to_string(expiry.ttl_ms)
                                     : " at=" + std::to_string(expiry.deadline)) +
                    (hot ? " hot" : ""));
    done(absl::OkStatus());
  }
  void Delete(std::string_view group, std::string_view key, StatusCallback done) override {
    calls.push_back("delete " + std::string(group) + " " + std::string(key));
    done(absl::OkStatus());
  }
  void Replicate(std::string_view, const Replica& r, StatusCallback done) override {
    replicas.push_back(r);
    if (replica_error) return done(*replica_error);
    done(absl::OkStatus());
  }

  std::vector<std::string> calls;
  std::vector<Replica> replicas;
  std::optional<absl::Status> error;
  std::optional<absl::Status> replica_error;
  std::optional<std::string> copy;
};

// A member that is down: every call fails with Unavailable, as a refused connection does.
class UnreachablePeer final : public Peer {
 public:
  void Get(std::string_view, std::string_view, ValueCallback done) override { done(Down()); }
  void Peek(std::string_view, std::string_view, ValueCallback done) override { done(Down()); }
  void Set(std::string_view, std::string_view, std::string_view, Expiry, bool,
           StatusCallback done) override {
    done(Down());
  }
  void Delete(std::string_view, std::string_view, StatusCallback done) override { done(Down()); }
  void Replicate(std::string_view, const Replica&, StatusCallback done) override { done(Down()); }
  int calls() const { return calls_; }

 private:
  absl::Status Down() {
    ++calls_;
    return absl::UnavailableError("peer down: connection refused");
  }
  int calls_ = 0;
};

// This node plus `others`. `owner(key)` names a key's owner (one of `others`, or null for this
// node). A replica set is the owner, then `others` in their order, then this node (when it is
// not the owner), so kEveryMember is the whole cluster.
class FakePicker final : public PeerPicker {
 public:
  using OwnerFn = std::function<std::shared_ptr<Peer>(std::string_view key)>;
  FakePicker(std::vector<std::shared_ptr<Peer>> others, OwnerFn owner)
      : others_(std::move(others)), owner_(std::move(owner)) {}

  // This node owns every key; `others` stand for the rest of the cluster.
  static std::shared_ptr<FakePicker> OwnerOfAll(std::vector<std::shared_ptr<Peer>> others) {
    return std::make_shared<FakePicker>(std::move(others),
                                        [](std::string_view) { return nullptr; });
  }
  // `owner` owns every key (this node owns none).
  static std::shared_ptr<FakePicker> OwnedBy(std::shared_ptr<Peer> owner) {
    return std::make_shared<FakePicker>(std::vector<std::shared_ptr<Peer>>{owner},
                                        [owner](std::string_view) { return owner; });
  }
  // Keys starting with `prefix` belong to `peer`, the rest to this node.
  static std::shared_ptr<FakePicker> ByPrefix(std::shared_ptr<Peer> peer, std::string prefix) {
    return std::make_shared<FakePicker>(std::vector<std::shared_ptr<Peer>>{peer},
                                        [peer, prefix = std::move(prefix)](std::string_view key) {
                                          return key.starts_with(prefix) ? peer : nullptr;
                                        });
  }

  std::shared_ptr<Peer> PickPeer(std::string_view key) override { return owner_(key); }
  ReplicaSet PickReplicas(std::string_view key, size_t n) override {
    std::vector<std::shared_ptr<Peer>> all;
    const std::shared_ptr<Peer> owner = PickPeer(key);
    all.push_back(owner);
    for (const std::shared_ptr<Peer>& p : others_) {
      if (p != owner) all.push_back(p);
    }
    if (owner != nullptr) all.push_back(nullptr);
    if (all.size() > n) all.resize(n);
    return {.generation = 1, .members = std::move(all)};
  }

 private:
  std::vector<std::shared_ptr<Peer>> others_;
  OwnerFn owner_;
};

}  // namespace nexus::testing
