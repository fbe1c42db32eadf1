#include "services/producer/capture.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libsync/value.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

std::string Quoted(absl::string_view s) { return absl::StrCat("\"", s, "\""); }

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
    auto def = registry.Get(name);
    if (!def.ok()) return def.status();
    if ((*def)->istable) {
      return absl::InvalidArgumentError(absl::StrCat(
          "DocType ", Quoted(name),
          " is a child DocType (istable); capture its parent DocType instead"));
    }
    plan.tables[(*def)->table] = {name};
    for (const FieldDef& field : (*def)->fields) {
      if (!field.is_table()) continue;
      auto child = registry.Get(field.options);
      if (!child.ok()) return child.status();
      child_parents[(*child)->table].insert(name);
      child_doctype[(*child)->table] = (*child)->name;
    }
  }
  for (const auto& [table, parents] : child_parents) {
    std::vector<std::string> args = {child_doctype[table]};
    args.insert(args.end(), parents.begin(), parents.end());
    plan.tables[table] = std::move(args);
  }
  return plan;
}

absl::Status CaptureInstaller::SyncTriggers(
    pg::Connection* conn, const DocTypeRegistry& registry,
    const std::set<std::string>& doctypes, Summary* summary) const {
  Summary local;
  if (summary == nullptr) summary = &local;
  *summary = Summary();
  auto plan = PlanCapture(registry, doctypes);
  if (!plan.ok()) return plan.status();

  // One transaction: if the process dies before COMMIT, PostgreSQL rolls
  // back every CREATE/DROP TRIGGER of this sync and the old set stays.
  auto tx = pg::Transaction::Begin(conn);
  if (!tx.ok()) return tx.status();
  auto set = conn->Exec("SELECT set_config('lock_timeout', $1, true)",
                        {options_.lock_timeout});
  if (!set.ok()) return set.status();
  auto locked = conn->Exec(
      "SELECT pg_advisory_xact_lock(hashtext('es_producer.capture_install'))");
  if (!locked.ok()) return locked.status();

  // Desired triggers by table oid.
  struct Want {
    std::string table;
    std::vector<std::string> args;
  };
  std::map<std::string, Want> want;  // oid -> table/args
  for (const auto& [table, args] : plan->tables) {
    auto r =
        conn->Exec("SELECT to_regclass($1)::oid", {pg::QuoteIdentifier(table)});
    if (!r.ok()) {
      return absl::Status(
          r.status().code(),
          absl::StrCat("table ", Quoted(table), " of DocType ", Quoted(args[0]),
                       ": ", r.status().message()));
    }
    if (r->IsNull(0, 0)) {
      return absl::NotFoundError(
          absl::StrCat("table ", Quoted(table), " of DocType ", Quoted(args[0]),
                       " does not exist; cannot install the capture trigger"));
    }
    want[std::string(r->Get(0, 0))] = Want{table, args};
  }

  auto existing = conn->Exec(
      "SELECT t.tgrelid::oid, t.tgrelid::regclass::text, encode(t.tgargs, "
      "'hex')"
      " FROM pg_trigger t WHERE t.tgname = $1 AND NOT t.tgisinternal",
      {kCaptureTrigger});
  if (!existing.ok()) return existing.status();
  std::map<std::string, std::string> have_args;  // oid -> args hex
  for (int i = 0; i < existing->rows(); ++i) {
    std::string oid(existing->Get(i, 0));
    // regclass output is PostgreSQL's own quoted (and, if needed,
    // schema-qualified) spelling of the table.
    std::string rel(existing->Get(i, 1));
    auto it = want.find(oid);
    if (it != want.end()) {
      have_args[oid] = std::string(existing->Get(i, 2));
      continue;
    }
    auto dropped = conn->Exec(absl::StrCat(
        "DROP TRIGGER ", pg::QuoteIdentifier(kCaptureTrigger), " ON ", rel));
    if (!dropped.ok()) {
      return absl::Status(dropped.status().code(),
                          absl::StrCat("dropping the capture trigger of table ",
                                       rel, ": ", dropped.status().message()));
    }
    ++summary->dropped;
  }

  for (const auto& [oid, w] : want) {
    auto have = have_args.find(oid);
    if (have != have_args.end()) {
      if (have->second == ArgsHex(w.args)) {
        ++summary->unchanged;
        continue;
      }
      auto dropped = conn->Exec(
          absl::StrCat("DROP TRIGGER ", pg::QuoteIdentifier(kCaptureTrigger),
                       " ON ", pg::QuoteIdentifier(w.table)));
      if (!dropped.ok()) {
        return absl::Status(dropped.status().code(),
                            absl::StrCat("table ", Quoted(w.table), ": ",
                                         dropped.status().message()));
      }
    }
    // The trigger arguments are string literals in the DDL; PostgreSQL's
    // quote_literal builds them from parameters, never from spliced text.
    std::vector<Value> args;
    for (const std::string& a : w.args) args.push_back(Value::String(a));
    auto ddl = conn->Exec(
        absl::StrCat(
            "SELECT format('CREATE TRIGGER ",
            pg::QuoteIdentifier(kCaptureTrigger),
            " AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW"
            " EXECUTE FUNCTION es_producer.capture_row(%s)', $1::regclass,"
            " (SELECT string_agg(quote_literal(a), ', ' ORDER BY o)"
            "    FROM jsonb_array_elements_text($2::jsonb) WITH ORDINALITY AS "
            "e(a, o)))"),
        {pg::QuoteIdentifier(w.table), Value::FromArray(args).ToJson()});
    if (!ddl.ok()) return ddl.status();
    auto created = conn->Exec(ddl->Get(0, 0));
    if (!created.ok()) {
      return absl::Status(
          created.status().code(),
          absl::StrCat("installing the capture trigger on table ",
                       Quoted(w.table), ": ", created.status().message()));
    }
    ++summary->created;
  }
  absl::Status committed = (*tx)->Commit();
  if (!committed.ok()) return committed;
  if (summary->created > 0 || summary->dropped > 0) {
    std::vector<std::string> tables;
    for (const auto& [oid, w] : want) tables.push_back(w.table);
    spdlog::info(
        "capture triggers synced: {} created, {} dropped, {} unchanged; "
        "captured tables: [{}]",
        summary->created, summary->dropped, summary->unchanged,
        absl::StrJoin(tables, ", "));
  }
  return absl::OkStatus();
}

}  // namespace eventstream
