#include "services/producer/wal_capture_store.h"

#include "absl/strings/str_cat.h"
#include "libsync/base/input_rules.h"
#include "libsync/base/status_macros.h"
#include "libsync/base/value.h"
#include "services/producer/capture.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

constexpr pg::Query kEnsureSlot{
    "es_wal_ensure_slot",
    "SELECT pg_create_logical_replication_slot($1, 'pgoutput') FROM (SELECT 1) AS one"
    " WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)"};
constexpr pg::Query kSetLockTimeout{"es_wal_lock_timeout",
                                    "SELECT set_config('lock_timeout', '10s', true)"};
// The key CaptureInstaller::SyncTriggers serializes on.
constexpr pg::Query kInstallLock{
    "es_wal_install_lock", "SELECT pg_advisory_xact_lock(hashtext('es_producer.capture_install'))"};
constexpr pg::Query kPublicationExists{
    "es_wal_pub_exists",
    "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1) AS present"};
// Each wanted table ($1, a JSON array of unqualified names): its oid (NULL: missing), its
// spelling for DDL, its replica identity and whether publication $2 has it.
constexpr pg::Query kWantedTables{
    "es_wal_wanted_tables",
    "SELECT t.name, c.oid::text AS oid, c.oid::regclass::text AS rel,"
    " c.relreplident::text AS ident,"
    " EXISTS (SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid"
    "         WHERE p.pubname = $2 AND r.prrelid = c.oid) AS published"
    " FROM jsonb_array_elements_text($1::jsonb) AS t(name)"
    " LEFT JOIN pg_class c ON c.oid = to_regclass(quote_ident(t.name))"};
// The tables of publication $1 whose oids are not in $2.
constexpr pg::Query kSurplusTables{
    "es_wal_surplus_tables",
    "SELECT r.prrelid::regclass::text AS rel FROM pg_publication_rel r"
    " JOIN pg_publication p ON p.oid = r.prpubid"
    " WHERE p.pubname = $1 AND NOT (r.prrelid = ANY ($2::oid[]))"};
constexpr pg::Query kPublishedTables{
    "es_wal_published_tables",
    "SELECT tablename FROM pg_publication_tables WHERE pubname = $1"};
// Whether the consumer's watermark table exists, this role owns it, and
// publication $1 exists.
constexpr pg::Query kOriginState{
    "es_wal_origin_state",
    "SELECT to_regclass('es_consumer.last_update') IS NOT NULL AS marker,"
    " coalesce((SELECT pg_has_role(relowner, 'USAGE') FROM pg_class"
    "           WHERE oid = to_regclass('es_consumer.last_update')), false) AS owned,"
    " EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1) AS present"};
constexpr pg::Query kLoggedEnd{"es_wal_logged_end",
                               "SELECT end_lsn FROM es_producer.wal_position WHERE slot = $1"};
constexpr pg::Query kSaveLoggedEnd{
    "es_wal_save_logged_end",
    "INSERT INTO es_producer.wal_position AS w (slot, end_lsn) VALUES ($1, $2)"
    " ON CONFLICT (slot) DO UPDATE SET end_lsn = excluded.end_lsn, updated_at = now()"};
// A new snapshot, to tell which decoded commits other sessions see yet.
constexpr pg::Query kCurrentSnapshot{"es_wal_current_snapshot",
                                     "SELECT pg_current_snapshot()::text AS snapshot"};
constexpr pg::Query kRecordFailure{
    "es_wal_record_failure",
    "INSERT INTO es_producer.capture_error (txid, doctype, docname, error, raw_rows)"
    " VALUES ($1::xid8, $2, $3, $4, $5::jsonb) RETURNING id"};
std::string TextArray(const std::set<std::string>& items) {
  std::vector<Value> json;
  for (const std::string& s : items) json.push_back(Value::String(s));
  return Value::FromArray(std::move(json)).ToJson();
}

// The failure's rows as capture_error.raw_rows holds them.
std::string RowsJson(const std::map<int64_t, const RawChange*>& rows, const CaptureFailure& f) {
  Value::Array out;
  for (int64_t id : f.raw_ids) {
    auto it = rows.find(id);
    if (it == rows.end()) continue;
    const RawChange& c = *it->second;
    Value row = Value::EmptyObject();
    row["id"] = Value::Int(c.id);
    row["doctype"] = Value::String(c.doctype);
    row["op"] = Value::String(std::string(1, c.op));
    row["old_row"] = c.old_row.value_or(Value());
    row["new_row"] = c.new_row.value_or(Value());
    row["origin"] = c.origin ? Value::String(*c.origin) : Value();
    out.push_back(std::move(row));
  }
  return Value::FromArray(std::move(out)).ToJson();
}

}  // namespace

absl::Status WalCaptureStore::EnsureSlot(pg::Connection* conn) const {
  absl::Status s = conn->Exec(kEnsureSlot, {slot_}).status();
  // Another replica created it between the look and the creation.
  if (!s.ok() && pg::SqlStateOf(s) == "42710") return absl::OkStatus();
  return s;
}

