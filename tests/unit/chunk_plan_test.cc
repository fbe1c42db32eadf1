#include "libsync/rules/chunk_plan.h"

#include <gtest/gtest.h>

namespace eventstream {
namespace {

XidSnapshot Snap(const char* text) { return *ParseXidSnapshot(text); }

TEST(ChunkPlanTest, ParsesSnapshots) {
  XidSnapshot s = Snap("100:105:101,103");
  EXPECT_EQ(s.xmin, 100u);
  EXPECT_EQ(s.xmax, 105u);
  EXPECT_EQ(s.xip, (std::vector<uint64_t>{101, 103}));
  EXPECT_TRUE(Snap("7:7:").xip.empty());
  for (const char* bad : {"", "1:2", "x:2:", "3:2:", "1:5:2,y", "1:2:3:4"}) {
    EXPECT_FALSE(ParseXidSnapshot(bad).ok()) << bad;
  }
}

TEST(ChunkPlanTest, VisibilityFollowsTheSnapshot) {
  XidSnapshot s = Snap("100:105:101,103");
  EXPECT_TRUE(VisibleInSnapshot(s, 99));
  EXPECT_FALSE(VisibleInSnapshot(s, 101));  // in progress then
  EXPECT_TRUE(VisibleInSnapshot(s, 102));
  EXPECT_FALSE(VisibleInSnapshot(s, 105));  // started after
  EXPECT_FALSE(VisibleInSnapshot(s, 4000));
}

TEST(ChunkPlanTest, ThirtyTwoBitXidsAreReadInTheNearestEpoch) {
  const uint64_t epoch = uint64_t{1} << 32;
  XidSnapshot s{epoch + 100, epoch + 105, {epoch + 101}};
  EXPECT_TRUE(VisibleInSnapshot(s, 99));    // epoch 1, before xmin
  EXPECT_FALSE(VisibleInSnapshot(s, 101));  // epoch 1, in progress
  EXPECT_FALSE(VisibleInSnapshot(s, 200));  // epoch 1, after
  EXPECT_TRUE(VisibleInSnapshot(s, epoch - 10));  // just before the wrap: epoch 0
  XidSnapshot before_wrap{epoch - 20, epoch - 5, {}};
  EXPECT_FALSE(VisibleInSnapshot(before_wrap, 3));  // just after the wrap: epoch 1
  EXPECT_TRUE(VisibleInSnapshot(before_wrap, epoch - 30));
}

TEST(ChunkPlanTest, CreatesLoggedSinceTheStartLeaveTheChunk) {
  XidSnapshot s = Snap("100:105:");
  // NOTE-1's Create committed before the read (visible) but was logged after it.
  ChunkFixups f = PlanChunkFixups({"NOTE-1", "NOTE-2"}, "NOTE-2", 10, s,
                                  {{20, "NOTE-1", "", "Create", 99}});
  EXPECT_EQ(f.drop, (std::set<std::string>{"NOTE-1"}));
  EXPECT_TRUE(f.reread.empty());
  // A Create from before the sync started is history the read includes.
  f = PlanChunkFixups({"NOTE-1"}, "NOTE-1", 30, s, {{20, "NOTE-1", "", "Create", 99}});
  EXPECT_TRUE(f.drop.empty());
}

TEST(ChunkPlanTest, ChangesTheReadDidNotSeeAreReadAgain) {
  XidSnapshot s = Snap("100:105:102");
  ChunkFixups f = PlanChunkFixups({"A", "B", "C"}, "C", 10, s,
                                  {{21, "A", "", "Update", 99},    // seen by the read
                                   {22, "B", "", "Update", 102},   // in progress at the read
                                   {23, "C", "", "Delete", 106},   // after the read
                                   {24, "Z", "", "Update", 107}});  // not in the chunk
  EXPECT_TRUE(f.drop.empty());
  EXPECT_EQ(f.reread, (std::set<std::string>{"B", "C"}));
}

TEST(ChunkPlanTest, RenamesReadTheNewNameWhenNoOtherChunkWill) {
  XidSnapshot s = Snap("100:105:");
  ChunkFixups f = PlanChunkFixups({"B", "D"}, "D", 10, s,
                                  {{21, "A2", "B", "Rename", 110},     // before the range's end
                                   {22, "Z", "D", "Rename", 111}});    // a later chunk reads Z
  EXPECT_EQ(f.reread, (std::set<std::string>{"A2", "B", "D"}));
  EXPECT_TRUE(f.drop.empty());
}

TEST(ChunkPlanTest, DropWinsOverReread) {
  XidSnapshot s = Snap("100:105:");
  ChunkFixups f = PlanChunkFixups({"A"}, "A", 10, s,
                                  {{21, "A", "", "Create", 99}, {22, "A", "", "Update", 120}});
  EXPECT_EQ(f.drop, (std::set<std::string>{"A"}));
  EXPECT_TRUE(f.reread.empty());
}

}  // namespace
}  // namespace eventstream
