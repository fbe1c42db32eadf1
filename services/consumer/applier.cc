// The replay lifecycle around DocumentApplier: batch transaction, savepoint
// per entry, Event Sync Log rows, parking, watermark, Resync.
//
// Crash safety: everything ApplyBatch writes (documents, sync log rows,
// watermark) is in one transaction; dying before COMMIT leaves nothing and
// the next pull gets the same entries again; after COMMIT the watermark
// covers them. Resync likewise runs in one transaction. The only writes
// outside are PrepareTables' idempotent ALTER TABLEs.
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
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/consumer/apply_document.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

// created_at as RFC 3339 UTC, as ListSyncLog reports it.
constexpr char kCreatedAt[] =
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

// The columns RowFromResult reads.
std::string Columns() {
  return absl::StrCat(
      "id, producer, seq, doctype, docname, update_type, status, error, note,"
      " coalesce(data, ''), ",
      kCreatedAt, ", coalesce(parked_behind, 0), local_doctype, local_docname");
}

SyncLogRow RowFromResult(const pg::Result& r, int i) {
  SyncLogRow row;
  row.id = r.GetInt64(i, 0);
  row.producer = std::string(r.Get(i, 1));
  row.seq = r.GetInt64(i, 2);
  row.doctype = std::string(r.Get(i, 3));
  row.docname = std::string(r.Get(i, 4));
  row.update_type = std::string(r.Get(i, 5));
  row.status = std::string(r.Get(i, 6));
  row.error = std::string(r.Get(i, 7));
  row.note = std::string(r.Get(i, 8));
  row.data = std::string(r.Get(i, 9));
  row.created_at = std::string(r.Get(i, 10));
  row.parked_behind = r.GetInt64(i, 11);
  row.local_doctype = std::string(r.Get(i, 12));
  row.local_docname = std::string(r.Get(i, 13));
  return row;
}

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

// The producer's names an entry concerns: its docname, and for a Rename the
// old name too (a Rename is logged under the new name).
std::vector<std::string> NamesOf(const v1::UpdateLogEntry& e) {
  std::vector<std::string> names{e.docname()};
  if (e.update_type() == v1::UPDATE_TYPE_RENAME) {
    auto json = Value::ParseJson(e.data_json());
    if (json.ok()) {
      const Value* old_name = json->Find("old_name");
      if (old_name != nullptr && old_name->is_string() && old_name->as_string() != e.docname()) {
        names.push_back(old_name->as_string());
      }
    }
  }
  return names;
}

absl::Status Exec(pg::Connection* conn, const std::string& sql, const pg::Params& params = {}) {
  return apply::RunPrepared(conn, sql, params).status();
}

// Inside the caller's transaction: serialize with other appliers of
// `producer` and tag this transaction's writes with it as origin.
absl::Status BeginApply(pg::Connection* conn, const std::string& producer) {
  return Exec(conn,
              "SELECT pg_advisory_xact_lock(hashtextextended($1, 0)),"
              " set_config('eventstream.origin', $2, true)",
              {absl::StrCat("eventstream.consumer.apply:", producer), producer});
}

// Writes `rows` (no id yet) in one multi-row INSERT; returns their ids.
absl::Status InsertRows(pg::Connection* conn, std::vector<SyncLogRow>& rows) {
  constexpr size_t kChunk = 400;  // 12 parameters per row, well under 65535
  for (size_t start = 0; start < rows.size(); start += kChunk) {
    size_t end = std::min(rows.size(), start + kChunk);
    std::vector<std::string> tuples;
    pg::Params params;
    for (size_t i = start; i < end; ++i) {
      const SyncLogRow& r = rows[i];
      std::vector<std::string> holders;
      for (int k = 1; k <= 12; ++k) holders.push_back(absl::StrCat("$", params.size() + k));
      tuples.push_back(absl::StrCat("(", absl::StrJoin(holders, ", "), ")"));
      params.push_back(r.producer);
      params.push_back(r.seq);
      params.push_back(r.doctype);
      params.push_back(r.docname);
      params.push_back(r.update_type);
      params.push_back(r.status);
      params.push_back(r.error);
      params.push_back(r.note);
      params.push_back(r.data.empty() ? pg::Param() : pg::Param(r.data));
      params.push_back(r.parked_behind == 0 ? pg::Param() : pg::Param(r.parked_behind));
      params.push_back(r.local_doctype);
      params.push_back(r.local_docname);
    }
    // `rows` is in seq order and RETURNING follows the VALUES order for a
    // plain INSERT, so the ids match the rows one by one.
    // Not prepared: the text differs with the row count.
    auto res = conn->Exec(
        absl::StrCat("INSERT INTO es_consumer.sync_log (producer, seq, doctype, docname,"
                     " update_type, status, error, note, data, parked_behind, local_doctype,"
                     " local_docname) VALUES ",
                     absl::StrJoin(tuples, ", "), " RETURNING id, ", kCreatedAt),
        params);
    if (!res.ok()) return res.status();
    for (size_t i = start; i < end && static_cast<int>(i - start) < res->rows(); ++i) {
      rows[i].id = res->GetInt64(static_cast<int>(i - start), 0);
      rows[i].created_at = std::string(res->Get(static_cast<int>(i - start), 1));
    }
  }
  return absl::OkStatus();
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

}  // namespace

