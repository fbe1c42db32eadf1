// The replay lifecycle around DocumentApplier: batch transaction, savepoint
// per entry, Event Sync Log rows, parking, watermark, Resync. The decisions
// (skip, park, apply; how a Resync proceeds) are libsync/rules/batch_plan.h's;
// this file is their store (the SQL below) and the loops that wire them.
//
// Crash safety: everything ApplyBatch writes (documents, sync log rows,
// watermark) is in one transaction; dying before COMMIT leaves nothing and
// the next pull gets the same entries again; after COMMIT the watermark
// covers them. Resync likewise runs in one transaction. The only writes
// outside are PrepareTables' idempotent ALTER TABLEs.
//
// Parallel apply (apply_workers > 1): the coordinator's transaction on the
// caller's connection takes the per-producer lock and the watermark row
// and holds them while the lanes run; each lane's transaction writes its
// documents, its sync log rows and one es_consumer.lane_commit row of its
// seqs, and commits on its own. Only after every lane committed does the
// coordinator move the watermark, delete the lane_commit rows it passed,
// and commit. Dying before a lane's COMMIT loses that lane alone (its
// seqs are neither applied nor recorded); dying after some lanes committed
// leaves their lane_commit rows and the old watermark, so the batch comes
// again and LoadBatchPlanner's AddDone skips exactly the committed seqs
// (a document's entries are all in one lane, so its order holds); dying
// after the coordinator's COMMIT is the one-transaction case.
//
// Concurrency: a transaction-scoped advisory lock per producer serializes
// ApplyBatch and Resync of one producer (so a batch never parks an entry
// behind a row a concurrent Resync is releasing), and ApplyBatch skips
// entries at or below the watermark it reads under that lock that already
// have a sync log row, so two overlapping pulls never apply an entry twice
// (while a flip's re-sent earlier entries, below it but never logged, are
// applied).
#include "services/consumer/applier.h"
#include "services/common/update_type.h"

#include <map>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "libsync/rules/apply_lanes.h"
#include "libsync/rules/batch_plan.h"
#include "libsync/base/status_macros.h"
#include "services/consumer/apply_document.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

// ---- the sync log store: its statements ------------------------------------

// Serialize with other appliers of the producer ($1: lock key) and tag this
// transaction's writes with it ($2) as origin.
constexpr pg::Query kBeginApply{
    "consumer_begin_apply",
    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0)),"
    " set_config('eventstream.origin', $2, true)"};
// The watermark row, locked for the batch. FOR UPDATE writes no new row
// version (a no-op upsert did, every batch); the row is created locked
// (kCreateWatermark) only when missing.
constexpr pg::Query kLockWatermark{
    "consumer_lock_watermark",
    "SELECT last_seq FROM es_consumer.last_update WHERE producer = $1 FOR UPDATE"};
constexpr pg::Query kCreateWatermark{
    "consumer_create_watermark",
    "INSERT INTO es_consumer.last_update AS l (producer, last_seq) VALUES ($1, 0)"
    " ON CONFLICT (producer) DO UPDATE SET last_seq = l.last_seq RETURNING last_seq"};
// Failed / Parked rows of the batch's documents, with their Failed root.
constexpr pg::Query kBlockedRows{
    "consumer_blocked_rows",
    "SELECT doctype, docname,"
    " CASE WHEN status = 'Parked' THEN parked_behind ELSE id END AS root"
    " FROM es_consumer.sync_log WHERE producer = $1 AND status IN ('Failed', 'Parked')"
    " AND docname = ANY($2::text[]) ORDER BY id"};
// The row exists: the batch locked it (kLockWatermark).
constexpr pg::Query kMoveWatermark{
    "consumer_move_watermark",
    "UPDATE es_consumer.last_update SET last_seq = GREATEST(last_seq, $2), updated_at = now()"
    " WHERE producer = $1 RETURNING last_seq"};
// Parallel apply: a lane's transaction is tagged like a batch's; the
// coordinator's transaction holds the per-producer lock for it.
constexpr pg::Query kBeginLane{"consumer_begin_lane",
                               "SELECT set_config('eventstream.origin', $1, true)"};
// Seqs above the watermark that lanes committed ($2: the watermark).
constexpr pg::Query kLaneDoneSeqs{
    "consumer_lane_done_seqs",
    "SELECT unnest(seqs) AS seq FROM es_consumer.lane_commit"
    " WHERE producer = $1 AND max_seq > $2"};
constexpr pg::Query kRecordLane{
    "consumer_record_lane",
    "INSERT INTO es_consumer.lane_commit (producer, max_seq, seqs)"
    " VALUES ($1, $2, $3::bigint[])"};
constexpr pg::Query kForgetLanes{
    "consumer_forget_lanes",
    "DELETE FROM es_consumer.lane_commit WHERE producer = $1 AND max_seq <= $2"};
constexpr pg::Query kSavepoint{"consumer_savepoint", "SAVEPOINT es_entry"};
constexpr pg::Query kReleaseSavepoint{"consumer_release_savepoint",
                                      "RELEASE SAVEPOINT es_entry"};
constexpr pg::Query kRollbackSavepoint{"consumer_rollback_savepoint",
                                       "ROLLBACK TO SAVEPOINT es_entry"};
