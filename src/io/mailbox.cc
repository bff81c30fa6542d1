#include "io/mailbox.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <utility>

#include "io/socket.h"

namespace nexus::io {

absl::StatusOr<std::unique_ptr<Mailbox>> Mailbox::Create() {
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return absl::InternalError("eventfd: " + ErrnoText(errno));
  return std::unique_ptr<Mailbox>(new Mailbox(fd));
}

Mailbox::~Mailbox() { ::close(fd_); }

void Mailbox::Post(Task task) {
  bool wake;
  {
    absl::MutexLock lock(&mu_);
    if (!open_) return;
    wake = tasks_.empty();
    tasks_.push_back(std::move(task));
  }
  if (wake) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(fd_, &one, sizeof one);
  }
}

std::vector<Mailbox::Task> Mailbox::Take() {
  uint64_t count;
  [[maybe_unused]] ssize_t n = ::read(fd_, &count, sizeof count);
  absl::MutexLock lock(&mu_);
  return std::exchange(tasks_, {});
}

void Mailbox::Close() {
  std::vector<Task> dropped;  // destroyed outside the lock
  absl::MutexLock lock(&mu_);
  open_ = false;
  dropped.swap(tasks_);
}

}  // namespace nexus::io
