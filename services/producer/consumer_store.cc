#include "services/producer/consumer_store.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libsync/base/input_rules.h"
#include "libsync/base/status_macros.h"
#include "libsync/config/subscription_condition.h"
#include "libsync/base/value.h"
#include "services/producer/approvals_lock.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

// The columns of a SubscriptionRow (RowAt reads them by these names).
// The initial sync's progress comes from es_producer.sync_job.
#define ES_SUBSCRIPTION_COLUMNS                                                     \
  "doctype, status, condition, producer_condition, unsubscribed, approved_by_config," \
  " skip_initial_sync,"                                                             \
  " (SELECT j.state FROM es_producer.sync_job j WHERE j.site = consumer_doctype.site"  \
  "   AND j.doctype = consumer_doctype.doctype) AS sync_state,"                      \
  " (SELECT j.done FROM es_producer.sync_job j WHERE j.site = consumer_doctype.site"   \
  "   AND j.doctype = consumer_doctype.doctype) AS sync_done,"                       \
  " (SELECT j.total FROM es_producer.sync_job j WHERE j.site = consumer_doctype.site"  \
  "   AND j.doctype = consumer_doctype.doctype) AS sync_total"

constexpr pg::Query kNotifyTargets{
    "es_consumers_notify_targets",
    "SELECT c.site, c.notify_address, c.notify_token FROM es_producer.consumer c"
    " WHERE c.notify_address <> '' AND EXISTS (SELECT 1 FROM"
    " es_producer.consumer_doctype d WHERE d.site = c.site"
    " AND d.status = 'approved' AND NOT d.unsubscribed) ORDER BY c.site"};
constexpr pg::Query kLogPosition{
    "es_consumers_log_position",
    "SELECT coalesce(max(seq), 0) AS position FROM es_producer.update_log"};
constexpr pg::Query kApprovedDocTypes{
    "es_consumers_approved_doctypes",
    "SELECT DISTINCT doctype FROM es_producer.consumer_doctype"
    " WHERE status = 'approved' AND NOT unsubscribed"};
constexpr pg::Query kSiteRows{
    "es_consumers_site_rows",
    "SELECT " ES_SUBSCRIPTION_COLUMNS " FROM es_producer.consumer_doctype"
    " WHERE site = $1 ORDER BY doctype"};
constexpr pg::Query kSetNotify{
    "es_consumers_set_notify",
    "UPDATE es_producer.consumer SET notify_address = $2, notify_token = $3"
    " WHERE site = $1"};
// A config entry decides the status (and adds its condition); without one,
// a new row is pending and an existing row keeps its status, except that a
// status the config used to decide falls back to pending.
constexpr pg::Query kUpsertRow{
    "es_consumers_upsert_row",
    "INSERT INTO es_producer.consumer_doctype AS d"
    " (site, doctype, status, condition, producer_condition, unsubscribed,"
    "  approved_by_config, skip_initial_sync)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    " ON CONFLICT (site, doctype) DO UPDATE SET"
    "  condition = EXCLUDED.condition,"
    "  skip_initial_sync = EXCLUDED.skip_initial_sync,"
    "  producer_condition = EXCLUDED.producer_condition,"
    "  unsubscribed = EXCLUDED.unsubscribed,"
    "  status = CASE WHEN EXCLUDED.approved_by_config THEN EXCLUDED.status"
    "                WHEN d.approved_by_config THEN 'pending'"
    "                ELSE d.status END,"
    "  approved_by_config = EXCLUDED.approved_by_config,"
    "  updated_at = now()"};
// Every row of site $1 whose DocType is not in the JSON array $2.
constexpr pg::Query kUnsubscribeOthers{
    "es_consumers_unsubscribe_others",
    "UPDATE es_producer.consumer_doctype SET unsubscribed = true,"
    " updated_at = now()"
    " WHERE site = $1 AND NOT unsubscribed"
    "   AND doctype NOT IN (SELECT jsonb_array_elements_text($2::jsonb))"};
constexpr pg::Query kLockConsumerCredentials{
    "es_consumers_lock_credentials",
    "SELECT api_key, notify_token, acknowledged_seq FROM es_producer.consumer WHERE site = $1"
    " FOR UPDATE"};
// $3 the log position the registration answers: the consumer has
// everything up to it (nothing before its registration is its to pull).
constexpr pg::Query kInsertConsumer{
    "es_consumers_insert",
    "INSERT INTO es_producer.consumer (site, api_key, acknowledged_seq) VALUES ($1, $2, $3)"};
