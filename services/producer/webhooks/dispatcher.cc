// The dispatcher of WebhookDelivery (delivery.h): passes that plan the
// requests of the next log entries in one snapshot, make their first
// attempts holding no transaction, and record them all in one transaction
// (docs/design.md "Webhooks": what a crash at each step leaves).
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libsync/base/status_macros.h"
#include "libsync/rules/poll_wait.h"
#include "libsync/rules/webhook_rules.h"
#include "services/producer/webhooks/delivery.h"
#include "services/producer/webhooks/http_sender.h"
#include "services/producer/webhooks/webhook_store.h"
#include "spdlog/spdlog.h"

namespace eventstream {

namespace webhook_dispatch {

// A webhook as parsed from its stored definition.
struct CachedHook {
  std::string definition;  // the stored JSON text this was parsed from
  absl::StatusOr<WebhookConfig> config;
  std::optional<Condition> condition;
  std::string condition_error;
  absl::StatusOr<PreparedWebhook> prepared;
};

// An enabled webhook that may fire in a pass.
struct PassHook {
  std::shared_ptr<const CachedHook> parsed;
  const WebhookConfig& config() const { return *parsed->config; }
  int64_t last_seq = 0;  // its cursor
  int index = -1;        // into Pass::hook_queued once it fires
};

// One (webhook, log entry) request of a pass, built in PlanPass, attempted
// (or not) in SendPass, inserted by RecordPass.
struct PassRequest {
  std::shared_ptr<const CachedHook> hook;
  int hook_index = 0;  // into Pass::hook_queued
  int64_t seq = 0;
  std::string doctype, docname, url, method, body, request_id;
  Value headers = Value::EmptyArray();  // [[key, value], ...], secrets masked
  // "Failed" (with `error`) when it could not be built; after SendPass the
  // settled state of its attempt, or "Queued" with no attempt.
  std::string status = "Queued";
  std::string error;
  std::optional<Outcome> outcome;  // the attempt made in this pass
  absl::Duration delay;            // Queued after an attempt: the backoff
};

struct Pass {
  int64_t log_end = 0;   // the update log's last seq when planned
  int64_t position = 0;  // the dispatch position moves here
  std::vector<PassRequest> requests;  // in seq order
  std::vector<std::string> firing_names;  // per PassRequest::hook_index
  // Per webhook of the requests (PassRequest::hook_index): it already had
  // Queued requests when the pass was planned, so its new ones are queued
  // behind them instead of sent (per-document order; a failing receiver is
  // left to the workers' backoff).
  std::vector<char> hook_queued;
};

// busy_cpu_percent pauses since the last report (logged once a minute).
struct PauseReport {
  absl::Duration paused;
  int passes = 0;
  absl::Time next = absl::InfinitePast();  // the first report at once
};

}  // namespace webhook_dispatch

namespace {

using webhook_dispatch::CachedHook;
using webhook_dispatch::Pass;
using webhook_dispatch::PassHook;
using webhook_dispatch::PassRequest;

constexpr int kBatchEntries = 500;
// How long a pass makes first attempts (SendPass) before it queues the rest.
constexpr absl::Duration kSendPhaseBudget = absl::Seconds(2);

// One dispatcher among the replicas: a session lock held from plan to record.
constexpr pg::Query kTryDispatchLock{
    "webhook_try_dispatch_lock",
    "SELECT pg_try_advisory_lock(hashtext('es_producer.webhook_dispatch'))"
    " AS locked"};
constexpr pg::Query kDispatchUnlock{
    "webhook_dispatch_unlock",
    "SELECT pg_advisory_unlock(hashtext('es_producer.webhook_dispatch'))"};
// The lowest webhook cursor (a cursor is greatest(webhook.last_seq, the
// dispatch position), migrations/producer/0007; no webhooks: the log's end)
// and the log's end.
constexpr pg::Query kPassBounds{
    "webhook_pass_bounds",
    "SELECT greatest(d.position,"
    "   coalesce((SELECT min(last_seq) FROM es_producer.webhook), l.seq)) AS low,"
    " l.seq AS log_end"
    " FROM es_producer.webhook_dispatch d,"
    "  (SELECT coalesce(max(seq), 0) AS seq FROM es_producer.update_log) l"};
constexpr pg::Query kPassWebhooks{
    "webhook_pass_webhooks",
    "SELECT w.name, w.definition::text AS definition,"
    " greatest(w.last_seq, d.position) AS hook_cursor"
    " FROM es_producer.webhook w, es_producer.webhook_dispatch d"
    " WHERE greatest(w.last_seq, d.position) < $1 ORDER BY w.name"};
constexpr pg::Query kPassEntries{
    "webhook_pass_entries",
    "SELECT seq, doctype, docname, update_type,"
    " coalesce(data::text, 'null') AS data"
    " FROM es_producer.update_log"
    " WHERE seq > $1 AND seq <= $2 AND for_site IS NULL"
    "  AND doctype IN (SELECT jsonb_array_elements_text($3::jsonb))"
    " ORDER BY seq LIMIT $4"};
// The firing webhooks (1-based positions in $1) that have Queued requests.
constexpr pg::Query kWebhooksWithQueued{
    "webhook_with_queued",
    "SELECT h.i::int AS i FROM unnest($1::text[]) WITH ORDINALITY AS h(name, i)"
    " WHERE EXISTS (SELECT 1 FROM es_producer.webhook_request r"
    "   WHERE r.status = 'Queued' AND r.webhook = h.name)"};
// A pass's rows, in COPY's text format (the server parses far less than a
// JSON or array parameter of the same rows).
#define ES_WEBHOOK_REQUEST_COLUMNS                                            \
  "request_id, webhook, seq, doctype, docname, doc_event, url, method,"      \
  " headers, body, status, error, attempts, next_attempt_at, response_code," \
  " response_body, duration_ms, first_attempt_at, last_attempt_at,"          \
  " finished_at"
constexpr char kCopyRequests[] =
    "COPY es_producer.webhook_request (" ES_WEBHOOK_REQUEST_COLUMNS ") FROM STDIN";
constexpr pg::Query kCreatePassTable{
    "webhook_create_pass_table",
    "CREATE TEMP TABLE IF NOT EXISTS webhook_request_pass"
    " (LIKE es_producer.webhook_request INCLUDING DEFAULTS)"
    " ON COMMIT DELETE ROWS"};
constexpr char kCopyPassTable[] =
    "COPY webhook_request_pass (" ES_WEBHOOK_REQUEST_COLUMNS ") FROM STDIN";
constexpr pg::Query kInsertFromPassTable{
    "webhook_insert_from_pass_table",
    "INSERT INTO es_producer.webhook_request (" ES_WEBHOOK_REQUEST_COLUMNS ")"
    " SELECT " ES_WEBHOOK_REQUEST_COLUMNS " FROM webhook_request_pass"
    " ON CONFLICT (webhook, seq) DO NOTHING"};
#undef ES_WEBHOOK_REQUEST_COLUMNS
constexpr pg::Query kAdvancePosition{
    "webhook_advance_position",
    "UPDATE es_producer.webhook_dispatch SET position = $1 WHERE position < $1"};
// Finished requests past retention, a batch through the created_at index.
constexpr pg::Query kDeleteExpired{
    "webhook_delete_expired",
    "DELETE FROM es_producer.webhook_request WHERE id IN ("
    " SELECT id FROM es_producer.webhook_request"
    "  WHERE created_at < now() - make_interval(secs => $1::double precision)"
    "   AND status <> 'Queued' AND coalesce(finished_at, created_at) <"
    "    now() - make_interval(secs => $1::double precision)"
    "  ORDER BY created_at LIMIT $2)"};

int64_t Int(const pg::Result& r, int row, const char* column) {
  return r.GetInt64(row, r.ColumnIndex(column));
}

// RFC 3339 with microseconds, for timestamptz parameters.
std::string TimestampText(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6S%Ez", t, absl::UTCTimeZone());
}

std::shared_ptr<const CachedHook> ParseHook(const std::string& name,
                                            absl::string_view definition) {
  auto parsed = std::make_shared<CachedHook>();
  parsed->definition = std::string(definition);
  auto json = Value::ParseJson(std::string_view(definition.data(), definition.size()));
  parsed->config = json.ok() ? WebhookFromJson(*json)
                             : absl::StatusOr<WebhookConfig>(json.status());
  if (!parsed->config.ok()) {
    spdlog::error("webhook {}: stored definition unreadable, skipped: {}",
                  name, std::string(parsed->config.status().message()));
    return parsed;
  }
  if (!parsed->config->condition.empty()) {
    auto cond = Condition::Parse(parsed->config->condition);
    if (cond.ok()) {
      parsed->condition = std::move(*cond);
    } else {
      parsed->condition_error = std::string(cond.status().message());
    }
  }
  parsed->prepared = PrepareWebhook(*parsed->config);
  return parsed;
}

std::vector<WebhookLogEntry> ReadEntries(const pg::Result& r) {
  std::vector<WebhookLogEntry> entries;
  entries.reserve(r.rows());
  for (int i = 0; i < r.rows(); ++i) {
    WebhookLogEntry e;
    e.seq = Int(r, i, "seq");
    e.doctype = std::string(r.Get(i, "doctype"));
    e.docname = std::string(r.Get(i, "docname"));
    e.update_type = std::string(r.Get(i, "update_type"));
    absl::string_view data = r.Get(i, "data");
    auto parsed = Value::ParseJson(std::string_view(data.data(), data.size()));
    if (parsed.ok()) e.data = std::move(*parsed);
    entries.push_back(std::move(e));
  }
  return entries;
}

// The request of `hook` for entry `e` whose document is `doc`, appended to
// the pass unless the webhook's condition is false. A request that cannot
// be built is Failed with the reason.
void AddRequest(PassHook* hook, const WebhookLogEntry& e, const Value& doc, Pass* pass) {
  const WebhookConfig& config = hook->config();
  const CachedHook& parsed = *hook->parsed;
  ConditionVerdict verdict = WebhookConditionVerdict(
      config.name, parsed.condition ? &*parsed.condition : nullptr,
      parsed.condition_error, doc, e.doctype, e.docname);
  if (!verdict.fires) return;
  std::string error = std::move(verdict.error);
  PassRequest request;
  request.hook = hook->parsed;
  if (hook->index < 0) {
    hook->index = static_cast<int>(pass->firing_names.size());
    pass->firing_names.push_back(config.name);
  }
  request.hook_index = hook->index;
  request.seq = e.seq;
  request.doctype = e.doctype;
  request.docname = e.docname;
  request.method = config.request_method;
  request.request_id = WebhookRequestId(config.name, e.seq);
  if (error.empty()) {
    auto built = parsed.prepared.ok()
                     ? BuildRequest(config, *parsed.prepared, doc)
                     : absl::StatusOr<BuiltRequest>(parsed.prepared.status());
    if (built.ok()) {
      request.url = std::move(built->url);
      request.method = std::move(built->method);
      request.body = std::move(built->body);
      request.headers = HeadersToJson(built->headers);
    } else {
      error = std::string(built.status().message());
    }
  }
  if (!error.empty()) {
    spdlog::warn("webhook {}: request for {} {} (seq {}) not sent: {}",
                 config.name, e.doctype, e.docname, e.seq, error);
    request.status = "Failed";
    request.error = std::move(error);
  }
  pass->requests.push_back(std::move(request));
}

// Fills pass->hook_queued: the firing webhooks that already have Queued
// requests (one probe of webhook_request_doc each).
absl::Status MarkQueuedHooks(pg::Connection* conn, Pass* pass) {
  pass->hook_queued.assign(pass->firing_names.size(), 0);
  if (pass->firing_names.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(pg::Result queued,
                   conn->Exec(kWebhooksWithQueued,
                              {pg::TextArray(pass->firing_names)}));
  for (int i = 0; i < queued.rows(); ++i) {
    pass->hook_queued[Int(queued, i, "i") - 1] = 1;
  }
  return absl::OkStatus();
}

// One request as a row of kCopyRequests; `now` for one not attempted.
void AppendRow(const PassRequest& r, const std::string& now, pg::CopyText* rows) {
  rows->Field(r.request_id).Field(r.hook->config->name).Field(r.seq).Field(r.doctype);
  rows->Field(r.docname).Field(r.hook->config->doc_event).Field(r.url);
  rows->Field(r.method).Field(r.headers.ToJson()).Field(r.body);
  rows->Field(r.status);
  if (r.error.empty()) {
    rows->Null();
  } else {
    rows->Field(CleanText(r.error, 2000));
  }
  const bool queued = r.status == "Queued";
  if (r.outcome) {
    const Outcome& o = *r.outcome;
    const std::string ended = TimestampText(o.ended);
    rows->Field(int64_t{1});
    rows->Field(queued ? TimestampText(o.ended + r.delay) : ended);
    if (o.code != 0) {
      rows->Field(int64_t{o.code});
    } else {
      rows->Null();
    }
    rows->Field(o.response_body).Field(int64_t{o.duration_ms});
    rows->Field(TimestampText(o.started)).Field(ended);
    if (queued) {
      rows->Null();
    } else {
      rows->Field(ended);
    }
  } else {
    // Not attempted: Queued and due now, or Failed when it could not be
    // built.
    rows->Field(int64_t{0}).Field(now).Null().Null().Null().Null().Null();
    if (queued) {
      rows->Null();
    } else {
      rows->Field(now);
    }
  }
  rows->EndRow();
}

// Inserts `rows` in the open transaction `*tx`. When one of them is
// recorded already (UNIQUE (webhook, seq): only if two dispatchers
// overlapped), rolls back and records the others in a new `*tx`.
absl::Status InsertRows(pg::Connection* conn,
                        std::unique_ptr<pg::Transaction>* tx,
                        const pg::CopyText& rows) {
  auto copied = conn->CopyIn(kCopyRequests, rows.data());
  if (copied.ok() || copied.status().code() != absl::StatusCode::kAlreadyExists) {
    return copied.status();
  }
  spdlog::warn("webhook dispatcher: {}; recording the pass's other requests",
               std::string(copied.status().message()));
  tx->reset();  // rolled back
  ASSIGN_OR_RETURN(*tx, pg::Transaction::Begin(conn));
  RETURN_IF_ERROR(conn->Exec(kCreatePassTable).status());
  RETURN_IF_ERROR(conn->CopyIn(kCopyPassTable, rows.data()).status());
  return conn->Exec(kInsertFromPassTable).status();
}

void LogPassOutcomes(const Pass& pass) {
  for (const PassRequest& r : pass.requests) {
    if (!r.outcome || r.status == "Success") continue;
    std::string error = CleanText(r.error, 300);
    if (r.status == "Queued") {
      spdlog::warn("webhook {}: request {} for {} {} (seq {}) attempt 1 failed: "
                   "{}; retry in {}",
                   r.hook->config->name, r.request_id, r.doctype, r.docname,
                   r.seq, error, absl::FormatDuration(r.delay));
    } else {
      spdlog::error("webhook {}: request {} for {} {} (seq {}) {} after 1 "
                    "attempt: {}",
                    r.hook->config->name, r.request_id, r.doctype, r.docname,
                    r.seq, r.status, error);
    }
  }
}

// (C): one transaction inserts every request of the pass and moves the
// dispatch position. Dying before its commit leaves neither (the next pass
// builds and sends the same requests again: at least once); after it,
// each (webhook, entry) has its row exactly once.
absl::StatusOr<int> RecordPass(pg::Connection* conn, Pass* pass) {
  const std::string now = TimestampText(absl::Now());
  pg::CopyText rows;
  for (const PassRequest& r : pass->requests) AppendRow(r, now, &rows);
  ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn));
  if (!pass->requests.empty()) RETURN_IF_ERROR(InsertRows(conn, &tx, rows));
  // Every webhook (also disabled or unreadable ones, which create nothing)
  // has looked at every entry up to `position`.
  RETURN_IF_ERROR(conn->Exec(kAdvancePosition, {pass->position}).status());
  RETURN_IF_ERROR(tx->Commit());
  LogPassOutcomes(*pass);
  return static_cast<int>(pass->requests.size());
}

}  // namespace

