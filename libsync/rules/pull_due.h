// When a consumer's puller (services/consumer/puller.cc) pulls a producer
// next, after a pull's outcome: a standby replica tries again after
// standby_retry (its failure streak kept); a success pulls again at once
// when the watermark moved (that pull acknowledges the news), else after
// poll_interval, and ends the failure streak; a failure waits the
// streak's next backoff. Requests (Notify, PullNow) come sooner; the
// puller's loop sees those itself.
#ifndef EVENTSTREAM_LIBSYNC_RULES_PULL_DUE_H_
#define EVENTSTREAM_LIBSYNC_RULES_PULL_DUE_H_

#include "absl/time/time.h"
#include "libsync/base/backoff.h"

namespace eventstream {

struct PullResult {
  bool standby = false;   // another replica holds the pull lock; nothing done
  bool ok = false;        // the pull succeeded
  bool advanced = false;  // ... and moved the watermark
};

struct PullTimers {
  absl::Duration poll_interval;
  absl::Duration standby_retry;
};

// The time the next pull is due after `result` at `now`. Counts a failure
// in `backoff` (Next) or ends its streak after a success (Reset).
absl::Time NextPullDue(absl::Time now, const PullResult& result, const PullTimers& timers,
                       Backoff& backoff);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_PULL_DUE_H_
