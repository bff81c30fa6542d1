#include "auth/digest.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

namespace nexus::auth {

Sha256 Digest(std::string_view text) {
  Sha256 out;
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), out.data());
  return out;
}

bool SameDigest(const Sha256& a, const Sha256& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool PrintableWithoutSpaces(std::string_view text) {
  for (const char c : text) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

}  // namespace nexus::auth