absl::StatusOr<int> WebhookDelivery::DispatchOnce(pg::Connection* conn) {
  // A pass: (A) PlanPass reads the cursors, webhooks and log entries in one
  // REPEATABLE READ transaction and builds the requests, then ends it;
  // (B) SendPass makes each request's first attempt, holding no
  // transaction; (C) RecordPass inserts every request with its outcome and
  // moves the cursors in one transaction. A session advisory lock, held
  // from (A) to (C), keeps other replicas' dispatchers out.
  //
  // Dying before (C) commits leaves nothing: no request row, no cursor
  // moved; the next pass builds the same requests (the same webhook-id) and
  // sends those already sent again: at least once. After (C) commits, each
  // (webhook, entry) has its row exactly once (UNIQUE (webhook, seq) backs
  // that up), with the cursors past it. Stop() during (A) abandons the pass
  // (CANCELLED, nothing changed); during (B) it lets the sends in flight
  // finish and records the rest as Queued (the workers send them after the
  // restart), so a clean shutdown sends nothing twice.
  absl::MutexLock pass_lock(&pass_mu_);
  ASSIGN_OR_RETURN(pg::Result locked, conn->Exec(kTryDispatchLock));
  if (!locked.GetBool(0, locked.ColumnIndex("locked"))) return 0;  // another replica
  absl::Cleanup unlock = [conn] {
    if (conn->ok()) (void)conn->Exec(kDispatchUnlock);
  };
  // The pass's cost, for the busy_cpu_percent pause (DispatchLoop): the
  // wall time of planning and recording (our CPU and the server's work,
  // and round trips: an overestimate) plus the senders' CPU time.
  absl::Time start = absl::Now();
  Pass pass;
  ASSIGN_OR_RETURN(bool planned, PlanPass(conn, &pass));
  last_pass_.log_grew = last_pass_.log_end >= 0 && pass.log_end > last_pass_.log_end;
  last_pass_.log_end = pass.log_end;
  if (!planned) {
    last_pass_.cost = last_pass_.wall = absl::ZeroDuration();
    return 0;
  }
  absl::Time sending = absl::Now();
  absl::Duration send_cpu = SendPass(&pass);
  absl::Time recording = absl::Now();
  auto recorded = RecordPass(conn, &pass);
  absl::Time end = absl::Now();
  last_pass_.wall = end - start;
  last_pass_.cost = (sending - start) + send_cpu + (end - recording);
  return recorded;
}