constexpr pg::Query kRowProducer{"consumer_sync_log_producer",
                                 "SELECT producer FROM es_consumer.sync_log WHERE id = $1"};

// The columns ReadSyncLogRow reads; created_at as RFC 3339 UTC, as
// ListSyncLog reports it.
#define ES_SYNC_LOG_COLUMNS                                                                   \
  "SELECT id, producer, seq, doctype, docname, update_type, status, error, note,"            \
  " coalesce(data, '') AS data,"                                                              \
  " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at," \
  " coalesce(parked_behind, 0) AS parked_behind, local_doctype, local_docname"                \
  " FROM es_consumer.sync_log"
constexpr pg::Query kResyncRow{"consumer_resync_row",
                               ES_SYNC_LOG_COLUMNS " WHERE id = $1 FOR UPDATE"};
constexpr pg::Query kResyncParked{
    "consumer_resync_parked",
    ES_SYNC_LOG_COLUMNS
    " WHERE parked_behind = $1 AND status = 'Parked' ORDER BY seq, id FOR UPDATE"};
#undef ES_SYNC_LOG_COLUMNS
constexpr pg::Query kRepark{
    "consumer_repark",
    "UPDATE es_consumer.sync_log SET parked_behind = $2, updated_at = now() WHERE id = $1"};
constexpr pg::Query kResyncResult{
    "consumer_resync_result",
    "UPDATE es_consumer.sync_log SET status = $2, error = $3, note = $4,"
    " parked_behind = NULL, local_doctype = $5, local_docname = $6,"
    " attempts = attempts + 1, updated_at = now() WHERE id = $1"};

// The multi-row INSERT of `rows` sync log rows (12 parameters each); with
// `returning`, it returns each row's id and created_at. Prepared per row
// count (RowsPerInsert keeps those few).
std::string InsertSyncLogSql(size_t rows, bool returning) {
  std::vector<std::string> tuples;
  for (size_t i = 0; i < rows; ++i) {
    std::vector<std::string> holders;
    for (size_t k = 1; k <= 12; ++k) holders.push_back(absl::StrCat("$", i * 12 + k));
    tuples.push_back(absl::StrCat("(", absl::StrJoin(holders, ", "), ")"));
  }
  return absl::StrCat(
      "INSERT INTO es_consumer.sync_log (producer, seq, doctype, docname,"
      " update_type, status, error, note, data, parked_behind, local_doctype,"
      " local_docname) VALUES ",
      absl::StrJoin(tuples, ", "),
      returning ? " RETURNING id, to_char(created_at AT TIME ZONE 'UTC',"
                  " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at"
                : "");
}

// ---- rows -------------------------------------------------------------------

}  // namespace

SyncLogRow ReadSyncLogRow(const pg::Result& r, int i) {
  SyncLogRow row;
  row.id = r.GetInt64(i, r.ColumnIndex("id"));
  row.producer = std::string(r.Get(i, "producer"));
  row.seq = r.GetInt64(i, r.ColumnIndex("seq"));
  row.doctype = std::string(r.Get(i, "doctype"));
  row.docname = std::string(r.Get(i, "docname"));
  row.update_type = std::string(r.Get(i, "update_type"));
  row.status = std::string(r.Get(i, "status"));
  row.error = std::string(r.Get(i, "error"));
  row.note = std::string(r.Get(i, "note"));
  row.data = std::string(r.Get(i, "data"));
  row.created_at = std::string(r.Get(i, "created_at"));
  row.parked_behind = r.GetInt64(i, r.ColumnIndex("parked_behind"));
  row.local_doctype = std::string(r.Get(i, "local_doctype"));
  row.local_docname = std::string(r.Get(i, "local_docname"));
  return row;
}

