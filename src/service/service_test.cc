// The protocol-neutral services on a real Group (one node, no peers): what they validate, the
// errors they answer, how they count.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "common/clock.h"
#include "group/group.h"
#include "group/registry.h"
#include "metrics/metrics.h"
#include "service/cache_service.h"
#include "service/owner_service.h"

namespace nexus {
namespace {

class StubCluster final : public ClusterView {
 public:
  const std::string& self() const override { return self_; }
  uint64_t generation() const override { return 1; }
  std::vector<std::pair<std::string, std::string>> Members() const override { return members; }
  std::optional<std::string> OwnerOf(std::string_view) const override { return self_; }
  bool AddMember(std::string name, std::string grpc, std::string http) override {
    added_http.push_back(http);
    known[name] = {.name = name, .grpc = grpc, .http = http};
    members.emplace_back(std::move(name), std::move(grpc));
    return true;
  }
  std::optional<MemberInfo> KnownMember(std::string_view name) const override {
    auto it = known.find(std::string(name));
    if (it == known.end()) return std::nullopt;
    return it->second;
  }
  void FetchMetrics(const std::string&, std::chrono::milliseconds, MetricsCallback done) override {
    done(absl::NotFoundError("stub"));
  }
  std::vector<std::pair<std::string, std::string>> members;
  std::map<std::string, MemberInfo> known;  // what KnownMember answers
  std::vector<std::string> added_http;      // the HTTP address of each AddMember

 private:
  std::string self_ = "self";
};

struct Fixture {
  explicit Fixture(CacheServiceOptions options = {}, const auth::Authenticator* auth = nullptr)
      : service(WithLimits(options), &groups, &cluster, &metrics, auth) {
    EXPECT_TRUE(groups
                    .Add(std::make_unique<Group>(GroupOptions{.name = "scores", .jitter_seed = 1},
                                                 nullptr, nullptr, &clock))
                    .ok());
  }
  // The status a synchronous operation (one node, no loader) completed with.
  static CacheServiceOptions WithLimits(CacheServiceOptions options) {
    options.max_key_bytes = 8;
    options.max_value_bytes = 16;
    return options;
  }
  absl::StatusOr<CachedValue> Get(const Caller& c, std::string_view group, std::string_view key) {
    absl::StatusOr<CachedValue> out = absl::InternalError("not called");
    service.Get(c, group, key, [&](absl::StatusOr<CachedValue> r) { out = std::move(r); });
    return out;
  }
  absl::StatusOr<CachedValue> Get(Protocol p, std::string_view group, std::string_view key) {
    return Get(Caller{.protocol = p}, group, key);
  }
  absl::Status Set(const Caller& c, std::string_view group, std::string_view key,
                   std::string_view value, int64_t ttl_ms) {
    absl::Status out = absl::InternalError("not called");
    service.Set(c, group, key, value, ttl_ms, false, [&](absl::Status s) { out = std::move(s); });
    return out;
  }
  absl::Status Set(Protocol p, std::string_view group, std::string_view key, std::string_view value,
                   int64_t ttl_ms) {
    return Set(Caller{.protocol = p}, group, key, value, ttl_ms);
  }
  absl::Status Delete(const Caller& c, std::string_view key) {
    absl::Status out = absl::InternalError("not called");
    service.Delete(c, "", key, [&](absl::Status s) { out = std::move(s); });
    return out;
  }
  double Count(std::string_view series) {
    const std::string text = metrics.Render();
    const size_t at = text.find(std::string(series) + " ");
    return at == std::string::npos ? -1 : std::stod(text.substr(at + series.size() + 1));
  }

