// ASCII helpers on std::string_view (Debian's abseil has its own absl::string_view, so its
// absl::EqualsIgnoreCase does not take std::string_view).
//
// Thread-safety: pure functions.
#pragma once

#include <cctype>
#include <string_view>

namespace nexus {

// Case-insensitive comparison of ASCII letters (HTTP header names, URL schemes).
inline bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace nexus
