// What the credentials of this folder share (tokens.h, cluster_secret.h): SHA-256 digests,
// compared in constant time, and the characters a token or a secret may have.
//
// Thread-safety: pure functions.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace nexus::auth {

using Sha256 = std::array<uint8_t, 32>;

Sha256 Digest(std::string_view text);
// Constant time (CRYPTO_memcmp): how long it takes says nothing about where they differ.
bool SameDigest(const Sha256& a, const Sha256& b);
// Printable ASCII without spaces: what fits a header value or a RESP argument unquoted.
bool PrintableWithoutSpaces(std::string_view text);

}  // namespace nexus::auth
