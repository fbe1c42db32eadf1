#include "libsync/rules/apply_lanes.h"

#include <algorithm>

#include "gtest/gtest.h"

namespace eventstream {
namespace {

using Lanes = std::vector<std::vector<size_t>>;
using Keys = std::vector<std::vector<std::string>>;

DocTypeRegistry Registry() {
  DocTypeDef customer{"Customer", "", "hash", false, false, {{"customer_name", "Data"}}};
  DocTypeDef item{"Invoice Item", "", "hash", true, false,
                  {{"item_code", "Link", "Item"}, {"qty", "Int"}}};
  DocTypeDef invoice{"Invoice", "", "hash", false, true,
                     {{"customer", "Link", "Customer"},
                      {"party_type", "Data"},
                      {"party", "Dynamic Link", "party_type"},
                      {"title", "Data"},
                      {"items", "Table", "Invoice Item"}}};
  DocTypeDef item_dt{"Item", "", "hash", false, false, {{"item_name", "Data"}}};
  auto r = DocTypeRegistry::Create({customer, item, invoice, item_dt});
  EXPECT_TRUE(r.ok()) << r.status();
  return *r;
}

TEST(LaneKeys, NamesAloneWithoutLinkFields) {
  DocTypeRegistry reg = Registry();
  EXPECT_EQ(LaneKeys(reg, reg.Find("Customer"), {"C1"}, R"({"customer_name":"x"})", false),
            std::vector<std::string>{"C1"});
}

TEST(LaneKeys, LinksOfDocumentChildRowsAndDynamicLinks) {
  DocTypeRegistry reg = Registry();
  auto keys = LaneKeys(reg, reg.Find("Invoice"), {"INV1"},
                       R"({"customer":"C1","title":"C9","party_type":"Customer","party":"C2",
                           "items":[{"item_code":"I1","qty":1},{"item_code":"","qty":2}]})",
                       false);
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"C1", "C2", "I1", "INV1"}));  // not "C9" (Data)
}

TEST(LaneKeys, LinksInsideAnUpdateDiff) {
  DocTypeRegistry reg = Registry();
  auto keys = LaneKeys(reg, reg.Find("Invoice"), {"INV1"},
                       R"({"changed":{"customer":"C3"},"added":{"items":[{"item_code":"I2"}]},
                           "row_changed":{"items":[{"name":"r1","item_code":"I3"}]},
                           "removed":{"items":["r2"]}})",
                       false);
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"C3", "I2", "I3", "INV1"}));
}

TEST(LaneKeys, SerialWhenUnknownMappedOrUnreadableKeepingItsNames) {
  DocTypeRegistry reg = Registry();
  using Keys1 = std::vector<std::string>;
  EXPECT_EQ(LaneKeys(reg, nullptr, {"X"}, "{}", false), (Keys1{"X", kSerialLaneKey}));
  EXPECT_EQ(LaneKeys(reg, reg.Find("Customer"), {"C1"}, "{}", true),
            (Keys1{"C1", kSerialLaneKey}));
  EXPECT_EQ(LaneKeys(reg, reg.Find("Invoice"), {"INV1"}, "not json", false),
            (Keys1{"INV1", kSerialLaneKey}));
  EXPECT_EQ(LaneKeys(reg, reg.Find("Invoice"), {"INV1"}, R"({"customer":"C1"})", true),
            (Keys1{"INV1", kSerialLaneKey, "C1"}));
}

TEST(PlanLanes, OneWorkerIsOneLaneInOrder) {
  EXPECT_EQ(PlanLanes({{"a"}, {"b"}, {"c"}}, 1), (Lanes{{0, 1, 2}}));
}

TEST(PlanLanes, EmptyBatchHasNoLane) { EXPECT_EQ(PlanLanes({}, 4), Lanes{}); }

TEST(PlanLanes, IndependentDocumentsSpreadEvenly) {
  EXPECT_EQ(PlanLanes({{"a"}, {"b"}, {"c"}, {"d"}, {"e"}}, 2), (Lanes{{0, 2, 4}, {1, 3}}));
  EXPECT_EQ(PlanLanes({{"a"}, {"b"}}, 4), (Lanes{{0}, {1}}));
}

TEST(PlanLanes, ADocumentsEntriesStayTogetherInSeqOrder) {
  // a, b, a, c, a: a's three entries in one lane.
  Lanes lanes = PlanLanes({{"a"}, {"b"}, {"a"}, {"c"}, {"a"}}, 4);
  EXPECT_EQ(lanes, (Lanes{{0, 2, 4}, {1}, {3}}));
}

TEST(PlanLanes, RenameJoinsOldAndNewNameTransitively) {
  // 0: x, 1: y, 2: rename x -> y (names y, x), 3: z.
  EXPECT_EQ(PlanLanes({{"x"}, {"y"}, {"y", "x"}, {"z"}}, 4), (Lanes{{0, 1, 2}, {3}}));
}

TEST(PlanLanes, LinkedEntriesFollowTheirTarget) {
  // 0: customer C1; 1: invoice linking C1; 2: unrelated; 3: invoice linking C2 and C1.
  EXPECT_EQ(PlanLanes({{"C1"}, {"INV1", "C1"}, {"N"}, {"INV2", "C2", "C1"}}, 3),
            (Lanes{{0, 1, 3}, {2}}));
}

TEST(PlanLanes, ASerialEntryStillJoinsWhatLinksIt) {
  // 0: serial customer C1; 1: note linking C1; 2: another serial entry.
  EXPECT_EQ(PlanLanes({{"C1", kSerialLaneKey}, {"N1", "C1"}, {"T1", kSerialLaneKey}, {"N2"}}, 4),
            (Lanes{{0, 1, 2}, {3}}));
}

TEST(PlanLanes, SerialEntriesShareOneLane) {
  EXPECT_EQ(PlanLanes({{kSerialLaneKey}, {"a"}, {kSerialLaneKey}, {"b"}}, 4),
            (Lanes{{0, 2}, {1}, {3}}));
}

TEST(PlanLanes, EveryEntryExactlyOnce) {
  Keys keys;
  for (int i = 0; i < 500; ++i) keys.push_back({std::to_string(i % 37)});
  Lanes lanes = PlanLanes(keys, 8);
  EXPECT_EQ(lanes.size(), 8u);
  std::vector<int> seen(500, 0);
  for (const auto& lane : lanes) {
    EXPECT_TRUE(std::is_sorted(lane.begin(), lane.end()));
    for (size_t i : lane) ++seen[i];
  }
  for (int s : seen) EXPECT_EQ(s, 1);
}

}  // namespace
}  // namespace eventstream