constexpr pg::Query kLockConsumer{
    "es_consumers_lock",
    "SELECT 1 FROM es_producer.consumer WHERE site = $1 FOR UPDATE"};
constexpr pg::Query kConsumerExists{
    "es_consumers_exists", "SELECT 1 FROM es_producer.consumer WHERE site = $1"};
constexpr pg::Query kLockRow{
    "es_consumers_lock_row",
    "SELECT " ES_SUBSCRIPTION_COLUMNS " FROM es_producer.consumer_doctype"
    " WHERE site = $1 AND doctype = $2 FOR UPDATE"};
// The same reset the trigger on consumer_doctype makes (migration 0010).
constexpr pg::Query kRestartSync{
    "es_consumers_restart_sync",
    "INSERT INTO es_producer.sync_job (site, doctype, kind, start_seq)"
    " VALUES ($1, $2, 'sync', (SELECT coalesce(max(seq), 0) FROM es_producer.update_log))"
    " ON CONFLICT (site, doctype) DO UPDATE SET kind = 'sync', state = 'running',"
    "  cursor = '', last_seq = 0, prev_seq = 0, start_seq = EXCLUDED.start_seq, done = 0,"
    "  total = NULL, started_at = now(), finished_at = NULL"};
// SkipTrimmed (docs/design.md "Retention"): the position, locked; the new
// position; pending holding changes counted as held; the initial syncs of
// the active subscriptions and the unfinished revokes started again at $2.
constexpr pg::Query kLockPosition{
    "es_consumers_lock_position",
    "SELECT acknowledged_seq, lost_through FROM es_producer.consumer WHERE site = $1 FOR UPDATE"};
constexpr pg::Query kSkipPosition{
    "es_consumers_skip_position",
    "UPDATE es_producer.consumer SET acknowledged_seq = $2,"
    " lost_through = greatest(lost_through, $2) WHERE site = $1"};
constexpr pg::Query kHoldPending{
    "es_consumers_hold_pending",
    "WITH moved AS (DELETE FROM es_producer.holding_change WHERE site = $1"
    "               RETURNING doctype, docname)"
    " INSERT INTO es_producer.holding (site, doctype, docname)"
    " SELECT DISTINCT $1, doctype, docname FROM moved ON CONFLICT DO NOTHING"};
#define ES_SYNC_JOB_RESTART                                                          \
  "state = 'running', cursor = '', last_seq = 0, prev_seq = 0, start_seq = $2, done = 0," \
  " total = NULL, started_at = now(), finished_at = NULL"
constexpr pg::Query kRestartAllSyncs{
    "es_consumers_restart_all_syncs",
    "INSERT INTO es_producer.sync_job AS j (site, doctype, kind, start_seq)"
    " SELECT site, doctype, 'sync', $2 FROM es_producer.consumer_doctype"
    " WHERE site = $1 AND status = 'approved' AND NOT unsubscribed"
    " ON CONFLICT (site, doctype) DO UPDATE SET kind = 'sync', " ES_SYNC_JOB_RESTART};
// A revoke whose entries the consumer had not all acknowledged ($3: its
// old position) is logged again from the start.
constexpr pg::Query kRestartRevokes{
    "es_consumers_restart_revokes",
    "UPDATE es_producer.sync_job SET " ES_SYNC_JOB_RESTART
    " WHERE site = $1 AND kind = 'revoke' AND (state = 'running' OR last_seq > $3)"};
#undef ES_SYNC_JOB_RESTART
constexpr pg::Query kSetStatus{
    "es_consumers_set_status",
    "UPDATE es_producer.consumer_doctype SET status = $3, updated_at = now()"
    " WHERE site = $1 AND doctype = $2"};
constexpr pg::Query kListConsumers{
    "es_consumers_list",
    "SELECT c.site, c.notify_address, c.acknowledged_seq,"
    "  coalesce(to_char(c.last_pull_at AT TIME ZONE 'UTC',"
    "                   'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '') AS last_pull_at,"
    "  (SELECT count(*) FROM es_producer.update_log u"
    "    WHERE u.seq > c.acknowledged_seq"
    "      AND u.origin IS DISTINCT FROM c.site"
    "      AND (u.for_site IS NULL OR u.for_site = c.site)"
    "      AND u.doctype IN (SELECT d.doctype FROM es_producer.consumer_doctype d"
    "                         WHERE d.site = c.site AND d.status = 'approved'"
    "                           AND NOT d.unsubscribed)) AS lag_entries"
    " FROM es_producer.consumer c ORDER BY c.site"};
