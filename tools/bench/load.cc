#include "tools/bench/load.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "io/connection.h"
#include "io/loop.h"
#include "io/socket.h"

namespace nexus::bench {

namespace {

using io::ErrnoText;

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using std::chrono::nanoseconds;

constexpr std::chrono::milliseconds kReconnectDelay{100};
constexpr std::chrono::milliseconds kTick{5};  // how often end, timeouts and retries are checked
constexpr size_t kMaxErrorSamples = 5;

// Keeps the first kMaxErrorSamples distinct error descriptions.
void AddErrorSample(std::vector<std::string>& samples, const std::string& what) {
  if (samples.size() < kMaxErrorSamples &&
      std::find(samples.begin(), samples.end(), what) == samples.end()) {
    samples.push_back(what);
  }
}

// splitmix64: small, fast, good enough to pick keys and make values.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

// A connect with a timeout, to fail fast (and clearly) when a target is down.
absl::Status Probe(const Target& target, std::chrono::milliseconds timeout) {
  absl::StatusOr<int> fd = io::StartConnect(target.address);
  if (!fd.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", target.url, ": ", std::string(fd.status().message())));
  }
  pollfd p{*fd, POLLOUT, 0};
  const int err =
      ::poll(&p, 1, static_cast<int>(timeout.count())) <= 0 ? ETIMEDOUT : io::ConnectError(*fd);
  ::close(*fd);
  if (err != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", target.url, ": connect: ", ErrnoText(err)));
  }
  return absl::OkStatus();
}

struct Window {
  TimePoint start;       // warmup begins
  TimePoint warmup_end;  // measuring begins
  TimePoint end;         // no new requests
  TimePoint drain_end;   // give up on answers in flight
};

class Worker;

// One keep-alive client connection: io's buffered socket, reconnected in place after a
// failure. Its events go to the worker, which owns the request logic.
class Conn final : public io::BufferedSocket {
 public:
  enum class State { kDown, kConnecting, kIdle, kBusy };

  Conn(Worker* worker, io::Loop* loop, const Target* target)
      : io::BufferedSocket(loop), worker_(worker), target(target) {}

  using io::BufferedSocket::CloseSocket;
  using io::BufferedSocket::Connect;
  using io::BufferedSocket::Consume;
  using io::BufferedSocket::Flush;
  using io::BufferedSocket::input;
  using io::BufferedSocket::output;
  using io::BufferedSocket::read_error;
  using io::BufferedSocket::readable;
  using io::BufferedSocket::ReadResult;
  using io::BufferedSocket::ReadSome;

  void OnConnected() override;
  void OnConnectFailed(int err) override;
  void OnReady(uint32_t events) override;

  Worker* const worker_;
  const Target* const target;
  State state = State::kDown;
  bool is_read = false;
  TimePoint started;   // when the request was due (open loop) or sent (closed loop)
  TimePoint deadline;  // request_timeout
  TimePoint retry_at;  // kDown: reconnect at
};

// One thread's share of the connections, on its own io::Loop, which the worker drives turn by
// turn (RunOnce) between scheduling requests.
class Worker {
 public:
  Worker(const LoadOptions& options, int index, Window window)
      : options_(options),
        window_(window),
        rng_(options.seed + 0x51ed270b27e8ad6fULL * static_cast<uint64_t>(index + 1)),
        loop_(io::LoopOptions{.tick = kTick, .name = "nexus-bench"}) {
    for (int c = index; c < options.concurrency; c += options.threads) {
      conns_.push_back(
          std::make_unique<Conn>(this, &loop_, &options.targets[c % options.targets.size()]));
    }
    if (options.rate > 0) {
      const double per_worker = options.rate / options.threads;
      interval_ = nanoseconds(static_cast<int64_t>(1e9 / per_worker));
      // Stagger the workers' schedules so their requests interleave.
      next_due_ = window.start + interval_ * index / options.threads;
    }
  }

  void Run();
  LoadResult& result() { return result_; }

  // Conn's events.
  void OnConnected(Conn& c) { BecomeIdle(c, loop_.now()); }
  void OnConnectFailed(Conn& c, int err);
  void OnReady(Conn& c);

