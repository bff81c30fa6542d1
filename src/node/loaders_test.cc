#include "node/loaders.h"

#include <gtest/gtest.h>

#include "http/message.h"

namespace nexus {
namespace {

absl::StatusOr<std::string> LoadSync(Loader& loader, std::string_view key) {
  absl::StatusOr<std::string> out = absl::UnknownError("not called");
  loader.Load(key, [&](absl::StatusOr<std::string> r) { out = std::move(r); });
  return out;
}

TEST(DemoLoaderTest, ServesTheSeedScores) {
  auto loader = MakeDemoLoader();
  EXPECT_EQ(*LoadSync(*loader, "Tom"), "630");
  EXPECT_EQ(*LoadSync(*loader, "Jack"), "589");
  EXPECT_EQ(*LoadSync(*loader, "Sam"), "567");
  EXPECT_TRUE(absl::IsNotFound(LoadSync(*loader, "kkk").status()));
}

TEST(OriginLoaderTest, SubstitutesThePercentEncodedKey) {
  OriginLoader loader("http://127.0.0.1:8080/item?k={key}&again={key}", nullptr,
                      std::chrono::milliseconds(100));
  EXPECT_EQ(loader.UrlFor("a b/c&d"),
            "http://127.0.0.1:8080/item?k=a%20b%2Fc%26d&again=a%20b%2Fc%26d");
  EXPECT_EQ(http::UrlEncode("Tom-1_x.y~"), "Tom-1_x.y~");
}

}  // namespace
}  // namespace nexus