constexpr pg::Query kAllRows{
    "es_consumers_all_rows",
    "SELECT site, " ES_SUBSCRIPTION_COLUMNS " FROM es_producer.consumer_doctype"
    " ORDER BY site, doctype"};
constexpr pg::Query kLockAllRows{
    "es_consumers_lock_all_rows",
    "SELECT site, " ES_SUBSCRIPTION_COLUMNS " FROM es_producer.consumer_doctype"
    " ORDER BY site, doctype FOR UPDATE"};
#undef ES_SUBSCRIPTION_COLUMNS
constexpr pg::Query kApplyConfigRow{
    "es_consumers_apply_config_row",
    "UPDATE es_producer.consumer_doctype SET status = $3,"
    " producer_condition = $4, approved_by_config = $5, updated_at = now()"
    " WHERE site = $1 AND doctype = $2"};



bool SecretEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string StatusText(SubscriptionStatus status) {
  return std::string(ToString(status));
}

SubscriptionStatus ParseStatus(absl::string_view text) {
  if (text == "approved") return SubscriptionStatus::kApproved;
  if (text == "rejected") return SubscriptionStatus::kRejected;
  return SubscriptionStatus::kPending;
}

// Row `i` of a result with the subscription columns, by name.
SubscriptionRow RowAt(const pg::Result& r, int i) {
  SubscriptionRow row;
  row.doctype = std::string(r.Get(i, "doctype"));
  row.status = ParseStatus(r.Get(i, "status"));
  row.condition = std::string(r.Get(i, "condition"));
  row.producer_condition = std::string(r.Get(i, "producer_condition"));
  row.unsubscribed = r.GetBool(i, r.ColumnIndex("unsubscribed"));
  row.from_config = r.GetBool(i, r.ColumnIndex("approved_by_config"));
  row.skip_initial_sync = r.GetBool(i, r.ColumnIndex("skip_initial_sync"));
  row.sync_state = std::string(r.Get(i, "sync_state"));
  row.sync_done = r.GetInt64(i, r.ColumnIndex("sync_done"));
  row.sync_total = r.GetInt64(i, r.ColumnIndex("sync_total"));
  return row;
}

std::string JsonArray(const std::vector<std::string>& items) {
  Value::Array a;
  for (const std::string& s : items) a.push_back(Value::String(s));
  return Value::FromArray(std::move(a)).ToJson();
}

// "2 DocTypes: 1 approved, 1 pending" for one log line.
std::string Describe(const std::vector<SubscriptionRow>& rows) {
  std::map<std::string, int> counts;
  int unsubscribed = 0;
  for (const SubscriptionRow& r : rows) {
    if (r.unsubscribed) {
      ++unsubscribed;
    } else {
      ++counts[StatusText(r.status)];
    }
  }
  std::vector<std::string> parts;
  for (const auto& [status, n] : counts) parts.push_back(absl::StrCat(n, " ", status));
  if (unsubscribed > 0) parts.push_back(absl::StrCat(unsubscribed, " unsubscribed"));
  return absl::StrCat(rows.size(), " DocType(s)",
                      parts.empty() ? "" : ": ", absl::StrJoin(parts, ", "));
}

}  // namespace

ConsumerStore::ConsumerStore(const Config* config, pg::ConnectionPool* pool,
                             TriggerSync sync_triggers)
    : config_(config), pool_(pool), sync_triggers_(std::move(sync_triggers)) {}

absl::Status ConsumerStore::Validate(const ConsumerRegistration& reg) const {
  if (std::string problem = NotifyAddressProblem(reg.notify_address); !problem.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "notify_address ", Quoted(EscapeForLog(TruncateForClient(reg.notify_address, 100))),
        ": ", problem));
  }
  const std::vector<SubscriptionRequest>& doctypes = reg.doctypes;
  std::set<std::string> seen;
  for (size_t i = 0; i < doctypes.size(); ++i) {
    const SubscriptionRequest& d = doctypes[i];
    if (d.doctype.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("doctypes[", i, "].doctype: required"));
    }
    const DocTypeDef* def = config_->registry.Find(d.doctype);
    if (def == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown DocType ", Quoted(d.doctype),
          ": this producer's config (doctypes:) does not define it"));
    }
    if (def->istable) {
      return absl::InvalidArgumentError(absl::StrCat(
          "DocType ", Quoted(d.doctype),
          " is a child table; subscribe to its parent DocType, whose "
          "documents carry its rows"));
    }
    if (!seen.insert(d.doctype).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("DocType ", Quoted(d.doctype), " is listed twice"));
    }
    // A consumer's cmd: condition may only name an allowed function.
    std::string problem = ConditionProblem(d.condition, &config_->condition_functions());
    if (!problem.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "condition for DocType ", Quoted(d.doctype), ": ", problem));
    }
  }
  return absl::OkStatus();
}

