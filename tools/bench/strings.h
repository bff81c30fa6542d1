// String helpers for nexus-bench that take std::string_view. (Debian's abseil is built with
// its own absl::string_view, so absl::StrCat and friends do not accept std::string_view.)
//
// Thread-safety: pure functions.
#pragma once

#include <cctype>
#include <string>
#include <string_view>
#include <type_traits>

#include "common/ascii.h"

namespace nexus::bench {

namespace strings_internal {
inline void Append(std::string& out, std::string_view piece) { out.append(piece); }
inline void Append(std::string& out, char c) { out.push_back(c); }
template <typename Int, typename = std::enable_if_t<std::is_integral_v<Int>>>
void Append(std::string& out, Int n) {
  out.append(std::to_string(n));
}
}  // namespace strings_internal

// Concatenates strings, string_views, C strings, chars and integers.
template <typename... Pieces>
std::string Cat(const Pieces&... pieces) {
  std::string out;
  (strings_internal::Append(out, pieces), ...);
  return out;
}

template <typename... Pieces>
void AppendTo(std::string& out, const Pieces&... pieces) {
  (strings_internal::Append(out, pieces), ...);
}

inline std::string_view StripSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace nexus::bench
