// ConsumerStore: the Event Consumer records (migrations/producer/
// 0003_consumers.sql) and every change to them: registration, subscription
// updates, approvals, and the config's pre-approvals.
//
// Contract (docs/design.md "Producer / Register / approve"):
//  * Register creates the site's record with one row per requested DocType
//    and returns the current log position (max seq of es_producer.update_log,
//    0 when empty) as the consumer's new watermark, recorded as its
//    acknowledged position. Registering again with the same api key and
//    notify token is the same as UpdateSubscription and returns the position
//    the site last acknowledged (its registration's, if it never pulled): a
//    consumer killed before it stored the first answer skips nothing logged
//    in between. The same site with another api
//    key or another notify token is ALREADY_EXISTS: two deployments claim
//    one site name (the consumer changes its token with UpdateSubscription).
//  * UpdateSubscription replaces the site's DocType list, conditions,
//    unsubscribe flags, notify address and token. Existing rows keep their
//    status; a DocType missing from the new list is kept with
//    unsubscribed = true, so asking for it again keeps its approval. New rows
//    are pending.
//  * A config pre-approval (producer.consumers[].doctypes[]) decides the
//    status of that site's row for that DocType whenever the site asks for
//    it, now or later; such rows are marked from_config and
//    SetStatus refuses them (FAILED_PRECONDITION naming the config key). A
//    config entry's condition is stored as the row's producer_condition: a
//    document must pass both conditions. ApplyConfig (on start) brings
//    existing rows in line and releases rows whose config entry is gone
//    (back to pending).
//  * Capture follows approvals: the DocTypes with at least one approved,
//    subscribed row are exactly the captured ones (CaptureInstaller). Every
//    write that can change that set runs under one session advisory lock, and
//    installs the triggers for (old set ∪ new set) BEFORE its transaction
//    commits and drops the ones no longer needed AFTER: at every instant the
//    installed triggers cover every committed approval, so a crash anywhere
//    loses no change; at worst a DocType stays captured without an approval
//    until the next start (ApplyConfig re-syncs), which only costs log rows.
//  * Validation before any write: unknown DocType or a child-table DocType,
//    duplicate DocType, a condition that does not parse: INVALID_ARGUMENT
//    naming it. Notify tokens never appear in a log line or status.
#ifndef EVENTSTREAM_SERVICES_PRODUCER_CONSUMER_STORE_H_
#define EVENTSTREAM_SERVICES_PRODUCER_CONSUMER_STORE_H_

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libsync/config/config.h"
#include "libsync/base/pg.h"
#include "libsync/base/pg_pool.h"
#include "services/producer/notifier.h"

namespace eventstream {

// One row of es_producer.consumer_doctype.
struct SubscriptionRow {
  std::string doctype;
  SubscriptionStatus status = SubscriptionStatus::kPending;
  std::string condition;           // the consumer's; "" = every document
  std::string producer_condition;  // from the producer's config; "" = none
  bool unsubscribed = false;
  bool from_config = false;        // column approved_by_config
  bool skip_initial_sync = false;  // the consumer asked for changes only
  // Its initial sync (es_producer.sync_job): "" none, "running", "done".
  std::string sync_state;
  int64_t sync_done = 0;
  int64_t sync_total = 0;  // 0 while not counted yet
};

// What a consumer asks for, per DocType.
struct SubscriptionRequest {
  std::string doctype;
  std::string condition;
  bool unsubscribe = false;
  bool skip_initial_sync = false;  // changes from now on only
};

struct ConsumerRegistration {
  std::string site;
  std::string api_key;  // the key id the caller authenticated with
  std::string notify_address;
  std::string notify_token;  // a credential; never logged
  std::vector<SubscriptionRequest> doctypes;
};

struct RegisterResult {
  int64_t watermark = 0;
  std::vector<SubscriptionRow> subscriptions;  // by DocType
};

struct ConsumerSummary {
  std::string site;
  std::string notify_address;
  int64_t acknowledged_seq = 0;
  // Entries of the consumer's approved, subscribed DocTypes after its
  // acknowledged position, not counting its own origin's; conditions are not
  // evaluated, so this is an upper bound of what it still has to pull.
  int64_t lag_entries = 0;
  std::string last_pull_at;  // RFC 3339 UTC; "" = never pulled
  std::vector<SubscriptionRow> subscriptions;
};

struct SkipResult {
  int64_t old_position = 0;  // acknowledged_seq before
  int64_t watermark = 0;     // acknowledged_seq now: the log's end
  std::vector<SubscriptionRow> subscriptions;
};

struct ConsumerListing {
  std::vector<ConsumerSummary> consumers;  // by site
  int64_t log_position = 0;
};


class ConsumerStore {
 public:
  // Makes the capture triggers match a set of DocTypes, in its own
  // transaction on the connection given (CaptureInstaller::SyncTriggers).
  using TriggerSync = std::function<absl::Status(
      pg::Connection*, const std::set<std::string>& doctypes)>;

