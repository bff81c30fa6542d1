#include "auth/cluster_secret.h"

#include <gtest/gtest.h>

namespace nexus::auth {
namespace {

TEST(ClusterSecret, TakesTheFirstLineTrimmedAndChecksIt) {
  absl::StatusOr<std::unique_ptr<ClusterSecret>> s =
      ClusterSecret::FromText("  0123456789abcdef0123  \r\nignored\n");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->value(), "0123456789abcdef0123");
  EXPECT_EQ((*s)->Verify("0123456789abcdef0123"), ClusterSecret::Check::kOk);
  EXPECT_EQ((*s)->Verify("0123456789abcdef012"), ClusterSecret::Check::kWrong);
  EXPECT_EQ((*s)->Verify(""), ClusterSecret::Check::kWrong);
  EXPECT_EQ((*s)->Verify(std::nullopt), ClusterSecret::Check::kMissing);
  EXPECT_EQ(CheckName(ClusterSecret::Check::kWrong), "wrong");
}

TEST(ClusterSecret, RefusesAShortOrUnprintableSecret) {
  for (const char* text : {"", "\n", "short", "0123456789 abcdef", "0123456789abcde\x01"}) {
    absl::StatusOr<std::unique_ptr<ClusterSecret>> s = ClusterSecret::FromText(text);
    EXPECT_FALSE(s.ok()) << text;
  }
  EXPECT_EQ(ClusterSecret::FromText("short").status().message(),
            "the cluster secret must be 16 to 4096 printable ASCII characters without spaces on "
            "the first line (found 5)");
  EXPECT_EQ(ClusterSecret::FromFile("/nonexistent/secret").status().message(),
            "cannot read the cluster secret file /nonexistent/secret");
}

}  // namespace
}  // namespace nexus::auth