absl::StatusOr<bool> WebhookDelivery::PlanPass(pg::Connection* conn, Pass* pass) {
  // (A): at most max_requests_per_pass_ requests (more only when its first
  // log entry alone fires more webhooks: that entry is taken whole), in one
  // snapshot; it writes nothing.
  ASSIGN_OR_RETURN(auto tx,
                   pg::Transaction::Begin(conn, "ISOLATION LEVEL REPEATABLE READ"));
  ASSIGN_OR_RETURN(pg::Result bounds, conn->Exec(kPassBounds));
  if (bounds.rows() == 0) {
    return absl::FailedPreconditionError(
        "es_producer.webhook_dispatch has no row (migration 0007 not applied?)");
  }
  const int64_t low = Int(bounds, 0, "low");
  pass->log_end = Int(bounds, 0, "log_end");
  if (low >= pass->log_end) return false;

  ASSIGN_OR_RETURN(std::vector<PassHook> hooks, LoadPassHooks(conn, pass->log_end));
  Value::Array doctypes;
  std::map<std::string, int> hooks_per_doctype;
  for (const PassHook& h : hooks) {
    if (hooks_per_doctype[h.config().doctype]++ == 0) {
      doctypes.push_back(Value::String(h.config().doctype));
    }
  }
  const int fetch =
      PassFetchLimit(max_requests_per_pass_, hooks_per_doctype, kBatchEntries);
  ASSIGN_OR_RETURN(pg::Result rows,
                   conn->Exec(kPassEntries, {low, pass->log_end,
                                             Value::FromArray(doctypes).ToJson(),
                                             fetch}));
  const std::vector<WebhookLogEntry> entries = ReadEntries(rows);
  // A full fetch may stop short of the log's end: the pass ends at its last.
  pass->position = static_cast<int>(entries.size()) == fetch ? entries.back().seq
                                                             : pass->log_end;
  RETURN_IF_ERROR(PlanEntries(conn, &hooks, entries, pass));
  RETURN_IF_ERROR(MarkQueuedHooks(conn, pass));
  RETURN_IF_ERROR(tx->Commit());
  return true;
}

