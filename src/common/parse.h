// ParseInt: a whole string as a decimal integer of type Int (a sign only where Int is signed;
// no spaces, no '+', nothing after the digits). False on anything else, including overflow.
//
// Thread-safety: a pure function.
#pragma once

#include <charconv>
#include <string_view>
#include <system_error>

namespace nexus {

template <typename Int>
bool ParseInt(std::string_view text, Int* out) {
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, *out);
  return !text.empty() && ec == std::errc() && ptr == end;
}

}  // namespace nexus