const ConsumerDocTypeConfig* ConsumerStore::ConfigFor(
    absl::string_view site, absl::string_view doctype) const {
  if (!config_->producer) return nullptr;
  const ConsumerSiteConfig* c =
      config_->producer->FindConsumer(std::string_view(site.data(), site.size()));
  if (c == nullptr) return nullptr;
  for (const ConsumerDocTypeConfig& d : c->doctypes) {
    if (d.doctype == doctype) return &d;
  }
  return nullptr;
}

absl::StatusOr<std::vector<NotifyTarget>> ConsumerStore::NotifyTargets() {
  ASSIGN_OR_RETURN(auto conn, pool_->Acquire());
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kNotifyTargets));
  std::vector<NotifyTarget> out;
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back(NotifyTarget{std::string(r.Get(i, "site")),
                               std::string(r.Get(i, "notify_address")),
                               std::string(r.Get(i, "notify_token"))});
  }
  return out;
}

absl::StatusOr<int64_t> ConsumerStore::LogPosition(pg::Connection* conn) {
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kLogPosition));
  return r.GetInt64(0, r.ColumnIndex("position"));
}

absl::StatusOr<std::set<std::string>> ConsumerStore::CapturedDocTypes(
    pg::Connection* conn) {
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kApprovedDocTypes));
  std::set<std::string> out;
  for (int i = 0; i < r.rows(); ++i) {
    std::string doctype(r.Get(i, "doctype"));
    const DocTypeDef* def = config_->registry.Find(doctype);
    if (def != nullptr && !def->istable) out.insert(std::move(doctype));
  }
  return out;
}

absl::StatusOr<std::vector<SubscriptionRow>> ConsumerStore::ReadRows(
    pg::Connection* conn, absl::string_view site) {
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kSiteRows, {site}));
  std::vector<SubscriptionRow> rows;
  for (int i = 0; i < r.rows(); ++i) rows.push_back(RowAt(r, i));
  return rows;
}

