#include "services/producer/raw_change_store.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libsync/base/status_macros.h"

namespace eventstream {
namespace {

// By the primary key: an index scan skips the rows assembled and deleted
// since the last vacuum after one visit (their index entries are marked
// dead), where EXISTS scanned their heap pages on every idle poll (0.9 ms
// a poll after 16,000 deleted rows).
constexpr pg::Query kAnyRaw{
    "es_asm_any",
    "SELECT (SELECT id FROM es_producer.raw_change ORDER BY id LIMIT 1) IS NOT NULL AS waiting"};
constexpr pg::Query kLock{
    "es_asm_lock",
    "SELECT pg_try_advisory_xact_lock(hashtext('es_producer.assembler')) AS locked"};
constexpr pg::Query kLockWait{"es_asm_lock_wait",
                              "SELECT pg_advisory_xact_lock(hashtext('es_producer.assembler'))"};
// The transactions with a row among the first $1 ids.
constexpr pg::Query kWindowTx{
    "es_asm_window_tx",
    "SELECT DISTINCT txid::text AS txid FROM (SELECT txid FROM es_producer.raw_change"
    " ORDER BY id LIMIT $1) w"};
// All rows of the transactions $1 (not prepared: see ReadWindow).
constexpr pg::Query kWindowRows{
    "es_asm_window_rows",
    "SELECT r.id, r.txid::text AS txid, r.doctype, r.op, r.old_row::text AS old_row,"
    " r.new_row::text AS new_row, r.origin"
    " FROM es_producer.raw_change r WHERE r.txid = ANY($1::xid8[])"
    " ORDER BY r.id"};
// The rows of the transaction that finished writing first.
constexpr pg::Query kFirstTxRows{
    "es_asm_first",
    "SELECT r.id, r.txid::text AS txid, r.doctype, r.op, r.old_row::text AS old_row,"
    " r.new_row::text AS new_row, r.origin"
    " FROM es_producer.raw_change r WHERE r.txid ="
    "   (SELECT txid FROM es_producer.raw_change GROUP BY txid ORDER BY max(id) LIMIT 1)"
    " ORDER BY r.id"};
// A contiguous block of $1 seq numbers (its last), the newest entry before
// it and the transaction's time as update_log.created_at records it.
constexpr pg::Query kSeqBlock{
    "es_asm_seq_block",
    "SELECT (SELECT coalesce(max(seq), 0) FROM es_producer.update_log) AS prev_end,"
    "  setval('es_producer.update_log_seq',"
    "         nextval('es_producer.update_log_seq') + $1 - 1) AS end_seq,"
    "  to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at"};
// The entries (assembly_plan.h EntryColumns) as parallel text[] of the
// same length, numbered from $1. The data's text is checked as json, not
// taken apart (json_to_recordset would refuse a "\u0000" inside it).
constexpr pg::Query kInsertEntries{
    "es_asm_insert",
    "INSERT INTO es_producer.update_log"
    "   (seq, doctype, docname, update_type, data, origin, txid)"
    " SELECT $1::bigint + u.i - 1, u.doctype, u.docname, u.update_type, u.data::json,"
    "   u.origin, u.txid::xid8"
    " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])"
    "   WITH ORDINALITY AS u(doctype, docname, update_type, data, origin, txid, i)"};
// Not prepared either: planned with the actual array (see ReadWindow).
constexpr pg::Query kConsume{"es_asm_consume",
                             "DELETE FROM es_producer.raw_change WHERE txid = ANY($1::xid8[])"};
// Outside any transaction; the producer's role owns the table.
constexpr pg::Query kVacuum{"es_asm_vacuum", "VACUUM es_producer.raw_change"};

// The registry columns of raw row side `side` (old_row / new_row of `r`),
// cut by PostgreSQL, which reads JSON of any depth. $2 maps each DocType to
// its replicated columns ("" to those of a DocType the registry lacks).
// Costs about 20 us a row, so it runs only for rows the services cannot read.
#define ES_REGISTRY_COLUMNS(side)                                          \
  "(SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(r." side "::jsonb) AS e" \
  " WHERE coalesce($2::jsonb -> r.doctype, $2::jsonb -> '') ? e.key)"
// The names the trigger recorded for rows $1 (no JSON is read).
constexpr pg::Query kRecordedNames{
    "es_asm_recorded_names",
    "SELECT r.id, r.docname FROM es_producer.raw_change r WHERE r.id = ANY($1::bigint[])"};
// Rows $1 again, registry columns only, with the keys that place them in
// their document.
constexpr pg::Query kReread{
    "es_asm_reread",
    "SELECT r.id, " ES_REGISTRY_COLUMNS("old_row") "::text AS old_row, "
    ES_REGISTRY_COLUMNS("new_row") "::text AS new_row,"
    " r.old_row ->> 'name' AS old_name, r.new_row ->> 'name' AS new_name,"
    " r.old_row ->> 'parenttype' AS old_parenttype, r.old_row ->> 'parent' AS old_parent,"
    " r.new_row ->> 'parenttype' AS new_parenttype, r.new_row ->> 'parent' AS new_parent,"
    " coalesce(r.new_row, r.old_row)::jsonb ? 'parentfield' AS has_parentfield"
    " FROM es_producer.raw_change r WHERE r.id = ANY($1::bigint[])"};
// Moves rows $1 (registry columns only) into one capture_error row.
constexpr pg::Query kRecordFailure{
    "es_asm_record_failure",
    "INSERT INTO es_producer.capture_error (txid, doctype, docname, error, raw_rows)"
    " SELECT $3::xid8, $4, $5, $6, jsonb_agg(jsonb_build_object("
    "   'id', r.id, 'table_name', r.table_name, 'doctype', r.doctype, 'op', r.op,"
    "   'old_row', " ES_REGISTRY_COLUMNS("old_row") ", 'new_row', "
    ES_REGISTRY_COLUMNS("new_row") ", 'origin', r.origin) ORDER BY r.id)"
    " FROM es_producer.raw_change r WHERE r.id = ANY($1::bigint[])"
    " RETURNING id"};
#undef ES_REGISTRY_COLUMNS
// The same with each side kept whole as a JSON string of its text: for rows
// PostgreSQL's JSON functions refuse (a "\u0000" escape in a json column).
constexpr pg::Query kRecordFailureAsText{
    "es_asm_record_failure_text",
    "INSERT INTO es_producer.capture_error (txid, doctype, docname, error, raw_rows)"
    " SELECT $2::xid8, $3, $4, $5, jsonb_agg(jsonb_build_object("
    "   'id', r.id, 'table_name', r.table_name, 'doctype', r.doctype, 'op', r.op,"
    "   'old_row_text', r.old_row::text, 'new_row_text', r.new_row::text,"
    "   'origin', r.origin) ORDER BY r.id)"
    " FROM es_producer.raw_change r WHERE r.id = ANY($1::bigint[])"
    " RETURNING id"};
// Around the statements above: an error in one of them must not end the
// pass (the assembler would retry it for ever).
constexpr pg::Query kSavepoint{"es_asm_savepoint", "SAVEPOINT es_asm_rows"};
constexpr pg::Query kRollbackSavepoint{"es_asm_rollback_savepoint",
                                       "ROLLBACK TO SAVEPOINT es_asm_rows"};
constexpr pg::Query kReleaseSavepoint{"es_asm_release_savepoint",
                                      "RELEASE SAVEPOINT es_asm_rows"};

// Runs `query` inside a savepoint: its result, or, when PostgreSQL refused
// the data (SQLSTATE classes 22, data exception, and 54, too deep or
// complex), that error after rolling back to the savepoint (the
// transaction goes on). Any other error (a timeout, a lost connection) is
// the outer status: the pass fails and is tried again, nothing is failed
// for it.
absl::StatusOr<absl::StatusOr<pg::Result>> ExecInSavepoint(pg::Connection* conn,
                                                           const pg::Query& query,
                                                           const pg::Params& params) {
  RETURN_IF_ERROR(conn->ExecPrepared(kSavepoint).status());
  absl::StatusOr<pg::Result> r = conn->Exec(query, params);
  if (!r.ok()) {
    const std::string state = pg::SqlStateOf(r.status());
    if (!absl::StartsWith(state, "22") && !absl::StartsWith(state, "54")) return r.status();
  }
  RETURN_IF_ERROR(conn->ExecPrepared(r.ok() ? kReleaseSavepoint : kRollbackSavepoint).status());
  return r;
}


std::string_view View(absl::string_view s) { return std::string_view(s.data(), s.size()); }

// Column `col` of row `i`, nullopt for NULL.
std::optional<std::string_view> Nullable(const pg::Result& r, int i, int col) {
  if (r.IsNull(i, col)) return std::nullopt;
  return View(r.Get(i, col));
}

// The keys of re-read raw row `c` (row `i` of kReread), as PostgreSQL read
// them.
RowKeys RereadKeys(const pg::Result& r, int i, const RawChange& c, const DocTypeDef* def) {
  RowKeys k;
  k.doctype = c.doctype;
  k.child = def != nullptr ? def->istable : r.GetBool(i, r.ColumnIndex("has_parentfield"));
  k.old_name = r.GetOptional(i, r.ColumnIndex("old_name"));
  k.new_name = r.GetOptional(i, r.ColumnIndex("new_name"));
  if (!k.child) return k;
  if (c.op != 'I') {
    k.old_parent = {std::string(r.Get(i, "old_parenttype")), std::string(r.Get(i, "old_parent"))};
  }
  if (c.op != 'D') {
    k.new_parent = {std::string(r.Get(i, "new_parenttype")), std::string(r.Get(i, "new_parent"))};
  }
  return k;
}

}  // namespace

RawChangeStore::RawChangeStore(const DocTypeRegistry* registry)
    : registry_(registry), columns_json_(ReplicatedColumnsJson(*registry)) {}

absl::StatusOr<bool> RawChangeStore::AnyRaw(pg::Connection* conn) {
  ASSIGN_OR_RETURN(pg::Result r, conn->ExecPrepared(kAnyRaw));
  return r.GetBool(0, r.ColumnIndex("waiting"));
}

absl::StatusOr<bool> RawChangeStore::TryLock(pg::Connection* conn) {
  ASSIGN_OR_RETURN(pg::Result r, conn->ExecPrepared(kLock));
  return r.GetBool(0, r.ColumnIndex("locked"));
}

std::vector<RawChange> RawChangeStore::ParseRows(const pg::Result& r) const {
  const int id = r.ColumnIndex("id"), txid = r.ColumnIndex("txid"),
            doctype = r.ColumnIndex("doctype"), op = r.ColumnIndex("op"),
            old_row = r.ColumnIndex("old_row"), new_row = r.ColumnIndex("new_row"),
            origin = r.ColumnIndex("origin");
  std::vector<RawChange> rows;
  rows.reserve(r.rows());
  for (int i = 0; i < r.rows(); ++i) {
    rows.push_back(ParseRawChange(
        *registry_, RawChangeText{r.GetInt64(i, id), View(r.Get(i, txid)),
                                  View(r.Get(i, doctype)), View(r.Get(i, op)),
                                  Nullable(r, i, old_row), Nullable(r, i, new_row),
                                  Nullable(r, i, origin)}));
  }
  return rows;
}

absl::StatusOr<WindowPlan> RawChangeStore::ReadWindow(pg::Connection* conn, int limit) const {
  // Two statements: the transactions, then their rows. They had committed
  // when the first statement ran, so the second (a later snapshot of this
  // READ COMMITTED transaction) sees every row of theirs, and no one else
  // deletes raw rows while we hold the lock. One statement (`txid IN
  // (SELECT txid ... LIMIT n)`) left the join to the planner, which, with
  // statistics taken while raw_change was nearly empty, chose a nested loop
  // over the whole table per window row: one call ran 90 s while capture
  // fell behind. The second statement is planned with the actual array each
  // time (not prepared), so whichever plan it picks is linear: index probes
  // on txid, or a scan with a hashed ANY.
  ASSIGN_OR_RETURN(pg::Result window, conn->ExecPrepared(kWindowTx, {limit}));
  std::vector<std::string> txids;
  txids.reserve(window.rows());
  for (int i = 0; i < window.rows(); ++i) txids.emplace_back(window.Get(i, "txid"));
  ASSIGN_OR_RETURN(pg::Result rows, conn->Exec(kWindowRows, {pg::TextArray(txids)}));
  WindowPlan plan = PlanWindow(ParseRows(rows), limit);
  if (plan.take_first_whole) {  // one transaction larger than the window
    ASSIGN_OR_RETURN(pg::Result first, conn->ExecPrepared(kFirstTxRows));
    plan.picked = GroupByTransaction(ParseRows(first));
  }
  return plan;
}

absl::Status RawChangeStore::Reread(pg::Connection* conn, TxRows* tx,
                                    std::map<int64_t, RowKeys>* keys) const {
  std::vector<int64_t> ids;
  std::map<int64_t, RawChange*> by_id;
  for (RawChange& c : tx->rows) {
    if (c.unreadable.empty()) continue;
    ids.push_back(c.id);
    by_id[c.id] = &c;
  }
  if (ids.empty()) return absl::OkStatus();
  // Refused by PostgreSQL too (a "\u0000" in a json column): the rows stay
  // unreadable, and their documents fail, named as the trigger recorded.
  ASSIGN_OR_RETURN(absl::StatusOr<pg::Result> reread,
                   ExecInSavepoint(conn, kReread, {pg::Int64Array(ids), columns_json_}));
  if (!reread.ok()) {
    ASSIGN_OR_RETURN(pg::Result names, conn->Exec(kRecordedNames, {pg::Int64Array(ids)}));
    for (int i = 0; i < names.rows(); ++i) {
      const RawChange& c = *by_id.at(names.GetInt64(i, names.ColumnIndex("id")));
      std::optional<RowKeys> k =
          KeysOfUnreadable(*registry_, c, std::string(names.Get(i, "docname")));
      if (k) (*keys)[c.id] = *std::move(k);
    }
    return absl::OkStatus();
  }
  const pg::Result& r = *reread;
  const int id = r.ColumnIndex("id"), old_row = r.ColumnIndex("old_row"),
            new_row = r.ColumnIndex("new_row");
  for (int i = 0; i < r.rows(); ++i) {
    RawChange& c = *by_id.at(r.GetInt64(i, id));
    const DocTypeDef* def = registry_->Find(c.doctype);
    c.unreadable.clear();
    ParseRawSide(def, "old_row", c.id, Nullable(r, i, old_row), &c.old_row, &c.unreadable);
    ParseRawSide(def, "new_row", c.id, Nullable(r, i, new_row), &c.new_row, &c.unreadable);
    (*keys)[c.id] = RereadKeys(r, i, c, def);
  }
  return absl::OkStatus();
}

absl::Status RawChangeStore::Lock(pg::Connection* conn) {
  // Deferred: taken with the transaction's next statement (which runs only
  // once it is held).
  return conn->ExecPreparedDeferred(kLockWait);
}

absl::StatusOr<RawChangeStore::SeqBlock> RawChangeStore::ReserveBlock(pg::Connection* conn,
                                                                     int64_t n) {
  ASSIGN_OR_RETURN(pg::Result r, conn->ExecPrepared(kSeqBlock, {n}));
  return SeqBlock{r.GetInt64(0, r.ColumnIndex("end_seq")), r.GetInt64(0, r.ColumnIndex("prev_end")),
                  std::string(r.Get(0, "created_at"))};
}

absl::StatusOr<RawChangeStore::Logged> RawChangeStore::AppendEntries(
    pg::Connection* conn, std::vector<LogEntry>* entries) {
  const int64_t n = static_cast<int64_t>(entries->size());
  ASSIGN_OR_RETURN(const SeqBlock block, ReserveBlock(conn, n));
  Logged logged;
  logged.end_seq = block.end_seq;
  logged.prev_end = block.prev_end;
  const int64_t first = logged.end_seq - n + 1;
  EntryColumns columns = TakeEntryColumns(entries);
  // Deferred: it travels with the caller's next statement or COMMIT.
  RETURN_IF_ERROR(conn->ExecPreparedDeferred(
      kInsertEntries,
      {first, pg::TextArray(columns.doctypes), pg::TextArray(columns.docnames),
       pg::TextArray(columns.update_types), pg::NullableTextArray(columns.data),
       pg::NullableTextArray(columns.origins), pg::TextArray(columns.txids)}));
  std::vector<std::optional<std::string>>& data = columns.data;
  for (size_t i = 0; i < entries->size(); ++i) {
    const LogEntry& e = (*entries)[i];
    auto r = std::make_shared<LogRecord>();
    r->seq = first + static_cast<int64_t>(i);
    r->doctype = e.doctype;
    r->docname = e.docname;
    r->update_type = e.update_type;
    r->data = std::move(data[i]);
    r->origin = e.origin.value_or("");
    r->created_at = block.created_at;
    logged.records.push_back(std::move(r));
  }
  return logged;
}

absl::Status RawChangeStore::RecordFailures(pg::Connection* conn,
                                            std::vector<CaptureFailure>* failures) const {
  for (CaptureFailure& f : *failures) {
    ASSIGN_OR_RETURN(absl::StatusOr<pg::Result> cut,
                     ExecInSavepoint(conn, kRecordFailure,
                                     {pg::Int64Array(f.raw_ids), columns_json_, f.txid,
                                      f.doctype, f.docname, f.error}));
    if (!cut.ok()) {  // kept whole, as text
      ASSIGN_OR_RETURN(cut, conn->Exec(kRecordFailureAsText, {pg::Int64Array(f.raw_ids), f.txid,
                                                              f.doctype, f.docname, f.error}));
    }
    f.record_id = cut->GetInt64(0, cut->ColumnIndex("id"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> RawChangeStore::Consume(pg::Connection* conn,
                                                const std::vector<std::string>& txids) {
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kConsume, {pg::TextArray(txids)}));
  return r.affected_rows();
}

absl::Status RawChangeStore::Vacuum(pg::Connection* conn) {
  return conn->Exec(kVacuum).status();
}

}  // namespace eventstream
