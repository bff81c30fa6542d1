#include "auth/tokens.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "auth/digest.h"

namespace nexus::auth {

namespace {

constexpr size_t kMaxTokenBytes = 4096;

std::optional<Role> ParseRole(std::string_view name) {
  if (name == "read") return Role::kRead;
  if (name == "write") return Role::kWrite;
  if (name == "admin") return Role::kAdmin;
  return std::nullopt;
}

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kRead:
      return "read";
    case Role::kWrite:
      return "write";
    case Role::kAdmin:
      return "admin";
    case Role::kNone:
      break;
  }
  return "none";
}

size_t TokenSet::count(Role role) const {
  size_t n = 0;
  for (const Entry& e : entries) n += e.role == role;
  return n;
}

// (Debian's abseil has a string_view of its own: these work on std::string_view.)
static std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

absl::StatusOr<TokenSet> ParseTokens(std::string_view text) {
  TokenSet set;
  int number = 0;
  for (size_t at = 0; at <= text.size();) {
    size_t eol = text.find('\n', at);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(at, eol - at);
    at = eol + 1;
    ++number;
    // '#' starts a comment where a field could start (the line's start or after a space or
    // tab); inside a token it is part of the token.
    for (size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '#' && (i == 0 || line[i - 1] == ' ' || line[i - 1] == '\t')) {
        line = line.substr(0, i);
        break;
      }
    }
    const std::vector<std::string_view> fields = Fields(line);
    if (fields.empty()) continue;
    if (fields.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", number, ": expected ROLE TOKEN (two fields), found ", fields.size()));
    }
    const std::optional<Role> role = ParseRole(fields[0]);
    if (!role) {
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", number, ": unknown role '", std::string(fields[0]), "' (read, write or admin)"));
    }
    const std::string_view token = fields[1];
    if (token.size() > kMaxTokenBytes || !PrintableWithoutSpaces(token)) {
      return absl::InvalidArgumentError(absl::StrCat("line ", number, ": a token is 1 to ",
                                                     kMaxTokenBytes,
                                                     " printable ASCII characters without spaces"));
    }
    const std::array<uint8_t, 32> digest = Digest(token);
    bool duplicate = false;
    for (const TokenSet::Entry& e : set.entries) {
      if (e.digest != digest) continue;
      if (e.role != *role) {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", number, ": this token is listed before with the role ",
                         std::string(RoleName(e.role))));
      }
      duplicate = true;
    }
    if (!duplicate) set.entries.push_back({.digest = digest, .role = *role});
  }
  if (set.entries.empty()) {
    return absl::InvalidArgumentError("no token in the file (one ROLE TOKEN pair per line)");
  }
  return set;
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::FromFile(std::string path) {
  std::unique_ptr<Authenticator> a(new Authenticator(std::move(path)));
  if (absl::Status s = a->Reload(); !s.ok()) return s;
  absl::MutexLock lock(&a->mu_);
  a->reloads_ = 0;  // (the first load is not a reload)
  return a;
}

absl::Status Authenticator::Reload() {
  if (!enabled()) return absl::FailedPreconditionError("no --auth-token-file to reload");
  absl::StatusOr<TokenSet> parsed = [&]() -> absl::StatusOr<TokenSet> {
    std::ifstream in(path_, std::ios::binary);
    if (!in) {
      return absl::NotFoundError(absl::StrCat("cannot read the token file ", path_));
    }
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<TokenSet> set = ParseTokens(text.str());
    if (!set.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("token file ", path_, ": ", set.status().message()));
    }
    return set;
  }();
  absl::MutexLock lock(&mu_);
  if (!parsed.ok()) {
    ++reload_failures_;
    return parsed.status();
  }
  tokens_ = std::make_shared<const TokenSet>(std::move(*parsed));
  ++reloads_;
  return absl::OkStatus();
}

Identity Authenticator::Check(std::optional<std::string_view> token) const {
  if (!enabled() || !token) return Identity::Anonymous();
  std::shared_ptr<const TokenSet> tokens;
  {
    absl::ReaderMutexLock lock(&mu_);
    tokens = tokens_;
  }
  const std::array<uint8_t, 32> digest = Digest(*token);
  // Every entry is compared, each in constant time; at most one matches (ParseTokens drops
  // duplicates), so OR-ing the matches' roles is the match's role.
  uint8_t role = 0;
  for (const TokenSet::Entry& e : tokens->entries) {
    const uint8_t equal = SameDigest(digest, e.digest);
    role |= static_cast<uint8_t>(-equal) & static_cast<uint8_t>(e.role);
  }
  if (role == 0) return Identity::Invalid();
  return Identity::Valid(static_cast<Role>(role));
}

size_t Authenticator::count(Role role) const {
  absl::ReaderMutexLock lock(&mu_);
  return tokens_->count(role);
}

uint64_t Authenticator::reloads() const {
  absl::ReaderMutexLock lock(&mu_);
  return reloads_;
}

uint64_t Authenticator::reload_failures() const {
  absl::ReaderMutexLock lock(&mu_);
  return reload_failures_;
}

absl::Status Authorize(const Identity& who, Role needed, std::string_view what) {
  switch (who.state) {
    case Identity::State::kInvalid:
      return absl::UnauthenticatedError("invalid token");
    case Identity::State::kAnonymous:
      if (needed == Role::kNone) return absl::OkStatus();
      return absl::UnauthenticatedError(absl::StrCat(std::string(what), " needs a token with the ",
                                                     std::string(RoleName(needed)), " role"));
    case Identity::State::kValid:
      break;
  }
  if (who.role >= needed) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("the token's role ", std::string(RoleName(who.role)), " may not ",
                   std::string(what), " (it needs ", std::string(RoleName(needed)), ")"));
}

}  // namespace nexus::auth
