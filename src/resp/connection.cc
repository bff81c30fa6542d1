#include "resp/connection.h"

#include <sys/epoll.h>

#include <atomic>
#include <deque>
#include <utility>
#include <vector>

#include "io/connection.h"
#include "spdlog/spdlog.h"

namespace nexus::resp {
namespace {

using io::kNever;
using io::TimePoint;

// recv() calls one connection may make per loop turn before the others get theirs.
constexpr int kReadsPerTurn = 16;
// Reply buffers kept for reuse per connection, and the largest one kept.
constexpr size_t kSpareBuffers = 8;
constexpr size_t kMaxSpareCapacity = 64 << 10;
constexpr std::string_view kDropped = "ERR internal error: the command dropped its reply";

std::atomic<uint64_t> next_session_id{1};

struct Shared {
  ConnectionOptions options;
  std::shared_ptr<Handler> handler;
};

}  // namespace

// States: open (parsing and dispatching) -> closing (no more commands: the ones in flight are
// answered and the output flushed, then the socket closes) -> closed.
class RespConnection final : public io::Connection {
 public:
  RespConnection(io::Loop* loop, std::string remote, std::shared_ptr<const Shared> shared)
      : io::Connection(loop, std::move(remote)),
        shared_(std::move(shared)),
        options_(shared_->options),
        parser_(options_.limits) {
    if (options_.tls != nullptr) UseTls(options_.tls, {}, this->remote());
    session_.id = next_session_id.fetch_add(1, std::memory_order_relaxed);
    session_.remote = this->remote();
    session_.connected = std::chrono::system_clock::now();
    last_activity_ = loop->now();
  }
  ~RespConnection() override { NotifyClosed(); }

  void Start() override {
    shared_->handler->Open(session_);
    io::Connection::Start();
  }

  void OnReady(uint32_t events) override {
    if (closed_) return;
    if ((events & (EPOLLERR | EPOLLHUP)) && !pending_.empty()) {
      // Reset or fully closed with commands in flight: nobody will read their replies.
      return CloseNow();
    }
    session_.tls = tls();
    Drive();
  }

  void OnDrain() override {
    closing_ = true;
    if (pending_.empty() && !output_pending()) CloseNow();
  }

  void OnTick(TimePoint now) override {
    if (closed_) return;
    if (now >= command_deadline_ || now >= write_deadline_) {
      spdlog::debug("resp: closing connection from {}: timed out", remote());
      return CloseNow();
    }
    if (options_.idle_timeout.count() > 0 && pending_.empty() && !output_pending() &&
        input().empty() && now - last_activity_ >= options_.idle_timeout) {
      spdlog::debug("resp: closing idle connection from {}", remote());
      CloseNow();
    }
  }

  // A reply for command `seq`, on this connection's loop.
  void Deliver(uint64_t seq, std::string data, bool close) {
    if (closed_ || seq < head_seq_ || seq >= head_seq_ + pending_.size()) return;
    Slot& slot = pending_[seq - head_seq_];
    slot.data = std::move(data);
    slot.done = true;
    slot.close = close;
    if (close) closing_ = true;  // nothing after it is dispatched
    last_activity_ = loop().now();
    while (!pending_.empty() && pending_.front().done) {
      Slot& front = pending_.front();
      output().append(front.data);
      const bool close_here = front.close;
      Recycle(std::move(front.data));
      pending_.pop_front();
      ++head_seq_;
      if (close_here) {
        // Commands dispatched after it (they were pipelined behind a QUIT) go unanswered.
        head_seq_ += pending_.size();
        pending_.clear();
      }
    }
    Drive();  // flushes; resumes parsing if the limits held it (a no-op inside Drive)
  }

 private:
  struct Slot {
    std::string data;
    bool done = false;
    bool close = false;
  };

  void Drive();
  // Parses and dispatches one command from the input; false when more input is needed or no
  // more commands are to be parsed.
  bool ParseBuffered();
  void Dispatch();
  bool Read();
  void FlushOutput();
  void Recycle(std::string buffer) {
    if (spare_.size() < kSpareBuffers && buffer.capacity() <= kMaxSpareCapacity) {
      buffer.clear();
      spare_.push_back(std::move(buffer));
    }
  }
  void CloseNow() {
    closed_ = true;
    NotifyClosed();
    Close();
  }
  void NotifyClosed() {
    if (!notified_closed_) {
      notified_closed_ = true;
      shared_->handler->Closed(session_);
    }
  }

