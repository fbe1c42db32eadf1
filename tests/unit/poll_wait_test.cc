// libsync/rules/poll_wait: the waits webhook delivery's loops (dispatcher
// and retry workers) run on RunLoop with, in virtual time (FakeSleeper).
#include "libsync/rules/poll_wait.h"

#include <deque>
#include <vector>

#include "gtest/gtest.h"

namespace eventstream {
namespace {

TEST(PollWait, WorkRunsAgainAtOnceNothingWaitsThePollInterval) {
  EXPECT_EQ(PollWait(true, absl::Seconds(5)), absl::ZeroDuration());
  EXPECT_EQ(PollWait(false, absl::Seconds(5)), absl::Seconds(5));
}

TEST(PollWait, ConstantRetryNeverGrows) {
  Backoff retry(ConstantRetry(absl::Seconds(1)));
  for (int i = 0; i < 10; ++i) EXPECT_EQ(retry.Next(), absl::Seconds(1)) << i;
  EXPECT_EQ(BackoffBase(ConstantRetry(absl::Seconds(1)), 30), absl::Seconds(1));
}

// A step outcome: an error, or whether it did work.
struct Outcome {
  bool ok;
  bool did_work;
};

// The loop as the webhook dispatcher and workers run it: failures retried
// every second and logged once per streak, work followed at once by the
// next step, an idle step by the poll interval.
TEST(PollWait, DeliveryLoopWaits) {
  const absl::Duration poll = absl::Milliseconds(500);
  std::deque<Outcome> script = {{false, false}, {false, false}, {true, true},
                                {true, false},  {false, false}, {true, false}};
  FakeSleeper sleeper(/*stop_after_sleeps=*/5);
  Backoff retry(ConstantRetry(absl::Seconds(1)));
  std::vector<int> logged_failures, recoveries;
  LoopHooks hooks;
  hooks.on_failure = [&](const absl::Status&, int failures) {
    if (failures == 1) logged_failures.push_back(failures);
  };
  hooks.on_recovery = [&](int failures) { recoveries.push_back(failures); };
  int steps = 0;
  RunLoop(
      sleeper, retry,
      [&]() -> absl::StatusOr<absl::Duration> {
        ++steps;
        const Outcome o = script.front();
        script.pop_front();
        if (!o.ok) return absl::UnavailableError("database down");
        return PollWait(o.did_work, poll);
      },
      hooks);
  EXPECT_EQ(steps, 6);
  // fail, fail, work (no wait), idle, fail, idle (the 5th wait stops it).
  EXPECT_EQ(sleeper.sleeps(), (std::vector<absl::Duration>{absl::Seconds(1), absl::Seconds(1),
                                                          poll, absl::Seconds(1), poll}));
  EXPECT_EQ(logged_failures, (std::vector<int>{1, 1}));  // one line per streak
  EXPECT_EQ(recoveries, (std::vector<int>{2, 1}));
}

}  // namespace
}  // namespace eventstream
