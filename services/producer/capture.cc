#include "services/producer/capture.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libsync/base/input_rules.h"
#include "libsync/base/status_macros.h"
#include "libsync/base/value.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {


// pg_trigger.tgargs holds each argument followed by a NUL byte; compared as
// hex so that any UTF-8 DocType name matches exactly.
std::string ArgsHex(const std::vector<std::string>& args) {
  std::string bytes;
  for (const std::string& a : args) {
    bytes += a;
    bytes.push_back('\0');
  }
  return absl::BytesToHexString(bytes);
}

}  // namespace

absl::StatusOr<CapturePlan> PlanCapture(const DocTypeRegistry& registry,
                                        const std::set<std::string>& doctypes) {
  CapturePlan plan;
  // child table -> captured parents (a set, so the argument order is stable).
  std::map<std::string, std::set<std::string>> child_parents;
  std::map<std::string, std::string> child_doctype;
  for (const std::string& name : doctypes) {
    ASSIGN_OR_RETURN(const DocTypeDef* def, registry.Get(name));
    if (def->istable) {
      return absl::InvalidArgumentError(absl::StrCat(
          "DocType ", Quoted(name),
          " is a child DocType (istable); capture its parent DocType instead"));
    }
    plan.tables[def->table] = {name};
    for (const FieldDef& field : def->fields) {
      if (!field.is_table()) continue;
      ASSIGN_OR_RETURN(const DocTypeDef* child, registry.Get(field.options));
      child_parents[child->table].insert(name);
      child_doctype[child->table] = child->name;
    }
  }
  for (const auto& [table, parents] : child_parents) {
    std::vector<std::string> args = {child_doctype[table]};
    args.insert(args.end(), parents.begin(), parents.end());
    plan.tables[table] = std::move(args);
  }
  return plan;
}