  const std::shared_ptr<const Shared> shared_;
  const ConnectionOptions& options_;
  Parser parser_;
  Session session_;
  std::deque<Slot> pending_;  // commands in flight, oldest first
  uint64_t head_seq_ = 0;     // the seq of pending_.front()
  std::vector<std::string> spare_;
  bool in_drive_ = false;
  bool closing_ = false;
  bool closed_ = false;
  bool notified_closed_ = false;
  TimePoint command_deadline_ = kNever;
  TimePoint write_deadline_ = kNever;
  TimePoint last_activity_;
};

Reply::Reply(io::Loop* loop, uint64_t conn_id, uint64_t seq, int protocol)
    : loop_(loop),
      mailbox_(loop->mailbox()),
      conn_id_(conn_id),
      seq_(seq),
      writer_(&data_, protocol) {}

Reply::Reply(Reply&& other) noexcept
    : loop_(other.loop_),
      mailbox_(std::move(other.mailbox_)),
      conn_id_(other.conn_id_),
      seq_(other.seq_),
      data_(std::move(other.data_)),
      writer_(&data_, other.writer_.protocol()),
      armed_(std::exchange(other.armed_, false)) {}

Reply::~Reply() {
  if (armed_) {
    spdlog::warn("resp: a command dropped its reply");
    data_.clear();
    writer_.Error(kDropped);
    Send();
  }
}

namespace {

void DeliverOnLoop(io::Loop* loop, uint64_t id, uint64_t seq, std::string data, bool close) {
  // Ids are unique per loop and never reused: the connection with this id is the RESP
  // connection the reply was made for (or it is gone).
  if (io::Connection* conn = loop->FindConnection(id); conn != nullptr) {
    static_cast<RespConnection*>(conn)->Deliver(seq, std::move(data), close);
  }
}

}  // namespace

void Reply::Send(bool close) {
  if (!armed_) return;
  armed_ = false;
  if (io::Loop::Current() == loop_) {
    return DeliverOnLoop(loop_, conn_id_, seq_, std::move(data_), close);
  }
  mailbox_->Post([loop = loop_, id = conn_id_, seq = seq_, data = std::move(data_),
                  close]() mutable { DeliverOnLoop(loop, id, seq, std::move(data), close); });
}

void RespConnection::Drive() {
  if (in_drive_ || closed_) return;
  in_drive_ = true;
  int reads = 0;
  while (!closing_) {
    if (pending_.size() >= options_.max_in_flight || unsent_bytes() > options_.max_pending_output) {
      FlushOutput();
      if (closed_ || pending_.size() >= options_.max_in_flight ||
          unsent_bytes() > options_.max_pending_output) {
        break;  // a reply or EPOLLOUT resumes
      }
    }
    if (ParseBuffered()) continue;
    if (closing_ || !readable()) break;
    if (reads == kReadsPerTurn) {
      loop().ScheduleTurn(this);
      break;
    }
    ++reads;
    if (!Read()) break;
  }
  if (!closed_) FlushOutput();
  in_drive_ = false;
}

bool RespConnection::ParseBuffered() {
  if (input().empty()) return false;
  const Parser::Fed fed = parser_.Feed(input());
  switch (fed.state) {
    case Parser::State::kCommand:
      command_deadline_ = kNever;
      Dispatch();
      Consume(fed.used);
      return true;
    case Parser::State::kNeedMore:
      Consume(fed.used);
      // A command must arrive whole within command_timeout from its first byte.
      if (!input().empty() && command_deadline_ == kNever) {
        command_deadline_ = loop().now() + options_.command_timeout;
      }
      return false;
    case Parser::State::kError:
      break;
  }
  spdlog::debug("resp: {} from {}", parser_.error(), remote());
  // Answered after the replies before it, then the connection closes (as Redis does).
  std::string data;
  Writer(&data).Error("ERR " + parser_.error());
  ClearInput();
  command_deadline_ = kNever;
  pending_.emplace_back();
  Deliver(head_seq_ + pending_.size() - 1, std::move(data), /*close=*/true);
  return false;
}

void RespConnection::Dispatch() {
  const uint64_t seq = head_seq_ + pending_.size();
  pending_.emplace_back();
  last_activity_ = loop().now();
  Reply reply(&loop(), id(), seq, session_.protocol);
  if (!spare_.empty()) {
    reply.data_ = std::move(spare_.back());
    spare_.pop_back();
  }
  try {
    shared_->handler->Dispatch(session_, parser_.args(), std::move(reply));
  } catch (const std::exception& e) {
    // The Reply died in the unwinding and answered an error.
    spdlog::error("resp: a command from {} threw: {}", remote(), e.what());
  }
}

bool RespConnection::Read() {
  switch (ReadSome()) {
    case ReadResult::kData:
      last_activity_ = loop().now();
      return true;
    case ReadResult::kDrained:
      return false;
    case ReadResult::kEof:
      // The client half-closed after its commands: their replies still go out, then the
      // connection closes. A partial command is dropped.
      if (!pending_.empty() || output_pending()) {
        closing_ = true;
        command_deadline_ = kNever;
        return false;
      }
      break;
    case ReadResult::kError:
      spdlog::debug("resp: reading from {}: {}", remote(), read_error_text());
      break;
  }
  CloseNow();
  return false;
}

void RespConnection::FlushOutput() {
  if (const int err = Flush(); err != 0) {
    spdlog::debug("resp: write to {} failed: {}", remote(), io::ErrnoText(err));
    return CloseNow();
  }
  if (output_pending()) {
    if (write_deadline_ == kNever) write_deadline_ = loop().now() + options_.write_timeout;
    return;
  }
  write_deadline_ = kNever;
  if ((closing_ || loop().draining()) && pending_.empty()) CloseNow();
}

std::shared_ptr<io::ConnectionFactory> RespConnections(ConnectionOptions options,
                                                       std::shared_ptr<Handler> handler) {
  return std::make_shared<io::ConnectionsOf<RespConnection, std::shared_ptr<const Shared>>>(
      std::make_shared<const Shared>(Shared{std::move(options), std::move(handler)}));
}

}  // namespace nexus::resp