absl::StatusOr<std::vector<PassHook>> WebhookDelivery::LoadPassHooks(
    pg::Connection* conn, int64_t log_end) {
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kPassWebhooks, {log_end}));
  std::vector<PassHook> hooks;
  std::map<std::string, std::shared_ptr<const CachedHook>> cache;
  for (int i = 0; i < r.rows(); ++i) {
    std::string name(r.Get(i, "name"));
    absl::string_view definition = r.Get(i, "definition");
    std::shared_ptr<const CachedHook>& cached = cache[name];
    if (auto it = hook_cache_.find(name);
        it != hook_cache_.end() && it->second->definition == definition) {
      cached = it->second;
    } else {
      cached = ParseHook(name, definition);
    }
    if (!cached->config.ok() || !cached->config->enabled) continue;
    hooks.push_back(PassHook{cached, Int(r, i, "hook_cursor")});
  }
  // Webhooks not seen in this pass drop out of the cache.
  hook_cache_ = std::move(cache);
  return hooks;
}

absl::Status WebhookDelivery::PlanEntries(pg::Connection* conn,
                                          std::vector<PassHook>* hooks,
                                          const std::vector<WebhookLogEntry>& entries,
                                          Pass* pass) {
  std::vector<PassHook*> firing;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (stopping_.load(std::memory_order_relaxed)) {
      return absl::CancelledError("webhook dispatcher stopping; pass rolled back");
    }
    const WebhookLogEntry& e = entries[i];
    // The webhooks this entry fires (before conditions): an upper bound on
    // the requests it creates. The document is read only when a webhook of
    // its DocType looks at the entry.
    firing.clear();
    std::optional<EntryDocument> doc;
    std::vector<std::string> events;
    for (PassHook& hook : *hooks) {
      if (hook.last_seq >= e.seq || hook.config().doctype != e.doctype) continue;
      if (!doc) {
        ASSIGN_OR_RETURN(doc, ReadEntryDocument(conn, config_->registry,
                                                &versions_, e));
        events = DocEventsFor(e.update_type, e.data, doc->docstatus_before);
      }
      if (std::find(events.begin(), events.end(), hook.config().doc_event) !=
          events.end()) {
        firing.push_back(&hook);
      }
    }
    if (!PassTakesEntry(pass->requests.size(), firing.size(),
                        max_requests_per_pass_)) {
      pass->position = entries[i - 1].seq;  // the cursors stop before it
      break;
    }
    for (PassHook* hook : firing) AddRequest(hook, e, doc->document, pass);
    if (PassIsFull(pass->requests.size(), max_requests_per_pass_)) {
      pass->position = e.seq;  // full: this entry is the last one of the pass
      break;
    }
  }
  return absl::OkStatus();
}

