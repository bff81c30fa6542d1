#include "peer/forwarder.h"

#include <algorithm>
#include <cerrno>
#include <deque>
#include <optional>
#include <utility>
#include <variant>

#include "absl/strings/cord.h"
#include "auth/cluster_secret.h"
#include "common/parse.h"
#include "http/decoder.h"
#include "http/message.h"
#include "io/connection.h"
#include "peer/http_wire.h"
#include "spdlog/spdlog.h"

namespace nexus {

namespace {

// "&answer_by=<unix ms>": when this call stops waiting (the owner does not apply a write that
// arrives later: OwnerSet::answer_by).
std::string AnswerBy(const ForwardTarget& target) {
  const auto by = std::chrono::system_clock::now() + target.deadline;
  return "&answer_by=" +
         std::to_string(
             std::chrono::duration_cast<std::chrono::milliseconds>(by.time_since_epoch()).count());
}

using TimePoint = std::chrono::steady_clock::time_point;

constexpr char kTransportPayload[] = "nexus.peer/transport";
constexpr char kNoRoutesPayload[] = "nexus.peer/no-routes";
constexpr size_t kReadChunk = 64 * 1024;

absl::Status TransportFailure(absl::Status status) {
  status.SetPayload(kTransportPayload, absl::Cord("1"));
  return status;
}

std::string Who(const ForwardTarget& t) { return "peer " + t.name + " (" + t.address + ")"; }

absl::Status Unavailable(const ForwardTarget& t, std::string_view why) {
  return TransportFailure(absl::UnavailableError(Who(t) + " unavailable: " + std::string(why)));
}

// "<method> <path>?group=G&key=K<extra> HTTP/1.1", the Host header and the cluster secret.
std::string RequestHead(std::string_view method, std::string_view path, const ForwardTarget& t,
                        std::string_view group, std::string_view key, std::string_view extra) {
  std::string r;
  r.reserve(96 + group.size() + key.size() + t.address.size());
  r.append(method).append(" ").append(path).append("?group=");
  http::AppendUrlEncoded(r, group);
  r.append("&key=");
  http::AppendUrlEncoded(r, key);
  r.append(extra).append(" HTTP/1.1\r\nHost: ").append(t.address).append("\r\n");
  if (!t.secret.empty()) {
    r.append(auth::kClusterSecretHeader).append(": ").append(t.secret).append("\r\n");
  }
  return r;
}

}  // namespace

std::optional<absl::StatusOr<CachedValue>> TakeAnswer(const ForwardTarget& from,
                                                      http::ResponseDecoder& decoder) {
  const int http_status = decoder.status();
  if (http_status >= 100 && http_status < 200) return std::nullopt;
  const std::optional<std::string_view> status_field = decoder.Header(peerwire::kStatusHeader);
  std::string body = decoder.TakeBody();
  int64_t code = 0;
  if (!status_field || !ParseInt(*status_field, &code) || code < 0 || code > 16) {
    // Not from the forwarding routes: 404/405 mean the owner does not serve them (an older
    // version); anything else is the owner's HTTP server rejecting the request (e.g. 413 when
    // its --max-value-bytes is smaller) or failing.
    const std::string what = Who(from) + " answered HTTP " + std::to_string(http_status);
    switch (http_status) {
      case 404:
      case 405: {
        absl::Status s =
            absl::UnimplementedError(what + " without " + std::string(peerwire::kStatusHeader) +
                                     ": it does not serve the forwarding routes");
        s.SetPayload(kNoRoutesPayload, absl::Cord("1"));
        return s;
      }
      case 400:
      case 431:
        return absl::InvalidArgumentError(what + ": " + body);
      case 413:
        return absl::ResourceExhaustedError(what + ": " + body);
      default:
        return absl::InternalError(what + ": " + body);
    }
  }
  if (code == static_cast<int64_t>(absl::StatusCode::kUnauthenticated)) {
    // The owner refused this node (its cluster secret), not the client: not a 401 for it.
    return absl::InternalError(Who(from) + " refused the call: " + body);
  }
  if (code != 0) {
    if (body.empty())
      body = Who(from) + " answered status " + std::to_string(code) + " without a message";
    return absl::Status(static_cast<absl::StatusCode>(code), std::move(body));
  }
  int64_t deadline = 0;
  if (auto d = decoder.Header(peerwire::kDeadlineHeader)) ParseInt(*d, &deadline);
  return CachedValue{.data = std::move(body), .deadline = deadline == 0 ? kNoDeadline : deadline};
}

bool IsTransportFailure(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kTransportPayload).has_value();
}

