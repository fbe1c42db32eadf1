#include "libsync/model/naming.h"

#include <regex>

#include "gtest/gtest.h"

namespace eventstream {
namespace {

class FakeCounter : public SeriesCounter {
 public:
  absl::StatusOr<int64_t> Next(absl::string_view) override { return ++n; }
  int64_t n = 0;
};

TEST(Naming, HashAndUuidShapes) {
  auto hash = NamingPolicy::Parse("hash");
  ASSERT_TRUE(hash.ok());
  auto name = hash->NewName(Value(), nullptr);
  ASSERT_TRUE(name.ok());
  EXPECT_TRUE(std::regex_match(*name, std::regex("[0-9a-f]{10}"))) << *name;
  auto uuid = NamingPolicy::Parse("uuid");
  name = uuid->NewName(Value(), nullptr);
  EXPECT_TRUE(std::regex_match(
      *name, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << *name;
}

TEST(Naming, FieldUsesTheValueAndRejectsEmpty) {
  auto policy = NamingPolicy::Parse("field:code");
  ASSERT_TRUE(policy.ok());
  Value doc = Value::EmptyObject();
  doc["code"] = Value::String("CUST-1");
  EXPECT_EQ(*policy->NewName(doc, nullptr), "CUST-1");
  auto empty = policy->NewName(Value::EmptyObject(), nullptr);
  EXPECT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("code"), absl::string_view::npos);
}

TEST(Naming, SeriesPadsTheCounter) {
  auto policy = NamingPolicy::Parse("series:NOTE-.#####");
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(policy->prefix(), "NOTE-");
  FakeCounter counter;
  EXPECT_EQ(*policy->NewName(Value(), &counter), "NOTE-00001");
  EXPECT_EQ(*policy->NewName(Value(), &counter), "NOTE-00002");
  auto no_dot = NamingPolicy::Parse("series:INV###");
  ASSERT_TRUE(no_dot.ok());
  EXPECT_EQ(*no_dot->NewName(Value(), &counter), "INV003");
}

TEST(Naming, BadAutonameNamesIt) {
  for (const char* bad : {"serial", "series:", "series:NOTE-", "field:", "series:.###"}) {
    auto p = NamingPolicy::Parse(bad);
    EXPECT_FALSE(p.ok()) << bad;
    EXPECT_NE(p.status().message().find(bad), absl::string_view::npos) << p.status();
  }
}

}  // namespace
}  // namespace eventstream