absl::Duration WebhookDelivery::SendPass(Pass* pass) {
  // (B): chains are the requests of one (webhook, document), in seq order;
  // a chain is sent in order by one thread, and stops at a retryable
  // failure (the rest stays Queued behind it). After one retryable failure
  // of a webhook (or when it had Queued requests already) its other
  // requests are not attempted here either: they are queued, and the
  // workers' backoff paces a failing receiver.
  std::vector<ChainKey> keys;
  keys.reserve(pass->requests.size());
  for (const PassRequest& r : pass->requests) {
    keys.push_back({r.status == "Queued" && !pass->hook_queued[r.hook_index],
                    r.hook_index, r.doctype, r.docname});
  }
  const std::vector<std::vector<size_t>> chains = SendChains(keys);
  if (chains.empty()) return absl::ZeroDuration();
  std::unique_ptr<std::atomic<bool>[]> failing(
      new std::atomic<bool>[pass->hook_queued.size()]);
  for (size_t i = 0; i < pass->hook_queued.size(); ++i) failing[i] = false;
  std::atomic<size_t> next_chain{0};
  // A slow receiver must not hold up the whole pass (and every other
  // webhook's record): after kSendPhaseBudget, no new first attempts; the
  // rest is queued for the workers.
  const absl::Time deadline = dispatch_sleeper_.Now() + kSendPhaseBudget;
  const size_t threads =
      std::min(chains.size(), static_cast<size_t>(options_.workers));
  InitCurlOnce();
  while (pass_curls_.size() < threads) pass_curls_.push_back(curl_easy_init());
  if (threads == 1) {
    absl::Duration before = ThisThreadCpu();
    SendFirstAttempts(pass_curls_[0], pass, chains, &next_chain, failing.get(),
                      deadline);
    return ThisThreadCpu() - before;
  }
  std::vector<std::thread> senders;
  std::vector<absl::Duration> cpu(threads);
  for (size_t t = 0; t < threads; ++t) {
    senders.emplace_back([&, t, curl = pass_curls_[t]] {
      LowerThisThreadPriority(options_.nice);
      SendFirstAttempts(curl, pass, chains, &next_chain, failing.get(), deadline);
      cpu[t] = ThisThreadCpu();
    });
  }
  absl::Duration total;
  for (size_t t = 0; t < threads; ++t) {
    senders[t].join();
    total += cpu[t];
  }
  return total;
}