  // `config` (registry and producer.consumers) and `pool` must outlive the
  // store.
  ConsumerStore(const Config* config, pg::ConnectionPool* pool,
                TriggerSync sync_triggers);

  absl::StatusOr<RegisterResult> Register(const ConsumerRegistration& reg);
  // NOT_FOUND when the site never registered. reg.api_key is not compared:
  // the caller proved it acts for reg.site.
  absl::StatusOr<std::vector<SubscriptionRow>> UpdateSubscription(
      const ConsumerRegistration& reg);
  // Runs the initial sync of an active subscription again (Producer.
  // RestartSync; docs/design.md "Membership"). NOT_FOUND for a DocType the
  // site never asked for; FAILED_PRECONDITION when it is not active.
  absl::StatusOr<SubscriptionRow> RestartSync(absl::string_view site,
                                              absl::string_view doctype);
  // A cut-off consumer's recovery (RestartSync with skip_trimmed;
  // docs/design.md "Retention"). One transaction: its acknowledged_seq (and
  // lost_through, so pulls from below stay refused) becomes the log's end,
  // its pending holding changes count as held (the new sync examines those
  // documents and moves out what it must), and the initial sync of every
  // active subscription, and every revoke it had not acknowledged whole,
  // starts again from the log's end. Killed before COMMIT: nothing changed,
  // the consumer asks again. NOT_FOUND for an unknown site.
  absl::StatusOr<SkipResult> SkipTrimmed(absl::string_view site);
  // NOT_FOUND for an unknown site or a DocType the site never asked for;
  // FAILED_PRECONDITION for a row the config decides, or when capture
  // cannot be installed (e.g. the DocType's table is missing).
  absl::StatusOr<SubscriptionRow> SetStatus(absl::string_view site,
                                            absl::string_view doctype,
                                            SubscriptionStatus status);
  absl::StatusOr<ConsumerListing> List();

  // On start: applies the config's pre-approvals to existing rows and syncs
  // the capture triggers with the approved set.
  absl::Status ApplyConfig();

  // Where to send Notify: every consumer with at least one approved,
  // subscribed DocType and a notify address.
  absl::StatusOr<std::vector<NotifyTarget>> NotifyTargets();

  // max(seq) of es_producer.update_log, or 0.
  static absl::StatusOr<int64_t> LogPosition(pg::Connection* conn);
  // DocTypes with at least one approved, subscribed row, restricted to the
  // registry's parent DocTypes (a row of a DocType since removed from the
  // config, or turned into a child table, is ignored).
  absl::StatusOr<std::set<std::string>> CapturedDocTypes(pg::Connection* conn);

 private:
  // Validates a registration: its notify_address (libsync/base/input_rules.h)
  // and its DocType list (see file comment).
  absl::Status Validate(const ConsumerRegistration& reg) const;
  // The config entry deciding `site`'s row for `doctype`, or null.
  const ConsumerDocTypeConfig* ConfigFor(absl::string_view site,
                                         absl::string_view doctype) const;
  // Runs `write` in a transaction under the approvals lock, keeping capture
  // in line with its effect (see file comment). With `reconcile`, the
  // triggers are synced with the approved set even if `write` changed
  // nothing, and a failure to do so is an error.
  absl::Status WriteWithCapture(
      const std::function<absl::Status(pg::Connection*)>& write,
      bool reconcile = false);
  // Upserts the requested rows, unsubscribes the rest, sets notify fields.
  absl::Status WriteSubscriptions(pg::Connection* conn,
                                  const ConsumerRegistration& reg);
  absl::StatusOr<std::vector<SubscriptionRow>> ReadRows(pg::Connection* conn,
                                                       absl::string_view site);

  const Config* config_;
  pg::ConnectionPool* pool_;
  TriggerSync sync_triggers_;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_CONSUMER_STORE_H_
