#include "libsync/rules/batch_plan.h"

#include "gtest/gtest.h"

namespace eventstream {
namespace {

using Step = BatchPlanner::Step;

BatchEntry E(int64_t seq, std::string docname, std::string doctype = "Note") {
  BatchEntry e;
  e.seq = seq;
  e.doctype = std::move(doctype);
  e.names = {std::move(docname)};
  return e;
}

TEST(EntryNames, DocnameAlone) {
  EXPECT_EQ(EntryNames("N1", false, R"({"old_name":"N0"})"), std::vector<std::string>{"N1"});
}

TEST(EntryNames, RenameAddsTheOldName) {
  EXPECT_EQ(EntryNames("N2", true, R"({"old_name":"N1","new_name":"N2"})"),
            (std::vector<std::string>{"N2", "N1"}));
}

TEST(EntryNames, RenameWithoutUsableOldName) {
  EXPECT_EQ(EntryNames("N2", true, R"({"old_name":"N2"})"), std::vector<std::string>{"N2"});
  EXPECT_EQ(EntryNames("N2", true, R"({"old_name":7})"), std::vector<std::string>{"N2"});
  EXPECT_EQ(EntryNames("N2", true, "not json"), std::vector<std::string>{"N2"});
}

TEST(RowsPerInsert, TheLargestStepThatFits) {
  EXPECT_EQ(RowsPerInsert(1), 1u);
  EXPECT_EQ(RowsPerInsert(4), 2u);
  EXPECT_EQ(RowsPerInsert(60), 50u);
  EXPECT_EQ(RowsPerInsert(199), 100u);
  EXPECT_EQ(RowsPerInsert(5000), kMaxRowsPerInsert);
}

TEST(PipelinedFirst, OnlyForMoreThanOneEntry) {
  EXPECT_FALSE(PipelinedFirst(0));
  EXPECT_FALSE(PipelinedFirst(1));
  EXPECT_TRUE(PipelinedFirst(2));
}

TEST(BlockedLookupNames, AllNamesInOrder) {
  BatchEntry rename = E(2, "new");
  rename.names.push_back("old");
  EXPECT_EQ(BlockedLookupNames({E(1, "a"), rename}),
            (std::vector<std::string>{"a", "new", "old"}));
}

TEST(BatchPlanner, SkipsEntriesAtOrBelowTheWatermark) {
  BatchPlanner plan(/*watermark=*/5);
  EXPECT_EQ(plan.Next(E(4, "a")).kind, Step::kSkip);
  EXPECT_EQ(plan.Next(E(5, "b")).kind, Step::kSkip);
  EXPECT_EQ(plan.Next(E(6, "c")).kind, Step::kApply);
}

TEST(BatchPlanner, SkipsSeqsALaneAlreadyCommitted) {
  BatchPlanner plan(10);
  plan.AddDone(12);
  EXPECT_TRUE(plan.Skips(10));
  EXPECT_FALSE(plan.Skips(11));
  EXPECT_TRUE(plan.Skips(12));
  EXPECT_EQ(plan.Next(E(11, "a")).kind, Step::kApply);
  EXPECT_EQ(plan.Next(E(12, "b")).kind, Step::kSkip);
  EXPECT_EQ(plan.Next(E(13, "c")).kind, Step::kApply);
}

TEST(BatchPlanner, ParksBehindStoredFailedRow) {
  BatchPlanner plan(0);
  plan.AddBlocked("Note", "a", 17);
  plan.AddBlocked("Note", "a", 99);  // a later row of the same document
  Step s = plan.Next(E(1, "a"));
  EXPECT_EQ(s.kind, Step::kPark);
  EXPECT_EQ(s.parked_behind, 17);
  EXPECT_EQ(plan.Next(E(2, "a", "Task")).kind, Step::kApply);  // other DocType
  EXPECT_EQ(plan.Next(E(3, "b")).kind, Step::kApply);
}

TEST(BatchPlanner, LaterEntriesParkBehindAFailureOfThisBatch) {
  BatchPlanner plan(0);
  BatchEntry first = E(1, "a");
  ASSERT_EQ(plan.Next(first).kind, Step::kApply);
  plan.Failed(first, 42);
  Step s = plan.Next(E(2, "a"));
  EXPECT_EQ(s.kind, Step::kPark);
  EXPECT_EQ(s.parked_behind, 42);
  EXPECT_EQ(plan.Next(E(3, "b")).kind, Step::kApply);
}

TEST(BatchPlanner, RenameCarriesTheBlockToItsNewName) {
  BatchPlanner plan(0);
  plan.AddBlocked("Note", "old", 7);
  BatchEntry rename = E(1, "new");
  rename.names.push_back("old");
  Step s = plan.Next(rename);
  EXPECT_EQ(s.kind, Step::kPark);
  EXPECT_EQ(s.parked_behind, 7);
  // An entry under the new name now parks too.
  EXPECT_EQ(plan.Next(E(2, "new")).parked_behind, 7);
}

TEST(BatchPlanner, TheLastBlockedNameWins) {
  BatchPlanner plan(0);
  plan.AddBlocked("Note", "new", 3);
  plan.AddBlocked("Note", "old", 8);
  BatchEntry rename = E(1, "new");
  rename.names.push_back("old");
  EXPECT_EQ(plan.Next(rename).parked_behind, 8);
}

TEST(ResyncPlan, ReplaysUntilAFailureThenReparks) {
  ResyncPlan plan;
  EXPECT_EQ(plan.Next(), ResyncStep::kReplay);  // row 0 succeeds
  EXPECT_EQ(plan.Next(), ResyncStep::kReplay);  // row 1 fails
  plan.Failed(1, 31);
  EXPECT_EQ(plan.Next(), ResyncStep::kRepark);
  EXPECT_EQ(plan.root(), 31);
  EXPECT_EQ(plan.Reported(4), 4u);
}

TEST(ResyncPlan, TheAskedRowFailingAgainStops) {
  ResyncPlan plan;
  EXPECT_EQ(plan.Next(), ResyncStep::kReplay);
  plan.Failed(0, 10);
  EXPECT_EQ(plan.Next(), ResyncStep::kStop);
  EXPECT_EQ(plan.Reported(3), 1u);
}

TEST(ResyncPlan, NothingFailedReportsAll) {
  ResyncPlan plan;
  EXPECT_EQ(plan.root(), 0);
  EXPECT_EQ(plan.Reported(3), 3u);
}

}  // namespace
}  // namespace eventstream
