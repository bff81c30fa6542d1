// Client and admin credentials of a node (--auth-token-file), and the check of a presented
// token against them. Every client protocol (HTTP now, RESP and memcached next) asks the same
// Authenticator through CacheService, which decides what each operation needs.
//
// File format: one "ROLE TOKEN" pair per line; '#' at the start of a field (the line's start or
// after a space or tab) starts a comment that runs to the end of the line, inside a token it
// is part of the token; blank lines are ignored. Roles: read, write, admin, each implying the ones
// before it. A token is 1 to 4096 printable ASCII characters without spaces (it fits an
// Authorization header and a RESP AUTH argument). A token listed twice with different roles is an
// error, so is a file with no token at all (an empty file would lock every writer out by accident).
//
// Tokens are kept only as SHA-256 digests. A presented token is hashed and compared with every
// digest, each comparison in constant time (CRYPTO_memcmp) and none cut short, so how long the
// check takes depends on the number of tokens, never on how much of one matched.
//
// Thread-safety: Check and the accessors may run concurrently with Reload, from any thread; a
// request sees the tokens before or after a reload, never a mix. A Reload that fails keeps the
// tokens loaded before (and says why).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace nexus::auth {

// Ordered: a role allows what every role before it allows.
enum class Role : uint8_t { kNone = 0, kRead = 1, kWrite = 2, kAdmin = 3 };
// "none", "read", "write", "admin".
std::string_view RoleName(Role role);

// Who sent a request, as far as its credential says.
struct Identity {
  enum class State : uint8_t {
    kAnonymous,  // no token presented
    kInvalid,    // a token that is not in the file (or a malformed credential)
    kValid,      // a known token: `role` is its role
  };
  State state = State::kAnonymous;
  Role role = Role::kNone;

  static Identity Anonymous() { return {}; }
  static Identity Invalid() { return {.state = State::kInvalid}; }
  static Identity Valid(Role role) { return {.state = State::kValid, .role = role}; }
};

// The parsed content of a token file.
struct TokenSet {
  struct Entry {
    std::array<uint8_t, 32> digest;  // SHA-256 of the token
    Role role;
  };
  std::vector<Entry> entries;
  size_t count(Role role) const;
};

// Parses a token file's text. Errors name the line: "line 3: unknown role 'root' (read, write
// or admin)", "line 5: expected ROLE TOKEN", ...
absl::StatusOr<TokenSet> ParseTokens(std::string_view text);

class Authenticator {
 public:
  // No tokens: authentication is off (every Check is anonymous; CacheService then applies the
  // seed's open rules).
  Authenticator() = default;
  // Reads the token file at `path`; an error names the file and, for bad content, the line.
  static absl::StatusOr<std::unique_ptr<Authenticator>> FromFile(std::string path);
  Authenticator(const Authenticator&) = delete;
  Authenticator& operator=(const Authenticator&) = delete;

  // Reads the file again (SIGHUP). On error the tokens loaded before stay in force.
  absl::Status Reload();

  // Whether tokens are configured (a file was given). Constant after construction.
  bool enabled() const { return !path_.empty(); }
  const std::string& path() const { return path_; }

  // `token` nullopt: none presented (anonymous). With authentication off every check is
  // anonymous, whatever was presented.
  Identity Check(std::optional<std::string_view> token) const;

  // How many tokens of each role are loaded now (for the log and the metrics).
  size_t count(Role role) const;
  // How many reloads succeeded / failed since the start.
  uint64_t reloads() const;
  uint64_t reload_failures() const;

 private:
  explicit Authenticator(std::string path) : path_(std::move(path)) {}

  const std::string path_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const TokenSet> tokens_ ABSL_GUARDED_BY(mu_) = std::make_shared<const TokenSet>();
  uint64_t reloads_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t reload_failures_ ABSL_GUARDED_BY(mu_) = 0;
};

// The check of `who` against an operation that needs `needed` (kNone: open to all), `what`
// naming the operation for the message ("set", "setpeer with a new address", ...):
//   OK; Unauthenticated "<what> needs a token with the <needed> role" (none presented) or
//   "invalid token" (presented, unknown); PermissionDenied "the token's role <role> may not
//   <what> (it needs <needed>)".
// An invalid token is refused also where nothing is needed: a client with a wrong token learns
// so at its first request, not at its first write.
absl::Status Authorize(const Identity& who, Role needed, std::string_view what);

}  // namespace nexus::auth