absl::Status ConsumerStore::WriteWithCapture(
    const std::function<absl::Status(pg::Connection*)>& write, bool reconcile) {
  ASSIGN_OR_RETURN(auto conn, pool_->Acquire());
  RETURN_IF_ERROR(conn->Exec(kApprovalsLock).status());
  // Session-level lock: released here on every path. Should the process
  // die, PostgreSQL releases it with the session.
  struct Unlock {
    pg::Connection* c;
    ~Unlock() { (void)c->Exec(kApprovalsUnlock); }
  } unlock{conn.get()};

  ASSIGN_OR_RETURN(const std::set<std::string> before, CapturedDocTypes(conn.get()));
  ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn.get()));
  RETURN_IF_ERROR(write(conn.get()));  // rolls back
  // Sees this transaction's writes.
  ASSIGN_OR_RETURN(const std::set<std::string> after, CapturedDocTypes(conn.get()));

  std::set<std::string> both = before;
  both.insert(after.begin(), after.end());
  std::unique_ptr<pg::ConnectionPool::Lease> ddl;
  auto sync = [&](const std::set<std::string>& doctypes) -> absl::Status {
    if (ddl == nullptr) {
      ASSIGN_OR_RETURN(auto lease, pool_->Acquire());
      ddl = std::make_unique<pg::ConnectionPool::Lease>(std::move(lease));
    }
    return sync_triggers_(ddl->get(), doctypes);
  };
  // New approvals: triggers first, on another connection, committed before
  // the approvals are. Dying after this sync and before our COMMIT leaves
  // triggers without an approval: captured rows nobody pulls, dropped again
  // on the next start.
  if (both.size() != before.size()) {
    if (absl::Status s = sync(both); !s.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot install capture for DocType(s) [",
          absl::StrJoin(both, ", "), "]; nothing was changed: ", s.message()));
    }
  }
  RETURN_IF_ERROR(tx->Commit());
  // Withdrawn approvals: triggers go only after the commit, so no committed
  // approval is ever without its trigger. Dying here keeps them until the
  // next start.
  if (reconcile || both.size() != after.size()) {
    if (absl::Status s = sync(after); !s.ok()) {
      if (reconcile) {
        return absl::FailedPreconditionError(absl::StrCat(
            "cannot install capture for the approved DocType(s) [",
            absl::StrJoin(after, ", "), "]: ", s.message()));
      }
      spdlog::warn(
          "approvals changed, but removing capture triggers failed (they stay "
          "until the next start or approval change): {}",
          std::string(s.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status ConsumerStore::WriteSubscriptions(pg::Connection* conn,
                                               const ConsumerRegistration& reg) {
  // All statements run in the caller's transaction: a crash between them
  // rolls every one back.
  RETURN_IF_ERROR(
      conn->Exec(kSetNotify, {reg.site, reg.notify_address, reg.notify_token}).status());
  std::vector<std::string> asked;
  for (const SubscriptionRequest& d : reg.doctypes) {
    asked.push_back(d.doctype);
    const ConsumerDocTypeConfig* cfg = ConfigFor(reg.site, d.doctype);
    RETURN_IF_ERROR(conn->Exec(kUpsertRow,
                               {reg.site, d.doctype,
                                cfg ? StatusText(cfg->status) : std::string("pending"),
                                d.condition, cfg ? cfg->condition : std::string(),
                                d.unsubscribe, cfg != nullptr, d.skip_initial_sync})
                        .status());
  }
  return conn->Exec(kUnsubscribeOthers, {reg.site, JsonArray(asked)}).status();
}

absl::StatusOr<RegisterResult> ConsumerStore::Register(const ConsumerRegistration& reg) {
  if (reg.site.empty()) return absl::InvalidArgumentError("consumer_site: required");
  RETURN_IF_ERROR(Validate(reg));
  RegisterResult result;
  bool existed = false;
  RETURN_IF_ERROR(WriteWithCapture([&](pg::Connection* conn) -> absl::Status {
    ASSIGN_OR_RETURN(pg::Result found, conn->Exec(kLockConsumerCredentials, {reg.site}));
    if (found.rows() > 0) {
      existed = true;
      bool same_key = found.Get(0, "api_key") == reg.api_key;
      if (!same_key || !SecretEquals(found.Get(0, "notify_token"), reg.notify_token)) {
        return absl::AlreadyExistsError(absl::StrCat(
            "consumer site ", Quoted(reg.site), " is already registered with ",
            same_key ? "another notify token" : "another api key",
            ": if this deployment replaces the registered one, call "
            "UpdateSubscription with the new token; otherwise give this "
            "consumer a site name of its own"));
      }
      // The position it last acknowledged, not the log's end: a consumer
      // that died before storing its first answer asks again and must not
      // skip what was logged in between (an initial sync's first chunks).
      result.watermark = found.GetInt64(0, found.ColumnIndex("acknowledged_seq"));
    } else {
      ASSIGN_OR_RETURN(result.watermark, LogPosition(conn));
      RETURN_IF_ERROR(
          conn->Exec(kInsertConsumer, {reg.site, reg.api_key, result.watermark}).status());
    }
    return WriteSubscriptions(conn, reg);
  }));
  ASSIGN_OR_RETURN(auto conn, pool_->Acquire());
  ASSIGN_OR_RETURN(result.subscriptions, ReadRows(conn.get(), reg.site));
  spdlog::info("consumer {} {} (notify {}), watermark {}; {}", reg.site,
               existed ? "registered again" : "registered",
               reg.notify_address.empty() ? "off" : reg.notify_address,
               result.watermark, Describe(result.subscriptions));
  return result;
}

absl::StatusOr<std::vector<SubscriptionRow>> ConsumerStore::UpdateSubscription(
    const ConsumerRegistration& reg) {
  if (reg.site.empty()) return absl::InvalidArgumentError("consumer_site: required");
  RETURN_IF_ERROR(Validate(reg));
  RETURN_IF_ERROR(WriteWithCapture([&](pg::Connection* conn) -> absl::Status {
    ASSIGN_OR_RETURN(pg::Result found, conn->Exec(kLockConsumer, {reg.site}));
    if (found.rows() == 0) {
      return absl::NotFoundError(absl::StrCat(
          "consumer site ", Quoted(reg.site),
          " is not registered; call RegisterConsumer first"));
    }
    return WriteSubscriptions(conn, reg);
  }));
  ASSIGN_OR_RETURN(auto conn, pool_->Acquire());
  ASSIGN_OR_RETURN(std::vector<SubscriptionRow> rows, ReadRows(conn.get(), reg.site));
  spdlog::info("consumer {} updated its subscription (notify {}); {}", reg.site,
               reg.notify_address.empty() ? "off" : reg.notify_address,
               Describe(rows));
  return rows;
}

absl::StatusOr<SubscriptionRow> ConsumerStore::RestartSync(absl::string_view site,
                                                           absl::string_view doctype) {
  ASSIGN_OR_RETURN(auto conn, pool_->Acquire());
  ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn.get()));
  ASSIGN_OR_RETURN(pg::Result found, conn->Exec(kLockRow, {site, doctype}));
  if (found.rows() == 0) {
    return absl::NotFoundError(absl::StrCat("consumer site ", Quoted(site),
                                            " has not asked for DocType ", Quoted(doctype)));
  }
  const SubscriptionRow before = RowAt(found, 0);
  if (before.status != SubscriptionStatus::kApproved || before.unsubscribed) {
    return absl::FailedPreconditionError(absl::StrCat(
        "consumer site ", Quoted(site), "'s subscription to ", Quoted(doctype), " is ",
        before.unsubscribed ? "unsubscribed" : StatusText(before.status),
        ": only an approved subscription has an initial sync to run again"));
  }
  RETURN_IF_ERROR(conn->Exec(kRestartSync, {site, doctype}).status());
  ASSIGN_OR_RETURN(pg::Result row, conn->Exec(kLockRow, {site, doctype}));
  RETURN_IF_ERROR(tx->Commit());
  spdlog::info("consumer {} asked for the initial sync of {} again", std::string(site),
               std::string(doctype));
  return RowAt(row, 0);
}

absl::StatusOr<SkipResult> ConsumerStore::SkipTrimmed(absl::string_view site) {
  ASSIGN_OR_RETURN(auto conn, pool_->Acquire());
  ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn.get()));
  ASSIGN_OR_RETURN(pg::Result found, conn->Exec(kLockPosition, {site}));
  if (found.rows() == 0) {
    return absl::NotFoundError(absl::StrCat("site ", Quoted(site),
                                            " is not registered; call RegisterConsumer first"));
  }
  SkipResult out;
  out.old_position = found.GetInt64(0, found.ColumnIndex("acknowledged_seq"));
  // Entries commit in seq order (the assembler's lock): any not visible yet
  // comes after this end, and the consumer pulls it.
  ASSIGN_OR_RETURN(out.watermark, LogPosition(conn.get()));
  RETURN_IF_ERROR(conn->Exec(kSkipPosition, {site, out.watermark}).status());
  RETURN_IF_ERROR(conn->Exec(kHoldPending, {site}).status());
  RETURN_IF_ERROR(conn->Exec(kRestartAllSyncs, {site, out.watermark}).status());
  RETURN_IF_ERROR(
      conn->Exec(kRestartRevokes, {site, out.watermark, out.old_position}).status());
  ASSIGN_OR_RETURN(out.subscriptions, ReadRows(conn.get(), site));
  RETURN_IF_ERROR(tx->Commit());
  spdlog::warn("consumer {} skipped the trimmed part of the log: its position moved from seq {} "
               "to seq {}; the initial sync of its subscriptions runs again",
               std::string(site), out.old_position, out.watermark);
  return out;
}