Applier::Applier(const Config& config)
    : config_(config),
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

  // Optimistic first: the whole batch without savepoints, its writes
  // pipelined. If any entry fails, that transaction is rolled back (nothing
  // of it stays) and the batch runs again isolating every entry in a
  // savepoint, so the failing one is logged Failed and the others apply.
  if (entries.size() > 1) {
    bool entry_failed = false;
    auto fast = ApplyBatchOnce(conn, producer, entries, next_after_seq, deps,
                               /*isolate=*/false, &entry_failed);
    if (!entry_failed) return fast;
  }
  return ApplyBatchOnce(conn, producer, entries, next_after_seq, deps, /*isolate=*/true, nullptr);
}

absl::StatusOr<ApplyResult> Applier::ApplyBatchOnce(pg::Connection* conn,
                                                    const std::string& producer,
                                                    const std::vector<v1::UpdateLogEntry>& entries,
                                                    int64_t next_after_seq, DependencySource* deps,
                                                    bool isolate, bool* entry_failed) {
  auto txn = pg::Transaction::Begin(conn);
  if (!txn.ok()) return txn.status();
  absl::Status s = BeginApply(conn, producer);
  if (!s.ok()) return s;
  // The watermark row, locked for the batch. Entries at or below it were
  // applied by an earlier batch (an overlapping pull): skip them.
  // (The no-op DO UPDATE locks the row, as FOR UPDATE would.)
  auto wm = apply::RunPrepared(
      conn,
      "INSERT INTO es_consumer.last_update AS l (producer, last_seq) VALUES ($1, 0)"
      " ON CONFLICT (producer) DO UPDATE SET last_seq = l.last_seq RETURNING last_seq",
      {producer});
  if (!wm.ok()) return wm.status();
  const int64_t watermark = wm->rows() > 0 ? wm->GetInt64(0, 0) : 0;

  // Entries at or below the watermark are of two kinds: ones an earlier
  // batch already applied (an overlapping pull; they have a sync log row),
  // and a document's earlier entries that the producer sends with their
  // original seq when access to it flips from false to true (docs/design.md
  // "Notify / pull"); those were never sent before and have no row. Skip
  // only the first kind: skipping by the watermark alone silently dropped
  // the withheld history (and so lost its changes when the consumer already
  // had the document).
  std::set<int64_t> already_logged;
  {
    std::string seqs;
    std::vector<std::string> doctypes;
    for (const v1::UpdateLogEntry& e : entries) {
      if (e.seq() > watermark) continue;
      absl::StrAppend(&seqs, seqs.empty() ? "" : ",", e.seq());
      doctypes.push_back(e.doctype());
    }
    if (!seqs.empty()) {
      auto logged = apply::RunPrepared(
          conn,
          "SELECT seq FROM es_consumer.sync_log WHERE producer = $1"
          " AND doctype = ANY($2::text[]) AND seq = ANY($3::bigint[])",
          {producer, pg::TextArray(doctypes), absl::StrCat("{", seqs, "}")});
      if (!logged.ok()) return logged.status();
      for (int i = 0; i < logged->rows(); ++i) already_logged.insert(logged->GetInt64(i, 0));
    }
  }

  // Documents of this batch with a Failed or Parked row: their entries park
  // behind it (the Failed row's id). One query for the whole batch.
  // (doctype, docname) -> the Failed row's id; Failed rows of this batch
  // join it as they happen.
  std::map<std::pair<std::string, std::string>, int64_t> blocked;
  {
    std::vector<std::string> names;
    for (const v1::UpdateLogEntry& e : entries) {
      for (std::string& n : NamesOf(e)) names.push_back(std::move(n));
    }
    auto q = apply::RunPrepared(
        conn,
        "SELECT doctype, docname, CASE WHEN status = 'Parked' THEN parked_behind ELSE id END"
        " FROM es_consumer.sync_log WHERE producer = $1 AND status IN ('Failed', 'Parked')"
        " AND docname = ANY($2::text[]) ORDER BY id",
        {producer, pg::TextArray(names)});
    if (!q.ok()) return q.status();
    for (int i = 0; i < q->rows(); ++i) {
      // emplace keeps the first (lowest id) row of each document.
      blocked.emplace(std::make_pair(std::string(q->Get(i, 0)), std::string(q->Get(i, 1))),
                      q->GetInt64(i, 2));
    }
  }

  ApplyResult result;
  result.isolated = isolate;
  apply::DocumentApplier doc(conn, config_, mappings_.ok() ? &*mappings_ : nullptr, tables_.get(),
                             producer, deps);
  std::vector<SyncLogRow> pending;  // Synced / Parked rows not written yet
  auto log_synced = [&pending, &result](SyncLogRow row, const apply::Outcome& outcome) {
    row.status = "Synced";
    row.note = outcome.note;
    row.local_doctype = outcome.local_doctype;
    row.local_docname = outcome.local_docname;
    pending.push_back(std::move(row));
    ++result.synced;
  };
  if (entries.size() > 1) {
    s = doc.Prefetch(entries);
    if (!s.ok()) return s;
  }

  for (const v1::UpdateLogEntry& e : entries) {
    if (e.seq() <= watermark && already_logged.count(e.seq())) continue;
    SyncLogRow row = RowFromEntry(producer, e);
    std::vector<std::string> names = NamesOf(e);

    // Parked? An earlier entry of this document Failed (or waits itself).
    int64_t behind = 0;
    for (const std::string& n : names) {
      auto it = blocked.find({e.doctype(), n});
      if (it != blocked.end()) behind = it->second;
    }
    if (behind != 0) {
      row.status = "Parked";
      row.parked_behind = behind;
      for (const std::string& n : names) blocked[{e.doctype(), n}] = behind;
      pending.push_back(std::move(row));
      ++result.parked;
      continue;
    }

    if (!isolate) {
      // No savepoint: the first failure abandons this attempt (the caller
      // runs the batch again isolated).
      absl::StatusOr<apply::Outcome> outcome = doc.Apply(e);
      if (!outcome.ok()) {
        *entry_failed = true;
        return outcome.status();
      }
      log_synced(std::move(row), *outcome);
      continue;
    }

    // Apply in a savepoint. Dying inside it: the whole batch is gone (no
    // COMMIT), and so is the entry's partial write.
    s = Exec(conn, "SAVEPOINT es_entry");
    if (!s.ok()) return s;
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
      s = Exec(conn, "RELEASE SAVEPOINT es_entry");
      if (!s.ok()) return s;
      log_synced(std::move(row), *outcome);
      continue;
    }
    // Undo the entry's partial writes; if even that fails the connection is
    // unusable and the batch is abandoned (nothing committed).
    (void)conn->FlushDeferred();  // a failure here is the one reported
    s = Exec(conn, "ROLLBACK TO SAVEPOINT es_entry");
    if (!s.ok()) return s;
    row.status = "Failed";
    row.error = std::string(outcome.status().message());
    // Written now (after the rows before it, so ids follow seq) to learn
    // its id for the entries parked behind it.
    pending.push_back(std::move(row));
    s = InsertRows(conn, pending);
    if (!s.ok()) return s;
    const SyncLogRow& failed = pending.back();
    LogFailure(failed);
    for (const std::string& n : names) blocked[{e.doctype(), n}] = failed.id;
    pending.clear();
    ++result.failed;
  }
  if (!isolate) {
    // The last entries' deferred writes.
    if (absl::Status written = conn->FlushDeferred(); !written.ok()) {
      *entry_failed = true;
      return written;
    }
  }
  s = InsertRows(conn, pending);
  if (!s.ok()) return s;

  // The watermark moves in the same transaction: a crash before COMMIT
  // loses the batch and its watermark together.
  auto moved = apply::RunPrepared(
      conn,
      "INSERT INTO es_consumer.last_update AS l (producer, last_seq, updated_at)"
      " VALUES ($1, $2, now()) ON CONFLICT (producer) DO UPDATE"
      " SET last_seq = GREATEST(l.last_seq, EXCLUDED.last_seq), updated_at = now()"
      " RETURNING last_seq",
      {producer, next_after_seq});
  if (!moved.ok()) return moved.status();
  result.last_seq = moved->GetInt64(0, 0);
  s = (*txn)->Commit();
  if (!s.ok()) return s;
  return result;
}

