// ErrnoText: the message of an errno value, thread-safe (strerror is not).
//
// Thread-safety: pure function.
#pragma once

#include <string.h>

#include <string>

namespace nexus {

inline std::string ErrnoText(int err) {
  char buf[256];
  return strerror_r(err, buf, sizeof buf);  // GNU strerror_r: returns the message
}

}  // namespace nexus
