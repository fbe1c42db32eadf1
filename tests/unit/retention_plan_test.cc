#include "libsync/rules/retention_plan.h"

#include "gtest/gtest.h"

namespace eventstream {
namespace {

// A log of seqs 1..100, all old enough, no valve.
RetentionInput Log() {
  RetentionInput in;
  in.end_seq = 100;
  in.old_enough_seq = 100;
  return in;
}

TEST(RetentionCutoffs, MinAgeAndValve) {
  RetentionConfig policy;
  policy.min_age = absl::Hours(1);
  policy.max_age = absl::Hours(48);
  const absl::Time now = absl::FromUnixSeconds(1'000'000);
  RetentionCutoffs c = ComputeRetentionCutoffs(policy, now);
  EXPECT_EQ(c.keep_after, now - absl::Hours(1));
  ASSERT_TRUE(c.valve_before.has_value());
  EXPECT_EQ(*c.valve_before, now - absl::Hours(48));
  policy.max_age = absl::ZeroDuration();
  EXPECT_FALSE(ComputeRetentionCutoffs(policy, now).valve_before.has_value());
}

TEST(RetentionPlan, NothingHoldsButTheNewestEntry) {
  RetentionPlan plan = PlanRetention(Log());
  EXPECT_EQ(plan.horizon, 99);
  EXPECT_EQ(plan.held_by, "end");
  EXPECT_TRUE(plan.behind.empty());
}

TEST(RetentionPlan, EmptyLogTrimsNothing) {
  RetentionInput in;
  RetentionPlan plan = PlanRetention(in);
  EXPECT_EQ(plan.horizon, 0);
}

TEST(RetentionPlan, ConsumerHoldsBeforeItsFirstNeededEntry) {
  RetentionInput in = Log();
  in.consumers = {{"a", 40, 45, 0}, {"b", 10, std::nullopt, 0}, {"c", 60, 61, 0}};
  RetentionPlan plan = PlanRetention(in);
  // b follows nothing in the log after 10: it holds nothing back.
  EXPECT_EQ(plan.horizon, 44);
  EXPECT_EQ(plan.held_by, "consumer a");
  EXPECT_TRUE(plan.behind.empty());
}

TEST(RetentionPlan, MinAgeWinsOverEverything) {
  RetentionInput in = Log();
  in.old_enough_seq = 30;
  in.valve_seq = 80;
  in.consumers = {{"a", 40, 45, 0}};
  RetentionPlan plan = PlanRetention(in);
  EXPECT_EQ(plan.horizon, 30);
  EXPECT_EQ(plan.held_by, "min_age");
  EXPECT_TRUE(plan.behind.empty());
  in.old_enough_seq = 0;  // nothing old enough
  EXPECT_EQ(PlanRetention(in).horizon, 0);
}

TEST(RetentionPlan, WebhooksHoldRetention) {
  RetentionInput in = Log();
  in.consumers = {{"a", 90, 91, 0}};
  in.webhook_cursor = 20;
  RetentionPlan plan = PlanRetention(in);
  EXPECT_EQ(plan.horizon, 20);
  EXPECT_EQ(plan.held_by, "webhooks");
  EXPECT_EQ(plan.webhooks_skip_to, 0);
}

TEST(RetentionPlan, ValveByAgeCutsOffAConsumerAndSkipsWebhooks) {
  RetentionInput in = Log();
  in.consumers = {{"slow", 5, 6, 0}, {"fast", 95, 96, 0}};
  in.webhook_cursor = 10;
  in.valve_seq = 50;
  RetentionPlan plan = PlanRetention(in);
  EXPECT_EQ(plan.horizon, 50);
  EXPECT_EQ(plan.held_by, "valve");
  ASSERT_EQ(plan.behind.size(), 1u);
  EXPECT_EQ(plan.behind[0].site, "slow");
  EXPECT_EQ(plan.behind[0].acknowledged_seq, 5);
  EXPECT_EQ(plan.behind[0].first_needed, 6);
  EXPECT_TRUE(plan.behind[0].newly);
  EXPECT_EQ(plan.webhooks_skip_from, 10);
  EXPECT_EQ(plan.webhooks_skip_to, 50);
}

TEST(RetentionPlan, ValveByCount) {
  RetentionInput in = Log();
  in.consumers = {{"slow", 5, 6, 0}};
  in.max_entries = 30;
  RetentionPlan plan = PlanRetention(in);
  EXPECT_EQ(plan.horizon, 70);
  EXPECT_EQ(plan.behind.size(), 1u);
  // The promise beyond the valve wins.
  in.consumers = {{"slow", 85, 86, 0}};
  plan = PlanRetention(in);
  EXPECT_EQ(plan.horizon, 85);
  EXPECT_EQ(plan.held_by, "consumer slow");
  EXPECT_TRUE(plan.behind.empty());
}

TEST(RetentionPlan, ValveNeverPassesTheNewestEntryNorMinAge) {
  RetentionInput in = Log();
  in.consumers = {{"slow", 5, 6, 0}};
  in.valve_seq = 100;
  EXPECT_EQ(PlanRetention(in).horizon, 99);
  in.old_enough_seq = 60;
  RetentionPlan plan = PlanRetention(in);
  EXPECT_EQ(plan.horizon, 60);
  EXPECT_EQ(plan.held_by, "min_age");
  EXPECT_EQ(plan.behind.size(), 1u);
}

TEST(RetentionPlan, ACutOffConsumerHoldsNothingAndIsMarkedAgain) {
  RetentionInput in = Log();
  in.trimmed_through = 50;
  in.consumers = {{"lost", 5, 6, 50}, {"ok", 70, 71, 0}};
  RetentionPlan plan = PlanRetention(in);
  EXPECT_EQ(plan.horizon, 70);
  EXPECT_EQ(plan.held_by, "consumer ok");
  ASSERT_EQ(plan.behind.size(), 1u);
  EXPECT_EQ(plan.behind[0].site, "lost");
  EXPECT_FALSE(plan.behind[0].newly);
  // Once re-synced (acknowledged at its lost_through or beyond) it holds again.
  in.consumers = {{"lost", 60, 61, 60}, {"ok", 70, 71, 0}};
  EXPECT_EQ(PlanRetention(in).horizon, 60);
}

TEST(RetentionPlan, NeverBelowTheRecordedTrimPoint) {
  RetentionInput in = Log();
  in.trimmed_through = 40;
  in.consumers = {{"a", 20, 21, 0}};  // nothing new to decide below the trim point
  RetentionPlan plan = PlanRetention(in);
  EXPECT_EQ(plan.horizon, 40);
  EXPECT_TRUE(plan.behind.empty());
}

TEST(LogTrimmed, MessageNamesTheGapAndIsRecognised) {
  absl::Status s = LogTrimmedError("branch1", 12, 450, 451);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            "log trimmed: site \"branch1\" is at seq 12, but entries it still needed up to seq "
            "450 were deleted by the retention valve (producer.retention max_age / "
            "max_entries); the first seq kept is 451 (438 seqs behind); call "
            "Producer.RestartSync with skip_trimmed to re-sync");
  EXPECT_TRUE(IsLogTrimmed(s));
  // As the consumer's client reports it.
  EXPECT_TRUE(IsLogTrimmed(absl::FailedPreconditionError(
      absl::StrCat("producer hq (x:1): Producer.PullUpdates: ", s.message()))));
  EXPECT_FALSE(IsLogTrimmed(absl::UnavailableError(s.message())));
  EXPECT_FALSE(IsLogTrimmed(absl::FailedPreconditionError("capture cannot be installed")));
}

}  // namespace
TEST(SyncLogTrimIntervalTest, TwicePerRetentionBetweenASecondAndTenMinutes) {
  EXPECT_EQ(SyncLogTrimInterval(absl::ZeroDuration()), absl::ZeroDuration());
  EXPECT_EQ(SyncLogTrimInterval(absl::Milliseconds(500)), absl::Seconds(1));
  EXPECT_EQ(SyncLogTrimInterval(absl::Seconds(30)), absl::Seconds(15));
  EXPECT_EQ(SyncLogTrimInterval(absl::Minutes(20)), absl::Minutes(10));
  EXPECT_EQ(SyncLogTrimInterval(absl::Hours(24 * 30)), absl::Minutes(10));
}

}  // namespace eventstream
