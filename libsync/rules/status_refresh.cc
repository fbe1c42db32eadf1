#include "libsync/rules/status_refresh.h"

namespace eventstream {

bool StatusRefreshDue(const StatusRefreshState& s, const StatusRefreshTimers& timers) {
  if (s.pull_now) return true;
  if (!s.reconciled) return false;
  if (!s.all_approved && (s.notify || s.since_refresh >= timers.poll_interval)) return true;
  if (s.since_refresh >= timers.status_refresh) return true;
  return s.syncing && s.since_refresh >= timers.sync_progress;
}

}  // namespace eventstream
