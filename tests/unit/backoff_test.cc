// libsync/base/backoff.h: backoff sequences, jitter bounds and the loop's waits,
// on virtual time (FakeSleeper): nothing here really sleeps.
#include "libsync/base/backoff.h"

#include <thread>

#include "gtest/gtest.h"

namespace eventstream {
namespace {

using absl::Milliseconds;

TEST(BackoffBase, DoublesUpToMax) {
  BackoffPolicy p{Milliseconds(50), Milliseconds(300), 2.0, 0.0};
  EXPECT_EQ(BackoffBase(p, 0), Milliseconds(50));
  EXPECT_EQ(BackoffBase(p, 1), Milliseconds(50));
  EXPECT_EQ(BackoffBase(p, 2), Milliseconds(100));
  EXPECT_EQ(BackoffBase(p, 3), Milliseconds(200));
  EXPECT_EQ(BackoffBase(p, 4), Milliseconds(300));
  EXPECT_EQ(BackoffBase(p, 1000000), Milliseconds(300));
}

TEST(BackoffBase, InitialAboveMaxIsMax) {
  BackoffPolicy p{Milliseconds(500), Milliseconds(100), 2.0, 0.0};
  EXPECT_EQ(BackoffBase(p, 1), Milliseconds(100));
}

TEST(Jittered, SpansOneMinusToOnePlusJitter) {
  EXPECT_EQ(Jittered(Milliseconds(1000), 0.2, 0.0), Milliseconds(800));
  EXPECT_EQ(Jittered(Milliseconds(1000), 0.2, 0.5), Milliseconds(1000));
  EXPECT_EQ(Jittered(Milliseconds(1000), 0.2, 1.0), Milliseconds(1200));
  EXPECT_EQ(Jittered(Milliseconds(1000), 0.2, 7.0), Milliseconds(1200));  // clamped
  EXPECT_EQ(Jittered(Milliseconds(1000), 0.0, 1.0), Milliseconds(1000));
}

TEST(Backoff, StreakAndReset) {
  Backoff b({Milliseconds(200), Milliseconds(1000), 2.0, 0.0});
  EXPECT_EQ(b.failures(), 0);
  EXPECT_EQ(b.Next(), Milliseconds(200));
  EXPECT_EQ(b.Next(), Milliseconds(400));
  EXPECT_EQ(b.Next(), Milliseconds(800));
  EXPECT_EQ(b.Next(), Milliseconds(1000));
  EXPECT_EQ(b.Next(), Milliseconds(1000));
  EXPECT_EQ(b.failures(), 5);
  b.Reset();
  EXPECT_EQ(b.failures(), 0);
  EXPECT_EQ(b.Next(), Milliseconds(200));
}

TEST(Backoff, JitterUsesInjectedSource) {
  double u = 0.0;
  Backoff b({Milliseconds(100), Milliseconds(1000), 2.0, 0.5}, [&] { return u; });
  EXPECT_EQ(b.Next(), Milliseconds(50));   // 100 * 0.5
  u = 1.0;
  EXPECT_EQ(b.Next(), Milliseconds(300));  // 200 * 1.5
}

TEST(Backoff, DefaultRandomStaysInBounds) {
  Backoff b({Milliseconds(1000), Milliseconds(1000), 2.0, 0.2});
  for (int i = 0; i < 200; ++i) {
    absl::Duration d = b.Next();
    EXPECT_GE(d, Milliseconds(800));
    EXPECT_LE(d, Milliseconds(1200));
  }
}

TEST(FakeSleeper, AdvancesVirtualTimeAndStops) {
  FakeSleeper s(/*stop_after_sleeps=*/2);
  const absl::Time t0 = s.Now();
  EXPECT_TRUE(s.SleepFor(Milliseconds(10)));
  EXPECT_EQ(s.Now() - t0, Milliseconds(10));
  EXPECT_FALSE(s.SleepFor(Milliseconds(5)));
  EXPECT_TRUE(s.stopped());
  EXPECT_FALSE(s.SleepFor(Milliseconds(5)));  // not recorded once stopped
  EXPECT_EQ(s.sleeps().size(), 2u);
}

TEST(RunLoop, WaitsPerBackoffOnFailureAndPerStepOnSuccess) {
  FakeSleeper sleeper(/*stop_after_sleeps=*/6);
  Backoff backoff({Milliseconds(50), Milliseconds(150), 2.0, 0.0});
  // fail, fail, fail, ok (wait 25), again-at-once, fail, ok (wait 25)
  std::vector<absl::StatusOr<absl::Duration>> script = {
      absl::UnavailableError("a"), absl::UnavailableError("b"),
      absl::UnavailableError("c"), Milliseconds(25), absl::ZeroDuration(),
      absl::UnavailableError("d"), Milliseconds(25)};
  size_t next = 0;
  std::vector<int> failures;
  std::vector<int> recoveries;
  RunLoop(sleeper, backoff,
          [&]() -> absl::StatusOr<absl::Duration> { return script.at(next++); },
          {[&](const absl::Status&, int n) { failures.push_back(n); },
           [&](int n) { recoveries.push_back(n); }});
  EXPECT_EQ(next, script.size());
  EXPECT_EQ(sleeper.sleeps(),
            (std::vector<absl::Duration>{Milliseconds(50), Milliseconds(100),
                                         Milliseconds(150), Milliseconds(25),
                                         Milliseconds(50), Milliseconds(25)}));
  EXPECT_EQ(failures, (std::vector<int>{1, 2, 3, 1}));
  EXPECT_EQ(recoveries, (std::vector<int>{3, 1}));
}

TEST(RunLoop, StoppedSleeperRunsNothing) {
  FakeSleeper sleeper;
  sleeper.Stop();
  Backoff backoff({});
  int runs = 0;
  RunLoop(sleeper, backoff, [&]() -> absl::StatusOr<absl::Duration> {
    ++runs;
    return absl::ZeroDuration();
  });
  EXPECT_EQ(runs, 0);
}

TEST(RunLoop, StepCanStopTheLoop) {
  FakeSleeper sleeper;
  Backoff backoff({});
  int runs = 0;
  RunLoop(sleeper, backoff, [&]() -> absl::StatusOr<absl::Duration> {
    if (++runs == 3) sleeper.Stop();
    return absl::ZeroDuration();
  });
  EXPECT_EQ(runs, 3);
  EXPECT_TRUE(sleeper.sleeps().empty());
}

TEST(PollUntil, WaitsPerBackoffUntilDone) {
  FakeSleeper sleeper;
  Backoff backoff({Milliseconds(1), Milliseconds(4), 2.0, 0.0});
  int asked = 0;
  EXPECT_TRUE(
      PollUntil(sleeper, backoff, [&]() -> absl::StatusOr<bool> { return ++asked == 5; }).ok());
  EXPECT_EQ(asked, 5);
  EXPECT_EQ(sleeper.sleeps().size(), 4u);  // one wait per "not yet"
  EXPECT_EQ(sleeper.sleeps(), (std::vector<absl::Duration>{Milliseconds(1), Milliseconds(2),
                                                           Milliseconds(4), Milliseconds(4)}));
}

TEST(PollUntil, AnErrorOrAStopEndsIt) {
  FakeSleeper sleeper(/*stop_after_sleeps=*/2);
  Backoff backoff({Milliseconds(1), Milliseconds(4), 2.0, 0.0});
  EXPECT_EQ(PollUntil(sleeper, backoff, [] { return absl::StatusOr<bool>(false); }).code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(sleeper.sleeps().size(), 2u);
  FakeSleeper fresh;
  EXPECT_EQ(PollUntil(fresh, backoff,
                      [] { return absl::StatusOr<bool>(absl::UnavailableError("gone")); })
                .code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(fresh.sleeps().empty());
}

// The real sleeper: Stop() and Wake() end a long wait at once (the test
// would take an hour otherwise), and a Wake() before the wait is kept.
TEST(InterruptibleSleeper, StopAndWakeEndWaits) {
  InterruptibleSleeper s;
  s.Wake();
  EXPECT_TRUE(s.SleepFor(absl::Hours(1)));  // the earlier Wake()
  std::thread waker([&] { s.Wake(); });
  EXPECT_TRUE(s.SleepFor(absl::Hours(1)));
  waker.join();
  std::thread stopper([&] { s.Stop(); });
  EXPECT_FALSE(s.SleepFor(absl::Hours(1)));
  stopper.join();
  EXPECT_TRUE(s.stopped());
  EXPECT_FALSE(s.SleepFor(absl::Hours(1)));
  s.Resume();
  EXPECT_FALSE(s.stopped());
  EXPECT_TRUE(s.SleepFor(absl::ZeroDuration()));
}

// A loop that waits on its own condition variable reads a Clock; tests
// hand it a FakeClock, and any Sleeper serves as one.
TEST(Clock, FakeAdvancesOnlyWhenToldAndSleepersAreClocks) {
  FakeClock clock(absl::FromUnixSeconds(100));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(100));
  clock.Advance(absl::Seconds(5));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(105));
  FakeSleeper sleeper(0, absl::FromUnixSeconds(7));
  Clock& as_clock = sleeper;
  sleeper.SleepFor(absl::Seconds(3));
  EXPECT_EQ(as_clock.Now(), absl::FromUnixSeconds(10));
  EXPECT_GT(SystemClock().Now(), absl::FromUnixSeconds(1700000000));
}

}  // namespace
}  // namespace eventstream
