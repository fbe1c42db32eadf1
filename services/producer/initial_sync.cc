#include "services/producer/initial_sync.h"

#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/numbers.h"
#include "libsync/base/status_macros.h"
#include "libsync/config/condition_sql.h"
#include "libsync/rules/chunk_plan.h"
#include "libsync/rules/sync_window.h"
#include "libsync/wal/pgoutput.h"
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
  int64_t last_seq = 0;     // the last chunk's last seq (0: none since it started)
  std::vector<int64_t> recent_seqs;  // sync_window.h
  std::vector<std::string> conditions;  // the non-empty ones
};

namespace {

// The running jobs, ready ones first (their consumer acknowledged what the
// next chunk waits for, sync_window.h), oldest first; whether the subscription is
// active (a sync job needs it to be, a revoke job the opposite; the
// trigger replaces one by the other).
constexpr pg::Query kRunningJobs{
    "es_sync_running_jobs",
    "SELECT j.site, j.doctype, j.kind, j.cursor, j.start_seq, j.total IS NOT NULL AS counted,"
    "  c.acknowledged_seq >= j.prev_seq AS ready, j.prev_seq,"
    "  j.started_at::text AS started_at, j.last_seq,"
    "  array_to_string(j.recent_seqs, ',') AS recent_seqs,"
    "  d.condition,"
    "  d.producer_condition,"
    "  coalesce(d.status = 'approved' AND NOT d.unsubscribed, false) AS active"
    " FROM es_producer.sync_job j JOIN es_producer.consumer c ON c.site = j.site"
    " LEFT JOIN es_producer.consumer_doctype d ON d.site = j.site AND d.doctype = j.doctype"
    " WHERE j.state = 'running'"
    " ORDER BY ready DESC, j.started_at, j.site, j.doctype"};
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
// $3 the seq before the first; $4 the names and $5 a JSON array of their
// data, in the same order (the documents' JSON as read, joined: no quoting
// or parsing here, PostgreSQL parses it once).
constexpr pg::Query kInsert{
    "es_sync_insert_json",
    "INSERT INTO es_producer.update_log"
    "   (seq, doctype, docname, update_type, data, origin, txid, for_site)"
    " SELECT $3::bigint + u.i, $1, u.name, $6, u.data, NULL, pg_current_xact_id(), $2"
    " FROM ROWS FROM (unnest($4::text[]), json_array_elements($5::json))"
    "   WITH ORDINALITY AS u(name, data, i)"};
constexpr pg::Query kAdvance{
    "es_sync_advance",
    "UPDATE es_producer.sync_job SET cursor = $3, done = done + $4,"
    "  prev_seq = $8, recent_seqs = $9::bigint[],"
    "  last_seq = CASE WHEN $5::bigint > 0 THEN $5::bigint ELSE last_seq END,"
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
    "                 AND r.op = 'I' AND r.docname = t.name) AS wanted"
    " FROM {table} AS t WHERE t.name > $1 ORDER BY t.name LIMIT $2";
constexpr char kCountSql[] = "SELECT count(*) AS n FROM {table}";

// WAL capture (WriteChunkAfterWal): the snapshot, as the first statement of
// the read's transaction, and the last entry it sees.
constexpr pg::Query kSnapshot{
    "es_sync_snapshot",
    "SELECT pg_current_snapshot()::text AS snapshot,"
    "  (SELECT coalesce(max(seq), 0) FROM es_producer.update_log) AS seen_seq"};
// A transactional logical message: its commit is flushed and comes through
// the slot after every transaction the snapshot saw.
constexpr pg::Query kMarker{
    "es_sync_marker",
    "SELECT pg_logical_emit_message(true, 'eventstream.sync', $1)::text AS lsn"};
// Entries logged after the snapshot's last for the chunk's names (a Rename
// also by its old name). Only a Rename's data is looked into (CASE): json's
// operators refuse a "\u0000" anywhere in a document's text.
constexpr pg::Query kLaterEntries{
    "es_sync_later_entries",
    "SELECT seq, docname, CASE WHEN update_type = 'Rename'"
    "  THEN coalesce(data ->> 'old_name', '') ELSE '' END AS old_name, update_type,"
    "  coalesce(txid::text, '') AS txid"
    " FROM es_producer.update_log"
    " WHERE seq > $1 AND doctype = $2 AND for_site IS NULL"
    "   AND (docname = ANY($3::text[])"
    "        OR CASE WHEN update_type = 'Rename' THEN data ->> 'old_name' = ANY($3::text[])"
    "           ELSE false END)"
    " ORDER BY seq"};
constexpr absl::Duration kMarkerWait = absl::Seconds(10);
constexpr char kRevokeData[] = R"({"reason": "the subscription ended"})";

}  // namespace

void InitialSyncWriter::NoteWaiting(const pg::Result& jobs) const {
  std::map<std::string, int64_t, std::less<>> waiting;
  const int c_site = jobs.ColumnIndex("site"), c_ready = jobs.ColumnIndex("ready"),
            c_prev = jobs.ColumnIndex("prev_seq");
  for (int i = 0; i < jobs.rows(); ++i) {
    if (jobs.GetBool(i, c_ready)) continue;
    auto [it, added] = waiting.emplace(jobs.Get(i, c_site), jobs.GetInt64(i, c_prev));
    if (!added) it->second = std::min(it->second, jobs.GetInt64(i, c_prev));
  }
  absl::MutexLock lock(&mu_);
  waiting_ = std::move(waiting);
}

bool InitialSyncWriter::Unblocks(absl::string_view site, int64_t acknowledged) const {
  absl::MutexLock lock(&mu_);
  auto it = waiting_.find(site);
  if (it == waiting_.end() || acknowledged < it->second) return false;
  waiting_.erase(it);  // one wake-up is enough: the next WriteOne notes it again
  return true;
}

bool InitialSyncWriter::Awaits(absl::string_view site, int64_t acknowledged) const {
  absl::MutexLock lock(&mu_);
  auto it = waiting_.find(site);
  return it != waiting_.end() && acknowledged >= it->second;
}

absl::StatusOr<InitialSyncWriter::Chunk> InitialSyncWriter::WriteOne(pg::Connection* conn) const {
  ASSIGN_OR_RETURN(pg::Result r, conn->ExecPrepared(kRunningJobs));
  NoteWaiting(r);
  if (r.rows() == 0 || !r.GetBool(0, r.ColumnIndex("ready"))) return Chunk{};
  Job job{std::string(r.Get(0, "site")),
          std::string(r.Get(0, "doctype")),
          r.Get(0, "kind") == "revoke",
          std::string(r.Get(0, "cursor")),
          r.GetInt64(0, r.ColumnIndex("start_seq")),
          r.GetBool(0, r.ColumnIndex("counted")),
          std::string(r.Get(0, "started_at")),
          r.GetInt64(0, r.ColumnIndex("last_seq")),
          {},
          {}};
  for (absl::string_view seq : absl::StrSplit(r.Get(0, "recent_seqs"), ',', absl::SkipEmpty())) {
    int64_t n = 0;
    if (absl::SimpleAtoi(seq, &n)) job.recent_seqs.push_back(n);
  }
  for (const char* column : {"condition", "producer_condition"}) {
    if (!r.Get(0, column).empty()) job.conditions.emplace_back(r.Get(0, column));
  }
  const DocTypeDef* def = config_->registry.Find(job.doctype);
  if (r.GetBool(0, r.ColumnIndex("active")) == job.revoke || def == nullptr || def->istable) {
    // Superseded, or no longer in the registry: nothing to send.
    RETURN_IF_ERROR(conn->ExecPrepared(kFinish, {job.site, job.doctype}).status());
    return Chunk{0, 0, true};
  }
  if (wal_.captured && !job.revoke) {
    // Only the replica reading the slot knows when the marker is logged.
    if (!wal_.streaming()) return Chunk{};
    return WriteChunkAfterWal(conn, job);
  }
  return WriteChunk(conn, job);
}

struct InitialSyncWriter::Page {
  std::vector<std::string> wanted;  // the names to send
  int rows = 0;                     // names examined
  std::string cursor;               // the last examined (the job's next cursor)
  int64_t total = 0;                // the table's count, on the job's first chunk
  bool finished = false;
};

absl::StatusOr<InitialSyncWriter::Page> InitialSyncWriter::ReadPage(pg::Connection* conn,
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
  Page out;
  if (!job.counted) {
    ASSIGN_OR_RETURN(pg::Result n, conn->Exec(absl::StrReplaceAll(kCountSql, {{"{table}", table}})));
    out.total = n.GetInt64(0, n.ColumnIndex("n"));
  }
  ASSIGN_OR_RETURN(pg::Result page, conn->Exec(sql, params));
  for (int i = 0; i < page.rows(); ++i) {
    if (page.Get(i, "wanted") == "t") out.wanted.emplace_back(page.Get(i, "name"));
  }
  out.rows = page.rows();
  out.cursor = page.rows() > 0 ? std::string(page.Get(page.rows() - 1, "name")) : job.cursor;
  out.finished = page.rows() < options_.chunk_documents;
  return out;
}

absl::StatusOr<RawChangeStore::Logged> InitialSyncWriter::LogChunk(
    pg::Connection* conn, const Job& job, const Page& page,
    std::map<std::string, std::string> docs) const {
  RawChangeStore::Logged logged;
  if (!docs.empty()) {
    const int64_t n = static_cast<int64_t>(docs.size());
    ASSIGN_OR_RETURN(const RawChangeStore::SeqBlock block, RawChangeStore::ReserveBlock(conn, n));
    logged.end_seq = block.end_seq;
    logged.prev_end = block.prev_end;
    const char* update_type = job.revoke ? "Revoke" : "Sync";
    std::vector<std::string> names;
    names.reserve(docs.size());
    size_t bytes = 2;
    for (const auto& [name, json] : docs) bytes += json.size() + 1;
    std::string data;
    data.reserve(bytes);
    data += '[';
    for (const auto& [name, json] : docs) {
      if (!names.empty()) data += ',';
      data += json;
      names.push_back(name);
    }
    data += ']';
    RETURN_IF_ERROR(conn->ExecPrepared(kInsert, {job.doctype, job.site, block.end_seq - n,
                                                 pg::TextArray(names), data, update_type})
                        .status());
    int64_t seq = block.end_seq - n;
    for (auto& [name, json] : docs) {
      auto r = std::make_shared<LogRecord>();
      r->seq = ++seq;
      r->doctype = job.doctype;
      r->docname = name;
      r->update_type = update_type;
      r->data = std::move(json);
      r->for_site = job.site;
      r->created_at = block.created_at;
      logged.records.push_back(std::move(r));
    }
  }
  const SyncWindow window =
      AdvanceSyncWindow(job.recent_seqs, job.last_seq, logged.end_seq, options_.chunks_in_flight);
  RETURN_IF_ERROR(conn->ExecPrepared(kAdvance, {job.site, job.doctype, page.cursor,
                                                static_cast<int64_t>(page.rows), logged.end_seq,
                                                page.total, page.finished, window.wait_for,
                                                pg::Int64Array(window.recent)})
                      .status());
  spdlog::info("{} of {} for consumer {}: {} documents examined up to \"{}\", {} sent{}",
               job.revoke ? "revoking what it holds" : "initial sync", job.doctype, job.site,
               page.rows, page.cursor, logged.records.size(), page.finished ? "; done" : "");
  return logged;
}

InitialSyncWriter::Chunk InitialSyncWriter::Committed(RawChangeStore::Logged logged) const {
  Chunk chunk{static_cast<int>(logged.records.size()), logged.end_seq, true};
  if (options_.on_logged && !logged.records.empty()) {
    options_.on_logged(logged.prev_end, std::move(logged.records));
  }
  return chunk;
}

absl::StatusOr<bool> InitialSyncWriter::LockJob(pg::Connection* conn, const Job& job) {
  // The assembler's lock: seqs in commit order (raw_change_store.h).
  RETURN_IF_ERROR(RawChangeStore::Lock(conn));
  ASSIGN_OR_RETURN(pg::Result locked, conn->ExecPrepared(
                                          kLockJob, {job.site, job.doctype, job.started_at,
                                                     job.cursor}));
  return locked.rows() > 0;
}

absl::StatusOr<std::map<std::string, std::string>> InitialSyncWriter::ReadJson(
    pg::Connection* conn, const DocTypeDef& def, const std::vector<std::string>& names) const {
  // One statement for the whole chunk, the JSON built by PostgreSQL; a
  // document that cannot be represented is left out (document_reader.h).
  return ReadDocumentsJson(conn, config_->registry, def, names);
}

absl::StatusOr<InitialSyncWriter::Chunk> InitialSyncWriter::WriteChunk(pg::Connection* conn,
                                                                       const Job& job) const {
  ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn));
  ASSIGN_OR_RETURN(const bool locked, LockJob(conn, job));
  if (!locked) return Chunk{0, 0, true};  // restarted or moved on: read it again
  ASSIGN_OR_RETURN(const Page page, ReadPage(conn, job));
  std::map<std::string, std::string> docs;
  if (job.revoke) {
    for (const std::string& name : page.wanted) docs[name] = kRevokeData;
  } else {
    ASSIGN_OR_RETURN(docs, ReadJson(conn, *config_->registry.Find(job.doctype), page.wanted));
  }
  ASSIGN_OR_RETURN(RawChangeStore::Logged logged, LogChunk(conn, job, page, std::move(docs)));
  RETURN_IF_ERROR(tx->Commit());
  return Committed(std::move(logged));
}

