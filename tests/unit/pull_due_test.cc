// libsync/rules/pull_due: when the consumer's puller pulls next, run over a
// series of outcomes in virtual time (FakeSleeper: each wait is the time
// until the next pull is due).
#include "libsync/rules/pull_due.h"

#include <vector>

#include "gtest/gtest.h"

namespace eventstream {
namespace {

const PullTimers kTimers{absl::Seconds(30), absl::Seconds(1)};

// The puller's own policy: initial_backoff doubling up to max_backoff.
BackoffPolicy PullerPolicy() {
  BackoffPolicy p;
  p.initial = absl::Milliseconds(200);
  p.max = absl::Seconds(1);
  return p;
}

// Waits until each outcome's next pull is due; the waits.
std::vector<absl::Duration> Waits(const std::vector<PullResult>& outcomes, Backoff& backoff) {
  FakeSleeper sleeper;
  for (const PullResult& r : outcomes) {
    const absl::Time due = NextPullDue(sleeper.Now(), r, kTimers, backoff);
    sleeper.SleepFor(due - sleeper.Now());
  }
  return sleeper.sleeps();
}

constexpr PullResult kFailed{false, false, false};
constexpr PullResult kIdle{false, true, false};
constexpr PullResult kNews{false, true, true};
constexpr PullResult kStandby{true, false, false};

TEST(NextPullDue, FailuresBackOffUpToTheCapAndASuccessEndsTheStreak) {
  Backoff backoff(PullerPolicy());
  EXPECT_EQ(Waits({kFailed, kFailed, kFailed, kFailed, kIdle, kFailed}, backoff),
            (std::vector<absl::Duration>{absl::Milliseconds(200), absl::Milliseconds(400),
                                         absl::Milliseconds(800), absl::Seconds(1),
                                         absl::Seconds(30), absl::Milliseconds(200)}));
  EXPECT_EQ(backoff.failures(), 1);
}

TEST(NextPullDue, NewsIsFollowedAtOnceThenThePollInterval) {
  Backoff backoff(PullerPolicy());
  EXPECT_EQ(Waits({kNews, kNews, kIdle}, backoff),
            (std::vector<absl::Duration>{absl::ZeroDuration(), absl::ZeroDuration(),
                                         absl::Seconds(30)}));
}

TEST(NextPullDue, StandbyRetriesAndKeepsTheFailureStreak) {
  Backoff backoff(PullerPolicy());
  EXPECT_EQ(Waits({kFailed, kStandby, kStandby, kFailed}, backoff),
            (std::vector<absl::Duration>{absl::Milliseconds(200), absl::Seconds(1),
                                         absl::Seconds(1), absl::Milliseconds(400)}));
  EXPECT_EQ(backoff.failures(), 2);
}

}  // namespace
}  // namespace eventstream