absl::StatusOr<std::vector<SyncLogRow>> Applier::Resync(
    pg::Connection* conn, int64_t id,
    const std::function<DependencySource*(const std::string& producer)>& deps_for) {
  // The row's producer first (outside the transaction: PrepareTables runs
  // DDL that must not wait on our own locks).
  auto peek =
      apply::RunPrepared(conn, "SELECT producer FROM es_consumer.sync_log WHERE id = $1", {id});
  if (!peek.ok()) return peek.status();
  if (peek->rows() == 0) return absl::NotFoundError(absl::StrCat("no sync log row ", id));
  const std::string producer(peek->Get(0, 0));
  const EventProducerConfig* pc =
      config_.consumer ? config_.consumer->FindProducer(producer) : nullptr;
  if (pc == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("sync log row ", id, ": producer \"", producer, "\" is no longer configured"));
  }
  PrepareTables(conn, *pc);

  auto txn = pg::Transaction::Begin(conn);
  if (!txn.ok()) return txn.status();
  absl::Status s = BeginApply(conn, producer);
  if (!s.ok()) return s;
  auto first = apply::RunPrepared(
      conn,
      absl::StrCat("SELECT ", Columns(), " FROM es_consumer.sync_log WHERE id = $1 FOR UPDATE"),
      {id});
  if (!first.ok()) return first.status();
  if (first->rows() == 0) return absl::NotFoundError(absl::StrCat("no sync log row ", id));
  SyncLogRow failed = RowFromResult(*first, 0);
  if (failed.status != "Failed") {
    return absl::FailedPreconditionError(absl::StrCat("sync log row ", id, " is ", failed.status,
                                                      ", not Failed: only Failed rows resync"));
  }
  auto parked = apply::RunPrepared(
      conn,
      absl::StrCat("SELECT ", Columns(),
                   " FROM es_consumer.sync_log WHERE parked_behind = $1 AND status = 'Parked'"
                   " ORDER BY seq, id FOR UPDATE"),
      {id});
  if (!parked.ok()) return parked.status();
  std::vector<SyncLogRow> rows{failed};
  for (int i = 0; i < parked->rows(); ++i) rows.push_back(RowFromResult(*parked, i));

  apply::DocumentApplier doc(conn, config_, mappings_.ok() ? &*mappings_ : nullptr, tables_.get(),
                             producer, deps_for ? deps_for(producer) : nullptr);
  int64_t new_root = 0;  // a released row that failed: the rest park behind it
  for (size_t i = 0; i < rows.size(); ++i) {
    SyncLogRow& row = rows[i];
    if (new_root != 0) {
      row.parked_behind = new_root;
      s = Exec(conn,
               "UPDATE es_consumer.sync_log SET parked_behind = $2, updated_at = now()"
               " WHERE id = $1",
               {row.id, new_root});
      if (!s.ok()) return s;
      continue;
    }
    // Same lifecycle as in a batch; dying anywhere rolls back the whole
    // Resync and the rows keep their previous state.
    s = Exec(conn, "SAVEPOINT es_entry");
    if (!s.ok()) return s;
    absl::StatusOr<apply::Outcome> outcome = doc.Apply(EntryFromRow(row));
    if (outcome.ok()) {
      absl::Status written = conn->FlushDeferred();  // the entry's own writes
      if (!written.ok()) outcome = written;
    }
    if (outcome.ok()) {
      s = Exec(conn, "RELEASE SAVEPOINT es_entry");
      if (!s.ok()) return s;
      row.status = "Synced";
      row.error.clear();
      row.note = outcome->note;
      row.parked_behind = 0;
      row.local_doctype = outcome->local_doctype;
      row.local_docname = outcome->local_docname;
    } else {
      (void)conn->FlushDeferred();  // a failure here is the one reported
      s = Exec(conn, "ROLLBACK TO SAVEPOINT es_entry");
      if (!s.ok()) return s;
      row.status = "Failed";
      row.error = std::string(outcome.status().message());
      row.parked_behind = 0;
      new_root = row.id;
      LogFailure(row);
    }
    s = Exec(conn,
             "UPDATE es_consumer.sync_log SET status = $2, error = $3, note = $4,"
             " parked_behind = NULL, local_doctype = $5, local_docname = $6,"
             " attempts = attempts + 1, updated_at = now() WHERE id = $1",
             {row.id, row.status, row.error, row.note, row.local_doctype, row.local_docname});
    if (!s.ok()) return s;
    if (i == 0 && row.status == "Failed") break;  // the parked ones stay behind it
  }
  if (rows[0].status == "Failed") rows.resize(1);
  s = (*txn)->Commit();
  if (!s.ok()) return s;
  return rows;
}

}  // namespace eventstream