// Crash safety: the snapshot read and the marker write nothing the job
// depends on (a marker is a WAL record only); the chunk's entries and the
// job's cursor commit together in the last transaction, as in WriteChunk.
absl::StatusOr<InitialSyncWriter::Chunk> InitialSyncWriter::WriteChunkAfterWal(
    pg::Connection* conn, const Job& job) const {
  const DocTypeDef& def = *config_->registry.Find(job.doctype);
  // 1. The chunk as of snapshot S (its first statement takes it).
  Page page;
  XidSnapshot snapshot;
  int64_t seen_seq = 0;  // the last entry S sees
  std::map<std::string, std::string> docs;
  {
    ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn, "ISOLATION LEVEL REPEATABLE READ"));
    ASSIGN_OR_RETURN(pg::Result r, conn->ExecPrepared(kSnapshot));
    ASSIGN_OR_RETURN(snapshot, ParseXidSnapshot(std::string(r.Get(0, "snapshot"))));
    seen_seq = r.GetInt64(0, r.ColumnIndex("seen_seq"));
    ASSIGN_OR_RETURN(page, ReadPage(conn, job));
    ASSIGN_OR_RETURN(docs, ReadJson(conn, def, page.wanted));
    RETURN_IF_ERROR(tx->Commit());
  }
  // 2. A marker after S; once the WAL loop logged it, every transaction S
  // sees is logged.
  ASSIGN_OR_RETURN(pg::Result m, conn->ExecPrepared(kMarker, {job.site + "/" + job.doctype}));
  ASSIGN_OR_RETURN(const wal::Lsn marker, wal::ParseLsn(std::string(m.Get(0, "lsn"))));
  if (!wal_.captured(marker, kMarkerWait)) {
    return absl::UnavailableError(absl::StrCat(
        "WAL capture has not logged up to the sync marker ", wal::FormatLsn(marker), " within ",
        absl::FormatDuration(kMarkerWait), "; the chunk of ", job.doctype, " for ", job.site,
        " is read again"));
  }
  // 3. Under the lock: mended with what was logged since S, then logged.
  ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn));
  ASSIGN_OR_RETURN(const bool locked, LockJob(conn, job));
  if (!locked) return Chunk{0, 0, true};
  RETURN_IF_ERROR(MendChunk(conn, job, def, page, snapshot, seen_seq, &docs));
  ASSIGN_OR_RETURN(RawChangeStore::Logged logged, LogChunk(conn, job, page, std::move(docs)));
  RETURN_IF_ERROR(tx->Commit());
  return Committed(std::move(logged));
}