 private:
  bool open_loop() const { return options_.rate > 0; }
  void Connect(Conn& c, TimePoint now);
  void Send(Conn& c, TimePoint due, TimePoint now);
  void Flush(Conn& c, TimePoint now);
  void Read(Conn& c, TimePoint now);
  void Finish(Conn& c, const Reply* reply, TimePoint now);
  void Fail(Conn& c, const std::string& why, TimePoint now);
  void Disconnect(Conn& c, TimePoint now, std::chrono::milliseconds delay);
  void BecomeIdle(Conn& c, TimePoint now);
  void Issue(TimePoint now);
  void Tick(TimePoint now);
  void NoteError(const std::string& what);
  std::chrono::milliseconds Timeout(TimePoint now) const;

  const LoadOptions& options_;
  const Window window_;
  Rng rng_;
  io::Loop loop_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> idle_;
  size_t busy_ = 0;
  // Open loop.
  nanoseconds interval_{0};
  TimePoint next_due_;
  std::deque<TimePoint> backlog_;
  std::string value_;
  LoadResult result_;
};

void Conn::OnConnected() { worker_->OnConnected(*this); }
void Conn::OnConnectFailed(int err) { worker_->OnConnectFailed(*this, err); }
void Conn::OnReady(uint32_t) { worker_->OnReady(*this); }

void Worker::NoteError(const std::string& what) { AddErrorSample(result_.error_samples, what); }

void Worker::Connect(Conn& c, TimePoint now) {
  if (absl::Status s = c.Connect(c.target->address); !s.ok()) {
    ++result_.connect_failures;
    NoteError(absl::StrCat("connect to ", c.target->url, ": ", std::string(s.message())));
    c.retry_at = now + kReconnectDelay;
    return;
  }
  c.state = Conn::State::kConnecting;
  c.deadline = now + options_.request_timeout;
}

void Worker::OnConnectFailed(Conn& c, int err) {
  ++result_.connect_failures;
  NoteError(absl::StrCat("connect to ", c.target->url, ": ", ErrnoText(err)));
  Disconnect(c, loop_.now(), kReconnectDelay);
}

void Worker::Disconnect(Conn& c, TimePoint now, std::chrono::milliseconds delay) {
  if (c.state == Conn::State::kIdle) idle_.erase(std::find(idle_.begin(), idle_.end(), &c));
  c.CloseSocket();
  c.state = Conn::State::kDown;
  c.retry_at = now + delay;
}

void Worker::BecomeIdle(Conn& c, TimePoint now) {
  c.state = Conn::State::kIdle;
  // Closed loop: the next request goes at once on the same connection.
  if (!open_loop() && now < window_.end) return Send(c, now, now);
  idle_.push_back(&c);
}

void Worker::Send(Conn& c, TimePoint due, TimePoint now) {
  const int key = static_cast<int>(rng_.Next() % static_cast<uint64_t>(options_.workload.keys));
  c.is_read = rng_.Uniform() < options_.workload.read_ratio;
  if (c.is_read) {
    AppendRead(*c.target, key, c.output());
  } else {
    static constexpr char kAlnum[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    value_.resize(options_.workload.value_size);
    for (char& ch : value_) ch = kAlnum[rng_.Next() % (sizeof kAlnum - 1)];
    AppendWrite(*c.target, options_.workload, key, value_, c.output());
  }
  c.state = Conn::State::kBusy;
  c.started = due;
  c.deadline = now + options_.request_timeout;
  ++busy_;
  ++result_.sent;
  Flush(c, now);
}

void Worker::Flush(Conn& c, TimePoint now) {
  if (const int err = c.Flush(); err != 0) {
    Fail(c, absl::StrCat("send to ", c.target->url, ": ", ErrnoText(err)), now);
  }
}

void Worker::OnReady(Conn& c) {
  const TimePoint now = loop_.now();
  if (c.state == Conn::State::kDown) return;
  if (c.state == Conn::State::kBusy) Flush(c, now);
  if (c.state != Conn::State::kDown) Read(c, now);
}

void Worker::Read(Conn& c, TimePoint now) {
  while (c.readable()) {
    const Conn::ReadResult r = c.ReadSome();
    if (r == Conn::ReadResult::kData) continue;
    if (r == Conn::ReadResult::kDrained) break;
    const std::string why =
        r == Conn::ReadResult::kEof
            ? absl::StrCat(c.target->url, " closed the connection")
            : absl::StrCat("recv from ", c.target->url, ": ", ErrnoText(c.read_error()));
    if (c.state == Conn::State::kBusy) return Fail(c, why, now);
    return Disconnect(c, now, std::chrono::milliseconds(0));
  }
  if (c.input().empty()) return;
  if (c.state != Conn::State::kBusy) {
    return Fail(c, absl::StrCat(c.target->url, " sent bytes nobody asked for"), now);
  }
  Reply reply;
  const ptrdiff_t used = ParseReply(c.target->protocol, c.is_read, c.input(), &reply);
  if (used < 0) return Fail(c, absl::StrCat("unparseable answer from ", c.target->url), now);
  if (used == 0) return;
  c.Consume(static_cast<size_t>(used));
  if (!c.input().empty()) {
    return Fail(c, absl::StrCat(c.target->url, " sent more than one answer"), now);
  }
  Finish(c, &reply, now);
}

// Counts a finished request (reply == nullptr: it failed without an answer).
void Worker::Finish(Conn& c, const Reply* reply, TimePoint now) {
  --busy_;
  const Outcome outcome = reply != nullptr ? reply->outcome : Outcome::kError;
  if (reply != nullptr) {
    ++result_.answered;
    if (outcome == Outcome::kError) {
      NoteError(reply->status != 0 ? absl::StrCat(c.target->url, " answered HTTP ", reply->status)
                                   : absl::StrCat(c.target->url, " answered an error"));
    }
  } else {
    ++result_.lost;
  }
  if (now < window_.end) {
    const bool measured = now >= window_.warmup_end;
    PhaseCounts& counts = measured ? result_.measured : result_.warmup;
    (c.is_read ? counts.reads : counts.writes) += 1;
    if (outcome == Outcome::kHit) ++counts.hits;
    if (outcome == Outcome::kMiss) ++counts.misses;
    if (outcome == Outcome::kError) ++counts.errors;
    if (measured && reply != nullptr) {
      const auto nanos = static_cast<uint64_t>(
          std::max<int64_t>(0, std::chrono::duration_cast<nanoseconds>(now - c.started).count()));
      result_.latency.Record(nanos);
      (c.is_read ? result_.read_latency : result_.write_latency).Record(nanos);
    }
  }
  if (reply == nullptr) return;  // Fail() disconnects
  if (reply->close) {
    Disconnect(c, now, std::chrono::milliseconds(0));
  } else {
    BecomeIdle(c, now);
  }
}

void Worker::Fail(Conn& c, const std::string& why, TimePoint now) {
  NoteError(why);
  if (c.state == Conn::State::kBusy) Finish(c, nullptr, now);
  Disconnect(c, now, std::chrono::milliseconds(0));
}

void Worker::Issue(TimePoint now) {
  if (!open_loop() || now >= window_.end) return;
  while (next_due_ <= now && next_due_ < window_.end) {
    backlog_.push_back(next_due_);
    if (next_due_ >= window_.warmup_end) ++result_.scheduled;
    next_due_ += interval_;
  }
  while (!backlog_.empty() && !idle_.empty()) {
    Conn* c = idle_.back();
    idle_.pop_back();
    const TimePoint due = backlog_.front();
    backlog_.pop_front();
    Send(*c, due, now);
  }
}

void Worker::Tick(TimePoint now) {
  for (auto& owned : conns_) {
    Conn& c = *owned;
    if (c.state == Conn::State::kDown) {
      if (now >= c.retry_at && now < window_.end) Connect(c, now);
    } else if ((c.state == Conn::State::kBusy || c.state == Conn::State::kConnecting) &&
               now >= c.deadline) {
      const std::string why =
          absl::StrCat(c.state == Conn::State::kBusy ? "no answer from " : "connect to ",
                       c.target->url, " within ", options_.request_timeout.count(), " ms");
      if (c.state == Conn::State::kBusy) {
        Fail(c, why, now);
      } else {
        NoteError(why);
        ++result_.connect_failures;
        Disconnect(c, now, kReconnectDelay);
      }
    }
  }
}

std::chrono::milliseconds Worker::Timeout(TimePoint now) const {
  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(kTick);
  if (open_loop() && now < window_.end) {
    if (!backlog_.empty() && !idle_.empty()) return std::chrono::milliseconds(0);
    const auto until_due = std::chrono::ceil<std::chrono::milliseconds>(next_due_ - now);
    wait = std::clamp(until_due, std::chrono::milliseconds(0), wait);
  }
  return wait;
}

void Worker::Run() {
  if (absl::Status s = loop_.Init(); !s.ok()) {
    NoteError(std::string(s.message()));
    return;
  }
  std::this_thread::sleep_until(window_.start);
  TimePoint now = Clock::now();
  for (auto& c : conns_) Connect(*c, now);
  TimePoint next_tick = now + kTick;
  for (;;) {
    now = Clock::now();
    if (now >= window_.end && (busy_ == 0 || now >= window_.drain_end)) break;
    Issue(now);
    loop_.RunOnce(Timeout(now));
    now = loop_.now();
    if (now >= next_tick) {
      Tick(now);
      next_tick = now + kTick;
    }
  }
  result_.in_flight_at_end = busy_;
  result_.never_sent = backlog_.size();
}

}  // namespace

void PhaseCounts::Add(const PhaseCounts& o) {
  reads += o.reads;
  writes += o.writes;
  hits += o.hits;
  misses += o.misses;
  errors += o.errors;
}

void LoadResult::Merge(const LoadResult& o) {
  warmup.Add(o.warmup);
  measured.Add(o.measured);
  latency.Merge(o.latency);
  read_latency.Merge(o.read_latency);
  write_latency.Merge(o.write_latency);
  sent += o.sent;
  answered += o.answered;
  lost += o.lost;
  in_flight_at_end += o.in_flight_at_end;
  scheduled += o.scheduled;
  never_sent += o.never_sent;
  connect_failures += o.connect_failures;
  for (const auto& e : o.error_samples) AddErrorSample(error_samples, e);
}

absl::StatusOr<LoadResult> RunLoad(const LoadOptions& in) {
  if (in.targets.empty()) return absl::InvalidArgumentError("no target");
  if (in.concurrency < 1) return absl::InvalidArgumentError("concurrency must be at least 1");
  if (in.threads < 1 || in.threads > in.concurrency) {
    return absl::InvalidArgumentError("threads must be between 1 and concurrency");
  }
  if (in.workload.keys < 1) return absl::InvalidArgumentError("keys must be at least 1");
  if (in.duration.count() <= 0) return absl::InvalidArgumentError("duration must be positive");
  for (const Target& t : in.targets) {
    if (absl::Status s = Probe(t, std::chrono::milliseconds(2000)); !s.ok()) return s;
  }
  LoadOptions options = in;
  if (options.seed == 0) options.seed = std::random_device{}() | 1;

  Window w;
  w.start = Clock::now() + std::chrono::milliseconds(20);  // every worker starts together
  w.warmup_end = w.start + options.warmup;
  w.end = w.warmup_end + options.duration;
  w.drain_end = w.end + options.drain;

  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < options.threads; ++i) {
    workers.push_back(std::make_unique<Worker>(options, i, w));
  }
  std::vector<std::thread> threads;
  for (size_t i = 1; i < workers.size(); ++i) threads.emplace_back([&w = *workers[i]] { w.Run(); });
  workers[0]->Run();
  for (auto& t : threads) t.join();

  LoadResult result;
  for (auto& worker : workers) result.Merge(worker->result());
  result.measured_seconds = std::chrono::duration<double>(options.duration).count();
  return result;
}

}  // namespace nexus::bench