bool IsNoRoutes(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kNoRoutesPayload).has_value();
}

// A call waiting for its answer.
struct Forwarder::Pending {
  std::variant<ValueCallback, StatusCallback> done;
  TimePoint sent;
  TimePoint deadline;

  void Complete(absl::StatusOr<CachedValue> result) {
    if (auto* value_done = std::get_if<ValueCallback>(&done))
      return (*value_done)(std::move(result));
    std::get<StatusCallback>(done)(result.status());
  }
};

// One keep-alive connection to a peer's HTTP port. Answers arrive in request order, so the
// pending calls are a FIFO.
class Forwarder::Upstream final : public io::BufferedSocket {
 public:
  Upstream(Forwarder* owner, const ForwardTarget& target)
      : io::BufferedSocket(owner->loop_, kReadChunk), owner_(owner), target_(target) {
    if (target_.tls != nullptr) UseTls(target_.tls, target_.name, Who(target_));
  }

  absl::Status Open() {
    if (absl::Status s = Connect(target_.sockaddr); !s.ok()) {
      return Unavailable(target_, std::string(s.message()));
    }
    last_used_ = owner_->loop_->now();
    return absl::OkStatus();
  }

  std::string pool_key() const { return target_.PoolKey(); }
  size_t in_flight() const { return pending_.size(); }
  bool Stalled(TimePoint now) const { return WaitingLongerThan(now, kStallAfter); }
  // The oldest request has waited longer than `d`.
  bool WaitingLongerThan(TimePoint now, std::chrono::milliseconds d) const {
    return !pending_.empty() && now - pending_.front().sent > d;
  }
  bool IdleSince(TimePoint t) const { return pending_.empty() && last_used_ < t; }

  void Enqueue(std::string request, Pending pending) {
    last_used_ = pending.sent;
    output().append(request);
    pending_.push_back(std::move(pending));
    owner_->Dirty(this);
  }

  void OnConnectFailed(int err) override {
    Fail(Unavailable(target_, err == EPROTO && !tls_error().empty()
                                  ? "TLS handshake: " + tls_error()
                                  : "connect: " + io::ErrnoText(err)));
  }

  void OnReady(uint32_t) override {
    if (closed_) return;
    Read();
    if (closed_) return;
    FlushOutput();
  }

  void FlushOutput() {
    if (closed_ || connecting()) return;  // the connect's EPOLLOUT flushes
    if (const int err = Flush(); err != 0) {
      return Fail(Unavailable(target_, "send: " + io::ErrnoText(err)));
    }
  }

  // Fails every pending call with `status` and closes the connection.
  void Fail(const absl::Status& status) { Fail(status, status); }
  // The same with `first` for the oldest call (the one the failure is about) and `rest` for
  // the calls behind it.
  void Fail(const absl::Status& first, const absl::Status& rest) {
    if (closed_) return;
    Close();
    std::deque<Pending> failed = std::exchange(pending_, {});
    for (size_t i = 0; i < failed.size(); ++i) failed[i].Complete(i == 0 ? first : rest);
  }

  void CheckDeadline(TimePoint now) {
    if (closed_) return;
    if (!pending_.empty() && now >= pending_.front().deadline) {
      // The calls behind the late one fail now too (nothing behind a stuck answer can be
      // read), and are not marked for a retry: they waited already, and the owner may have
      // run some of them.
      return Fail(
          TransportFailure(absl::DeadlineExceededError(Who(target_) + ": deadline exceeded after " +
                                                       std::to_string(target_.deadline.count()) +
                                                       " ms")),
          absl::UnavailableError(Who(target_) + ": abandoned behind a request that timed out"));
    }
    if (IdleSince(now - kIdleClose)) Close();
  }

 private:
  void Close() {
    if (closed_) return;
    closed_ = true;
    CloseSocket();
    owner_->Remove(this);  // hands this object to the loop, which frees it after the turn
  }

  // Reads and parses until the socket is drained (to the EOF once the owner's FIN was seen).
  void Read() {
    while (readable()) {
      switch (ReadSome()) {
        case ReadResult::kData:
          if (!Parse()) return;
          continue;
        case ReadResult::kDrained:
          return;
        case ReadResult::kError:
          return Fail(Unavailable(target_, "recv: " + read_error_text()));
        case ReadResult::kEof:
          // The owner closed (its idle timeout, a restart, or it answered "Connection: close").
          if (pending_.empty()) return Close();
          return Fail(Unavailable(target_, "connection closed before the answer"));
      }
    }
  }

