#include "auth/tokens.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "auth/digest.h"

namespace nexus::auth {
namespace {

TEST(ParseTokens, ReadsRolesAndTokensWithCommentsAndBlankLines) {
  const absl::StatusOr<TokenSet> set = ParseTokens(
      "# the app servers\n"
      "read   r-token-1\n"
      "\n"
      "write\tw-token   # the writer\n"
      "admin a-token\r\n"
      "read r-token-2\n");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->entries.size(), 4u);
  EXPECT_EQ(set->count(Role::kRead), 2u);
  EXPECT_EQ(set->count(Role::kWrite), 1u);
  EXPECT_EQ(set->count(Role::kAdmin), 1u);
}

TEST(ParseTokens, AHashInsideATokenIsPartOfIt) {
  const absl::StatusOr<TokenSet> set = ParseTokens("write ab#cd #comment\n");
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->entries.size(), 1u);
  EXPECT_EQ(set->entries[0].digest, Digest("ab#cd"));
}

TEST(ParseTokens, NamesTheLineOfEveryMistake) {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case& c : {
           Case{"read a\nroot b\n", "line 2: unknown role 'root' (read, write or admin)"},
           Case{"read\n", "line 1: expected ROLE TOKEN (two fields), found 1"},
           Case{"read a b\n", "line 1: expected ROLE TOKEN (two fields), found 3"},
           Case{"read a\nwrite a\n", "line 2: this token is listed before with the role read"},
           Case{"# nothing\n\n", "no token in the file (one ROLE TOKEN pair per line)"},
           Case{"read caf\xc3\xa9\n",
                "line 1: a token is 1 to 4096 printable ASCII characters without spaces"},
       }) {
    const absl::StatusOr<TokenSet> set = ParseTokens(c.text);
    ASSERT_FALSE(set.ok()) << c.text;
    EXPECT_EQ(set.status().message(), c.message) << c.text;
  }
  // The same token twice with the same role is harmless.
  EXPECT_TRUE(ParseTokens("read a\nread a\n").ok());
}

class TokenFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/nexus_auth_XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/tokens";
  }
  void TearDown() override {
    std::remove(path_.c_str());
    rmdir(dir_.c_str());
  }
  void Write(const std::string& text) { std::ofstream(path_, std::ios::trunc) << text; }

  std::string dir_, path_;
};

TEST_F(TokenFile, ChecksTokensAndTheirRoles) {
  Write("read r\nwrite w\nadmin a\n");
  absl::StatusOr<std::unique_ptr<Authenticator>> auth = Authenticator::FromFile(path_);
  ASSERT_TRUE(auth.ok()) << auth.status();
  Authenticator& a = **auth;
  EXPECT_TRUE(a.enabled());
  EXPECT_EQ(a.Check("r").role, Role::kRead);
  EXPECT_EQ(a.Check("w").role, Role::kWrite);
  EXPECT_EQ(a.Check("a").role, Role::kAdmin);
  EXPECT_EQ(a.Check("a").state, Identity::State::kValid);
  EXPECT_EQ(a.Check("x").state, Identity::State::kInvalid);
  EXPECT_EQ(a.Check("").state, Identity::State::kInvalid);
  EXPECT_EQ(a.Check("ra").state, Identity::State::kInvalid);
  EXPECT_EQ(a.Check(std::nullopt).state, Identity::State::kAnonymous);
}

TEST_F(TokenFile, AReloadReplacesTheTokensAndABadOneKeepsThem) {
  Write("write old\n");
  absl::StatusOr<std::unique_ptr<Authenticator>> auth = Authenticator::FromFile(path_);
  ASSERT_TRUE(auth.ok()) << auth.status();
  Authenticator& a = **auth;
  Write("write new\nadmin boss\n");
  ASSERT_TRUE(a.Reload().ok());
  EXPECT_EQ(a.Check("old").state, Identity::State::kInvalid);
  EXPECT_EQ(a.Check("new").role, Role::kWrite);
  EXPECT_EQ(a.count(Role::kAdmin), 1u);
  EXPECT_EQ(a.reloads(), 1u);

  Write("write newer\nsuperuser x\n");
  const absl::Status bad = a.Reload();
  EXPECT_EQ(bad.message(),
            "token file " + path_ + ": line 2: unknown role 'superuser' (read, write or admin)");
  EXPECT_EQ(a.Check("new").role, Role::kWrite) << "a failed reload keeps the tokens before it";
  EXPECT_EQ(a.Check("newer").state, Identity::State::kInvalid);
  EXPECT_EQ(a.reload_failures(), 1u);

  std::remove(path_.c_str());
  EXPECT_FALSE(a.Reload().ok());
  EXPECT_EQ(a.Check("new").role, Role::kWrite);
}

TEST_F(TokenFile, AMissingOrBadFileIsAnErrorAtStart) {
  absl::StatusOr<std::unique_ptr<Authenticator>> missing = Authenticator::FromFile(path_);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(), "cannot read the token file " + path_);
  Write("read\n");
  absl::StatusOr<std::unique_ptr<Authenticator>> bad = Authenticator::FromFile(path_);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "token file " + path_ + ": line 1: expected ROLE TOKEN (two fields), found 1");
}

TEST(Authenticator, WithoutAFileEveryCheckIsAnonymous) {
  Authenticator a;
  EXPECT_FALSE(a.enabled());
  EXPECT_EQ(a.Check("anything").state, Identity::State::kAnonymous);
  EXPECT_FALSE(a.Reload().ok());
}

TEST(Authorize, EachRoleImpliesTheOnesBeforeIt) {
  EXPECT_TRUE(Authorize(Identity::Valid(Role::kAdmin), Role::kWrite, "set").ok());
  EXPECT_TRUE(Authorize(Identity::Valid(Role::kWrite), Role::kRead, "get").ok());
  EXPECT_TRUE(Authorize(Identity::Valid(Role::kRead), Role::kNone, "get").ok());
  EXPECT_TRUE(Authorize(Identity::Anonymous(), Role::kNone, "get").ok());

  const absl::Status forbidden = Authorize(Identity::Valid(Role::kRead), Role::kWrite, "set");
  EXPECT_TRUE(absl::IsPermissionDenied(forbidden));
  EXPECT_EQ(forbidden.message(), "the token's role read may not set (it needs write)");
  const absl::Status missing = Authorize(Identity::Anonymous(), Role::kAdmin, "setpeer");
  EXPECT_TRUE(absl::IsUnauthenticated(missing));
  EXPECT_EQ(missing.message(), "setpeer needs a token with the admin role");
  // A wrong token is refused also where none is needed.
  const absl::Status invalid = Authorize(Identity::Invalid(), Role::kNone, "get");
  EXPECT_TRUE(absl::IsUnauthenticated(invalid));
  EXPECT_EQ(invalid.message(), "invalid token");
}

}  // namespace
}  // namespace nexus::auth
