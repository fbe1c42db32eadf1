// Update log retention (docs/design.md "Retention"; issue 15 item 1): the
// pure rule deciding how far the producer may delete its update log.
//
// * RetentionCutoffs: from the policy and now, the creation times that
//   matter: entries created after `keep_after` are never deleted (min_age);
//   entries created before `valve_before` (max_age; absent = no valve by
//   age) are deleted whoever still needs them.
// * PlanRetention: the horizon H (entries with seq <= H may be deleted) and
//   who loses entries they still needed. H is the lowest of the hard limits
//   (the newest entry always stays, so max(seq) stays the log's end; nothing
//   younger than min_age) and the highest of the promise (every consumer's
//   first needed entry minus one, the webhooks' cursor) and the valve
//   (max_age, max_entries). A consumer already cut off (its acknowledged
//   position below the trim point recorded for it) holds nothing back: it
//   re-syncs. H never goes below the recorded trim point.
#ifndef EVENTSTREAM_LIBSYNC_RULES_RETENTION_PLAN_H_
#define EVENTSTREAM_LIBSYNC_RULES_RETENTION_PLAN_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "libsync/config/config.h"

namespace eventstream {

struct RetentionCutoffs {
  absl::Time keep_after;                  // created after it: kept (min_age)
  std::optional<absl::Time> valve_before;  // created before it: deleted anyway
};

RetentionCutoffs ComputeRetentionCutoffs(const RetentionConfig& policy, absl::Time now);

// One consumer site as the store read it.
struct ConsumerPosition {
  std::string site;
  int64_t acknowledged_seq = 0;
  // The first entry after acknowledged_seq the site would be sent: of a
  // DocType it follows (approved, subscribed) and not of its own origin,
  // or logged for it alone (update_log.for_site). nullopt: none up to the
  // end the store looked at.
  std::optional<int64_t> first_needed;
  // The trim point recorded when the valve cut it off (0 = never); while
  // acknowledged_seq is below it the site is re-syncing, not waiting.
  int64_t lost_through = 0;
};

struct RetentionInput {
  int64_t end_seq = 0;          // max(seq) of the log (0 = empty)
  int64_t trimmed_through = 0;  // recorded trim point (log_state)
  std::vector<ConsumerPosition> consumers;
  // The lowest webhook cursor (every entry <= it was looked at for every
  // webhook); nullopt = no webhooks.
  std::optional<int64_t> webhook_cursor;
  // The newest seq created at or before keep_after (0 = none).
  int64_t old_enough_seq = 0;
  // The newest seq created before valve_before (0 = none or no valve).
  int64_t valve_seq = 0;
  int64_t max_entries = 0;  // 0 = no valve by count
};

struct Behind {
  std::string site;
  int64_t acknowledged_seq = 0;
  int64_t first_needed = 0;  // the first entry it needed that goes
  bool newly = true;         // false: already cut off before (marked again)
};

struct RetentionPlan {
  int64_t horizon = 0;  // delete seq <= horizon; >= input.trimmed_through
  // What stopped the horizon: "end" (the newest entry stays), "min_age",
  // "consumer <site>", "webhooks", or "valve".
  std::string held_by;
  std::vector<Behind> behind;  // sites losing entries they needed, by site
  // Webhooks: entries in (webhook_cursor, horizon] go before their requests
  // were created (valve only); {0, 0} = none.
  int64_t webhooks_skip_from = 0;  // exclusive
  int64_t webhooks_skip_to = 0;    // inclusive
};

RetentionPlan PlanRetention(const RetentionInput& input);

// How often the consumer's sync log trimmer runs for a given
// consumer.sync_log_retention: twice per retention period, at least every
// second and at most every 10 minutes (so a row outlives its retention by
// at most half of it, or 10 minutes). Zero retention: zero (never runs).
absl::Duration SyncLogTrimInterval(absl::Duration retention);

// The answer to a pull of a cut-off consumer (docs/design.md "Retention"):
// FAILED_PRECONDITION whose message starts with kLogTrimmedMarker and names
// the position it asked from, the trim point that cut it off and the first
// seq kept. The consumer recognises it with IsLogTrimmed (also behind a
// "<where>: " prefix its client adds) and recovers with
// Producer.RestartSync(skip_trimmed).
inline constexpr char kLogTrimmedMarker[] = "log trimmed:";
absl::Status LogTrimmedError(const std::string& site, int64_t position, int64_t lost_through,
                             int64_t first_kept);
bool IsLogTrimmed(const absl::Status& status);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_RETENTION_PLAN_H_
