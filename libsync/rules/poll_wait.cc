#include "libsync/rules/poll_wait.h"

namespace eventstream {

absl::Duration PollWait(bool did_work, absl::Duration poll_interval) {
  return did_work ? absl::ZeroDuration() : poll_interval;
}

BackoffPolicy ConstantRetry(absl::Duration every) {
  BackoffPolicy policy;
  policy.initial = every;
  policy.max = every;
  policy.jitter = 0;
  return policy;
}

}  // namespace eventstream
