// The protocol-neutral services on a real Group (one node, no peers): what they validate, the
// errors they answer, how they count.
#include <gtest/gtest.h>

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
  bool AddMember(std::string name, std::string grpc, std::string) override {
    members.emplace_back(std::move(name), std::move(grpc));
    return true;
  }
  void FetchMetrics(const std::string&, std::chrono::milliseconds, MetricsCallback done) override {
    done(absl::NotFoundError("stub"));
  }
  std::vector<std::pair<std::string, std::string>> members;

 private:
  std::string self_ = "self";
};

struct Fixture {
  Fixture() {
    EXPECT_TRUE(groups
                    .Add(std::make_unique<Group>(GroupOptions{.name = "scores", .jitter_seed = 1},
                                                 nullptr, nullptr, &clock))
                    .ok());
  }
  // The status a synchronous operation (one node, no loader) completed with.
  absl::StatusOr<CachedValue> Get(Protocol p, std::string_view group, std::string_view key) {
    absl::StatusOr<CachedValue> out = absl::InternalError("not called");
    service.Get(p, group, key, [&](absl::StatusOr<CachedValue> r) { out = std::move(r); });
    return out;
  }
  absl::Status Set(Protocol p, std::string_view group, std::string_view key, std::string_view value,
                   int64_t ttl_ms) {
    absl::Status out = absl::InternalError("not called");
    service.Set(p, group, key, value, ttl_ms, false, [&](absl::Status s) { out = std::move(s); });
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
  CacheService service{CacheServiceOptions{.max_key_bytes = 8, .max_value_bytes = 16}, &groups,
                       &cluster, &metrics};
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
  f.service.Delete(Protocol::kHttp, "", "k", [&](absl::Status s) { deleted = s; });
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

TEST(CacheServiceTest, SetPeerAddsByNameAtTheGrpcPortOrAtAnAddress) {
  Fixture f;
  EXPECT_TRUE(f.service.SetPeer(Protocol::kHttp, "svc2", "").ok());
  EXPECT_TRUE(f.service.SetPeer(Protocol::kHttp, "svc3", "10.0.0.3:7000").ok());
  EXPECT_EQ(f.service.SetPeer(Protocol::kHttp, "", "").message(), "peer is not allow empty!");
  EXPECT_TRUE(absl::IsInvalidArgument(f.service.SetPeer(Protocol::kHttp, "a=b", "")));
  ASSERT_EQ(f.cluster.members.size(), 2u);
  EXPECT_EQ(f.cluster.members[0], std::make_pair(std::string("svc2"), std::string("svc2:8888")));
  EXPECT_EQ(f.cluster.members[1].second, "10.0.0.3:7000");
  EXPECT_EQ(f.Count(R"(nexuscache_requests_total{protocol="http",op="setpeer",status="error"})"),
            2);
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
