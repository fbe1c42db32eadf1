#include "libsync/rules/retention_plan.h"

#include <algorithm>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace eventstream {
namespace {

constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();

// Lowers `*bound` to `candidate`, remembering why.
void Lower(int64_t candidate, const std::string& why, int64_t* bound, std::string* held_by) {
  if (candidate < *bound) {
    *bound = candidate;
    *held_by = why;
  }
}

// Whether the site is re-syncing after being cut off: it needs nothing old.
bool CutOff(const ConsumerPosition& c) { return c.acknowledged_seq < c.lost_through; }

}  // namespace

RetentionCutoffs ComputeRetentionCutoffs(const RetentionConfig& policy, absl::Time now) {
  RetentionCutoffs out;
  out.keep_after = now - policy.min_age;
  if (policy.max_age > absl::ZeroDuration()) out.valve_before = now - policy.max_age;
  return out;
}

RetentionPlan PlanRetention(const RetentionInput& in) {
  RetentionPlan plan;
  // Hard limits: the newest entry stays; nothing younger than min_age goes.
  int64_t hard = kNoLimit;
  std::string hard_why;
  Lower(in.end_seq - 1, "end", &hard, &hard_why);
  Lower(in.old_enough_seq, "min_age", &hard, &hard_why);
  // The promise: what consumers and webhooks still need.
  int64_t promise = kNoLimit;
  std::string promise_why;
  for (const ConsumerPosition& c : in.consumers) {
    if (CutOff(c) || !c.first_needed) continue;
    Lower(*c.first_needed - 1, absl::StrCat("consumer ", c.site), &promise, &promise_why);
  }
  if (in.webhook_cursor) Lower(*in.webhook_cursor, "webhooks", &promise, &promise_why);
  // The valve: past it, entries go whoever needs them.
  int64_t valve = in.valve_seq;
  if (in.max_entries > 0) valve = std::max(valve, in.end_seq - in.max_entries);

  int64_t horizon = promise;
  plan.held_by = promise_why;
  if (valve > horizon) {
    horizon = valve;
    plan.held_by = "valve";
  }
  if (hard <= horizon) {
    horizon = hard;
    plan.held_by = hard_why;
  }
  if (horizon <= in.trimmed_through) {
    plan.horizon = in.trimmed_through;
    return plan;
  }
  plan.horizon = horizon;
  for (const ConsumerPosition& c : in.consumers) {
    if (c.first_needed && *c.first_needed <= horizon) {
      plan.behind.push_back(Behind{c.site, c.acknowledged_seq, *c.first_needed, !CutOff(c)});
    }
  }
  std::sort(plan.behind.begin(), plan.behind.end(),
            [](const Behind& a, const Behind& b) { return a.site < b.site; });
  if (in.webhook_cursor && *in.webhook_cursor < horizon) {
    plan.webhooks_skip_from = std::max(*in.webhook_cursor, in.trimmed_through);
    plan.webhooks_skip_to = horizon;
  }
  return plan;
}

absl::Status LogTrimmedError(const std::string& site, int64_t position, int64_t lost_through,
                             int64_t first_kept) {
  return absl::FailedPreconditionError(absl::StrCat(
      kLogTrimmedMarker, " site \"", site, "\" is at seq ", position,
      ", but entries it still needed up to seq ", lost_through,
      " were deleted by the retention valve (producer.retention max_age / max_entries); the "
      "first seq kept is ", first_kept, " (", std::max<int64_t>(0, first_kept - position - 1),
      " seqs behind); call Producer.RestartSync with skip_trimmed to re-sync"));
}

bool IsLogTrimmed(const absl::Status& status) {
  // A client may prefix the producer's message with where it came from.
  return status.code() == absl::StatusCode::kFailedPrecondition &&
         (absl::StartsWith(status.message(), kLogTrimmedMarker) ||
          absl::StrContains(status.message(), absl::StrCat(": ", kLogTrimmedMarker)));
}

absl::Duration SyncLogTrimInterval(absl::Duration retention) {
  if (retention <= absl::ZeroDuration()) return absl::ZeroDuration();
  return std::clamp(retention / 2, absl::Seconds(1), absl::Minutes(10));
}

}  // namespace eventstream
