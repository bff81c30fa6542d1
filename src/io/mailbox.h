// Mailbox: work handed to an event loop (io/loop.h) from other threads, e.g. a response computed
// on a gRPC thread, or Stop. It wakes the loop through an eventfd, written only when the queue
// goes from empty to non-empty, so a burst of posts costs one wake-up. Once closed (the loop is
// gone), posts are dropped, so a late poster is harmless; holders keep it alive with a
// shared_ptr.
//
// Thread-safety: Post and Close from any thread; Take only on the loop's thread.
#pragma once

#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace nexus::io {

class Mailbox {
 public:
  using Task = absl::AnyInvocable<void()>;

  // A mailbox with a fresh non-blocking eventfd (InternalError if none can be made).
  static absl::StatusOr<std::unique_ptr<Mailbox>> Create();
  ~Mailbox();
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  // The eventfd to watch for EPOLLIN.
  int fd() const { return fd_; }

  void Post(Task task);
  // Everything posted so far (loop thread).
  std::vector<Task> Take();
  // Drops what is queued and every later post.
  void Close();

 private:
  explicit Mailbox(int event_fd) : fd_(event_fd) {}

  const int fd_;
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  std::vector<Task> tasks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nexus::io