  FakeClock clock{1'700'000'000'000};
  GroupRegistry groups;
  StubCluster cluster;
  metrics::Registry metrics;
  CacheService service;
  OwnerService owner{&groups, &clock, OwnerLimits{.max_key_bytes = 8, .max_value_bytes = 16}};
};

TEST(CacheServiceTest, ValidatesAndResolvesTheDefaultGroup) {
  Fixture f;
  EXPECT_TRUE(f.Set(Protocol::kHttp, "", "k", "v", 60'000).ok());
  ASSERT_TRUE(f.Get(Protocol::kHttp, "", "k").ok());
  EXPECT_EQ(f.Get(Protocol::kHttp, "scores", "k")->data, "v");

  EXPECT_EQ(f.Get(Protocol::kHttp, "", "").status(), absl::InvalidArgumentError("key is required"));
  EXPECT_EQ(f.Get(Protocol::kHttp, "", "123456789").status(),
            absl::ResourceExhaustedError("key longer than 8 bytes"));
  EXPECT_EQ(f.Set(Protocol::kHttp, "", "k", std::string(17, 'v'), 60'000),
            absl::ResourceExhaustedError("value longer than 16 bytes"));
  EXPECT_TRUE(absl::IsInvalidArgument(f.Set(Protocol::kHttp, "", "k", "v", 0)));
  EXPECT_TRUE(absl::IsInvalidArgument(f.Set(Protocol::kHttp, "", "k", "v", 4320LL * 60'000 + 1)));

  const absl::Status no_group = f.Get(Protocol::kHttp, "nope", "k").status();
  EXPECT_EQ(no_group.message(), "no such group: nope");
  EXPECT_TRUE(CacheService::IsNoSuchGroup(no_group));
  const absl::Status miss = f.Get(Protocol::kHttp, "", "absent").status();
  EXPECT_TRUE(absl::IsNotFound(miss));
  EXPECT_FALSE(CacheService::IsNoSuchGroup(miss));
}

TEST(CacheServiceTest, CountsByProtocolOperationAndOutcome) {
  Fixture f;
  f.Set(Protocol::kHttp, "", "k", "v", 60'000).IgnoreError();
  f.Get(Protocol::kHttp, "", "k").IgnoreError();
  f.Get(Protocol::kResp, "", "k").IgnoreError();
  f.Get(Protocol::kResp, "", "absent").IgnoreError();
  f.Get(Protocol::kMemcache, "", "").IgnoreError();
  absl::Status deleted = absl::InternalError("not called");
  f.service.Delete(Caller{}, "", "k", [&](absl::Status s) { deleted = s; });
  EXPECT_TRUE(deleted.ok());
  EXPECT_EQ(f.Count(R"(nexuscache_requests_total{protocol="http",op="set",status="ok"})"), 1);
  EXPECT_EQ(f.Count(R"(nexuscache_requests_total{protocol="http",op="get",status="hit"})"), 1);
  EXPECT_EQ(f.Count(R"(nexuscache_requests_total{protocol="resp",op="get",status="hit"})"), 1);
  EXPECT_EQ(f.Count(R"(nexuscache_requests_total{protocol="resp",op="get",status="miss"})"), 1);
  EXPECT_EQ(f.Count(R"(nexuscache_requests_total{protocol="memcache",op="get",status="error"})"),
            1);
  EXPECT_EQ(f.Count(R"(nexuscache_requests_total{protocol="http",op="delete",status="ok"})"), 1);
  EXPECT_EQ(f.Count(R"(nexuscache_request_duration_seconds_count{protocol="resp",op="get"})"), 2);
  EXPECT_TRUE(f.service.WaitIdle(std::chrono::milliseconds(0)));
}

TEST(CacheServiceTest, WithoutTokensSetPeerOnlyReAddsAKnownMemberWhereItWas) {
  Fixture f;
  f.cluster.known["svc2"] = {.name = "svc2", .grpc = "10.0.0.2:8888", .http = "10.0.0.2:9999"};
  const Caller anyone;
  // The seed's "re-add a recovered node": at the addresses this node knows, HTTP included.
  EXPECT_TRUE(f.service.SetPeer(anyone, "svc2", "").ok());
  EXPECT_TRUE(f.service.SetPeer(anyone, "svc2", "10.0.0.2:8888").ok());
  ASSERT_EQ(f.cluster.members.size(), 2u);
  EXPECT_EQ(f.cluster.members[0],
            std::make_pair(std::string("svc2"), std::string("10.0.0.2:8888")));
  // (Both with the HTTP address: a member that left is no longer in the ring to keep it.)
  EXPECT_EQ(f.cluster.added_http, std::vector<std::string>({"10.0.0.2:9999", "10.0.0.2:9999"}));
  // Never a new member, never a new address.
  const absl::Status unknown = f.service.SetPeer(anyone, "svc3", "");
  EXPECT_TRUE(absl::IsPermissionDenied(unknown));
  EXPECT_EQ(unknown.message(),
            "peer svc3 is not a known member (from --peer or etcd): adding a new member needs "
            "the admin role (--auth-token-file)");
  const absl::Status moved = f.service.SetPeer(anyone, "svc2", "6.6.6.6:8888");
  EXPECT_TRUE(absl::IsPermissionDenied(moved));
  EXPECT_EQ(moved.message(),
            "peer svc2 is known at 10.0.0.2:8888: giving it a new address needs the admin role "
            "(--auth-token-file)");
  EXPECT_EQ(f.cluster.members.size(), 2u);
  EXPECT_EQ(f.service.SetPeer(anyone, "", "").message(), "peer is not allow empty!");
  EXPECT_TRUE(absl::IsInvalidArgument(f.service.SetPeer(anyone, "a=b", "")));
  EXPECT_EQ(f.Count(R"(nexuscache_requests_total{protocol="http",op="setpeer",status="error"})"),
            4);
}

// A token file with one token per role, in a directory of its own.
class Tokens {
 public:
  Tokens() {
    char dir[] = "/tmp/nexus_service_XXXXXX";
    EXPECT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    std::ofstream(dir_ + "/tokens") << "read R\nwrite W\nadmin A\n";
    absl::StatusOr<std::unique_ptr<auth::Authenticator>> a =
        auth::Authenticator::FromFile(dir_ + "/tokens");
    EXPECT_TRUE(a.ok()) << a.status();
    auth_ = std::move(*a);
  }
  ~Tokens() {
    std::remove((dir_ + "/tokens").c_str());
    rmdir(dir_.c_str());
  }
  const auth::Authenticator* get() const { return auth_.get(); }

 private:
  std::string dir_;
  std::unique_ptr<auth::Authenticator> auth_;
};

TEST(CacheServiceTest, WithTokensEachOperationNeedsItsRole) {
  Tokens tokens;
  Fixture f({}, tokens.get());
  ASSERT_TRUE(f.service.auth_enabled());
  const Caller anyone, reader{.identity = f.service.Identify("R")},
      writer{.identity = f.service.Identify("W")}, admin{.identity = f.service.Identify("A")},
      wrong{.identity = f.service.Identify("nope")};
  // Reads stay open by default (the seed's curl flows), writes need the write role.
  EXPECT_TRUE(absl::IsNotFound(f.Get(anyone, "", "k").status()));
  const absl::Status anonymous_set = f.Set(anyone, "", "k", "v", 60'000);
  EXPECT_TRUE(absl::IsUnauthenticated(anonymous_set));
  EXPECT_EQ(anonymous_set.message(), "set needs a token with the write role");
  const absl::Status reader_set = f.Set(reader, "", "k", "v", 60'000);
  EXPECT_TRUE(absl::IsPermissionDenied(reader_set));
  EXPECT_EQ(reader_set.message(), "the token's role read may not set (it needs write)");
  EXPECT_TRUE(absl::IsPermissionDenied(f.Delete(reader, "k")));
  EXPECT_TRUE(f.Set(writer, "", "k", "v", 60'000).ok());
  EXPECT_TRUE(f.Set(admin, "", "k", "v2", 60'000).ok());
  EXPECT_TRUE(f.Delete(writer, "k").ok());
  // A wrong token is refused even where none is needed.
  EXPECT_EQ(f.Get(wrong, "", "k").status(), absl::UnauthenticatedError("invalid token"));
  // setpeer is the admin's, and the admin may add anything.
  EXPECT_TRUE(absl::IsPermissionDenied(f.service.SetPeer(writer, "svc2", "")));
  const absl::Status anonymous_peer = f.service.SetPeer(anyone, "svc2", "");
  EXPECT_EQ(anonymous_peer.message(), "setpeer needs a token with the admin role");
  EXPECT_TRUE(f.service.SetPeer(admin, "svc9", "").ok());
  EXPECT_TRUE(f.service.SetPeer(admin, "svc8", "10.0.0.8:7000").ok());
  ASSERT_EQ(f.cluster.members.size(), 2u);
  EXPECT_EQ(f.cluster.members[0].second, "svc9:8888");  // the seed's NAME:<grpc port>
  // The routes: open by default.
  EXPECT_TRUE(f.service.Authorize(anyone, CacheService::Access::kMetrics).ok());
  EXPECT_TRUE(f.service.Authorize(anyone, CacheService::Access::kDashboard).ok());
  EXPECT_TRUE(f.service.Authorize(anyone, CacheService::Access::kRead).ok());
  EXPECT_EQ(f.Count(R"(nexuscache_auth_refused_total{protocol="http",reason="missing"})"), 2);
  EXPECT_EQ(f.Count(R"(nexuscache_auth_refused_total{protocol="http",reason="forbidden"})"), 3);
  EXPECT_EQ(f.Count(R"(nexuscache_auth_refused_total{protocol="http",reason="invalid"})"), 1);
}

TEST(CacheServiceTest, ReadsMetricsAndTheDashboardCanNeedTheReadRole) {
  Tokens tokens;
  Fixture f({.auth_reads = true, .auth_metrics = true, .auth_dashboard = true}, tokens.get());
  const Caller anyone{.protocol = Protocol::kResp}, reader{.identity = f.service.Identify("R")};
  const absl::Status get = f.Get(anyone, "", "k").status();
  EXPECT_TRUE(absl::IsUnauthenticated(get));
  EXPECT_EQ(get.message(), "get needs a token with the read role");
  EXPECT_TRUE(absl::IsNotFound(f.Get(reader, "", "k").status()));
  for (auto access : {CacheService::Access::kRead, CacheService::Access::kMetrics,
                      CacheService::Access::kDashboard, CacheService::Access::kClusterMetrics}) {
    EXPECT_TRUE(absl::IsUnauthenticated(f.service.Authorize(anyone, access)));
    EXPECT_TRUE(f.service.Authorize(reader, access).ok());
  }
  EXPECT_EQ(f.service.Authorize(anyone, CacheService::Access::kMetrics).message(),
            "read the metrics needs a token with the read role");
  EXPECT_EQ(f.Count(R"(nexuscache_auth_refused_total{protocol="resp",reason="missing"})"), 6);
}

TEST(CacheServiceTest, TheClusterMetricsNeedReadUnderEitherMetricsOrDashboardFlag) {
  Tokens tokens;
  for (const bool metrics : {false, true}) {
    Fixture f({.auth_metrics = metrics, .auth_dashboard = !metrics}, tokens.get());
    const Caller anyone{.protocol = Protocol::kHttp};
    const absl::Status s = f.service.Authorize(anyone, CacheService::Access::kClusterMetrics);
    EXPECT_TRUE(absl::IsUnauthenticated(s)) << metrics;
    EXPECT_EQ(s.message(), "read the cluster's metrics needs a token with the read role");
    EXPECT_EQ(f.service.Authorize(anyone, CacheService::Access::kDashboard).ok(), metrics);
    EXPECT_EQ(f.service.Authorize(anyone, CacheService::Access::kMetrics).ok(), !metrics);
  }
}

TEST(CacheServiceTest, WithoutTokensEveryTokenIsIgnored) {
  Fixture f;
  const Caller c{.identity = f.service.Identify("whatever")};
  EXPECT_EQ(c.identity.state, auth::Identity::State::kAnonymous);
  EXPECT_TRUE(f.Set(c, "", "k", "v", 60'000).ok());
  EXPECT_TRUE(f.service.Authorize(c, CacheService::Access::kMetrics).ok());
}

absl::Status OwnerSetStatus(OwnerService& owner, OwnerSet request) {
  absl::Status out = absl::InternalError("not called");
  owner.Set(request, [&](absl::Status s) { out = std::move(s); });
  return out;
}

TEST(OwnerServiceTest, OneValidationForEveryOperation) {
  Fixture f;
  auto get = [&](std::string_view group, std::string_view key) {
    absl::StatusOr<CachedValue> out = absl::InternalError("not called");
    f.owner.Get(group, key, /*peek=*/false,
                [&](absl::StatusOr<CachedValue> r) { out = std::move(r); });
    return out.status();
  };
  auto del = [&](std::string_view group, std::string_view key) {
    absl::Status out = absl::InternalError("not called");
    f.owner.Delete(group, key, [&](absl::Status s) { out = std::move(s); });
    return out;
  };
  for (const absl::Status& s : {get("", "k"), del("", "k")}) {
    EXPECT_EQ(s, absl::InvalidArgumentError("a group name is required"));
  }
  for (const absl::Status& s : {get("scores", ""), del("scores", "")}) {
    EXPECT_EQ(s, absl::InvalidArgumentError("a non-empty key is required"));
  }
  EXPECT_EQ(get("nope", "k"), absl::NotFoundError("no such group: nope"));
  EXPECT_EQ(del("scores", "123456789"), absl::ResourceExhaustedError("key longer than 8 bytes"));
  EXPECT_EQ(f.owner.Replicate("scores", Replica{.key = "k", .version = 0}).status(),
            absl::InvalidArgumentError("a replica needs a version"));
  EXPECT_EQ(f.owner.Replicate("scores", Replica{.key = "", .version = 1}).status(),
            absl::InvalidArgumentError("a non-empty key is required"));
}

TEST(OwnerServiceTest, AWriteThatArrivesAfterItsCallerStoppedWaitingIsNotApplied) {
  // (A node paused with requests in its socket: once it runs again they must not take effect
  // with a version drawn then, above writes the callers made elsewhere meanwhile.)
  Fixture f;
  const int64_t now = f.clock.NowMillis();
  const absl::Status late = OwnerSetStatus(
      f.owner, {.group = "scores", .key = "k", .value = "v", .ttl_ms = 1000, .answer_by = now - 1});
  EXPECT_TRUE(absl::IsDeadlineExceeded(late)) << late;
  Group& g = *f.groups.Find("scores");
  EXPECT_EQ(g.store().main().items(), 0u);
  ASSERT_TRUE(
      OwnerSetStatus(
          f.owner, {.group = "scores", .key = "k", .value = "v", .ttl_ms = 1000, .answer_by = now})
          .ok());
  absl::Status deleted = absl::InternalError("not called");
  f.owner.Delete(
      "scores", "k", [&](absl::Status s) { deleted = std::move(s); }, now - 1);
  EXPECT_TRUE(absl::IsDeadlineExceeded(deleted)) << deleted;
  EXPECT_FALSE(g.store().Deleted("k"));
}

TEST(OwnerServiceTest, SetTakesATtlADeadlineOrTheSeedsExpire) {
  Fixture f;
  const int64_t now = f.clock.NowMillis();
  EXPECT_TRUE(
      OwnerSetStatus(f.owner, {.group = "scores", .key = "a", .value = "1", .ttl_ms = 1000}).ok());
  EXPECT_TRUE(OwnerSetStatus(
                  f.owner, {.group = "scores", .key = "b", .value = "2", .deadline_ms = now + 5000})
                  .ok());
  EXPECT_TRUE(
      OwnerSetStatus(f.owner,
                     {.group = "scores", .key = "c", .value = "3", .expire_s = now / 1000 + 60})
          .ok());
  EXPECT_EQ(OwnerSetStatus(f.owner, {.group = "scores", .key = "d", .value = "4"}),
            absl::InvalidArgumentError("ttl_ms, deadline_ms or expire required"));
  EXPECT_TRUE(absl::IsInvalidArgument(
      OwnerSetStatus(f.owner, {.group = "scores", .key = "d", .value = "4", .ttl_ms = -1})));
  EXPECT_TRUE(absl::IsInvalidArgument(OwnerSetStatus(
      f.owner, {.group = "scores", .key = "d", .value = "4", .expire_s = now / 1000 - 1})));
  EXPECT_EQ(
      OwnerSetStatus(f.owner,
                     {.group = "scores", .key = "d", .value = std::string(17, 'x'), .ttl_ms = 1}),
      absl::ResourceExhaustedError("value longer than 16 bytes"));
  CachedValue b;
  ASSERT_TRUE(f.groups.Find("scores")->store().main().Get("b", &b.data, &b.deadline));
  EXPECT_EQ(b.deadline, now + 5000);
  CachedValue c;
  ASSERT_TRUE(f.groups.Find("scores")->store().main().Get("c", &c.data, &c.deadline));
  EXPECT_EQ(c.deadline, (now / 1000 + 60) * 1000);
}

}  // namespace
}  // namespace nexus

namespace nexus {
namespace {

TEST(OwnerServiceTest, RefusesAVersionDrawnFarAheadOfItsClock) {
  Fixture f;
  OwnerService owner{&f.groups, &f.clock, OwnerLimits{.max_version_skew_ms = 60'000}};
  const auto version_at = [](UnixMillis ms) {
    return static_cast<uint64_t>(ms) << ReplicatedStore::kVersionClockShift;
  };
  const UnixMillis now = f.clock.NowMillis();
  // A poisoned push: a version an hour ahead would win against every write for an hour.
  const absl::StatusOr<bool> poisoned = owner.Replicate(
      "scores", Replica{.key = "k", .value = "poison", .version = version_at(now + 3'600'000)});
  ASSERT_TRUE(absl::IsOutOfRange(poisoned.status())) << poisoned.status();
  EXPECT_EQ(poisoned.status().message(),
            "version " + std::to_string(version_at(now + 3'600'000)) +
                " was drawn 3600000 ms ahead of this node's clock (at most 60000 ms: "
                "--max-version-skew)");
  EXPECT_EQ(owner.versions_refused(), 1u);
  // Within the bound (a clock a little ahead), and behind: applied.
  EXPECT_TRUE(*owner.Replicate(
      "scores", Replica{.key = "k", .value = "ahead", .version = version_at(now + 30'000)}));
  EXPECT_TRUE(f.Get(Protocol::kHttp, "", "k").ok());
  EXPECT_EQ(f.Get(Protocol::kHttp, "", "k")->data, "ahead");
  EXPECT_EQ(owner.versions_refused(), 1u);
  // No bound: anything goes (the default of OwnerLimits, kept for tests and tools).
  EXPECT_TRUE(
      f.owner
          .Replicate("scores",
                     Replica{.key = "j", .value = "far", .version = version_at(now + 3'600'000)})
          .ok());
}

}  // namespace
}  // namespace nexus
