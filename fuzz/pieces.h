// How the fuzz targets of the HTTP decoders deliver their input: as a socket would, in pieces,
// keeping what the decoder did not use (an incomplete header) in front of the next piece, as
// the connections keep it in their input buffers.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

namespace nexus::fuzz {

// Appends `bytes` to a pending buffer `piece` bytes at a time (0: all at once) and after each
// piece calls `drain(pending)`, which consumes from the front what it can and returns false to
// stop early (an error). Returns false if drain stopped it; `pending` keeps what was left.
template <class Drain>
bool FeedInPieces(std::string_view bytes, size_t piece, std::string& pending, Drain drain) {
  for (size_t at = 0; at < bytes.size();) {
    const size_t n = piece == 0 ? bytes.size() - at : std::min(piece, bytes.size() - at);
    pending.append(bytes.substr(at, n));
    at += n;
    if (!drain(pending)) return false;
  }
  return true;
}

}  // namespace nexus::fuzz
