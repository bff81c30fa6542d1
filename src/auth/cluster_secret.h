// The shared cluster secret (--cluster-secret-file): where mutual TLS is not configured, every
// node-to-node call carries it (gRPC metadata kClusterSecretMetadata, HTTP header
// kClusterSecretHeader on the /peer/v1 routes), and a node that has one answers no peer call
// without it: not Get/Set/Delete (the seed's gRPC service included), Replicate, the /peer/v1
// routes or Metrics.
//
// File: the secret on its first line (surrounding whitespace and the newline are dropped), 16
// to 4096 printable ASCII characters without spaces (`openssl rand -hex 32` makes one). Kept
// as given to send and as a SHA-256 digest to check in constant time.
//
// Thread-safety: immutable after construction.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace nexus::auth {

inline constexpr std::string_view kClusterSecretHeader = "X-Nexus-Cluster-Secret";
inline constexpr char kClusterSecretMetadata[] = "x-nexus-cluster-secret";  // (lower case)

class ClusterSecret {
 public:
  // Errors name the file and what is wrong with its content.
  static absl::StatusOr<std::unique_ptr<ClusterSecret>> FromFile(const std::string& path);
  // The same from the file's text (tests).
  static absl::StatusOr<std::unique_ptr<ClusterSecret>> FromText(std::string_view text);

  // What this node sends with its calls.
  const std::string& value() const { return value_; }

  enum class Check : uint8_t { kOk, kMissing, kWrong };
  // `presented` nullopt: the call carried none.
  Check Verify(std::optional<std::string_view> presented) const;

 private:
  explicit ClusterSecret(std::string value);
  const std::string value_;
  std::array<uint8_t, 32> digest_;
};

// "missing" / "wrong": the reason label of the refusal metrics and the log.
std::string_view CheckName(ClusterSecret::Check check);

}  // namespace nexus::auth