namespace {

SyncLogRow RowFromEntry(const std::string& producer, const v1::UpdateLogEntry& e) {
  SyncLogRow row;
  row.producer = producer;
  row.seq = e.seq();
  row.doctype = e.doctype();
  row.docname = e.docname();
  row.update_type = UpdateTypeName(e.update_type());
  row.data = e.data_json();
  return row;
}

v1::UpdateLogEntry EntryFromRow(const SyncLogRow& row) {
  v1::UpdateLogEntry e;
  e.set_seq(row.seq);
  e.set_doctype(row.doctype);
  e.set_docname(row.docname);
  e.set_update_type(UpdateTypeFromName(row.update_type));
  e.set_data_json(row.data);
  return e;
}

// What the batch planner sees of an entry.
BatchEntry PlanEntry(const v1::UpdateLogEntry& e) {
  BatchEntry out;
  out.seq = e.seq();
  out.doctype = e.doctype();
  out.names =
      EntryNames(e.docname(), e.update_type() == v1::UPDATE_TYPE_RENAME, e.data_json());
  return out;
}

// One log line per failed entry (PostgreSQL's DETAIL comes on a new line).
void LogFailure(const SyncLogRow& row) {
  std::string error = row.error;
  for (char& c : error) {
    if (c == '\n') c = ' ';
  }
  spdlog::warn("sync {} seq {} {} {} \"{}\": Failed (sync log {}): {}", row.producer, row.seq,
               row.update_type, row.doctype, row.docname, row.id, error);
}

// ---- the sync log store: its calls ------------------------------------------

absl::Status Exec(pg::Connection* conn, const pg::Query& query, const pg::Params& params = {}) {
  return conn->ExecPrepared(query, params).status();
}

// Inside the caller's transaction: serialize with other appliers of
// `producer` and tag this transaction's writes with it as origin.
absl::Status BeginApply(pg::Connection* conn, const std::string& producer) {
  // Deferred: it travels (with BEGIN) ahead of the batch's first read, which
  // runs only once the lock is held.
  return conn->ExecPreparedDeferred(
      kBeginApply, {absl::StrCat("eventstream.consumer.apply:", producer), producer});
}

// Writes `rows` (no id yet) in multi-row INSERTs; with `want_ids` fills in
// their ids and created_at, else the statements are deferred (they travel
// with the next statement, e.g. the watermark's). Inside the caller's
// transaction.
absl::Status InsertRows(pg::Connection* conn, std::vector<SyncLogRow>& rows,
                        bool want_ids = true) {
  for (size_t start = 0, end = 0; start < rows.size(); start = end) {
    end = start + RowsPerInsert(rows.size() - start);
    pg::Params params;
    for (size_t i = start; i < end; ++i) {
      const SyncLogRow& r = rows[i];
      for (pg::Param p : {pg::Param(r.producer), pg::Param(r.seq), pg::Param(r.doctype),
                          pg::Param(r.docname), pg::Param(r.update_type), pg::Param(r.status),
                          pg::Param(r.error), pg::Param(r.note),
                          r.data.empty() ? pg::Param() : pg::Param(r.data),
                          r.parked_behind == 0 ? pg::Param() : pg::Param(r.parked_behind),
                          pg::Param(r.local_doctype), pg::Param(r.local_docname)}) {
        params.push_back(std::move(p));
      }
    }
    if (!want_ids) {
      RETURN_IF_ERROR(conn->ExecPreparedDeferred(
          absl::StrCat("consumer_sync_log_write_", end - start),
          InsertSyncLogSql(end - start, /*returning=*/false), params, "writing the sync log"));
      continue;
    }
    // `rows` is in seq order and RETURNING follows the VALUES order for a
    // plain INSERT, so the ids match the rows one by one.
    ASSIGN_OR_RETURN(pg::Result res,
                     conn->ExecPrepared(absl::StrCat("consumer_sync_log_insert_", end - start),
                                        InsertSyncLogSql(end - start, /*returning=*/true),
                                        params));
    for (size_t i = start; i < end && static_cast<int>(i - start) < res.rows(); ++i) {
      const int n = static_cast<int>(i - start);
      rows[i].id = res.GetInt64(n, res.ColumnIndex("id"));
      rows[i].created_at = std::string(res.Get(n, "created_at"));
    }
  }
  return absl::OkStatus();
}

// The batch's planner: the watermark (locked for the batch), with
// `lanes` the seqs lanes committed above it (*done: how many), and the
// documents with a Failed or Parked row (one query for the whole batch).
absl::StatusOr<BatchPlanner> LoadBatchPlanner(pg::Connection* conn, const std::string& producer,
                                              const std::vector<BatchEntry>& entries,
                                              bool lanes = false, int64_t* done = nullptr) {
  ASSIGN_OR_RETURN(pg::Result wm, conn->ExecPrepared(kLockWatermark, {producer}));
  if (wm.rows() == 0) {
    ASSIGN_OR_RETURN(wm, conn->ExecPrepared(kCreateWatermark, {producer}));
  }
  const int64_t watermark = wm.rows() > 0 ? wm.GetInt64(0, wm.ColumnIndex("last_seq")) : 0;
  BatchPlanner plan(watermark);
  if (lanes) {
    ASSIGN_OR_RETURN(pg::Result seqs, conn->ExecPrepared(kLaneDoneSeqs, {producer, watermark}));
    for (int i = 0; i < seqs.rows(); ++i) plan.AddDone(seqs.GetInt64(i, seqs.ColumnIndex("seq")));
    if (done != nullptr) *done = seqs.rows();
  }
  ASSIGN_OR_RETURN(pg::Result blocked,
                   conn->ExecPrepared(kBlockedRows,
                                      {producer, pg::TextArray(BlockedLookupNames(entries))}));
  for (int i = 0; i < blocked.rows(); ++i) {
    plan.AddBlocked(std::string(blocked.Get(i, "doctype")),
                    std::string(blocked.Get(i, "docname")),
                    blocked.GetInt64(i, blocked.ColumnIndex("root")));
  }
  return plan;
}

// Moves the watermark in the batch's transaction (a crash before COMMIT
// loses the batch and its watermark together); returns the new one.
absl::StatusOr<int64_t> MoveWatermark(pg::Connection* conn, const std::string& producer,
                                      int64_t next_after_seq) {
  ASSIGN_OR_RETURN(pg::Result moved, conn->ExecPrepared(kMoveWatermark, {producer, next_after_seq}));
  if (moved.rows() != 1) {
    return absl::InternalError(absl::StrCat("the watermark row of producer \"", producer,
                                            "\" vanished during the batch"));
  }
  return moved.GetInt64(0, moved.ColumnIndex("last_seq"));
}

// Applies `e` in a savepoint. The outer status fails the whole batch (the
// connection is unusable); the inner one is the entry's own outcome, its
// partial writes rolled back when it failed. Dying inside the savepoint
// loses the whole transaction, and so the entry's partial write.
absl::StatusOr<absl::StatusOr<apply::Outcome>> ApplyInSavepoint(pg::Connection* conn,
                                                                 apply::DocumentApplier& doc,
                                                                 const v1::UpdateLogEntry& e) {
  // SAVEPOINT and RELEASE are deferred: they travel with the statements
  // around them, in order.
  RETURN_IF_ERROR(conn->ExecPreparedDeferred(kSavepoint));
  absl::StatusOr<apply::Outcome> outcome = doc.Apply(e);
  if (outcome.ok()) {
    // The entry's deferred writes fail here, if at all: still its own.
    absl::Status written = conn->FlushDeferred();
    if (!written.ok()) {
      outcome = written;
      doc.ForgetKnown();  // rolled back below
    }
  }
  if (outcome.ok()) {
    RETURN_IF_ERROR(conn->ExecPreparedDeferred(kReleaseSavepoint));
    return outcome;
  }
  // Undo the entry's partial writes; if even that fails the connection is
  // unusable and the caller abandons its transaction (nothing committed).
  (void)conn->FlushDeferred();  // a failure here is the one reported
  RETURN_IF_ERROR(Exec(conn, kRollbackSavepoint));
  return outcome;
}

void MarkSynced(SyncLogRow& row, const apply::Outcome& outcome) {
  row.status = "Synced";
  row.error.clear();
  row.note = outcome.note;
  row.parked_behind = 0;
  row.local_doctype = outcome.local_doctype;
  row.local_docname = outcome.local_docname;
  // A Sync carries a whole document, and an initial sync one per document
  // of the DocType: once applied, the copy here is its record (a Failed or
  // Parked row keeps its data for Resync).
  if (row.update_type == "Sync") row.data.clear();
}

// What the planner sees of each entry.
std::vector<BatchEntry> PlanEntries(const std::vector<v1::UpdateLogEntry>& entries) {
  std::vector<BatchEntry> planned;
  planned.reserve(entries.size());
  for (const v1::UpdateLogEntry& e : entries) planned.push_back(PlanEntry(e));
  return planned;
}

// A batch (or lane) of more than one entry runs pipelined without
// savepoints first; if an entry fails, that attempt (a whole transaction)
// is rolled back and it runs again with a savepoint per entry.
// `attempt(isolate, entry_failed)` runs one.
template <typename Attempt>
absl::StatusOr<ApplyResult> FastThenIsolated(size_t entries, const Attempt& attempt) {
  if (PipelinedFirst(entries)) {
    bool entry_failed = false;
    absl::StatusOr<ApplyResult> fast = attempt(/*isolate=*/false, &entry_failed);
    if (!entry_failed) return fast;
  }
  return attempt(/*isolate=*/true, nullptr);
}

// One attempt's entries, in the caller's transaction on `conn`: each is
// skipped, parked or applied as `plan` says and its sync log row written
// (Failed rows at once, for their ids; the rest at the end). isolate: a
// savepoint per entry, a failing one logged Failed. Otherwise no
// savepoints and the first failing entry sets *entry_failed and abandons
// the attempt (the caller runs it again isolated).
absl::Status ApplyEntries(pg::Connection* conn, apply::DocumentApplier& doc, BatchPlanner& plan,
                          const std::string& producer,
                          const std::vector<v1::UpdateLogEntry>& entries,
                          const std::vector<BatchEntry>& planned, bool isolate,
                          bool* entry_failed, ApplyResult* result) {
  std::vector<SyncLogRow> pending;  // Synced / Parked rows not written yet
  // Pipelined: new documents' rows go many to a statement (written before
  // any other statement, and by the FlushDeferred below at the latest).
  if (!isolate) doc.HoldRows();
  for (size_t i = 0; i < entries.size(); ++i) {
    const BatchPlanner::Step step = plan.Next(planned[i]);
    if (step.kind == BatchPlanner::Step::kSkip) continue;
    SyncLogRow row = RowFromEntry(producer, entries[i]);
    if (step.kind == BatchPlanner::Step::kPark) {
      row.status = "Parked";
      row.parked_behind = step.parked_behind;
      pending.push_back(std::move(row));
      ++result->parked;
      continue;
    }
    absl::StatusOr<apply::Outcome> outcome;
    if (isolate) {
      ASSIGN_OR_RETURN(outcome, ApplyInSavepoint(conn, doc, entries[i]));
    } else {
      outcome = doc.Apply(entries[i]);
      if (!outcome.ok()) {
        *entry_failed = true;
        return outcome.status();
      }
    }
    if (outcome.ok()) {
      MarkSynced(row, *outcome);
      pending.push_back(std::move(row));
      ++result->synced;
      continue;
    }
    row.status = "Failed";
    row.error = std::string(outcome.status().message());
    // Written now (after the rows before it, so ids follow seq) to learn
    // its id for the entries parked behind it.
    pending.push_back(std::move(row));
    RETURN_IF_ERROR(InsertRows(conn, pending));
    LogFailure(pending.back());
    plan.Failed(planned[i], pending.back().id);
    pending.clear();
    ++result->failed;
  }
  if (!isolate) {
    // The last entries' deferred writes.
    if (absl::Status written = conn->FlushDeferred(); !written.ok()) {
      *entry_failed = true;
      return written;
    }
  }
  RETURN_IF_ERROR(doc.FlushCopies());
  return InsertRows(conn, pending, /*want_ids=*/false);  // their ids are not needed
}

// Parallel apply: whether entries of the producer's DocType `doctype` must
// share one lane with every other such entry (apply_lanes.h): unless the
// subscription takes it unmapped under the same name, local names or
// mapped documents may depend on other entries (a naming series' counter,
// a mapping's target), so they keep their order.
bool SerialDocType(const EventProducerConfig& pc, const std::string& doctype) {
  for (const ProducerDocTypeConfig& row : pc.doctypes) {
    if (!row.mapping.empty()) continue;  // maps some remote DocType: serial anyway
    if (row.doctype == doctype) return !row.use_same_name;
  }
  return true;
}

// The lanes' shared DependencySource: one call at a time.
class LockedDependencySource : public DependencySource {
 public:
  explicit LockedDependencySource(DependencySource* inner) : inner_(inner) {}
  absl::StatusOr<std::optional<FetchedDocument>> GetDocument(const std::string& doctype,
                                                             const std::string& name) override {
    absl::MutexLock lock(&mu_);
    return inner_->GetDocument(doctype, name);
  }
  absl::StatusOr<std::vector<Value>> FindDocuments(
      const std::string& doctype, const std::map<std::string, std::string>& filters,
      int limit) override {
    absl::MutexLock lock(&mu_);
    return inner_->FindDocuments(doctype, filters, limit);
  }

