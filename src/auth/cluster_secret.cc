#include "auth/cluster_secret.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "auth/digest.h"

namespace nexus::auth {

namespace {

constexpr size_t kMinBytes = 16;
constexpr size_t kMaxBytes = 4096;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

}  // namespace

ClusterSecret::ClusterSecret(std::string value)
    : value_(std::move(value)), digest_(Digest(value_)) {}

absl::StatusOr<std::unique_ptr<ClusterSecret>> ClusterSecret::FromText(std::string_view text) {
  if (const size_t eol = text.find('\n'); eol != std::string_view::npos) {
    text = text.substr(0, eol);
  }
  while (!text.empty() && IsSpace(text.front())) text.remove_prefix(1);
  while (!text.empty() && IsSpace(text.back())) text.remove_suffix(1);
  const bool printable = PrintableWithoutSpaces(text);
  if (text.size() < kMinBytes || text.size() > kMaxBytes || !printable) {
    return absl::InvalidArgumentError(
        absl::StrCat("the cluster secret must be ", kMinBytes, " to ", kMaxBytes,
                     " printable ASCII characters without spaces on the first line (found ",
                     text.size(), printable ? "" : ", not all printable", ")"));
  }
  return std::unique_ptr<ClusterSecret>(new ClusterSecret(std::string(text)));
}

absl::StatusOr<std::unique_ptr<ClusterSecret>> ClusterSecret::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the cluster secret file ", path));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<std::unique_ptr<ClusterSecret>> secret = FromText(text.str());
  if (!secret.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", secret.status().message()));
  }
  return secret;
}

ClusterSecret::Check ClusterSecret::Verify(std::optional<std::string_view> presented) const {
  if (!presented) return Check::kMissing;
  return SameDigest(Digest(*presented), digest_) ? Check::kOk : Check::kWrong;
}

std::string_view CheckName(ClusterSecret::Check check) {
  switch (check) {
    case ClusterSecret::Check::kOk:
      return "ok";
    case ClusterSecret::Check::kMissing:
      return "missing";
    case ClusterSecret::Check::kWrong:
      return "wrong";
  }
  return "unknown";
}

}  // namespace nexus::auth
