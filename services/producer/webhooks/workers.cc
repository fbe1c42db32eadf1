// The retry workers of WebhookDelivery (delivery.h): each claims one due
// Queued request at a time, sends it holding the claim, records the outcome.
#include <string>

#include "absl/strings/str_cat.h"
#include "libsync/base/status_macros.h"
#include "libsync/rules/poll_wait.h"
#include "libsync/rules/webhook_rules.h"
#include "services/producer/webhooks/delivery.h"
#include "services/producer/webhooks/http_sender.h"
#include "services/producer/webhooks/webhook_store.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

// The next due Queued request whose webhook has no earlier Queued request
// for the same document (per webhook, per document order), locked.
constexpr pg::Query kClaimQueued{
    "webhook_claim_queued",
    "SELECT r.id, r.request_id, r.webhook, r.url, r.method, r.body,"
    "  r.attempts, w.definition::text AS definition, r.doctype, r.docname"
    " FROM es_producer.webhook_request r"
    " LEFT JOIN es_producer.webhook w ON w.name = r.webhook"
    " WHERE r.status = 'Queued' AND r.next_attempt_at <= now()"
    "  AND NOT EXISTS (SELECT 1 FROM es_producer.webhook_request e"
    "    WHERE e.status = 'Queued' AND e.webhook = r.webhook"
    "      AND e.doctype = r.doctype AND e.docname = r.docname AND e.id < r.id)"
    " ORDER BY r.next_attempt_at, r.id LIMIT 1"
    " FOR UPDATE OF r SKIP LOCKED"};
// An attempt's outcome. next_attempt_at counts from the end of this attempt
// (clock_timestamp, not the claim's now()): a slow or timed-out attempt
// still waits the whole delay.
constexpr pg::Query kRecordAttempt{
    "webhook_record_attempt",
    "UPDATE es_producer.webhook_request SET attempts = attempts + 1,"
    " status = $2,"
    " next_attempt_at = CASE WHEN $2 = 'Queued'"
    "   THEN clock_timestamp() + make_interval(secs => $3::double precision)"
    "   ELSE next_attempt_at END,"
    " response_code = nullif($4::int, 0), response_body = $5,"
    " error = nullif($6, ''), duration_ms = $7::int,"
    " first_attempt_at = coalesce(first_attempt_at, now()),"
    " last_attempt_at = clock_timestamp(),"
    " finished_at = CASE WHEN $2 = 'Queued' THEN NULL ELSE clock_timestamp() END"
    " WHERE id = $1"};

// A claimed request.
struct Claimed {
  int64_t id = 0;
  std::string request_id, webhook, url, method, body, docref;
  int attempts = 0;  // with this one
  std::optional<std::string> definition;  // nullopt: the webhook is deleted
};

Claimed ReadClaimed(const pg::Result& r) {
  Claimed c;
  c.id = r.GetInt64(0, r.ColumnIndex("id"));
  c.request_id = std::string(r.Get(0, "request_id"));
  c.webhook = std::string(r.Get(0, "webhook"));
  c.url = std::string(r.Get(0, "url"));
  c.method = std::string(r.Get(0, "method"));
  c.body = std::string(r.Get(0, "body"));
  c.attempts = static_cast<int>(r.GetInt64(0, r.ColumnIndex("attempts"))) + 1;
  c.definition = r.GetOptional(0, r.ColumnIndex("definition"));
  c.docref = absl::StrCat(r.Get(0, "doctype"), " ", r.Get(0, "docname"));
  return c;
}

void LogAttempt(const Claimed& c, const Settled& settled, const Outcome& outcome) {
  const std::string status = settled.status;
  if (status == "Queued") {
    spdlog::warn("webhook {}: request {} for {} attempt {} failed: {}; retry in {}",
                 c.webhook, c.id, c.docref, c.attempts,
                 CleanText(outcome.error, 300),
                 absl::FormatDuration(settled.delay));
  } else if (status != "Success") {
    spdlog::error("webhook {}: request {} for {} {} after {} attempt(s): {}",
                  c.webhook, c.id, c.docref, status, c.attempts,
                  CleanText(outcome.error, 300));
  }
}

}  // namespace

void WebhookDelivery::WorkerLoop(int index) {
  LowerThisThreadPriority(options_.nice);
  CURL* curl = curl_easy_init();
  std::unique_ptr<pg::Connection> conn;
  Sleeper& sleeper = *worker_sleepers_[static_cast<size_t>(index)];
  Backoff retry(ConstantRetry(kRetryEvery));
  LoopHooks hooks;
  hooks.on_failure = [index](const absl::Status& status, int failures) {
    if (failures == 1) {
      spdlog::error("webhook worker {}: {} (retrying)", index, std::string(status.message()));
    }
  };
  // A send is followed at once by the next (RunLoop checks Stop() first).
  RunLoop(
      sleeper, retry,
      [&]() -> absl::StatusOr<absl::Duration> {
        RETURN_IF_ERROR(Reconnect(&conn));
        absl::StatusOr<bool> sent = SendOne(conn.get(), curl);
        if (!sent.ok()) {
          conn.reset();
          return sent.status();
        }
        return PollWait(*sent, options_.poll_interval);
      },
      hooks);
  curl_easy_cleanup(curl);
}

absl::StatusOr<bool> WebhookDelivery::SendOne(pg::Connection* conn, CURL* curl) {
  // The claim (row lock) is held for the whole attempt; the outcome is
  // written in the same transaction. Dying before COMMIT leaves the request
  // Queued with its previous attempt count: it is sent again (at least
  // once).
  ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn));
  ASSIGN_OR_RETURN(pg::Result claimed, conn->Exec(kClaimQueued));
  if (claimed.rows() == 0) return false;
  const Claimed c = ReadClaimed(claimed);

  Outcome outcome;
  if (!c.definition) {
    outcome.kind = AttemptKind::kFail;
    outcome.error = "webhook deleted";
  } else {
    auto json = Value::ParseJson(*c.definition);
    auto hook = json.ok() ? WebhookFromJson(*json)
                          : absl::StatusOr<WebhookConfig>(json.status());
    if (hook.ok()) {
      outcome = Attempt(curl, *hook, RuntimeSecretEnv(*hook), c.request_id,
                        c.url, c.method, c.body);
    } else {
      outcome.kind = AttemptKind::kFail;
      outcome.error = absl::StrCat("stored webhook definition unreadable: ",
                                   hook.status().message());
    }
  }
  const Settled settled = Settle(options_, outcome, c.attempts);
  const double delay_s = absl::ToDoubleSeconds(settled.delay);
  RETURN_IF_ERROR(conn->Exec(kRecordAttempt,
                             {c.id, std::string(settled.status),
                              std::to_string(delay_s), outcome.code,
                              outcome.response_body,
                              CleanText(outcome.error, 2000), outcome.duration_ms})
                      .status());
  RETURN_IF_ERROR(tx->Commit());
  LogAttempt(c, settled, outcome);
  return true;
}

}  // namespace eventstream