  // Feeds the received bytes to the parser, completing calls as their answers end. False when
  // the connection failed (and this object must not be touched any more). What the parser
  // cannot use yet (an incomplete header) stays in the input buffer for the next read.
  bool Parse() {
    while (!input().empty()) {
      const http::ResponseDecoder::Fed fed = decoder_.Feed(input());
      Consume(fed.used);
      switch (fed.state) {
        case http::ResponseDecoder::State::kNeedMore:
          return true;  // (an incomplete header stays in the input buffer)
        case http::ResponseDecoder::State::kTooLarge:
          Fail(absl::ResourceExhaustedError(Who(target_) + " answered more than " +
                                            std::to_string(target_.max_response_bytes) + " bytes"),
               Unavailable(target_, "abandoned behind an answer that was too large"));
          return false;
        case http::ResponseDecoder::State::kError:
          Fail(Unavailable(target_, "bad answer: " + decoder_.error_text()));
          return false;
        case http::ResponseDecoder::State::kResponse:
          if (!OnResponse()) return false;
          break;
      }
    }
    return true;
  }

  bool OnResponse() {
    const bool keep_alive = decoder_.keep_alive();
    std::optional<absl::StatusOr<CachedValue>> answer = TakeAnswer(target_, decoder_);
    decoder_.Next();
    if (!answer) return true;  // an interim answer (1xx); the real one follows
    if (pending_.empty()) {
      Fail(Unavailable(target_, "an answer nobody asked for"));
      return false;
    }
    Pending pending = std::move(pending_.front());
    pending_.pop_front();
    absl::StatusOr<CachedValue> result = std::move(*answer);
    // The owner closes after this answer: what is pipelined behind it will not be answered.
    // Leave the connection before running the callback, which may forward again.
    std::deque<Pending> orphans;
    if (!keep_alive) {
      orphans = std::exchange(pending_, {});
      Close();
    }
    pending.Complete(std::move(result));
    for (Pending& p : orphans) {
      p.Complete(Unavailable(target_, "connection closed before the answer"));
    }
    return !closed_;
  }

  Forwarder* const owner_;
  const ForwardTarget target_;
  bool closed_ = false;
  http::ResponseDecoder decoder_{target_.max_response_bytes};
  std::deque<Pending> pending_;
  TimePoint last_used_{};
};

Forwarder::Forwarder() : loop_(io::Loop::Current()) {}

Forwarder::~Forwarder() {
  std::vector<Upstream*> all;
  for (auto& [address, pool] : pools_) {
    for (auto& u : pool) all.push_back(u.get());
  }
  for (Upstream* u : all) {
    u->Fail(absl::UnavailableError("node shutting down: forwarded request abandoned"));
  }
}

Forwarder* Forwarder::Current() {
  io::Loop* loop = io::Loop::Current();
  return loop == nullptr ? nullptr : &loop->Service<Forwarder>();
}

size_t Forwarder::connections() const {
  size_t n = 0;
  for (const auto& [address, pool] : pools_) n += pool.size();
  return n;
}

bool Forwarder::CanTake(const ForwardTarget& target) const {
  auto it = pools_.find(target.PoolKey());
  if (it == pools_.end() || static_cast<int>(it->second.size()) < kMaxConnections) return true;
  const TimePoint now = loop_->now();
  for (const auto& u : it->second) {
    if (!u->WaitingLongerThan(now, kDivertAfter)) return true;
  }
  return false;
}

Forwarder::Upstream* Forwarder::Pick(const ForwardTarget& target, absl::Status* error) {
  auto& pool = pools_[target.PoolKey()];
  const TimePoint now = loop_->now();
  Upstream* best = nullptr;      // least busy of those not stalled
  Upstream* fallback = nullptr;  // least busy of all
  for (auto& u : pool) {
    if (fallback == nullptr || u->in_flight() < fallback->in_flight()) fallback = u.get();
    if (!u->Stalled(now) && (best == nullptr || u->in_flight() < best->in_flight())) best = u.get();
  }
  if (best != nullptr) return best;
  if (static_cast<int>(pool.size()) >= kMaxConnections) return fallback;
  auto fresh = std::make_unique<Upstream>(this, target);
  Upstream* raw = fresh.get();
  pool.push_back(std::move(fresh));
  if (absl::Status s = raw->Open(); !s.ok()) {
    raw->Fail(s);  // nothing pending yet: only closes it
    *error = std::move(s);
    return nullptr;
  }
  return raw;
}

