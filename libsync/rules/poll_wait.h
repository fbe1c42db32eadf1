// The waits of a polling loop on RunLoop (libsync/base/backoff.h), as
// webhook delivery's dispatcher and retry workers run it: a step that did
// work runs again at once (there may be more), one that found nothing
// waits the poll interval, and a failed step is retried at a constant
// interval (no growth, no jitter; the caller logs once per streak).
#ifndef EVENTSTREAM_LIBSYNC_RULES_POLL_WAIT_H_
#define EVENTSTREAM_LIBSYNC_RULES_POLL_WAIT_H_

#include "absl/time/time.h"
#include "libsync/base/backoff.h"

namespace eventstream {

// Zero after a step that did work, else `poll_interval`.
absl::Duration PollWait(bool did_work, absl::Duration poll_interval);

// Every retry after `every`: initial = max = every, no jitter.
BackoffPolicy ConstantRetry(absl::Duration every);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_POLL_WAIT_H_