absl::Status InitialSyncWriter::MendChunk(pg::Connection* conn, const Job& job,
                                          const DocTypeDef& def, const Page& page,
                                          const XidSnapshot& snapshot, int64_t seen_seq,
                                          std::map<std::string, std::string>* docs) const {
  std::set<std::string> chunk;
  for (const auto& [name, json] : *docs) chunk.insert(name);
  if (chunk.empty()) return absl::OkStatus();
  std::vector<std::string> names(chunk.begin(), chunk.end());
  ASSIGN_OR_RETURN(pg::Result r, conn->ExecPrepared(
                                     kLaterEntries, {seen_seq, job.doctype, pg::TextArray(names)}));
  std::vector<LaterEntry> later;
  for (int i = 0; i < r.rows(); ++i) {
    uint64_t txid = 0;
    if (!absl::SimpleAtoi(r.Get(i, "txid"), &txid)) continue;  // NULL: not a captured change
    later.push_back({r.GetInt64(i, r.ColumnIndex("seq")), std::string(r.Get(i, "docname")),
                     std::string(r.Get(i, "old_name")), std::string(r.Get(i, "update_type")),
                     txid});
  }
  const ChunkFixups fix = PlanChunkFixups(chunk, page.cursor, job.start_seq, snapshot, later);
  for (const std::string& name : fix.drop) docs->erase(name);
  if (fix.reread.empty()) return absl::OkStatus();
  std::vector<std::string> reread(fix.reread.begin(), fix.reread.end());
  ASSIGN_OR_RETURN(auto read, ReadJson(conn, def, reread));
  for (const std::string& name : reread) {
    auto it = read.find(name);
    if (it == read.end()) {
      docs->erase(name);  // deleted or renamed away since the read
    } else {
      (*docs)[name] = std::move(it->second);
    }
  }
  spdlog::debug("initial sync of {} for {}: {} documents left out, {} read again after the "
                "snapshot", job.doctype, job.site, fix.drop.size(), reread.size());
  return absl::OkStatus();
}

}  // namespace eventstream