void Forwarder::Send(const ForwardTarget& target, std::string request, Pending pending) {
  absl::Status error;
  Upstream* u = Pick(target, &error);
  if (u == nullptr) return pending.Complete(std::move(error));
  u->Enqueue(std::move(request), std::move(pending));
}

Forwarder::Pending Forwarder::NewPending(const ForwardTarget& target,
                                         std::variant<ValueCallback, StatusCallback> done) const {
  const TimePoint now = loop_->now();
  return Pending{.done = std::move(done), .sent = now, .deadline = now + target.deadline};
}

void Forwarder::Get(const ForwardTarget& target, std::string_view group, std::string_view key,
                    ValueCallback done, bool peek) {
  std::string r = RequestHead("GET", peerwire::kGetPath, target, group, key, peek ? "&peek=1" : "");
  r.append("\r\n");
  Send(target, std::move(r), NewPending(target, std::move(done)));
}

void Forwarder::Set(const ForwardTarget& target, std::string_view group, std::string_view key,
                    std::string_view value, Expiry expiry, bool hot, StatusCallback done) {
  std::string extra = (expiry.is_ttl() ? "&ttl_ms=" + std::to_string(expiry.ttl_ms)
                                       : "&deadline_ms=" + std::to_string(expiry.deadline)) +
                      (hot ? "&hot=1" : "&hot=0") + AnswerBy(target);
  std::string r = RequestHead("POST", peerwire::kSetPath, target, group, key, extra);
  r.append("Content-Type: application/octet-stream\r\nContent-Length: ")
      .append(std::to_string(value.size()))
      .append("\r\n\r\n")
      .append(value);
  Send(target, std::move(r), NewPending(target, std::move(done)));
}

void Forwarder::Delete(const ForwardTarget& target, std::string_view group, std::string_view key,
                       StatusCallback done) {
  std::string r = RequestHead("POST", peerwire::kDeletePath, target, group, key, AnswerBy(target));
  r.append("Content-Length: 0\r\n\r\n");
  Send(target, std::move(r), NewPending(target, std::move(done)));
}

void Forwarder::Replicate(const ForwardTarget& target, std::string_view group,
                          const Replica& replica, StatusCallback done) {
  std::string extra = "&deadline_ms=";
  extra.append(std::to_string(replica.deadline == kNoDeadline ? 0 : replica.deadline))
      .append("&version=")
      .append(std::to_string(replica.version))
      .append(replica.remove ? "&remove=1" : "&remove=0")
      .append(replica.ring ? "&ring=1" : "&ring=0");
  if (replica.handoff) extra.append("&handoff=1");
  std::string r = RequestHead("POST", peerwire::kReplicatePath, target, group, replica.key, extra);
  r.append("Content-Type: application/octet-stream\r\nContent-Length: ")
      .append(std::to_string(replica.value.size()))
      .append("\r\n\r\n")
      .append(replica.value);
  Send(target, std::move(r), NewPending(target, std::move(done)));
}

void Forwarder::Dirty(Upstream* upstream) {
  if (dirty_.empty()) loop_->RequestTurnEnd(this);
  dirty_.push_back(upstream);
}

void Forwarder::Remove(Upstream* upstream) {
  dirty_.erase(std::remove(dirty_.begin(), dirty_.end(), upstream), dirty_.end());
  auto it = pools_.find(upstream->pool_key());
  if (it == pools_.end()) return;
  auto& pool = it->second;
  for (auto u = pool.begin(); u != pool.end(); ++u) {
    if (u->get() == upstream) {
      loop_->Retire(std::move(*u));
      pool.erase(u);
      break;
    }
  }
  if (pool.empty()) pools_.erase(it);
}

void Forwarder::OnTurnEnd() {
  // Walks a copy: a failed flush runs callbacks that may queue more (a new turn end). A
  // connection closed meanwhile is still alive (the loop frees retired sockets after the
  // turn) and flushes nothing.
  for (Upstream* u : std::exchange(dirty_, {})) u->FlushOutput();
}

void Forwarder::OnTick(TimePoint now) {
  std::vector<Upstream*> all;
  for (auto& [address, pool] : pools_) {
    for (auto& u : pool) all.push_back(u.get());
  }
  for (Upstream* u : all) u->CheckDeadline(now);
}

}  // namespace nexus