void WebhookDelivery::SendFirstAttempts(
    CURL* curl, Pass* pass, const std::vector<std::vector<size_t>>& chains,
    std::atomic<size_t>* next, std::atomic<bool>* failing, absl::Time deadline) {
  for (size_t c; (c = next->fetch_add(1)) < chains.size();) {
    for (size_t i : chains[c]) {
      PassRequest& r = pass->requests[i];
      if (stopping_.load(std::memory_order_relaxed) ||
          failing[r.hook_index].load(std::memory_order_relaxed) ||
          dispatch_sleeper_.Now() > deadline) {
        break;  // this and the rest of the chain: Queued, not attempted
      }
      r.outcome = Attempt(curl, *r.hook->config,
                          RuntimeSecretEnv(*r.hook->config), r.request_id,
                          r.url, r.method, r.body);
      Settled settled = Settle(options_, *r.outcome, 1);
      r.status = settled.status;
      r.delay = settled.delay;
      r.error = r.outcome->error;
      if (r.outcome->kind == AttemptKind::kRetry) {
        failing[r.hook_index] = true;
        if (r.status == "Queued") break;  // the rest waits behind it
      }
    }
  }
}

absl::Status WebhookDelivery::DeleteExpired(pg::Connection* conn) {
  // In batches of kRetentionBatch through the created_at index (a finished
  // request's finished_at is never before its created_at, so every expired
  // one was created before the cutoff): each statement is short, and none
  // scans the whole request log. A long statement here would also hold
  // back the horizon up to which PostgreSQL may clean dead rows, which the
  // capture tables (es_producer.raw_change) depend on. Dying midway loses
  // nothing: the next run deletes the rest.
  constexpr int kRetentionBatch = 5000;
  const std::string retention_s =
      std::to_string(absl::ToDoubleSeconds(options_.retention));
  int64_t deleted = 0;
  while (!stopping_.load(std::memory_order_relaxed)) {
    ASSIGN_OR_RETURN(pg::Result r,
                     conn->Exec(kDeleteExpired, {retention_s, kRetentionBatch}));
    deleted += r.affected_rows();
    if (r.affected_rows() < kRetentionBatch) break;
  }
  if (deleted > 0) {
    spdlog::info("webhook request log: {} finished requests past retention "
                 "deleted", deleted);
  }
  return absl::OkStatus();
}

