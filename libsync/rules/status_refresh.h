// When a consumer's puller (services/consumer/puller.cc Reconcile) asks a
// producer for its subscription statuses again with an (idempotent)
// UpdateSubscription although the subscription did not change: always on
// PullNow; once reconciled, on a Notify or every poll_interval while some
// DocType is not approved yet, every status_refresh otherwise, and every
// sync_progress while an initial sync runs (its progress for
// ListProducers). Before the first reconciliation only PullNow asks.
#ifndef EVENTSTREAM_LIBSYNC_RULES_STATUS_REFRESH_H_
#define EVENTSTREAM_LIBSYNC_RULES_STATUS_REFRESH_H_

#include "absl/time/time.h"

namespace eventstream {

struct StatusRefreshState {
  bool pull_now = false;      // an operator's PullNow triggered this pull
  bool notify = false;        // a producer's Notify triggered it
  bool reconciled = false;    // the subscription was reconciled since start
  bool all_approved = false;  // every subscribed DocType was approved
  bool syncing = false;       // some initial sync was running when last heard
  absl::Duration since_refresh = absl::InfiniteDuration();  // since statuses last came
};

struct StatusRefreshTimers {
  absl::Duration poll_interval;
  absl::Duration status_refresh;
  absl::Duration sync_progress;
};

bool StatusRefreshDue(const StatusRefreshState& state, const StatusRefreshTimers& timers);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_STATUS_REFRESH_H_
