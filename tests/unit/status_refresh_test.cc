// libsync/rules/status_refresh: when the consumer's puller asks a producer
// for its subscription statuses again although nothing changed.
#include "libsync/rules/status_refresh.h"

#include "gtest/gtest.h"

namespace eventstream {
namespace {

const StatusRefreshTimers kTimers{absl::Seconds(30), absl::Minutes(10), absl::Seconds(2)};

// Reconciled, all approved, no initial sync, heard `since` ago.
StatusRefreshState Settled(absl::Duration since) {
  StatusRefreshState s;
  s.reconciled = true;
  s.all_approved = true;
  s.since_refresh = since;
  return s;
}

TEST(StatusRefreshDue, PullNowAlwaysAsks) {
  StatusRefreshState s;
  s.pull_now = true;
  EXPECT_TRUE(StatusRefreshDue(s, kTimers));
  s = Settled(absl::ZeroDuration());
  s.pull_now = true;
  EXPECT_TRUE(StatusRefreshDue(s, kTimers));
}

TEST(StatusRefreshDue, BeforeTheFirstReconciliationOnlyPullNowAsks) {
  StatusRefreshState s;
  s.notify = true;
  s.syncing = true;
  s.since_refresh = absl::Hours(1);
  EXPECT_FALSE(StatusRefreshDue(s, kTimers));
}

TEST(StatusRefreshDue, SettledAsksEveryStatusRefresh) {
  EXPECT_FALSE(StatusRefreshDue(Settled(absl::Minutes(9)), kTimers));
  EXPECT_TRUE(StatusRefreshDue(Settled(absl::Minutes(10)), kTimers));
  StatusRefreshState notified = Settled(absl::Seconds(31));
  notified.notify = true;  // approved: a Notify does not ask
  EXPECT_FALSE(StatusRefreshDue(notified, kTimers));
}

TEST(StatusRefreshDue, AwaitingApprovalAsksOnNotifyAndEveryPollInterval) {
  StatusRefreshState s = Settled(absl::Seconds(29));
  s.all_approved = false;
  EXPECT_FALSE(StatusRefreshDue(s, kTimers));
  s.notify = true;
  EXPECT_TRUE(StatusRefreshDue(s, kTimers));
  s.notify = false;
  s.since_refresh = absl::Seconds(30);
  EXPECT_TRUE(StatusRefreshDue(s, kTimers));
}

TEST(StatusRefreshDue, AnInitialSyncAsksForProgressEverySyncProgress) {
  StatusRefreshState s = Settled(absl::Seconds(1));
  s.syncing = true;
  EXPECT_FALSE(StatusRefreshDue(s, kTimers));
  s.since_refresh = absl::Seconds(2);
  EXPECT_TRUE(StatusRefreshDue(s, kTimers));
  s.syncing = false;
  EXPECT_FALSE(StatusRefreshDue(s, kTimers));
}

}  // namespace
}  // namespace eventstream
