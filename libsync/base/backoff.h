// One way to wait and retry: the backoff rule, the clock-and-sleeper every
// background loop waits on, and the loop itself.
//
// * BackoffPolicy / BackoffBase (pure): the delay before retry n (1-based)
//   of a failure streak is initial * multiplier^(n-1), capped at max.
//   Jittered scales it by (1 - jitter + 2 * jitter * u) for u in [0, 1].
// * Backoff: one failure streak. Next() counts a failure and returns its
//   delay (jittered with the injected random source, default absl::BitGen);
//   Reset() ends the streak. Not thread-safe: its owner's mutex guards it.
// * Clock: Now(), what a loop reads its due times and timeouts from.
//   SystemClock() is absl::Now(); every Sleeper is a Clock too, so a loop
//   that waits on its own condition variable (the notifier) takes a Clock,
//   one that waits on a Sleeper reads the sleeper's Now().
// * Sleeper: Now() plus a wait that Stop() or Wake() ends early.
//   InterruptibleSleeper is the real one (absl::Now, absl::Mutex with a
//   timeout, so Stop() wakes a waiting loop at once); FakeSleeper advances
//   virtual time and records each wait, so tests never really sleep.
// * RunLoop: runs a step until the sleeper is stopped. A step that succeeds
//   says how long to wait before the next run (zero: at once); one that
//   fails waits per the backoff, whose streak the next success resets.
//   on_failure sees every failure (with its number in the streak), on
//   recovery the streak's length, so a caller can log once per streak.
// * PollUntil: asks `done` until it says true, waiting per the backoff
//   between answers of false (a short wait for something known to happen
//   soon); an error ends it, and so does the sleeper's stop (CANCELLED).
#ifndef EVENTSTREAM_LIBSYNC_BASE_BACKOFF_H_
#define EVENTSTREAM_LIBSYNC_BASE_BACKOFF_H_

#include <functional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace eventstream {

struct BackoffPolicy {
  absl::Duration initial = absl::Milliseconds(200);
  absl::Duration max = absl::Seconds(30);
  double multiplier = 2.0;
  double jitter = 0.0;  // clamped to [0, 1]
};

// The un-jittered delay before retry `attempt` (1-based; < 1 counts as 1):
// min(max, initial * multiplier^(attempt-1)).
absl::Duration BackoffBase(const BackoffPolicy& policy, int attempt);

// base scaled by (1 - jitter + 2 * jitter * unit); jitter and unit are
// clamped to [0, 1].
absl::Duration Jittered(absl::Duration base, double jitter, double unit);

class Backoff {
 public:
  // `unit` returns a number in [0, 1]; null = uniform from absl::BitGen.
  explicit Backoff(BackoffPolicy policy, std::function<double()> unit = nullptr);

  // Counts a failure; the delay to wait before the next try.
  absl::Duration Next();
  // Ends the failure streak: the next Next() is the initial delay again.
  void Reset() { failures_ = 0; }
  // Failures since the last Reset(); 0 = not backing off.
  int failures() const { return failures_; }
  const BackoffPolicy& policy() const { return policy_; }

 private:
  BackoffPolicy policy_;
  std::function<double()> unit_;
  int failures_ = 0;
};

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
};

// The real clock (absl::Now()), shared by everyone.
Clock& SystemClock();

// A clock tests set and advance by hand.
class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::UnixEpoch()) : now_(start) {}
  absl::Time Now() override;
  void Advance(absl::Duration d);

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

class Sleeper : public Clock {
 public:
  // Waits up to `d` or until Wake()/Stop(); false once stopped. A Wake()
  // while not waiting ends the next wait at once.
  virtual bool SleepFor(absl::Duration d) = 0;
  virtual bool stopped() = 0;
};

class InterruptibleSleeper : public Sleeper {
 public:
  absl::Time Now() override { return absl::Now(); }
  bool SleepFor(absl::Duration d) override;
  bool stopped() override;
  void Stop();
  void Wake();
  // Clears a Stop() so a loop can run again.
  void Resume();

 private:
  bool ReadyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || woken_; }

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
};

// Virtual time: SleepFor returns at once after advancing Now() by the wait
// and recording it. stop_after_sleeps > 0 stops it at that many waits.
class FakeSleeper : public Sleeper {
 public:
  explicit FakeSleeper(int stop_after_sleeps = 0,
                       absl::Time start = absl::UnixEpoch());
  absl::Time Now() override;
  bool SleepFor(absl::Duration d) override;
  bool stopped() override;
  void Stop();
  std::vector<absl::Duration> sleeps();

 private:
  absl::Mutex mu_;
  const int stop_after_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<absl::Duration> sleeps_ ABSL_GUARDED_BY(mu_);
};

struct LoopHooks {
  // After a failed step; `failures` is its number in the streak (1 = first).
  std::function<void(const absl::Status&, int failures)> on_failure;
  // After the first success following `failures` failures.
  std::function<void(int failures)> on_recovery;
};

// Runs `step` until `sleeper` is stopped (checked before every run).
void RunLoop(Sleeper& sleeper, Backoff& backoff,
             const std::function<absl::StatusOr<absl::Duration>()>& step,
             const LoopHooks& hooks = {});

// Asks `done` until true; OK then. `done`'s error, or CANCELLED when the
// sleeper stopped, ends it sooner.
absl::Status PollUntil(Sleeper& sleeper, Backoff& backoff,
                       const std::function<absl::StatusOr<bool>()>& done);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_BASE_BACKOFF_H_