 private:
  absl::Mutex mu_;
  DependencySource* const inner_ ABSL_PT_GUARDED_BY(mu_);
};

}  // namespace

Applier::Applier(const Config& config, std::string database_url)
    : config_(config),
      database_url_(std::move(database_url)),
      mappings_(MappingSet::Create(config.consumer ? config.consumer->mappings
                                                   : std::vector<DocTypeMapping>{})),
      tables_(std::make_unique<apply::TableCache>()) {}

Applier::~Applier() = default;

void Applier::PrepareTables(pg::Connection* conn, const EventProducerConfig& producer) {
  for (const ProducerDocTypeConfig& row : producer.doctypes) {
    if (row.use_same_name) continue;
    std::string local = row.doctype;
    if (!row.mapping.empty() && mappings_.ok()) {
      if (const DocTypeMapping* m = mappings_->Find(row.mapping)) local = m->local_doctype;
    }
    const DocTypeDef* def = config_.registry.Find(local);
    if (def == nullptr) continue;
    std::vector<std::string> tables{def->table};
    for (const FieldDef& f : def->fields) {
      if (!f.is_table()) continue;
      if (const DocTypeDef* child = config_.registry.Find(f.options)) {
        tables.push_back(child->table);
      }
    }
    for (const std::string& table : tables) {
      absl::Status s = tables_->EnsureRemoteColumns(conn, table);
      if (!s.ok()) {
        spdlog::warn("producer {}: DocType {}: {}", producer.name, def->name,
                     std::string(s.message()));
      }
    }
  }
}