absl::StatusOr<SubscriptionRow> ConsumerStore::SetStatus(absl::string_view site,
                                                         absl::string_view doctype,
                                                         SubscriptionStatus status) {
  SubscriptionRow row;
  std::string was;
  RETURN_IF_ERROR(WriteWithCapture([&](pg::Connection* conn) -> absl::Status {
    ASSIGN_OR_RETURN(pg::Result found, conn->Exec(kLockRow, {site, doctype}));
    if (found.rows() == 0) {
      ASSIGN_OR_RETURN(pg::Result consumer, conn->Exec(kConsumerExists, {site}));
      if (consumer.rows() == 0) {
        return absl::NotFoundError(
            absl::StrCat("no consumer site ", Quoted(site), " is registered"));
      }
      return absl::NotFoundError(absl::StrCat("consumer site ", Quoted(site),
                                              " has not asked for DocType ",
                                              Quoted(doctype)));
    }
    row = RowAt(found, 0);
    if (row.from_config) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the status of consumer site ", Quoted(site), "'s subscription to ",
          Quoted(doctype), " is set by the config (producer.consumers, site ",
          Quoted(site), "); change it there"));
    }
    was = StatusText(row.status);
    RETURN_IF_ERROR(conn->Exec(kSetStatus, {site, doctype, StatusText(status)}).status());
    row.status = status;
    return absl::OkStatus();
  }));
  spdlog::info("consumer {} subscription to {}: {} -> {}", std::string(site),
               std::string(doctype), was, StatusText(status));
  return row;
}

