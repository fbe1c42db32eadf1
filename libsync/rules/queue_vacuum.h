// When the assembler vacuums the raw_change queue itself (docs/design.md
// "Retention", issue 15 item 2). Every captured row becomes a dead tuple
// once the assembler consumes it; at a few thousand rows a second,
// autovacuum (which looks at a database once per autovacuum_naptime, 1 min
// by default) lets hundreds of thousands pile up. The assembler counts the
// rows it deleted and vacuums the table once enough are dead and not more
// often than min_interval. The retention loop (services/producer/
// retention.h) does the same for update_log after its trims, and the
// consumer's sync log trimmer (services/consumer/sync_log_trimmer.h) for
// es_consumer.sync_log.
// * QueueVacuumPlanner (pure): due? and the outcome of each VACUUM (the
//   dead count and the failure streak).
// * VacuumQueueIfDue: the step those loops share around it: due? -> run the
//   VACUUM (a callable) -> Vacuumed -> log, a failure once per streak.
// Both unit-tested without a database (tests/unit/queue_vacuum_test.cc).
#ifndef EVENTSTREAM_LIBSYNC_RULES_QUEUE_VACUUM_H_
#define EVENTSTREAM_LIBSYNC_RULES_QUEUE_VACUUM_H_

#include <cstdint>
#include <functional>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace eventstream {

struct QueueVacuumPolicy {
  int64_t min_dead_rows = 20000;  // 0 = never vacuum
  absl::Duration min_interval = absl::Seconds(2);
};

class QueueVacuumPlanner {
 public:
  explicit QueueVacuumPlanner(QueueVacuumPolicy policy) : policy_(policy) {}
  // The assembler deleted `rows` queue rows.
  void Consumed(int64_t rows) { dead_ += rows; }
  // Whether to vacuum now.
  bool Due(absl::Time now) const {
    return policy_.min_dead_rows > 0 && dead_ >= policy_.min_dead_rows &&
           now - last_ >= policy_.min_interval;
  }
  // A vacuum finished (or failed: it is not tried again before min_interval).
  void Vacuumed(absl::Time now, bool ok) {
    last_ = now;
    if (ok) dead_ = 0;
    failures_ = ok ? 0 : failures_ + 1;
  }
  int64_t dead() const { return dead_; }
  // VACUUMs failed in a row since the last that worked; 0 = none.
  int failures() const { return failures_; }

 private:
  QueueVacuumPolicy policy_;
  int64_t dead_ = 0;
  int failures_ = 0;
  absl::Time last_ = absl::InfinitePast();
};

// How a loop's VACUUM is named in its log lines: "<loop>: VACUUM of <table>".
struct QueueVacuumName {
  std::string_view loop;   // "retention"
  std::string_view table;  // "update_log"
  // A success logged at info (a rare vacuum) rather than debug (a frequent one).
  bool success_at_info = false;
};

// When `planner` says a VACUUM is due at now(), runs `vacuum` and records its
// outcome at now() after it. A failure is not fatal (autovacuum still runs):
// logged as a warning at the first of a streak, the first success after it
// at info. Whether it vacuumed (and the VACUUM worked).
bool VacuumQueueIfDue(QueueVacuumPlanner* planner, const std::function<absl::Time()>& now,
                      const std::function<absl::Status()>& vacuum, const QueueVacuumName& name);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_QUEUE_VACUUM_H_