// Once a minute (sooner for a retention below two minutes).
absl::Duration WebhookDelivery::CleanupInterval() const {
  return std::clamp(options_.retention / 2, absl::Seconds(1), absl::Minutes(1));
}

absl::Status WebhookDelivery::CleanupIfDue(pg::Connection* conn, Sleeper& clock,
                                           absl::Time* next_cleanup) {
  if (clock.Now() < *next_cleanup) return absl::OkStatus();
  absl::Status status = DeleteExpired(conn);
  *next_cleanup = clock.Now() + CleanupInterval();
  return status;
}

absl::StatusOr<absl::Duration> WebhookDelivery::DispatchStep(
    std::unique_ptr<pg::Connection>* conn, Sleeper& clock, absl::Time* next_cleanup,
    webhook_dispatch::PauseReport* report) {
  RETURN_IF_ERROR(Reconnect(conn));
  absl::StatusOr<int> queued = DispatchOnce(conn->get());
  if (!queued.ok()) {
    // Stopping: the pass was abandoned (rolled back); the loop ends at its
    // wait, which Stop() cut short.
    if (!stopping_) conn->reset();
    return queued.status();
  }
  RETURN_IF_ERROR(CleanupIfDue(conn->get(), clock, next_cleanup));
  if (*queued > 0) {
    WakeWorkers();
    // Stopped (now or during the pause): RunLoop ends before the next step.
    if (!stopping_) PauseAfterPass(report);
  }
  return PollWait(*queued > 0, options_.poll_interval);  // work: there may be more
}