namespace {

constexpr pg::Query kSetLockTimeout{"es_capture_lock_timeout",
                                    "SELECT set_config('lock_timeout', $1, true)"};
constexpr pg::Query kSyncLock{
    "es_capture_sync_lock",
    "SELECT pg_advisory_xact_lock(hashtext('es_producer.capture_install'))"};
// The table's oid (NULL: no such table) and whether it has the columns the
// trigger reads itself: every row's `name`, a child row's `parenttype`
// (capture_row(), migration 0016). Without them the trigger would fail the
// site's writes, so it is not installed.
constexpr pg::Query kTableOid{
    "es_capture_table_oid",
    "SELECT t.oid::oid AS oid,"
    " EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attname = 'name'"
    "         AND a.attnum > 0 AND NOT a.attisdropped) AS has_name,"
    " EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = t.oid"
    "         AND a.attname = 'parenttype' AND a.attnum > 0 AND NOT a.attisdropped)"
    "   AS has_parenttype"
    " FROM (SELECT to_regclass($1) AS oid) AS t"};
// Every capture trigger: its table's oid and PostgreSQL's own (quoted,
// schema-qualified if needed) spelling of it, its arguments, and whether we
// may drop it (DROP TRIGGER needs the table's owner; CREATE [OR REPLACE]
// TRIGGER only the TRIGGER privilege).
constexpr pg::Query kExisting{
    "es_capture_existing",
    "SELECT t.tgrelid::oid AS oid, t.tgrelid::regclass::text AS rel,"
    " encode(t.tgargs, 'hex') AS args, t.tgnargs AS nargs,"
    " pg_has_role(c.relowner, 'USAGE') AS owned"
    " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
    " WHERE t.tgname = $1 AND NOT t.tgisinternal"};
// The DDL installing trigger $3 on table $1 with the arguments $2 (a JSON
// array of strings). The trigger name is quoted by format's %I, the
// arguments are string literals in the DDL: PostgreSQL's quote_literal
// builds them from parameters, never from spliced text.
constexpr pg::Query kInstallDdl{
    "es_capture_install_ddl",
    "SELECT format('CREATE OR REPLACE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE"
    " ON %s FOR EACH ROW EXECUTE FUNCTION es_producer.capture_row(%s)', $3::text,"
    " $1::regclass,"
    " (SELECT string_agg(quote_literal(a), ', ' ORDER BY o)"
    "    FROM jsonb_array_elements_text($2::jsonb) WITH ORDINALITY AS e(a, o))) AS ddl"};

struct Want {
  std::string table;
  std::vector<std::string> args;
};

absl::Status Annotated(const absl::Status& s, absl::string_view what) {
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

// The plan's tables by oid. NOT_FOUND naming a missing table.
absl::StatusOr<std::map<std::string, Want>> WantedByOid(pg::Connection* conn,
                                                       const CapturePlan& plan) {
  std::map<std::string, Want> want;
  for (const auto& [table, args] : plan.tables) {
    std::string what = absl::StrCat("table ", Quoted(table), " of DocType ", Quoted(args[0]));
    auto r = conn->Exec(kTableOid, {pg::QuoteIdentifier(table)});
    if (!r.ok()) return Annotated(r.status(), what);
    if (r->IsNull(0, r->ColumnIndex("oid"))) {
      return absl::NotFoundError(
          absl::StrCat(what, " does not exist; cannot install the capture trigger"));
    }
    // args: the DocType, then for a child table the parents it serves.
    const bool child = args.size() > 1;
    for (const auto& [column, needed] : {std::pair{"name", true}, std::pair{"parenttype", child}}) {
      if (needed && !r->GetBool(0, r->ColumnIndex(absl::StrCat("has_", column)))) {
        return absl::FailedPreconditionError(absl::StrCat(
            what, " has no column \"", column,
            "\", which the capture trigger reads; not installing it (it would fail the "
            "site's writes)"));
      }
    }
    want[std::string(r->Get(0, "oid"))] = Want{table, args};
  }
  return want;
}

// Installs (or re-arms) the trigger on `rel` with `args`; no arguments is
// the inert form, which records nothing.
absl::Status Install(pg::Connection* conn, const std::string& rel,
                     const std::vector<std::string>& args) {
  std::vector<Value> json;
  for (const std::string& a : args) json.push_back(Value::String(a));
  ASSIGN_OR_RETURN(pg::Result ddl,
                   conn->Exec(kInstallDdl, {rel, Value::FromArray(std::move(json)).ToJson(),
                                            kCaptureTrigger}));
  return conn->Exec(ddl.Get(0, "ddl")).status();
}

// Removes the trigger of a table no longer captured: dropped when the role
// owns the table, else made inert (no arguments). False when it already was.
absl::StatusOr<bool> Remove(pg::Connection* conn, const pg::Result& existing, int i) {
  const std::string rel(existing.Get(i, "rel"));
  const std::string what = absl::StrCat("removing the capture trigger of table ", rel);
  if (existing.GetBool(i, existing.ColumnIndex("owned"))) {
    auto dropped = conn->Exec(
        absl::StrCat("DROP TRIGGER ", pg::QuoteIdentifier(kCaptureTrigger), " ON ", rel));
    if (!dropped.ok()) return Annotated(dropped.status(), what);
    return true;
  }
  if (existing.Get(i, "nargs") == "0") return false;
  if (absl::Status s = Install(conn, rel, {}); !s.ok()) return Annotated(s, what);
  spdlog::warn(
      "capture trigger of table {} left in place but inert (it records nothing): dropping it "
      "needs the table's owner, and the producer's role only has TRIGGER on it",
      rel);
  return true;
}

}  // namespace

absl::Status CaptureInstaller::SyncTriggers(
    pg::Connection* conn, const DocTypeRegistry& registry,
    const std::set<std::string>& doctypes, Summary* summary) const {
  Summary local;
  if (summary == nullptr) summary = &local;
  *summary = Summary();
  ASSIGN_OR_RETURN(CapturePlan plan, PlanCapture(registry, doctypes));

  // One transaction: if the process dies before COMMIT, PostgreSQL rolls
  // back every CREATE/DROP TRIGGER of this sync and the old set stays.
  ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn));
  RETURN_IF_ERROR(conn->Exec(kSetLockTimeout, {options_.lock_timeout}).status());
  RETURN_IF_ERROR(conn->Exec(kSyncLock).status());
  ASSIGN_OR_RETURN(auto want, WantedByOid(conn, plan));

  ASSIGN_OR_RETURN(pg::Result existing, conn->Exec(kExisting, {kCaptureTrigger}));
  std::map<std::string, std::string> have_args;  // oid -> args hex
  for (int i = 0; i < existing.rows(); ++i) {
    std::string oid(existing.Get(i, "oid"));
    if (want.count(oid)) {
      have_args[oid] = std::string(existing.Get(i, "args"));
      continue;
    }
    ASSIGN_OR_RETURN(bool removed, Remove(conn, existing, i));
    if (removed) ++summary->dropped;
  }
  for (const auto& [oid, w] : want) {
    auto have = have_args.find(oid);
    if (have != have_args.end() && have->second == ArgsHex(w.args)) {
      ++summary->unchanged;
      continue;
    }
    // CREATE OR REPLACE: new arguments replace old ones in one statement.
    if (absl::Status s = Install(conn, pg::QuoteIdentifier(w.table), w.args); !s.ok()) {
      return Annotated(s, absl::StrCat("installing the capture trigger on table ",
                                       Quoted(w.table)));
    }
    ++summary->created;
  }
  RETURN_IF_ERROR(tx->Commit());
  if (summary->created > 0 || summary->dropped > 0) {
    std::vector<std::string> tables;
    for (const auto& [oid, w] : want) tables.push_back(w.table);
    spdlog::info(
        "capture triggers synced: {} created, {} removed, {} unchanged; "
        "captured tables: [{}]",
        summary->created, summary->dropped, summary->unchanged,
        absl::StrJoin(tables, ", "));
  }
  return absl::OkStatus();
}

}  // namespace eventstream
