// How many initial sync chunks may wait for the consumer's acknowledgment
// at once (docs/design.md "Initial sync"; issue 14).
//
// A job remembers the last seq of each of its most recent chunks
// (sync_job.recent_seqs) and the seq its next chunk waits for
// (sync_job.prev_seq): with `in_flight` chunks allowed, the next one is
// written once the consumer acknowledged the chunk `in_flight` back. More
// than one keeps both sides busy (the producer reads a chunk while the
// consumer applies the one before); a bound keeps a slow consumer from
// filling the log. Only flow: correctness never depends on it.
// Pure (tests/unit/sync_window_test.cc).
#ifndef EVENTSTREAM_LIBSYNC_RULES_SYNC_WINDOW_H_
#define EVENTSTREAM_LIBSYNC_RULES_SYNC_WINDOW_H_

#include <cstdint>
#include <vector>

namespace eventstream {

struct SyncWindow {
  std::vector<int64_t> recent;  // the newest chunks' last seqs, oldest first
  int64_t wait_for = 0;         // the next chunk waits until acknowledged >= this
};

// After a chunk committed: `recent` and `last_seq` as the job had them
// (last_seq 0: the job (re)started, so `recent` is stale), `logged_end` the
// chunk's last seq (0: it logged nothing), `in_flight` >= 1.
SyncWindow AdvanceSyncWindow(std::vector<int64_t> recent, int64_t last_seq, int64_t logged_end,
                             int in_flight);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_SYNC_WINDOW_H_
