// The rules of push delivery (Producer.StreamUpdates; docs/design.md
// "Delivery"), apart from its I/O.
//
// Producer side: AckWindow counts the answers sent and not yet
// acknowledged (an acknowledgment of seq S covers every answer whose
// next_after_seq is <= S), and NextStreamStep decides what the handler
// does next: read an acknowledgment (the window is full; or the log has
// nothing more, an answer is unacknowledged and the log stayed quiet for
// kStreamAckPatience, so the position the producer records is current once
// the consumer caught up), pull the next answer (the log is ahead, the last
// answer said `more`, or an acknowledgment is not recorded yet), or wait
// for entries to be logged. While answers with entries go out, the
// acknowledgment is recorded at most every kStreamAckRecordEvery
// (MaySkipAckRecord). Reading an acknowledgment blocks (one thread
// per stream), so while the consumer applies the last answer the handler
// waits for the log first: entries logged meanwhile go out at once.
//
// Consumer side: StreamSessionLength is how long one stream stays open
// before the puller closes it to reconcile its subscription again (the
// same refresh rules as the pull path, libsync/rules/status_refresh.h).
#ifndef EVENTSTREAM_LIBSYNC_RULES_STREAM_FLOW_H_
#define EVENTSTREAM_LIBSYNC_RULES_STREAM_FLOW_H_

#include <cstdint>
#include <deque>

#include "absl/time/time.h"

namespace eventstream {

// The default and the largest StreamStart.window.
constexpr int kDefaultStreamWindow = 2;
constexpr int kMaxStreamWindow = 16;
// How long a caught-up handler with an answer in flight watches the log
// before it blocks reading that answer's acknowledgment.
constexpr absl::Duration kStreamAckPatience = absl::Milliseconds(50);

class AckWindow {
 public:
  // `window` >= 1; `acknowledged`: the consumer's committed position when
  // the stream opened.
  AckWindow(int window, int64_t acknowledged) : window_(window), acknowledged_(acknowledged) {}

  // An answer ending at `next_after_seq` was sent.
  void Sent(int64_t next_after_seq) { sent_.push_back(next_after_seq); }
  // The consumer committed up to `seq`; older or repeated acks change nothing.
  void Acknowledged(int64_t seq);

  int in_flight() const { return static_cast<int>(sent_.size()); }
  bool full() const { return in_flight() >= window_; }
  // The highest position acknowledged so far.
  int64_t acknowledged() const { return acknowledged_; }

 private:
  int window_;
  int64_t acknowledged_;
  std::deque<int64_t> sent_;  // next_after_seq of each unacknowledged answer
};

enum class StreamStep {
  kReadAck,     // block for the consumer's next acknowledgment
  kPull,        // compute (and, if it moves, send) the next answer
  kWaitForLog,  // wait for entries to be logged (with an answer in flight,
                // at most kStreamAckPatience)
};

struct StreamView {
  bool window_full = false;
  int in_flight = 0;
  bool log_ahead = false;       // the log's end is past the last answer's next_after_seq
  bool more = false;            // the last answer said more entries were ready
  bool ack_unrecorded = false;  // an acknowledgment arrived since the last pull
  // With an answer in flight, the log stayed quiet for kStreamAckPatience.
  bool log_quiet = false;
};

StreamStep NextStreamStep(const StreamView& view);

// How often, at most, a stream records the consumer's acknowledgment while
// answers with entries keep going out (each recording is a transaction on
// the producer's database, and at fan-out one per answer per consumer was
// most of the producer's database work).
constexpr absl::Duration kStreamAckRecordEvery = absl::Seconds(1);

// Whether the next pull of a stream may leave its acknowledgment
// unrecorded, should its answer move and change no holding: never before
// the session's first recording (it drops the pending holding changes of an
// earlier session), and not once kStreamAckRecordEvery passed since the
// last. An answer that does not move (the consumer caught up) or changes a
// holding is always recorded (update_feed.h).
bool MaySkipAckRecord(bool recorded_this_session, absl::Duration since_recorded);

// How long a consumer keeps one stream open: while an initial sync runs,
// `sync_progress` (its progress is refreshed between streams); while a
// DocType waits for approval, `poll_interval`; else `status_refresh`.
absl::Duration StreamSessionLength(bool syncing, bool all_approved,
                                   absl::Duration poll_interval,
                                   absl::Duration status_refresh,
                                   absl::Duration sync_progress);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_STREAM_FLOW_H_