absl::Status WalCaptureStore::SetTables(pg::Connection* conn,
                                        const std::set<std::string>& tables) const {
  const std::string pub = pg::QuoteIdentifier(publication_);
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kWantedTables, {TextArray(tables), publication_}));
  std::vector<std::string> oids;
  for (int i = 0; i < r.rows(); ++i) {
    if (r.IsNull(i, r.ColumnIndex("oid"))) {
      return absl::NotFoundError(absl::StrCat("table ", Quoted(std::string(r.Get(i, "name"))),
                                              " does not exist; cannot publish it"));
    }
    oids.emplace_back(r.Get(i, "oid"));
    const std::string rel(r.Get(i, "rel"));
    // Before the table joins: its first published update already carries
    // the whole old row. Crash safety: one transaction with the rest.
    if (r.Get(i, "ident") != "f") {
      RETURN_IF_ERROR(conn->Exec(absl::StrCat("ALTER TABLE ", rel, " REPLICA IDENTITY FULL")).status());
    }
    if (!r.GetBool(i, r.ColumnIndex("published"))) {
      RETURN_IF_ERROR(
          conn->Exec(absl::StrCat("ALTER PUBLICATION ", pub, " ADD TABLE ", rel)).status());
    }
  }
  ASSIGN_OR_RETURN(pg::Result surplus,
                   conn->Exec(kSurplusTables, {publication_, pg::TextArray(oids)}));
  for (int i = 0; i < surplus.rows(); ++i) {
    RETURN_IF_ERROR(conn->Exec(absl::StrCat("ALTER PUBLICATION ", pub, " DROP TABLE ",
                                            surplus.Get(i, "rel")))
                        .status());
  }
  return absl::OkStatus();
}

absl::Status WalCaptureStore::EnsureOriginPublication(pg::Connection* conn) const {
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kOriginState, {origin_publication()}));
  if (!r.GetBool(0, r.ColumnIndex("marker")) || r.GetBool(0, r.ColumnIndex("present"))) {
    return absl::OkStatus();
  }
  if (!r.GetBool(0, r.ColumnIndex("owned"))) {
    spdlog::warn(
        "WAL capture: changes the consumer applies on this site are sent back to their "
        "producer until the consumer's role runs: CREATE PUBLICATION {} FOR TABLE "
        "es_consumer.last_update",
        pg::QuoteIdentifier(origin_publication()));
    return absl::OkStatus();
  }
  return conn
      ->Exec(absl::StrCat("CREATE PUBLICATION ", pg::QuoteIdentifier(origin_publication()),
                          " FOR TABLE es_consumer.last_update"))
      .status();
}

absl::Status WalCaptureStore::SyncPublication(pg::Connection* conn,
                                              const DocTypeRegistry& registry,
                                              const std::set<std::string>& doctypes) const {
  ASSIGN_OR_RETURN(CapturePlan plan, PlanCapture(registry, doctypes));
  std::set<std::string> tables;
  for (const auto& [table, args] : plan.tables) tables.insert(table);
  // The slot before any table joins (see header).
  RETURN_IF_ERROR(EnsureSlot(conn));
  {
    // One transaction: a crash before COMMIT leaves the previous publication.
    ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn));
    RETURN_IF_ERROR(conn->Exec(kSetLockTimeout).status());
    RETURN_IF_ERROR(conn->Exec(kInstallLock).status());
    ASSIGN_OR_RETURN(pg::Result exists, conn->Exec(kPublicationExists, {publication_}));
    if (!exists.GetBool(0, exists.ColumnIndex("present"))) {
      RETURN_IF_ERROR(
          conn->Exec(absl::StrCat("CREATE PUBLICATION ", pg::QuoteIdentifier(publication_)))
              .status());
    }
    RETURN_IF_ERROR(SetTables(conn, tables));
    RETURN_IF_ERROR(EnsureOriginPublication(conn));
    RETURN_IF_ERROR(tx->Commit());
  }
  // Wal mode installs no trigger; one left from trigger mode goes now.
  return CaptureInstaller().SyncTriggers(conn, registry, {});
}

absl::StatusOr<wal::Lsn> WalCaptureStore::LoggedEnd(pg::Connection* conn) const {
  ASSIGN_OR_RETURN(pg::Result r, conn->ExecPrepared(kLoggedEnd, {slot_}));
  if (r.rows() == 0) return 0;
  return static_cast<wal::Lsn>(r.GetInt64(0, r.ColumnIndex("end_lsn")));
}

absl::StatusOr<XidSnapshot> WalCaptureStore::CurrentSnapshot(pg::Connection* conn) {
  ASSIGN_OR_RETURN(pg::Result r, conn->ExecPrepared(kCurrentSnapshot));
  return ParseXidSnapshot(r.Get(0, "snapshot"));
}

absl::Status WalCaptureStore::SaveLoggedEnd(pg::Connection* conn, wal::Lsn end) const {
  // Deferred: it travels with the COMMIT that follows.
  return conn->ExecPreparedDeferred(kSaveLoggedEnd, {slot_, static_cast<int64_t>(end)});
}

absl::StatusOr<std::set<std::string>> WalCaptureStore::PublishedTables(
    pg::Connection* conn) const {
  ASSIGN_OR_RETURN(pg::Result r, conn->ExecPrepared(kPublishedTables, {publication_}));
  std::set<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.emplace(r.Get(i, "tablename"));
  return out;
}

absl::StatusOr<std::vector<std::string>> WalCaptureStore::Publications(
    pg::Connection* conn) const {
  std::vector<std::string> out = {publication_};
  ASSIGN_OR_RETURN(pg::Result r, conn->ExecPrepared(kPublicationExists, {origin_publication()}));
  if (r.GetBool(0, r.ColumnIndex("present"))) out.push_back(origin_publication());
  return out;
}

absl::Status WalCaptureStore::RecordFailures(pg::Connection* conn,
                                             const std::map<int64_t, const RawChange*>& rows,
                                             std::vector<CaptureFailure>* failures) {
  for (CaptureFailure& f : *failures) {
    ASSIGN_OR_RETURN(pg::Result r, conn->ExecPrepared(kRecordFailure, {f.txid, f.doctype, f.docname,
                                                                       f.error, RowsJson(rows, f)}));
    f.record_id = r.GetInt64(0, r.ColumnIndex("id"));
  }
  return absl::OkStatus();
}

}  // namespace eventstream
