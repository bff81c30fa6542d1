// LoopContext: lets code that runs on one of the HTTP server's event-loop threads (a handler,
// or a callback it triggered there) own sockets served by that same loop, the way nginx's
// upstream connections live in the worker that received the request. The peer forwarder
// (peer/forwarder.h) uses it so that a request forwarded to its owner never leaves the thread
// that received it: no hand-off to another thread, no wake-up, and every request forwarded
// during one loop turn leaves in one send per peer.
//
// A loop has per-loop services (LoopService), created on first use by Service<T>() and
// destroyed on the loop's thread when the loop ends (Server::Stop), so a service can fail
// what it still has pending from the right thread. Sockets are registered with Watch() and get
// edge-triggered epoll events; a service may ask to run once after the current batch of
// events (RequestTurnEnd), which is where it flushes what it queued.
//
// Thread-safety: none. LoopContext::Current() is non-null only on a loop thread, and every
// member, service and socket of that loop is used only on that thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

#include "absl/status/status.h"

namespace nexus::http {

// A file descriptor served by a loop. OnEvents gets the epoll event bits (EPOLLIN, EPOLLOUT,
// EPOLLRDHUP, EPOLLERR, EPOLLHUP); registration is edge-triggered, so read and write until
// EAGAIN before waiting for the next event.
class LoopSocket {
 public:
  virtual ~LoopSocket() = default;
  virtual void OnEvents(uint32_t events) = 0;
};

// One per loop and type, created on first use, destroyed on the loop's thread after its last
// turn (before its connections close).
class LoopService {
 public:
  virtual ~LoopService() = default;
  // After the batch of events during which RequestTurnEnd(this) was called.
  virtual void OnTurnEnd() {}
  // About every 50 ms while the loop watches any socket: check deadlines here.
  virtual void OnTick(std::chrono::steady_clock::time_point now) { (void)now; }
};

// Sends out[*sent..] on a non-blocking socket while it takes data, advancing *sent. On EAGAIN
// sets *writable to false (wait for EPOLLOUT). Returns 0, or the errno of a failed send.
int SendPending(int fd, const std::string& out, size_t* sent, bool* writable);

class LoopContext {
 public:
  // The loop running on this thread, or nullptr (not a server loop thread, or the loop ended).
  static LoopContext* Current();

  // This loop's instance of T (a LoopService with a default constructor), created on first use.
  template <typename T>
  T& Service() {
    static_assert(std::is_base_of_v<LoopService, T>);
    static const char key = 0;
    LoopService* found = FindService(&key);
    if (found == nullptr) found = AddService(&key, std::make_unique<T>());
    return static_cast<T&>(*found);
  }

  // Registers `fd` (non-blocking) for EPOLLIN | EPOLLOUT | EPOLLRDHUP, edge-triggered, with
  // `socket` receiving its events until Unwatch(fd). `socket` must outlive the registration;
  // to free a socket from inside its own events, hand it to Retire.
  virtual absl::Status Watch(int fd, LoopSocket* socket) = 0;
  virtual void Unwatch(int fd) = 0;
  // Frees `socket` after the current batch of events (which may still name it).
  virtual void Retire(std::unique_ptr<LoopSocket> socket) = 0;
  // Calls service->OnTurnEnd() once after the current batch of events.
  virtual void RequestTurnEnd(LoopService* service) = 0;
  // The time the current batch of events started (cheap; what deadlines should use).
  virtual std::chrono::steady_clock::time_point now() const = 0;

 protected:
  ~LoopContext() = default;
  virtual LoopService* FindService(const void* key) = 0;
  virtual LoopService* AddService(const void* key, std::unique_ptr<LoopService> service) = 0;
};

}  // namespace nexus::http
