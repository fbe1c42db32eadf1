#include "services/producer/initial_sync.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "libsync/config/condition_sql.h"
#include "libsync/base/status_macros.h"
#include "services/producer/document_reader.h"
#include "services/producer/raw_change_store.h"
#include "spdlog/spdlog.h"

namespace eventstream {

struct InitialSyncWriter::Job {
  std::string site;
  std::string doctype;
  bool revoke = false;  // kind 'revoke': the subscription ended
  std::string cursor;
  int64_t start_seq = 0;
  bool counted = false;
  std::string started_at;  // identifies this run of the job (kLockJob)
  std::vector<std::string> conditions;  // the non-empty ones
};

namespace {

// The oldest running job whose consumer acknowledged the chunk before its
// last one, and whether its subscription is active (a sync job needs it to
// be, a revoke job the opposite; the trigger replaces one by the other).
constexpr pg::Query kReadyJob{
    "es_sync_ready_job",
    "SELECT j.site, j.doctype, j.kind, j.cursor, j.start_seq, j.total IS NOT NULL AS counted,"
    "  j.started_at::text AS started_at,"
    "  d.condition,"
    "  d.producer_condition,"
    "  coalesce(d.status = 'approved' AND NOT d.unsubscribed, false) AS active"
    " FROM es_producer.sync_job j JOIN es_producer.consumer c ON c.site = j.site"
    " LEFT JOIN es_producer.consumer_doctype d ON d.site = j.site AND d.doctype = j.doctype"
    " WHERE j.state = 'running' AND c.acknowledged_seq >= j.prev_seq"
    " ORDER BY j.started_at, j.site, j.doctype LIMIT 1"};
constexpr pg::Query kFinish{
    "es_sync_finish",
    "UPDATE es_producer.sync_job SET state = 'done', finished_at = now()"
    " WHERE site = $1 AND doctype = $2"};
// The job again, locked. It must be the one read: same start (the trigger
// restarts a job, possibly as the other kind, when the subscription is
// re-activated, ended or its conditions change) and same cursor (another
// replica may have written the chunk).
constexpr pg::Query kLockJob{
    "es_sync_lock_job",
    "SELECT 1 FROM es_producer.sync_job WHERE site = $1 AND doctype = $2"
    " AND state = 'running' AND started_at::text = $3 AND cursor = $4 FOR UPDATE"};
constexpr pg::Query kInsert{
    "es_sync_insert",
    "INSERT INTO es_producer.update_log"
    "   (seq, doctype, docname, update_type, data, origin, txid, for_site)"
    " SELECT u.seq::bigint, $1, u.name, $6, u.data::jsonb, NULL, pg_current_xact_id(), $2"
    " FROM unnest($3::text[], $4::text[], $5::text[]) AS u(seq, name, data)"};
constexpr pg::Query kAdvance{
    "es_sync_advance",
    "UPDATE es_producer.sync_job SET cursor = $3, done = done + $4,"
    "  prev_seq = last_seq, last_seq = CASE WHEN $5::bigint > 0 THEN $5::bigint ELSE last_seq END,"
    "  total = coalesce(total, $6::bigint),"
    "  state = CASE WHEN $7::boolean THEN 'done' ELSE state END,"
    "  finished_at = CASE WHEN $7::boolean THEN now() END"
    " WHERE site = $1 AND doctype = $2"};

// {table}; {visible}: the conditions over `t` (params from $6). $1 cursor,
// $2 chunk size, $3 site, $4 DocType, $5 the job's start_seq. A document is
// logged when it passes, or when the consumer holds it (it may have to
// move out), unless it was created after the sync started: its Create
// (logged, or still a raw row) brings it whole.
constexpr char kPageSql[] =
    "SELECT t.name, ({visible}"
    "  OR EXISTS (SELECT 1 FROM es_producer.holding h WHERE h.site = $3"
    "             AND h.doctype = $4 AND h.docname = t.name)"
    "  OR EXISTS (SELECT 1 FROM es_producer.holding_change c WHERE c.site = $3"
    "             AND c.doctype = $4 AND c.docname = t.name AND c.held))"
    " AND NOT EXISTS (SELECT 1 FROM es_producer.update_log u WHERE u.doctype = $4"
    "                 AND u.docname = t.name AND u.seq > $5 AND u.update_type = 'Create'"
    "                 AND u.for_site IS NULL)"
    " AND NOT EXISTS (SELECT 1 FROM es_producer.raw_change r WHERE r.doctype = $4"
    "                 AND r.op = 'I' AND r.new_row ->> 'name' = t.name) AS wanted"
    " FROM {table} AS t WHERE t.name > $1 ORDER BY t.name LIMIT $2";
constexpr char kCountSql[] = "SELECT count(*) AS n FROM {table}";

}  // namespace

absl::StatusOr<InitialSyncWriter::Chunk> InitialSyncWriter::WriteOne(pg::Connection* conn) const {
  ASSIGN_OR_RETURN(pg::Result r, conn->ExecPrepared(kReadyJob));
  if (r.rows() == 0) return Chunk{};
  Job job{std::string(r.Get(0, "site")),
          std::string(r.Get(0, "doctype")),
          r.Get(0, "kind") == "revoke",
          std::string(r.Get(0, "cursor")),
          r.GetInt64(0, r.ColumnIndex("start_seq")),
          r.GetBool(0, r.ColumnIndex("counted")),
          std::string(r.Get(0, "started_at")),
          {}};
  for (const char* column : {"condition", "producer_condition"}) {
    if (!r.Get(0, column).empty()) job.conditions.emplace_back(r.Get(0, column));
  }
  const DocTypeDef* def = config_->registry.Find(job.doctype);
  if (r.GetBool(0, r.ColumnIndex("active")) == job.revoke || def == nullptr || def->istable) {
    // Superseded, or no longer in the registry: nothing to send.
    RETURN_IF_ERROR(conn->ExecPrepared(kFinish, {job.site, job.doctype}).status());
    return Chunk{0, 0, true};
  }
  return WriteChunk(conn, job);
}

absl::StatusOr<InitialSyncWriter::Chunk> InitialSyncWriter::WriteChunk(pg::Connection* conn,
                                                                       const Job& job) const {
  const DocTypeDef& def = *config_->registry.Find(job.doctype);
  const std::string table = pg::QuoteIdentifier(def.table);
  // Whole-row reads: a table lacking a registry column must not fail the
  // statement inside the transaction (condition_sql.h RowRead).
  // A revoke job logs what the consumer holds: for a subscription with
  // conditions its holdings, without them every document.
  auto visible = job.revoke ? absl::StatusOr<SqlPredicate>(SqlPredicate{
                                  job.conditions.empty() ? "TRUE" : "FALSE", {}})
                            : ConditionsToSql(job.conditions, def,
                                              RowSql{"t", RowRead::kWholeRow}, 6);
  const std::string sql = absl::StrReplaceAll(
      kPageSql, {{"{visible}", visible.ok() ? visible->sql : std::string("TRUE")},
                 {"{table}", table}});
  pg::Params params = {job.cursor, options_.chunk_documents, job.site, job.doctype,
                       job.start_seq};
  if (visible.ok()) params.insert(params.end(), visible->params.begin(), visible->params.end());

  ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn));
  // The assembler's lock: seqs in commit order (raw_change_store.h).
  RETURN_IF_ERROR(RawChangeStore::Lock(conn));
  ASSIGN_OR_RETURN(pg::Result locked, conn->ExecPrepared(
                                          kLockJob, {job.site, job.doctype, job.started_at,
                                                     job.cursor}));
  if (locked.rows() == 0) return Chunk{0, 0, true};  // restarted or moved on: read it again
  int64_t total = 0;
  if (!job.counted) {
    ASSIGN_OR_RETURN(pg::Result n, conn->Exec(absl::StrReplaceAll(kCountSql, {{"{table}", table}})));
    total = n.GetInt64(0, n.ColumnIndex("n"));
  }
  ASSIGN_OR_RETURN(pg::Result page, conn->Exec(sql, params));
  std::vector<std::string> wanted;
  for (int i = 0; i < page.rows(); ++i) {
    if (page.Get(i, "wanted") == "t") wanted.emplace_back(page.Get(i, "name"));
  }
  std::vector<std::string> names, data;
  if (job.revoke) {
    for (std::string& name : wanted) {
      names.push_back(std::move(name));
      data.push_back(R"({"reason": "the subscription ended"})");
    }
  } else {
    // One statement per table for the whole chunk; a document that cannot
    // be represented is left out (document_reader.h).
    ASSIGN_OR_RETURN(auto docs, ReadDocuments(conn, config_->registry, def, wanted));
    for (auto& [name, doc] : docs) {
      names.push_back(name);
      data.push_back(doc.ToJson());
    }
  }
  int64_t end_seq = 0;
  if (!names.empty()) {
    ASSIGN_OR_RETURN(end_seq,
                     RawChangeStore::ReserveSeqs(conn, static_cast<int64_t>(names.size())));
    std::vector<std::string> seqs;
    for (size_t i = 0; i < names.size(); ++i) {
      seqs.push_back(std::to_string(end_seq - static_cast<int64_t>(names.size()) + 1 +
                                    static_cast<int64_t>(i)));
    }
    RETURN_IF_ERROR(conn->ExecPrepared(kInsert, {job.doctype, job.site, pg::TextArray(seqs),
                                                 pg::TextArray(names), pg::TextArray(data),
                                                 job.revoke ? "Revoke" : "Sync"})
                        .status());
  }
  const bool finished = page.rows() < options_.chunk_documents;
  const std::string cursor =
      page.rows() > 0 ? std::string(page.Get(page.rows() - 1, "name")) : job.cursor;
  RETURN_IF_ERROR(conn->ExecPrepared(kAdvance, {job.site, job.doctype, cursor,
                                                static_cast<int64_t>(page.rows()), end_seq,
                                                total, finished})
                      .status());
  RETURN_IF_ERROR(tx->Commit());
  spdlog::info("{} of {} for consumer {}: {} documents examined up to \"{}\", {} sent{}",
               job.revoke ? "revoking what it holds" : "initial sync", job.doctype, job.site,
               page.rows(), cursor, names.size(), finished ? "; done" : "");
  return Chunk{static_cast<int>(names.size()), end_seq, true};
}

}  // namespace eventstream
