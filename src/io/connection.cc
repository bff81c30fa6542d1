#include "io/connection.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace nexus::io {

namespace {
// An output buffer larger than this is released once sent, so one large answer does not pin
// its memory for the connection's life.
constexpr size_t kKeepOutputCapacity = 256 * 1024;
}  // namespace

BufferedSocket::BufferedSocket(Loop* loop, size_t initial_input)
    : loop_(loop), initial_input_(std::max<size_t>(initial_input, 64)) {}

BufferedSocket::~BufferedSocket() {
  if (fd_ >= 0) {
    loop_->Forget();
    ::close(fd_);
  }
}

absl::Status BufferedSocket::Adopt(int fd) {
  fd_ = fd;
  connecting_ = false;
  readable_ = writable_ = true;
  peer_closed_ = false;
  if (absl::Status s = loop_->Watch(fd_, this); !s.ok()) {
    ::close(fd_);
    fd_ = -1;
    return s;
  }
  return absl::OkStatus();
}

absl::Status BufferedSocket::Connect(const SocketAddress& address) {
  CloseSocket();
  absl::StatusOr<int> fd = StartConnect(address);
  if (!fd.ok()) return fd.status();
  if (absl::Status s = Adopt(*fd); !s.ok()) return s;
  connecting_ = true;
  readable_ = writable_ = false;
  return absl::OkStatus();
}

void BufferedSocket::OnEvents(uint32_t events) {
  if (fd_ < 0) return;
  if (connecting_) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    if (const int err = ConnectError(fd_); err != 0) {
      CloseSocket();
      return OnConnectFailed(err);
    }
    connecting_ = false;
    OnConnected();
    if (fd_ < 0) return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) readable_ = true;
  if (events & (EPOLLRDHUP | EPOLLERR | EPOLLHUP)) peer_closed_ = true;
  if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) writable_ = true;
  OnReady(events);
}

BufferedSocket::ReadResult BufferedSocket::ReadSome() {
  if (end_ == capacity_) {
    // Full: move the unconsumed bytes to the front, or grow (a large header or message).
    if (begin_ > 0) {
      std::memmove(in_.get(), in_.get() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    } else {
      const size_t grown = std::max(initial_input_, capacity_ * 2);
      auto bigger = std::unique_ptr<char[]>(new char[grown]);
      if (end_ > 0) std::memcpy(bigger.get(), in_.get(), end_);
      in_ = std::move(bigger);
      capacity_ = grown;
    }
  }
  const size_t want = capacity_ - end_;
  for (;;) {
    const ssize_t n = ::recv(fd_, in_.get() + end_, want, 0);
    if (n > 0) {
      end_ += static_cast<size_t>(n);
      // Drained (EPOLLIN says when more comes), unless the FIN was seen: then read to the EOF.
      if (static_cast<size_t>(n) < want && !peer_closed_) readable_ = false;
      return ReadResult::kData;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      readable_ = false;
      return ReadResult::kDrained;
    }
    readable_ = false;
    if (n == 0) return ReadResult::kEof;
    read_error_ = errno;
    return ReadResult::kError;
  }
}

void BufferedSocket::Consume(size_t n) {
  begin_ += std::min(n, end_ - begin_);
  if (begin_ == end_) begin_ = end_ = 0;
}

int BufferedSocket::Flush() {
  if (fd_ < 0) return EBADF;
  if (const int err = SendPending(fd_, out_, &out_sent_, &writable_); err != 0) return err;
  if (out_sent_ == out_.size()) {
    out_sent_ = 0;
    out_.clear();
    if (out_.capacity() > kKeepOutputCapacity) out_.shrink_to_fit();
  }
  return 0;
}

bool BufferedSocket::ShutdownWrite() { return fd_ >= 0 && ::shutdown(fd_, SHUT_WR) == 0; }

void BufferedSocket::CloseSocket() {
  if (fd_ < 0) return;
  loop_->Forget();
  ::close(fd_);  // also leaves the epoll set (the fd is not shared)
  fd_ = -1;
  connecting_ = readable_ = writable_ = peer_closed_ = false;
  begin_ = end_ = 0;
  out_.clear();
  out_sent_ = 0;
}

void Connection::Close() {
  if (closed_) return;
  closed_ = true;
  CloseSocket();
  loop().Closed(this);  // frees this object after the batch
}

}  // namespace nexus::io