absl::StatusOr<ApplyResult> Applier::ApplyBatch(pg::Connection* conn, const std::string& producer,
                                                const std::vector<v1::UpdateLogEntry>& entries,
                                                int64_t next_after_seq, DependencySource* deps) {
  const EventProducerConfig* pc =
      config_.consumer ? config_.consumer->FindProducer(producer) : nullptr;
  if (pc == nullptr) {
    return absl::NotFoundError(absl::StrCat("producer \"", producer, "\" is not configured"));
  }
  PrepareTables(conn, *pc);  // DDL, outside the batch transaction

  if (pc->apply_workers > 1 && entries.size() > 1 && !database_url_.empty()) {
    ASSIGN_OR_RETURN(std::optional<ApplyResult> laned,
                     ApplyBatchInLanes(conn, *pc, entries, next_after_seq, deps));
    if (laned.has_value()) return *laned;
  }
  return FastThenIsolated(entries.size(), [&](bool isolate, bool* entry_failed) {
    return ApplyBatchOnce(conn, producer, entries, next_after_seq, deps, isolate, entry_failed);
  });
}

absl::StatusOr<ApplyResult> Applier::ApplyBatchOnce(pg::Connection* conn,
                                                    const std::string& producer,
                                                    const std::vector<v1::UpdateLogEntry>& entries,
                                                    int64_t next_after_seq, DependencySource* deps,
                                                    bool isolate, bool* entry_failed) {
  ASSIGN_OR_RETURN(auto txn, pg::Transaction::Begin(conn));
  RETURN_IF_ERROR(BeginApply(conn, producer));
  const std::vector<BatchEntry> planned = PlanEntries(entries);
  // Lanes may have committed seqs above the watermark (a crash between lane
  // commits, then apply_workers lowered or a batch of one lane): skip them.
  const bool lanes = lane_commit_clear_.count(producer) == 0;
  int64_t done = 0;
  ASSIGN_OR_RETURN(BatchPlanner plan, LoadBatchPlanner(conn, producer, planned, lanes, &done));

  ApplyResult result;
  result.isolated = isolate;
  apply::DocumentApplier doc(conn, config_, mappings_.ok() ? &*mappings_ : nullptr, tables_.get(),
                             producer, deps);
  if (PipelinedFirst(entries.size())) RETURN_IF_ERROR(doc.Prefetch(entries));
  RETURN_IF_ERROR(
      ApplyEntries(conn, doc, plan, producer, entries, planned, isolate, entry_failed, &result));
  ASSIGN_OR_RETURN(result.last_seq, MoveWatermark(conn, producer, next_after_seq));
  if (lanes) RETURN_IF_ERROR(Exec(conn, kForgetLanes, {producer, result.last_seq}));
  RETURN_IF_ERROR(txn->Commit());
  if (lanes && done == 0) lane_commit_clear_.insert(producer);
  return result;
}

