// libsync/rules/membership: what a pull sends as the set of documents a consumer
// holds changes (move-in, move-out, deletes, renames), without a database.
#include "libsync/rules/membership.h"

#include "gtest/gtest.h"

namespace eventstream {
namespace {

MemberEntry E(int64_t seq, std::string type, std::string name, std::optional<bool> passes,
              std::string old_name = "") {
  MemberEntry e;
  e.seq = seq;
  e.doctype = "Item";
  e.docname = std::move(name);
  e.update_type = std::move(type);
  e.old_name = std::move(old_name);
  e.tracked = true;
  e.passes = passes;
  return e;
}

DocKey K(std::string name) { return {"Item", std::move(name)}; }

std::string Verdicts(const MembershipPlan& plan) {
  std::string out;
  for (const auto& step : plan.steps) {
    const char* v = step.verdict == Verdict::kSend     ? "send"
                    : step.verdict == Verdict::kSync   ? "sync"
                    : step.verdict == Verdict::kRevoke ? "revoke"
                                                       : "skip";
    out += (out.empty() ? "" : " ") + std::string(v) +
           (step.name.empty() ? "" : ":" + step.name);
  }
  return out;
}

TEST(PlanMembership, HeldAndPassingEntriesGoAsTheyAre) {
  auto plan = PlanMembership({E(1, "Update", "a", true), E(2, "Cancel", "a", true)}, {K("a")});
  EXPECT_EQ(Verdicts(plan), "send send");
  EXPECT_TRUE(plan.changes.empty());
}

TEST(PlanMembership, MoveInSendsTheCurrentDocumentOnce) {
  // Created hidden, edited into the condition, edited again.
  auto plan = PlanMembership(
      {E(1, "Create", "a", true), E(2, "Update", "a", true), E(3, "Update", "a", true)}, {});
  EXPECT_EQ(Verdicts(plan), "sync:a send send");
  EXPECT_EQ(plan.changes, (std::vector<HoldingChange>{{1, K("a"), true}}));
}

TEST(PlanMembership, MoveOutRevokesAndLaterEntriesAreSkipped) {
  auto plan = PlanMembership(
      {E(5, "Update", "a", false), E(6, "Update", "a", false), E(7, "Delete", "a", std::nullopt)},
      {K("a")});
  EXPECT_EQ(Verdicts(plan), "revoke:a skip skip");
  EXPECT_EQ(plan.changes, (std::vector<HoldingChange>{{5, K("a"), false}}));
}

TEST(PlanMembership, OutAndBackIn) {
  // The conditions are judged per entry (a cmd: function sees the entry).
  auto plan = PlanMembership({E(1, "Update", "a", false), E(2, "Update", "a", true)}, {K("a")});
  EXPECT_EQ(Verdicts(plan), "revoke:a sync:a");
  EXPECT_EQ(plan.changes,
            (std::vector<HoldingChange>{{1, K("a"), false}, {2, K("a"), true}}));
}

TEST(PlanMembership, DeletesOnlyToHolders) {
  auto plan = PlanMembership({E(1, "Delete", "a", std::nullopt), E(2, "Delete", "b", std::nullopt)},
                             {K("b")});
  EXPECT_EQ(Verdicts(plan), "skip send");
  EXPECT_EQ(plan.changes, (std::vector<HoldingChange>{{2, K("b"), false}}));
}

TEST(PlanMembership, GoneDocumentsFollowWhatIsHeld) {
  // Deleted since: the held one gets its entries (its Delete comes later),
  // the other nothing.
  auto plan = PlanMembership({E(1, "Update", "a", std::nullopt), E(2, "Update", "b", std::nullopt)},
                             {K("a")});
  EXPECT_EQ(Verdicts(plan), "send skip");
  EXPECT_TRUE(plan.changes.empty());
}

TEST(PlanMembership, RenameMovesTheHolding) {
  auto plan = PlanMembership(
      {E(1, "Rename", "b", true, "a"), E(2, "Update", "b", true)}, {K("a")});
  EXPECT_EQ(Verdicts(plan), "send send");
  EXPECT_EQ(plan.changes,
            (std::vector<HoldingChange>{{1, K("a"), false}, {1, K("b"), true}}));
  // Renamed out of the condition: revoked under the name the consumer has.
  auto out = PlanMembership({E(1, "Rename", "b", false, "a")}, {K("a")});
  EXPECT_EQ(Verdicts(out), "revoke:a");
  // Renamed into it: synced under the new name.
  auto in = PlanMembership({E(1, "Rename", "b", true, "a")}, {});
  EXPECT_EQ(Verdicts(in), "sync:b");
}

TEST(PlanMembership, InitialSyncEntriesFollowTheCurrentDocument) {
  // Passing: synced, held or not; failing: revoked when held (a condition
  // changed), else nothing; gone: nothing (its Delete follows).
  auto plan = PlanMembership({E(1, "Sync", "a", true), E(2, "Sync", "b", true),
                              E(3, "Sync", "c", false), E(4, "Sync", "d", false),
                              E(5, "Sync", "e", std::nullopt)},
                             {K("b"), K("c")});
  EXPECT_EQ(Verdicts(plan), "sync:a sync:b revoke:c skip skip");
  EXPECT_EQ(plan.changes,
            (std::vector<HoldingChange>{{1, K("a"), true}, {3, K("c"), false}}));
}

TEST(PlanMembership, RevokesOfAnEndedSubscriptionGoAndEndTheHolding) {
  auto plan = PlanMembership({E(1, "Revoke", "a", std::nullopt), E(2, "Revoke", "b", std::nullopt)},
                             {K("a")});
  EXPECT_EQ(Verdicts(plan), "send send");
  EXPECT_EQ(plan.changes, (std::vector<HoldingChange>{{1, K("a"), false}}));
}

TEST(PlanMembership, UntrackedSubscriptionsSendEverythingAndRecordNothing) {
  MemberEntry e = E(1, "Delete", "x", std::nullopt);
  e.tracked = false;
  MemberEntry u = E(2, "Update", "y", false);
  u.tracked = false;
  auto plan = PlanMembership({e, u}, {});
  EXPECT_EQ(Verdicts(plan), "send send");
  EXPECT_TRUE(plan.changes.empty());
}

}  // namespace
}  // namespace eventstream
