#include "libsync/rules/pull_due.h"

namespace eventstream {

absl::Time NextPullDue(absl::Time now, const PullResult& result, const PullTimers& timers,
                       Backoff& backoff) {
  if (result.standby) return now + timers.standby_retry;
  if (!result.ok) return now + backoff.Next();
  backoff.Reset();
  return result.advanced ? now : now + timers.poll_interval;
}

}  // namespace eventstream
