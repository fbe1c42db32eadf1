#include "libsync/base/backoff.h"

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "absl/time/clock.h"

namespace eventstream {

absl::Duration BackoffBase(const BackoffPolicy& policy, int attempt) {
  absl::Duration base = policy.initial;
  const double multiplier = std::max(1.0, policy.multiplier);
  for (int i = 1; i < attempt && base < policy.max; ++i) base *= multiplier;
  return std::min(base, policy.max);
}

absl::Duration Jittered(absl::Duration base, double jitter, double unit) {
  jitter = std::clamp(jitter, 0.0, 1.0);
  if (jitter == 0) return base;
  return base * (1.0 - jitter + 2.0 * jitter * std::clamp(unit, 0.0, 1.0));
}

Backoff::Backoff(BackoffPolicy policy, std::function<double()> unit)
    : policy_(policy), unit_(std::move(unit)) {
  if (!unit_) {
    unit_ = [gen = std::make_shared<absl::BitGen>()] {
      return absl::Uniform(absl::IntervalClosedClosed, *gen, 0.0, 1.0);
    };
  }
}

absl::Duration Backoff::Next() {
  ++failures_;
  const absl::Duration base = BackoffBase(policy_, failures_);
  return policy_.jitter > 0 ? Jittered(base, policy_.jitter, unit_()) : base;
}

Clock& SystemClock() {
  class Real : public Clock {
   public:
    absl::Time Now() override { return absl::Now(); }
  };
  static Real* clock = new Real();
  return *clock;
}

absl::Time FakeClock::Now() {
  absl::MutexLock lock(&mu_);
  return now_;
}

void FakeClock::Advance(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  now_ += d;
}

bool InterruptibleSleeper::SleepFor(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(this, &InterruptibleSleeper::ReadyLocked), d);
  woken_ = false;
  return !stop_;
}

bool InterruptibleSleeper::stopped() {
  absl::MutexLock lock(&mu_);
  return stop_;
}

void InterruptibleSleeper::Stop() {
  absl::MutexLock lock(&mu_);
  stop_ = true;
}

void InterruptibleSleeper::Wake() {
  absl::MutexLock lock(&mu_);
  woken_ = true;
}

void InterruptibleSleeper::Resume() {
  absl::MutexLock lock(&mu_);
  stop_ = false;
}

FakeSleeper::FakeSleeper(int stop_after_sleeps, absl::Time start)
    : stop_after_(stop_after_sleeps), now_(start) {}

absl::Time FakeSleeper::Now() {
  absl::MutexLock lock(&mu_);
  return now_;
}

bool FakeSleeper::SleepFor(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  if (stop_) return false;
  sleeps_.push_back(d);
  now_ += d;
  if (stop_after_ > 0 && static_cast<int>(sleeps_.size()) >= stop_after_) {
    stop_ = true;
  }
  return !stop_;
}

bool FakeSleeper::stopped() {
  absl::MutexLock lock(&mu_);
  return stop_;
}

void FakeSleeper::Stop() {
  absl::MutexLock lock(&mu_);
  stop_ = true;
}

std::vector<absl::Duration> FakeSleeper::sleeps() {
  absl::MutexLock lock(&mu_);
  return sleeps_;
}

void RunLoop(Sleeper& sleeper, Backoff& backoff,
             const std::function<absl::StatusOr<absl::Duration>()>& step,
             const LoopHooks& hooks) {
  while (!sleeper.stopped()) {
    absl::StatusOr<absl::Duration> result = step();
    absl::Duration wait;
    if (!result.ok()) {
      wait = backoff.Next();
      if (hooks.on_failure) hooks.on_failure(result.status(), backoff.failures());
    } else {
      if (backoff.failures() > 0 && hooks.on_recovery) {
        hooks.on_recovery(backoff.failures());
      }
      backoff.Reset();
      wait = *result;
    }
    if (wait > absl::ZeroDuration() && !sleeper.SleepFor(wait)) break;
  }
}

absl::Status PollUntil(Sleeper& sleeper, Backoff& backoff,
                       const std::function<absl::StatusOr<bool>()>& done) {
  backoff.Reset();
  while (true) {
    absl::StatusOr<bool> now = done();
    if (!now.ok()) return now.status();
    if (*now) return absl::OkStatus();
    if (sleeper.stopped() || !sleeper.SleepFor(backoff.Next())) {
      return absl::CancelledError("stopped while waiting");
    }
  }
}

}  // namespace eventstream