// ---- parallel apply ---------------------------------------------------------

struct Applier::LaneSlot {
  std::unique_ptr<pg::Connection> conn;
  apply::TableCache tables;  // filled after PrepareTables altered the tables
};

absl::StatusOr<std::optional<ApplyResult>> Applier::ApplyBatchInLanes(
    pg::Connection* conn, const EventProducerConfig& pc,
    const std::vector<v1::UpdateLogEntry>& entries, int64_t next_after_seq,
    DependencySource* deps) {
  const std::string& producer = pc.name;
  // From here lane_commit may get rows: a later one-transaction batch looks.
  lane_commit_clear_.erase(producer);
  // The coordinator: the per-producer lock and the watermark row, held
  // until every lane committed (a Resync or another batch waits).
  ASSIGN_OR_RETURN(auto txn, pg::Transaction::Begin(conn));
  RETURN_IF_ERROR(BeginApply(conn, producer));
  const std::vector<BatchEntry> planned = PlanEntries(entries);
  ASSIGN_OR_RETURN(BatchPlanner plan,
                   LoadBatchPlanner(conn, producer, planned, /*lanes=*/true));
  std::vector<size_t> todo;  // the entries not skipped
  std::vector<std::vector<std::string>> keys;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (plan.Skips(entries[i].seq())) continue;
    todo.push_back(i);
    keys.push_back(LaneKeys(config_.registry, config_.registry.Find(entries[i].doctype()),
                            planned[i].names, entries[i].data_json(),
                            SerialDocType(pc, entries[i].doctype())));
  }
  const std::vector<std::vector<size_t>> lanes = PlanLanes(keys, pc.apply_workers);
  if (lanes.size() <= 1) return std::nullopt;  // rolled back: nothing written
  std::vector<std::vector<v1::UpdateLogEntry>> lane_entries(lanes.size());
  for (size_t k = 0; k < lanes.size(); ++k) {
    for (size_t j : lanes[k]) lane_entries[k].push_back(entries[todo[j]]);
  }
  ASSIGN_OR_RETURN(ApplyResult result, RunLanes(producer, lane_entries, plan, deps));
  // Every lane committed. Dying before this COMMIT: their lane_commit rows
  // make the batch that comes again skip them all.
  ASSIGN_OR_RETURN(result.last_seq, MoveWatermark(conn, producer, next_after_seq));
  RETURN_IF_ERROR(Exec(conn, kForgetLanes, {producer, result.last_seq}));
  RETURN_IF_ERROR(txn->Commit());
  return std::optional<ApplyResult>(result);
}

absl::StatusOr<ApplyResult> Applier::RunLanes(
    const std::string& producer, const std::vector<std::vector<v1::UpdateLogEntry>>& lanes,
    const BatchPlanner& plan, DependencySource* deps) {
  while (lane_slots_.size() < lanes.size()) lane_slots_.push_back(std::make_unique<LaneSlot>());
  LockedDependencySource locked(deps);
  DependencySource* shared = deps != nullptr ? &locked : nullptr;
  // results[k] is written by lane k's thread only and read after join.
  std::vector<absl::StatusOr<ApplyResult>> results(lanes.size(), absl::UnknownError("not run"));
  auto run = [&](size_t k) {
    results[k] = ApplyLane(*lane_slots_[k], producer, lanes[k], plan, shared);
  };
  std::vector<std::thread> threads;
  for (size_t k = 1; k < lanes.size(); ++k) threads.emplace_back(run, k);
  run(0);
  for (std::thread& t : threads) t.join();
  ApplyResult total;
  for (const absl::StatusOr<ApplyResult>& r : results) {
    // A lane that committed stays committed (recorded in lane_commit); the
    // caller's coordinator transaction rolls back, the watermark stays.
    if (!r.ok()) return r.status();
    total.synced += r->synced;
    total.failed += r->failed;
    total.parked += r->parked;
    total.isolated = total.isolated || r->isolated;
  }
  return total;
}

absl::StatusOr<ApplyResult> Applier::ApplyLane(LaneSlot& slot, const std::string& producer,
                                               const std::vector<v1::UpdateLogEntry>& entries,
                                               const BatchPlanner& plan, DependencySource* deps) {
  if (slot.conn == nullptr || !slot.conn->ok()) {
    slot.conn.reset();
    ASSIGN_OR_RETURN(slot.conn, pg::Connection::Open(database_url_));
    (void)slot.conn->SetApplicationName("eventstream-consumer apply lane");
  }
  return FastThenIsolated(entries.size(), [&](bool isolate, bool* entry_failed) {
    return ApplyLaneOnce(slot, producer, entries, plan, deps, isolate, entry_failed);
  });
}

