// When the notifier (services/producer/notifier.h) calls each consumer:
// which targets are due, when its worker wakes next, and what a failed
// call does to a target's delay. Pure: times come in
// (tests/unit/notify_plan_test.cc).
//
// * NotifyRetry: one target's failure streak (Backoff, libsync/base/
//   backoff.h) and the time its next call may start. A failure waits the
//   streak's next delay, rounded to whole milliseconds and at least 1 ms; a
//   success, or the consumer calling us (Heard), ends the streak and makes
//   the target due at once.
// * PlanNotify: of the targets owed a Notify and not already calling, those
//   due now start; the earliest due time of the others is when the worker
//   wakes (none: it waits for a signal).
// The notifier keeps one streak per target, so it does not run on RunLoop
// (one streak per loop); its worker waits on its own condition variable,
// which Signal() and finished calls notify.
#ifndef EVENTSTREAM_LIBSYNC_RULES_NOTIFY_PLAN_H_
#define EVENTSTREAM_LIBSYNC_RULES_NOTIFY_PLAN_H_

#include <cstddef>
#include <functional>
#include <vector>

#include "absl/time/time.h"
#include "libsync/base/backoff.h"

namespace eventstream {

class NotifyRetry {
 public:
  // `unit` as for Backoff (null: random jitter).
  explicit NotifyRetry(BackoffPolicy policy, std::function<double()> unit = nullptr)
      : backoff_(policy, std::move(unit)) {}
  // Whether a call may start at `now`.
  bool Due(absl::Time now) const { return now >= next_attempt_; }
  absl::Time next_attempt() const { return next_attempt_; }
  // A call failed at `now`: counts it; the delay before the next call.
  absl::Duration Failed(absl::Time now);
  // A call worked or the consumer was heard from: streak over, due at once.
  void Reset();
  // Failures in the current streak; 0 = not backing off.
  int failures() const { return backoff_.failures(); }

 private:
  Backoff backoff_;
  absl::Time next_attempt_ = absl::InfinitePast();
};

struct NotifyCandidate {
  bool owed = false;       // signalled and not yet called with it
  bool in_flight = false;  // a call is running
  absl::Time next_attempt = absl::InfinitePast();
};

struct NotifyPlan {
  std::vector<size_t> start;                     // indices into the candidates
  absl::Time wake_at = absl::InfiniteFuture();   // InfiniteFuture: wait for a signal
};

NotifyPlan PlanNotify(const std::vector<NotifyCandidate>& targets, absl::Time now);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_NOTIFY_PLAN_H_
