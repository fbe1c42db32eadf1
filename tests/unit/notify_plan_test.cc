// libsync/rules/notify_plan.h: the notifier's per-target timing, on given
// times: nothing here sleeps.
#include "libsync/rules/notify_plan.h"

#include "gtest/gtest.h"

namespace eventstream {
namespace {

using absl::Milliseconds;

const absl::Time kT0 = absl::FromUnixSeconds(1000);
const BackoffPolicy kPolicy{Milliseconds(200), Milliseconds(1000), 2.0, 0.0};

TEST(NotifyRetry, DueAtOnceUntilAFailure) {
  NotifyRetry r(kPolicy);
  EXPECT_TRUE(r.Due(kT0));
  EXPECT_EQ(r.failures(), 0);
  EXPECT_EQ(r.Failed(kT0), Milliseconds(200));
  EXPECT_EQ(r.failures(), 1);
  EXPECT_FALSE(r.Due(kT0 + Milliseconds(199)));
  EXPECT_TRUE(r.Due(kT0 + Milliseconds(200)));
  EXPECT_EQ(r.next_attempt(), kT0 + Milliseconds(200));
}

TEST(NotifyRetry, FailuresDoubleUpToMaxAndResetEndsTheStreak) {
  NotifyRetry r(kPolicy);
  EXPECT_EQ(r.Failed(kT0), Milliseconds(200));
  EXPECT_EQ(r.Failed(kT0), Milliseconds(400));
  EXPECT_EQ(r.Failed(kT0), Milliseconds(800));
  EXPECT_EQ(r.Failed(kT0), Milliseconds(1000));
  EXPECT_EQ(r.Failed(kT0), Milliseconds(1000));
  r.Reset();
  EXPECT_EQ(r.failures(), 0);
  EXPECT_TRUE(r.Due(kT0));
  EXPECT_EQ(r.Failed(kT0), Milliseconds(200));
}

TEST(NotifyRetry, JitterIsRoundedToWholeMillisecondsAndNeverBelowOne) {
  NotifyRetry jittered({Milliseconds(200), Milliseconds(1000), 2.0, 0.2}, [] { return 0.0; });
  EXPECT_EQ(jittered.Failed(kT0), Milliseconds(160));
  NotifyRetry tiny({absl::Microseconds(100), Milliseconds(1), 2.0, 0.0});
  EXPECT_EQ(tiny.Failed(kT0), Milliseconds(1));
  NotifyRetry odd({absl::Microseconds(2600), Milliseconds(10), 2.0, 0.0});
  EXPECT_EQ(odd.Failed(kT0), Milliseconds(3));
}

TEST(PlanNotify, StartsTheOwedIdleDueTargets) {
  const std::vector<NotifyCandidate> targets = {
      {/*owed=*/true, /*in_flight=*/false, absl::InfinitePast()},  // due
      {false, false, absl::InfinitePast()},                         // owed nothing
      {true, true, absl::InfinitePast()},                           // calling already
      {true, false, kT0},                                           // due exactly now
  };
  const NotifyPlan plan = PlanNotify(targets, kT0);
  EXPECT_EQ(plan.start, (std::vector<size_t>{0, 3}));
  EXPECT_EQ(plan.wake_at, absl::InfiniteFuture());  // nothing waits on a time
}

TEST(PlanNotify, WakesAtTheEarliestBackoffEnd) {
  const std::vector<NotifyCandidate> targets = {
      {true, false, kT0 + Milliseconds(500)},
      {true, false, kT0 + Milliseconds(300)},
      {false, false, kT0 + Milliseconds(100)},  // not owed: no wake for it
      {true, true, kT0 + Milliseconds(50)},     // in flight: its end wakes the worker
  };
  const NotifyPlan plan = PlanNotify(targets, kT0);
  EXPECT_TRUE(plan.start.empty());
  EXPECT_EQ(plan.wake_at, kT0 + Milliseconds(300));
}

TEST(PlanNotify, NoTargetsWaitsForASignal) {
  const NotifyPlan plan = PlanNotify({}, kT0);
  EXPECT_TRUE(plan.start.empty());
  EXPECT_EQ(plan.wake_at, absl::InfiniteFuture());
}

}  // namespace
}  // namespace eventstream
