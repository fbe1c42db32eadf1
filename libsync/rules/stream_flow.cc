#include "libsync/rules/stream_flow.h"

#include <algorithm>

namespace eventstream {

void AckWindow::Acknowledged(int64_t seq) {
  acknowledged_ = std::max(acknowledged_, seq);
  while (!sent_.empty() && sent_.front() <= acknowledged_) sent_.pop_front();
}

StreamStep NextStreamStep(const StreamView& view) {
  if (view.window_full) return StreamStep::kReadAck;
  if (view.more || view.log_ahead) return StreamStep::kPull;
  // Caught up: watch the log a while (entries logged while the consumer
  // applies go out at once), then collect the acknowledgment of what was
  // sent and record it.
  if (view.in_flight > 0) return view.log_quiet ? StreamStep::kReadAck : StreamStep::kWaitForLog;
  if (view.ack_unrecorded) return StreamStep::kPull;
  return StreamStep::kWaitForLog;
}

bool MaySkipAckRecord(bool recorded_this_session, absl::Duration since_recorded) {
  return recorded_this_session && since_recorded < kStreamAckRecordEvery;
}

absl::Duration StreamSessionLength(bool syncing, bool all_approved,
                                   absl::Duration poll_interval,
                                   absl::Duration status_refresh,
                                   absl::Duration sync_progress) {
  if (syncing) return sync_progress;
  if (!all_approved) return poll_interval;
  return status_refresh;
}

}  // namespace eventstream
