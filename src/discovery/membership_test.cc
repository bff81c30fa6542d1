#include "discovery/membership.h"

#include <gtest/gtest.h>

namespace nexus {
namespace {

using Type = MembershipEvent::Type;

std::string Value(const std::string& name, int port) {
  return MemberInfoToJson({name, "127.0.0.1:" + std::to_string(port), "127.0.0.1:9999"});
}

MembershipEvent Put(const std::string& name, int port, int64_t rev) {
  return {Type::kPut, std::string(kNodesPrefix) + name, Value(name, port), rev};
}

MembershipEvent Del(const std::string& name, int64_t rev) {
  return {Type::kDelete, std::string(kNodesPrefix) + name, "", rev};
}

using Members = std::map<std::string, std::string>;

TEST(MemberInfoTest, RoundTripsAndRejectsGarbage) {
  const MemberInfo info{"svc1", "10.0.0.1:8888", "10.0.0.1:9999"};
  auto back = MemberInfoFromJson(MemberInfoToJson(info));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, info);
  EXPECT_EQ(MemberInfoToJson(info).find("incarnation"), std::string::npos);
  const MemberInfo run{"svc1", "10.0.0.1:8888", "10.0.0.1:9999", "1700000000000-00ff"};
  EXPECT_EQ(*MemberInfoFromJson(MemberInfoToJson(run)), run);
  EXPECT_NE(run, info);  // a restart under the same name and addresses is a change
  EXPECT_FALSE(MemberInfoFromJson("not json").ok());
  EXPECT_FALSE(MemberInfoFromJson("{\"name\":\"a\"}").ok());
  EXPECT_FALSE(MemberInfoFromJson("{\"name\":1,\"grpc\":\"x\"}").ok());
}

TEST(MembershipViewTest, ReadThenEvents) {
  MembershipView v;
  EXPECT_TRUE(v.Reset({{std::string(kNodesPrefix) + "a", Value("a", 1), 5},
                       {std::string(kNodesPrefix) + "b", Value("b", 2), 7}},
                      10));
  EXPECT_EQ(v.Members(), (Members{{"a", "127.0.0.1:1"}, {"b", "127.0.0.1:2"}}));
  EXPECT_TRUE(v.Apply(Put("c", 3, 11)));
  EXPECT_TRUE(v.Apply(Del("a", 12)));
  EXPECT_EQ(v.Members(), (Members{{"b", "127.0.0.1:2"}, {"c", "127.0.0.1:3"}}));
  EXPECT_EQ(v.revision(), 12);
}

TEST(MembershipViewTest, DuplicatesAndKeepaliveRePutsChangeNothing) {
  MembershipView v;
  v.Reset({}, 1);
  EXPECT_TRUE(v.Apply(Put("a", 1, 2)));
  EXPECT_FALSE(v.Apply(Put("a", 1, 2)));  // the same event twice
  EXPECT_FALSE(v.Apply(Put("a", 1, 3)));  // re-registered with the same address
  EXPECT_TRUE(v.Apply(Put("a", 9, 4)));   // moved to another address
  EXPECT_EQ(v.Members(), (Members{{"a", "127.0.0.1:9"}}));
}

TEST(MembershipViewTest, OutOfOrderEventsAreResolvedByRevision) {
  MembershipView v;
  v.Reset({}, 1);
  EXPECT_TRUE(v.Apply(Put("a", 1, 2)));
  EXPECT_TRUE(v.Apply(Del("a", 5)));
  EXPECT_FALSE(v.Apply(Put("a", 1, 4)));  // older than the delete: must not resurrect
  EXPECT_TRUE(v.Members().empty());
  EXPECT_TRUE(v.Apply(Put("a", 1, 6)));  // a real rejoin
  EXPECT_EQ(v.Members().size(), 1u);
}

TEST(MembershipViewTest, ResetAfterCompactionIgnoresOlderEvents) {
  MembershipView v;
  v.Reset({{std::string(kNodesPrefix) + "a", Value("a", 1), 3}}, 3);
  v.Apply(Put("b", 2, 4));
  // The watch was compacted; a fresh read at revision 20 shows only b.
  EXPECT_TRUE(v.Reset({{std::string(kNodesPrefix) + "b", Value("b", 2), 4}}, 20));
  EXPECT_EQ(v.Members(), (Members{{"b", "127.0.0.1:2"}}));
  EXPECT_FALSE(v.Apply(Put("a", 1, 15)));  // stale, from before the read
  EXPECT_TRUE(v.Apply(Put("a", 1, 21)));
  EXPECT_EQ(v.Members().size(), 2u);
}

TEST(MembershipViewTest, IgnoresForeignKeysAndBadValues) {
  MembershipView v;
  v.Reset({}, 1);
  EXPECT_FALSE(v.Apply({Type::kPut, "/other/x", Value("x", 1), 2}));
  EXPECT_FALSE(v.Apply({Type::kPut, std::string(kNodesPrefix) + "bad", "{", 3}));
  EXPECT_FALSE(v.Apply({Type::kPut, std::string(kNodesPrefix), Value("x", 1), 4}));
  EXPECT_TRUE(v.Members().empty());
  // The key names the node even if the value says otherwise.
  EXPECT_TRUE(v.Apply({Type::kPut, std::string(kNodesPrefix) + "real", Value("fake", 7), 5}));
  EXPECT_EQ(v.Members(), (Members{{"real", "127.0.0.1:7"}}));
}

}  // namespace
}  // namespace nexus