void WebhookDelivery::DispatchLoop() {
  LowerThisThreadPriority(options_.nice);
  Sleeper& sleeper = dispatch_sleeper_;
  Backoff retry(ConstantRetry(kRetryEvery));
  std::unique_ptr<pg::Connection> conn;
  // Not at once: a restarted producer first catches up on its passes.
  absl::Time next_cleanup = sleeper.Now() + CleanupInterval();
  webhook_dispatch::PauseReport report;
  LoopHooks hooks;
  hooks.on_failure = [this](const absl::Status& status, int failures) {
    if (failures == 1 && !stopping_) {
      spdlog::error("webhook dispatcher: {} (retrying)", std::string(status.message()));
    }
  };
  hooks.on_recovery = [](int) { spdlog::info("webhook dispatcher: recovered"); };
  RunLoop(
      sleeper, retry,
      [&] { return DispatchStep(&conn, sleeper, &next_cleanup, &report); }, hooks);
}

bool WebhookDelivery::PauseAfterPass(webhook_dispatch::PauseReport* report) {
  // While the site writes, hold the passes' cost to busy_cpu_percent of
  // one core: a pass that cost c is followed by a pause that makes its
  // period c * 100 / busy_cpu_percent (at most a minute). The pause ends
  // early when no new entries arrived for 250 ms (the writes stopped), and
  // on Stop().
  if (!last_pass_.log_grew) return true;
  const absl::Duration pause =
      BusyPause(last_pass_.cost, last_pass_.wall, options_.busy_cpu_percent);
  if (pause <= absl::ZeroDuration()) return true;
  report->paused += pause;
  ++report->passes;
  Clock& clock = dispatch_sleeper_;
  if (clock.Now() >= report->next) {
    spdlog::info(
        "webhook dispatcher: the site is writing; first sends held to "
        "{}% of a core (busy_cpu_percent): {} passes paused {} in all "
        "since the last report",
        options_.busy_cpu_percent, report->passes,
        absl::FormatDuration(absl::Trunc(report->paused, absl::Milliseconds(1))));
    report->paused = absl::ZeroDuration();
    report->passes = 0;
    report->next = clock.Now() + absl::Minutes(1);
  }
  return PauseWhileWriting(pause);
}

}  // namespace eventstream
