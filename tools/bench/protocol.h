// The wire side of nexus-bench: where to send (Target), what to send (the seed's workload as
// HTTP requests, or the same workload in memcached's text protocol for a reference run), and
// how to read an answer out of a byte stream that may hold part of one, one, or several.
//
// HTTP (nexuscache, or anything with the seed's API): a read is
//   GET /api/get?key=bench_key_N            hit = 200 with a body starting "value=", 404 = miss
// a write is
//   POST /api/set  key=bench_key_N&value=<random>&expire=60[&hot=true]     ok = 200
// memcached: "get bench_key_N" (VALUE = hit, END = miss) and "set bench_key_N 0 <s> <n>"
// (STORED = ok). Anything else is an error.
//
// Thread-safety: pure functions and plain values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "io/socket.h"

namespace nexus::bench {

enum class Protocol { kHttp, kMemcache };

struct Target {
  Protocol protocol = Protocol::kHttp;
  std::string host;
  uint16_t port = 0;
  std::string url;  // as given, for reports
  io::SocketAddress address;
};

// "http://host[:port][/]" (port 80 by default) or "memcache://host[:port]" (11211). The host
// is resolved once, here. InvalidArgument for anything else (https, a path, a bad port).
absl::StatusOr<Target> ParseTarget(std::string_view url);

struct Workload {
  int keys = 100;
  double read_ratio = 0.8;
  size_t value_size = 100;
  bool hot = false;
  int expire_minutes = 60;
};

// Appends one request for `key` (bench_key_<key>) to `out`. `value` is used by writes.
void AppendRead(const Target& target, int key, std::string& out);
void AppendWrite(const Target& target, const Workload& workload, int key, std::string_view value,
                 std::string& out);

enum class Outcome { kHit, kMiss, kOk, kError };

struct Reply {
  Outcome outcome = Outcome::kError;
  int status = 0;      // HTTP status; 0 for memcached
  bool close = false;  // the server will close the connection after this answer
};

// Parses the answer to a read (`is_read`) or a write at the front of `buffer`. Returns the
// bytes it used (> 0) and fills *reply, 0 if the answer is not complete yet, or -1 if the bytes
// cannot be an answer (the connection is then unusable).
ptrdiff_t ParseReply(Protocol protocol, bool is_read, std::string_view buffer, Reply* reply);

}  // namespace nexus::bench