absl::StatusOr<ConsumerListing> ConsumerStore::List() {
  ASSIGN_OR_RETURN(auto conn, pool_->Acquire());
  // One snapshot for the whole listing.
  ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn.get(),
                                                   "ISOLATION LEVEL REPEATABLE READ READ ONLY"));
  ConsumerListing listing;
  ASSIGN_OR_RETURN(listing.log_position, LogPosition(conn.get()));
  ASSIGN_OR_RETURN(pg::Result consumers, conn->Exec(kListConsumers));
  std::map<std::string, size_t> index;
  const int acknowledged = consumers.ColumnIndex("acknowledged_seq"),
            lag = consumers.ColumnIndex("lag_entries");
  for (int i = 0; i < consumers.rows(); ++i) {
    ConsumerSummary c;
    c.site = std::string(consumers.Get(i, "site"));
    c.notify_address = std::string(consumers.Get(i, "notify_address"));
    c.acknowledged_seq = consumers.GetInt64(i, acknowledged);
    c.last_pull_at = std::string(consumers.Get(i, "last_pull_at"));
    c.lag_entries = consumers.GetInt64(i, lag);
    index[c.site] = listing.consumers.size();
    listing.consumers.push_back(std::move(c));
  }
  ASSIGN_OR_RETURN(pg::Result rows, conn->Exec(kAllRows));
  for (int i = 0; i < rows.rows(); ++i) {
    auto it = index.find(std::string(rows.Get(i, "site")));
    if (it == index.end()) continue;
    listing.consumers[it->second].subscriptions.push_back(RowAt(rows, i));
  }
  RETURN_IF_ERROR(tx->Commit());
  return listing;
}

absl::Status ConsumerStore::ApplyConfig() {
  int changed = 0;
  RETURN_IF_ERROR(WriteWithCapture([&](pg::Connection* conn) -> absl::Status {
    ASSIGN_OR_RETURN(pg::Result rows, conn->Exec(kLockAllRows));
    for (int i = 0; i < rows.rows(); ++i) {
      std::string site(rows.Get(i, "site"));
      SubscriptionRow row = RowAt(rows, i);
      if (config_->registry.Find(row.doctype) == nullptr &&
          row.status == SubscriptionStatus::kApproved) {
        spdlog::warn(
            "consumer {} is approved for DocType {}, which the config no longer "
            "defines; it is not captured",
            site, row.doctype);
      }
      const ConsumerDocTypeConfig* cfg = ConfigFor(site, row.doctype);
      SubscriptionStatus want_status = row.status;
      std::string want_condition = row.producer_condition;
      if (cfg != nullptr) {
        want_status = cfg->status;
        want_condition = cfg->condition;
      } else if (row.from_config) {
        want_status = SubscriptionStatus::kPending;  // config entry withdrawn
        want_condition.clear();
      } else {
        continue;
      }
      if (want_status == row.status && want_condition == row.producer_condition &&
          row.from_config == (cfg != nullptr)) {
        continue;
      }
      // In the caller's transaction: a crash rolls back every row.
      RETURN_IF_ERROR(conn->Exec(kApplyConfigRow, {site, row.doctype, StatusText(want_status),
                                                   want_condition, cfg != nullptr})
                          .status());
      ++changed;
      spdlog::info("consumer {} subscription to {}: {} -> {} ({})", site, row.doctype,
                   StatusText(row.status), StatusText(want_status),
                   cfg ? "config pre-approval" : "config entry removed");
    }
    return absl::OkStatus();
  }, /*reconcile=*/true));
  spdlog::info("config pre-approvals applied at start: {} row(s) changed",
               changed);
  return absl::OkStatus();
}

}  // namespace eventstream
