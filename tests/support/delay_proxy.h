// A TCP proxy on 127.0.0.1 that adds latency: every byte it forwards, in either direction, is
// held for `one_way` before it goes on (so a round trip through it takes 2 x one_way more).
// For fault tests: `tc netem` is not available on these kernels. Order and content are kept;
// an end of stream is passed on once the bytes before it went out.
//
// Thread-safety: one thread of its own forwards everything; port() may be called from any
// thread. The destructor stops it and closes every connection.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

namespace nexus::testing {

class DelayProxy {
 public:
  // Listens on a free port of 127.0.0.1 and forwards to 127.0.0.1:target_port; null (and the
  // reason in `error`) when it cannot listen.
  static std::unique_ptr<DelayProxy> Start(uint16_t target_port, std::chrono::milliseconds one_way,
                                           std::string* error);
  ~DelayProxy();
  DelayProxy(const DelayProxy&) = delete;
  DelayProxy& operator=(const DelayProxy&) = delete;

  uint16_t port() const { return port_; }
  // Connections accepted so far (each one is forwarded to a new connection to the target).
  uint64_t connections() const { return connections_.load(); }

 private:
  DelayProxy(int listener, uint16_t port, uint16_t target_port, std::chrono::milliseconds one_way);
  void Run();

  const int listener_;
  const uint16_t port_;
  const uint16_t target_port_;
  const std::chrono::milliseconds one_way_;
  int wake_[2] = {-1, -1};  // a pipe: the destructor writes to stop Run
  std::atomic<uint64_t> connections_{0};
  std::thread thread_;
};

}  // namespace nexus::testing