absl::StatusOr<ApplyResult> Applier::ApplyLaneOnce(LaneSlot& slot, const std::string& producer,
                                                   const std::vector<v1::UpdateLogEntry>& entries,
                                                   BatchPlanner plan, DependencySource* deps,
                                                   bool isolate, bool* entry_failed) {
  pg::Connection* conn = slot.conn.get();
  ASSIGN_OR_RETURN(auto txn, pg::Transaction::Begin(conn));
  RETURN_IF_ERROR(Exec(conn, kBeginLane, {producer}));
  const std::vector<BatchEntry> planned = PlanEntries(entries);
  ApplyResult result;
  result.isolated = isolate;
  apply::DocumentApplier doc(conn, config_, mappings_.ok() ? &*mappings_ : nullptr, &slot.tables,
                             producer, deps);
  if (PipelinedFirst(entries.size())) RETURN_IF_ERROR(doc.Prefetch(entries));
  RETURN_IF_ERROR(
      ApplyEntries(conn, doc, plan, producer, entries, planned, isolate, entry_failed, &result));
  // The lane's seqs commit with its writes: both or neither.
  std::vector<std::string> seqs;
  for (const v1::UpdateLogEntry& e : entries) seqs.push_back(absl::StrCat(e.seq()));
  RETURN_IF_ERROR(
      Exec(conn, kRecordLane, {producer, entries.back().seq(), pg::TextArray(seqs)}));
  RETURN_IF_ERROR(txn->Commit());
  return result;
}

namespace {

// Row `id` (locked; it must be Failed) and the rows parked behind it
// (locked, in seq order), inside the Resync's transaction.
absl::StatusOr<std::vector<SyncLogRow>> LoadResyncRows(pg::Connection* conn, int64_t id) {
  ASSIGN_OR_RETURN(pg::Result first, conn->ExecPrepared(kResyncRow, {id}));
  if (first.rows() == 0) return absl::NotFoundError(absl::StrCat("no sync log row ", id));
  SyncLogRow failed = ReadSyncLogRow(first, 0);
  if (failed.status != "Failed") {
    return absl::FailedPreconditionError(absl::StrCat("sync log row ", id, " is ", failed.status,
                                                      ", not Failed: only Failed rows resync"));
  }
  ASSIGN_OR_RETURN(pg::Result parked, conn->ExecPrepared(kResyncParked, {id}));
  std::vector<SyncLogRow> rows{failed};
  for (int i = 0; i < parked.rows(); ++i) rows.push_back(ReadSyncLogRow(parked, i));
  return rows;
}

}  // namespace

absl::StatusOr<std::vector<SyncLogRow>> Applier::Resync(
    pg::Connection* conn, int64_t id,
    const std::function<DependencySource*(const std::string& producer)>& deps_for) {
  // The row's producer first (outside the transaction: PrepareTables runs
  // DDL that must not wait on our own locks).
  ASSIGN_OR_RETURN(pg::Result peek, conn->ExecPrepared(kRowProducer, {id}));
  if (peek.rows() == 0) return absl::NotFoundError(absl::StrCat("no sync log row ", id));
  const std::string producer(peek.Get(0, "producer"));
  const EventProducerConfig* pc =
      config_.consumer ? config_.consumer->FindProducer(producer) : nullptr;
  if (pc == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("sync log row ", id, ": producer \"", producer, "\" is no longer configured"));
  }
  PrepareTables(conn, *pc);

  ASSIGN_OR_RETURN(auto txn, pg::Transaction::Begin(conn));
  RETURN_IF_ERROR(BeginApply(conn, producer));
  ASSIGN_OR_RETURN(std::vector<SyncLogRow> rows, LoadResyncRows(conn, id));
  apply::DocumentApplier doc(conn, config_, mappings_.ok() ? &*mappings_ : nullptr, tables_.get(),
                             producer, deps_for ? deps_for(producer) : nullptr);
  ResyncPlan plan;
  for (size_t i = 0; i < rows.size(); ++i) {
    const ResyncStep step = plan.Next();
    if (step == ResyncStep::kStop) break;  // the parked ones stay behind it
    SyncLogRow& row = rows[i];
    if (step == ResyncStep::kRepark) {
      row.parked_behind = plan.root();
      RETURN_IF_ERROR(Exec(conn, kRepark, {row.id, plan.root()}));
      continue;
    }
    // Same lifecycle as in a batch; dying anywhere rolls back the whole
    // Resync and the rows keep their previous state.
    ASSIGN_OR_RETURN(absl::StatusOr<apply::Outcome> outcome,
                     ApplyInSavepoint(conn, doc, EntryFromRow(row)));
    if (outcome.ok()) {
      MarkSynced(row, *outcome);
    } else {
      row.status = "Failed";
      row.error = std::string(outcome.status().message());
      row.parked_behind = 0;
      plan.Failed(i, row.id);
      LogFailure(row);
    }
    RETURN_IF_ERROR(Exec(
        conn, kResyncResult,
        {row.id, row.status, row.error, row.note, row.local_doctype, row.local_docname}));
  }
  rows.resize(plan.Reported(rows.size()));
  RETURN_IF_ERROR(doc.FlushCopies());
  RETURN_IF_ERROR(txn->Commit());
  return rows;
}

