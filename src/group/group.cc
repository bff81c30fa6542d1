#include "group/group.h"

#include <spdlog/spdlog.h>

#include <random>
#include <utility>

#include "common/trace_log.h"

namespace nexus {

namespace {

absl::Status ValidateKey(std::string_view key) {
  if (key.empty()) return absl::InvalidArgumentError("key must not be empty");
  return absl::OkStatus();
}

uint64_t SeedOrRandom(const std::optional<uint64_t>& seed) {
  return seed.has_value() ? *seed : std::random_device{}();
}

}  // namespace

Group::Group(GroupOptions options, std::shared_ptr<Loader> loader,
             std::shared_ptr<PeerPicker> peers, const Clock* clock)
    : options_(std::move(options)),
      clock_(clock),
      loader_(std::move(loader)),
      peers_(peers ? std::move(peers) : std::make_shared<NoPeers>()),
      jitter_(options_.jitter, SeedOrRandom(options_.jitter_seed)),
      store_({.group = options_.name,
              .main_bytes = options_.cache_bytes,
              .hot_bytes = options_.hot_cache_bytes,
              .shard_bits = options_.shard_bits,
              .replicas = options_.replicas,
              .write_quorum = options_.write_quorum},
             peers_, clock),
      handoff_(options_.handoff, &store_, clock) {}

bool Group::LookupCounted(std::string_view key, CachedValue* out, bool held_only) {
  const bool hit = store_.Lookup(key, out, held_only);
  (hit ? hits_ : misses_).fetch_add(1, std::memory_order_relaxed);
  return hit;
}

namespace {

// The trace log (common/trace_log.h): every read with where it was answered.
ValueCallback Traced(std::string_view what, std::string_view key, ValueCallback done) {
  return [what = std::string(what), key = std::string(key),
          done = std::move(done)](absl::StatusOr<CachedValue> r) mutable {
    spdlog::trace("{} '{}': {}", what, key,
                  r.ok() ? "'" + r->data + "'" : std::string(r.status().message()));
    done(std::move(r));
  };
}

}  // namespace

void Group::Get(std::string_view key, ValueCallback done) {
  if (absl::Status s = ValidateKey(key); !s.ok()) return done(s);
  // Without its lease (R > 1), the others may have dropped this node and taken newer writes
  // for its keys: a holder they still reach answers first, and this node's copy only when
  // none answers.
  if (options_.replicas > 1 && options_.primary_check && !options_.primary_check().ok()) {
    if (std::shared_ptr<Peer> other = FirstOtherHolder(key); other != nullptr) {
      if (TraceLogOn()) done = Traced("get (without lease)", key, std::move(done));
      return Load(key, std::move(other), std::move(done), /*here_first=*/false);
    }
  }
  CachedValue hit;
  // A copy this node stopped holding (the membership changed) is not served to a client.
  if (LookupCounted(key, &hit, /*held_only=*/true)) {
    if (TraceLogOn()) spdlog::trace("get '{}': here '{}'", key, hit.data);
    return done(std::move(hit));
  }
  std::shared_ptr<Peer> owner = peers_->PickPeer(key);
  if (TraceLogOn()) {
    done =
        Traced(store_.verifying_holders() ? "get (checking holders)" : "get", key, std::move(done));
  }
  if (!store_.verifying_holders()) return Load(key, std::move(owner), std::move(done));
  // While the membership changes, the read goes where every write went (ReplicatedStore);
  // if that holder has no copy (nodes that joined together read from rings that differ),
  // the current owner answers.
  std::shared_ptr<Peer> former = store_.ReadTarget(key);
  if (former == owner) return Load(key, std::move(owner), std::move(done));
  Load(key, std::move(former),
       [this, key = std::string(key), owner = std::move(owner),
        done = std::move(done)](absl::StatusOr<CachedValue> r) mutable {
         // (A deleted key's tombstone there is the answer: the owner's copy may be older.)
         if (!absl::IsNotFound(r.status()) || IsDeleted(r.status())) return done(std::move(r));
         Load(key, std::move(owner), std::move(done));
       });
}

std::shared_ptr<Peer> Group::FirstOtherHolder(std::string_view key) const {
  for (std::shared_ptr<Peer>& p : peers_->PickReplicas(key, options_.replicas).members) {
    if (p != nullptr) return std::move(p);
  }
  return nullptr;
}

absl::Status Group::PeerReadsServed() const {
  if (options_.replicas <= 1 || !left_.load(std::memory_order_acquire)) return absl::OkStatus();
  return absl::UnavailableError(
      "this node left the membership: its copies may be behind the "
      "other holders'");
}

void Group::GetLocal(std::string_view key, ValueCallback done) {
  if (absl::Status s = ValidateKey(key); !s.ok()) return done(s);
  if (absl::Status s = PeerReadsServed(); !s.ok()) return done(s);
  if (TraceLogOn()) done = Traced("peer get", key, std::move(done));
  CachedValue hit;
  if (LookupCounted(key, &hit, /*held_only=*/false)) return done(std::move(hit));
  Load(key, nullptr, std::move(done));
}

absl::StatusOr<CachedValue> Group::Peek(std::string_view key) {
  if (absl::Status s = ValidateKey(key); !s.ok()) return s;
  if (absl::Status s = PeerReadsServed(); !s.ok()) return s;
  CachedValue copy;
  // Not a copy that may have fallen behind (one this node is not to serve now).
  if (store_.Lookup(key, &copy, /*held_only=*/true)) return copy;
  return absl::NotFoundError("no copy here");
}

void Group::Load(std::string_view key, std::shared_ptr<Peer> owner, ValueCallback done,
                 bool here_first) {
  // Loads from the origin and fetches from a peer never share a flight: a forwarded GetLocal
  // joining this node's own peer fetch for the key would wait on itself (a ring that points a
  // key back at us, or two nodes that disagree about the owner, would deadlock until the
  // peer deadline). Nor do fetches that must not be answered from here.
  const std::string flight_key =
      (owner == nullptr ? "L:" : (here_first ? "P:" : "R:")) + std::string(key);
  flight_.Do(
      flight_key,
      [this, key = std::string(key), owner = std::move(owner),
       here_first](Flight<CachedValue>::Done fd) mutable {
        // A value may have landed while this caller was deciding to load: check again.
        CachedValue hit;
        if (here_first && store_.Lookup(key, &hit, /*held_only=*/owner != nullptr)) {
          return fd(std::move(hit));
        }
        if (owner == nullptr) {
          std::vector<std::shared_ptr<Peer>> others;
          // (A tombstone here is the answer: the key was deleted, not lost.)
          if (options_.replicas > 1 && !store_.Deleted(key)) {
            others = peers_->PickReplicas(key, options_.replicas).members;
            std::erase(others, nullptr);
          }
          return LoadAsPrimary(std::move(key), std::move(others), std::move(fd));
        }
        FetchFrom(std::move(key), std::move(owner), std::nullopt, std::move(fd));
      },
      [this, done = std::move(done)](const absl::StatusOr<CachedValue>& r, bool shared) mutable {
        if (shared) deduplicated_.fetch_add(1, std::memory_order_relaxed);
        done(r);
      });
}

void Group::CountPeerError(const absl::Status& status) {
  if (!status.ok() && !absl::IsNotFound(status)) {
    peer_errors_.fetch_add(1, std::memory_order_relaxed);
  }
}

bool Group::NextHolder(const absl::Status& status, std::string_view key,
                       const std::shared_ptr<Peer>& failed, Holders& rest,
                       std::shared_ptr<Peer>* next) {
  if (status.ok() || !IsUnreachable(status) || options_.replicas <= 1) return false;
  if (!rest) {
    rest = peers_->PickReplicas(key, options_.replicas).members;
    std::erase(*rest, failed);
  }
  if (rest->empty()) return false;
  *next = std::move(rest->front());
  rest->erase(rest->begin());
  fallbacks_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void Group::FetchFrom(std::string key, std::shared_ptr<Peer> holder, Holders rest,
                      Flight<CachedValue>::Done fd) {
  if (holder == nullptr) {
    // The holders before this one were unreachable: this node answers as the primary.
    CachedValue hit;
    if (store_.Lookup(key, &hit, /*held_only=*/false)) return fd(std::move(hit));
    if (!rest || store_.Deleted(key)) return LoadFromLoader(key, std::move(fd));
    return LoadAsPrimary(std::move(key), std::move(*rest), std::move(fd));
  }
  peer_gets_.fetch_add(1, std::memory_order_relaxed);
  if (options_.replicas <= 1) {
    // No other holder to try: the callback needs neither the key nor the rest (a forwarded
    // GET's fast path, 200 instructions cheaper).
    return holder->Get(options_.name, key,
                       [this, fd = std::move(fd)](absl::StatusOr<CachedValue> r) mutable {
                         CountPeerError(r.status());
                         fd(std::move(r));
                       });
  }
  holder->Get(options_.name, key,
              [this, key, holder, rest = std::move(rest),
               fd = std::move(fd)](absl::StatusOr<CachedValue> r) mutable {
                CountPeerError(r.status());
                std::shared_ptr<Peer> next;
                if (NextHolder(r.status(), key, holder, rest, &next)) {
                  return FetchFrom(std::move(key), std::move(next), std::move(rest), std::move(fd));
                }
                fd(std::move(r));
              });
}

void Group::LoadAsPrimary(std::string key, std::vector<std::shared_ptr<Peer>> others,
                          Flight<CachedValue>::Done fd) {
  if (others.empty()) return LoadFromLoader(key, std::move(fd));
  std::shared_ptr<Peer> holder = std::move(others.front());
  others.erase(others.begin());
  holder->Peek(options_.name, key,
               [this, key, others = std::move(others),
                fd = std::move(fd)](absl::StatusOr<CachedValue> r) mutable {
                 if (!r.ok())
                   return LoadAsPrimary(std::move(key), std::move(others), std::move(fd));
                 holder_reads_.fetch_add(1, std::memory_order_relaxed);
                 fd(std::move(r));
               });
}

void Group::LoadFromLoader(const std::string& key, Flight<CachedValue>::Done fd) {
  if (loader_ == nullptr) {
    return fd(store_.Deleted(key) ? DeletedError() : absl::NotFoundError("key not found"));
  }
  loads_.fetch_add(1, std::memory_order_relaxed);
  loader_->Load(key, [this, key, fd = std::move(fd)](absl::StatusOr<std::string> r) mutable {
    if (!r.ok()) {
      if (!absl::IsNotFound(r.status())) load_errors_.fetch_add(1, std::memory_order_relaxed);
      return fd(r.status());
    }
    fd(store_.Fill(key,
                   {.data = std::move(*r),
                    .deadline = jitter_.Deadline(clock_->NowMillis(), options_.default_ttl_ms)}));
  });
}

void Group::Set(std::string_view key, std::string_view value, Expiry expiry, bool hot,
                StatusCallback done) {
  if (absl::Status s = ValidateKey(key); !s.ok()) return done(s);
  if (!expiry.valid()) return done(absl::InvalidArgumentError("ttl must be positive"));
  std::shared_ptr<Peer> owner = peers_->PickPeer(key);
  if (options_.replicas <= 1) {
    if (owner == nullptr) return SetLocal(key, value, expiry, hot, std::move(done));
    return owner->Set(options_.name, key, value, expiry, hot, std::move(done));
  }
  SetAt(std::string(key), std::string(value), expiry, hot, std::move(owner), std::nullopt,
        std::move(done));
}

bool Group::RefusedHere(std::string_view key, Holders& rest, std::shared_ptr<Peer>* next) {
  if (!options_.primary_check) return false;
  const absl::Status refused = options_.primary_check();
  return !refused.ok() && NextHolder(refused, key, nullptr, rest, next);
}

void Group::SetAt(std::string key, std::string value, Expiry expiry, bool hot,
                  std::shared_ptr<Peer> holder, Holders rest, StatusCallback done) {
  if (holder == nullptr) {
    // This node may not act as primary now (its lease): the next holder does, as for an
    // unreachable one.
    if (RefusedHere(key, rest, &holder)) {
      return SetAt(std::move(key), std::move(value), expiry, hot, std::move(holder),
                   std::move(rest), std::move(done));
    }
    return SetLocal(key, value, expiry, hot, std::move(done));
  }
  holder->Set(options_.name, key, value, expiry, hot,
              [this, key, value, expiry, hot, holder, rest = std::move(rest),
               done = std::move(done)](absl::Status s) mutable {
                std::shared_ptr<Peer> next;
                if (NextHolder(s, key, holder, rest, &next)) {
                  return SetAt(std::move(key), std::move(value), expiry, hot, std::move(next),
                               std::move(rest), std::move(done));
                }
                done(std::move(s));
              });
}

absl::Status Group::MayWriteAsPrimary(std::string_view key) const {
  if (absl::Status s = ValidateKey(key); !s.ok()) return s;
  return options_.primary_check ? options_.primary_check() : absl::OkStatus();
}

void Group::SetLocal(std::string_view key, std::string_view value, Expiry expiry, bool hot,
                     StatusCallback done) {
  if (absl::Status s = MayWriteAsPrimary(key); !s.ok()) return done(s);
  if (!expiry.valid()) return done(absl::InvalidArgumentError("ttl must be positive"));
  if (!expiry.is_ttl()) return StoreLocal(key, value, expiry.deadline, hot, std::move(done));
  store_.Write(key, value, jitter_.Deadline(clock_->NowMillis(), expiry.ttl_ms), hot,
               std::move(done));
}

void Group::StoreLocal(std::string_view key, std::string_view value, UnixMillis deadline, bool hot,
                       StatusCallback done) {
  if (absl::Status s = MayWriteAsPrimary(key); !s.ok()) return done(s);
  store_.Write(key, value, deadline, hot, std::move(done));
}

void Group::Delete(std::string_view key, StatusCallback done) {
  if (absl::Status s = ValidateKey(key); !s.ok()) return done(s);
  std::shared_ptr<Peer> owner = peers_->PickPeer(key);
  if (options_.replicas <= 1) {
    if (owner == nullptr) return DeleteLocal(key, std::move(done));
    return owner->Delete(options_.name, key, std::move(done));
  }
  DeleteAt(std::string(key), std::move(owner), std::nullopt, std::move(done));
}

void Group::DeleteAt(std::string key, std::shared_ptr<Peer> holder, Holders rest,
                     StatusCallback done) {
  if (holder == nullptr) {
    if (RefusedHere(key, rest, &holder)) {
      return DeleteAt(std::move(key), std::move(holder), std::move(rest), std::move(done));
    }
    return DeleteLocal(key, std::move(done));
  }
  holder->Delete(
      options_.name, key,
      [this, key, holder, rest = std::move(rest), done = std::move(done)](absl::Status s) mutable {
        std::shared_ptr<Peer> next;
        if (NextHolder(s, key, holder, rest, &next)) {
          return DeleteAt(std::move(key), std::move(next), std::move(rest), std::move(done));
        }
        done(std::move(s));
      });
}

void Group::DeleteLocal(std::string_view key, StatusCallback done) {
  if (absl::Status s = MayWriteAsPrimary(key); !s.ok()) return done(s);
  store_.Remove(key, std::move(done));
}

GroupStats Group::stats() const {
  GroupStats s;
  s.main = store_.main().stats();
  s.hot = store_.hot().stats();
  s.hits = hits_.load(std::memory_order_relaxed);
  s.misses = misses_.load(std::memory_order_relaxed);
  s.loads = loads_.load(std::memory_order_relaxed);
  s.load_errors = load_errors_.load(std::memory_order_relaxed);
  s.deduplicated = deduplicated_.load(std::memory_order_relaxed);
  s.peer_gets = peer_gets_.load(std::memory_order_relaxed);
  s.peer_errors = peer_errors_.load(std::memory_order_relaxed);
  s.fallbacks = fallbacks_.load(std::memory_order_relaxed);
  s.holder_reads = holder_reads_.load(std::memory_order_relaxed);
  s.replication = store_.stats();
  return s;
}

}  // namespace nexus
