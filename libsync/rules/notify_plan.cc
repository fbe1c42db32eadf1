#include "libsync/rules/notify_plan.h"

#include <algorithm>
#include <cmath>

namespace eventstream {

absl::Duration NotifyRetry::Failed(absl::Time now) {
  const absl::Duration delay = absl::Milliseconds(
      std::max<int64_t>(1, std::llround(absl::ToDoubleMilliseconds(backoff_.Next()))));
  next_attempt_ = now + delay;
  return delay;
}

void NotifyRetry::Reset() {
  backoff_.Reset();
  next_attempt_ = absl::InfinitePast();
}

NotifyPlan PlanNotify(const std::vector<NotifyCandidate>& targets, absl::Time now) {
  NotifyPlan plan;
  for (size_t i = 0; i < targets.size(); ++i) {
    const NotifyCandidate& t = targets[i];
    if (!t.owed || t.in_flight) continue;
    if (t.next_attempt > now) {
      plan.wake_at = std::min(plan.wake_at, t.next_attempt);
      continue;
    }
    plan.start.push_back(i);
  }
  return plan;
}

}  // namespace eventstream