namespace {

void AddExample(std::vector<std::string>* examples, absl::string_view what,
                absl::string_view detail) {
  if (examples->size() < static_cast<size_t>(kMaxSnapshotExamples)) examples->push_back(absl::StrCat(what, ": ", detail));
}

v1::UpdateLogEntry SnapshotEntry(const std::string& doctype, const std::string& docname,
                                 v1::UpdateType type, std::string data) {
  v1::UpdateLogEntry e;
  e.set_seq(0);  // not from the producer's log
  e.set_doctype(doctype);
  e.set_docname(docname);
  e.set_update_type(type);
  e.set_data_json(std::move(data));
  return e;
}

}  // namespace

absl::StatusOr<SnapshotCompare> Applier::CompareSnapshot(
    pg::Connection* conn, const std::string& producer, const std::string& doctype,
    const std::vector<std::pair<std::string, std::string>>& docs, DependencySource* deps) {
  const EventProducerConfig* pc =
      config_.consumer ? config_.consumer->FindProducer(producer) : nullptr;
  if (pc == nullptr) return absl::NotFoundError(absl::StrCat("no producer \"", producer, "\""));
  PrepareTables(conn, *pc);
  // Nothing of this transaction is ever committed: each document is
  // applied as a Sync entry and rolled back, so the Sync's own rules say
  // whether the copy here is equal, missing or differing.
  ASSIGN_OR_RETURN(auto txn, pg::Transaction::Begin(conn));
  apply::DocumentApplier doc(conn, config_, mappings_.ok() ? &*mappings_ : nullptr, tables_.get(),
                             producer, deps);
  SnapshotCompare out;
  for (const auto& [name, json] : docs) {
    RETURN_IF_ERROR(Exec(conn, kSavepoint));
    absl::StatusOr<apply::Outcome> outcome =
        doc.Apply(SnapshotEntry(doctype, name, v1::UPDATE_TYPE_SYNC, json));
    if (outcome.ok()) {
      if (absl::Status written = conn->FlushDeferred(); !written.ok()) outcome = written;
    } else {
      (void)conn->FlushDeferred();
    }
    RETURN_IF_ERROR(Exec(conn, kRollbackSavepoint));
    doc.ForgetKnown();  // what it wrote is gone
    using Effect = apply::Outcome::SyncEffect;
    if (!outcome.ok()) {
      ++out.failed;
      AddExample(&out.examples, "failed", absl::StrCat(name, ": ", outcome.status().message()));
    } else if (outcome->sync == Effect::kInserted) {
      ++out.missing;
      AddExample(&out.examples, "missing", name);
    } else if (outcome->sync == Effect::kReplaced) {
      ++out.differing;
      AddExample(&out.examples, "differing", absl::StrCat(name, " (", outcome->note, ")"));
    } else {
      ++out.equal;
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> Applier::LocalCopies(pg::Connection* conn,
                                                              const std::string& producer,
                                                              const std::string& doctype) {
  apply::DocumentApplier doc(conn, config_, mappings_.ok() ? &*mappings_ : nullptr, tables_.get(),
                             producer, nullptr);
  return doc.LocalCopies(doctype);
}

absl::StatusOr<int64_t> Applier::MoveOutCopies(pg::Connection* conn, const std::string& producer,
                                               const std::string& doctype,
                                               const std::vector<std::string>& names,
                                               DependencySource* deps) {
  ASSIGN_OR_RETURN(auto txn, pg::Transaction::Begin(conn));
  // No batch of this producer runs meanwhile: one that brought a document
  // back in committed before, and the check below sees it.
  RETURN_IF_ERROR(BeginApply(conn, producer));
  apply::DocumentApplier doc(conn, config_, mappings_.ok() ? &*mappings_ : nullptr, tables_.get(),
                             producer, deps);
  std::vector<SyncLogRow> rows;
  for (const std::string& name : names) {
    // Still not shown (it may have moved in since the comparison).
    ASSIGN_OR_RETURN(auto shown, deps->GetDocument(doctype, name));
    if (shown.has_value()) continue;
    const v1::UpdateLogEntry e = SnapshotEntry(
        doctype, name, v1::UPDATE_TYPE_REVOKE,
        R"({"reason": "Resnapshot: the producer does not show it"})");
    SyncLogRow row = RowFromEntry(producer, e);
    ASSIGN_OR_RETURN(absl::StatusOr<apply::Outcome> outcome, ApplyInSavepoint(conn, doc, e));
    if (outcome.ok()) {
      MarkSynced(row, *outcome);
    } else {
      row.status = "Failed";
      row.error = std::string(outcome.status().message());
    }
    rows.push_back(std::move(row));
  }
  RETURN_IF_ERROR(doc.FlushCopies());
  RETURN_IF_ERROR(InsertRows(conn, rows));
  for (const SyncLogRow& row : rows) {
    if (row.status == "Failed") LogFailure(row);
  }
  RETURN_IF_ERROR(txn->Commit());
  return static_cast<int64_t>(rows.size());
}

}  // namespace eventstream
