#include "services/producer/document_reader.h"

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "libsync/base/status_macros.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

// {row} is the row's JSON: to_jsonb(t) as is (cut to the registry's columns
// after parsing), or, for a document that does not parse whole, cut by
// PostgreSQL to the columns $2 / $4 (about 20 us more a row).
constexpr char kWholeRow[] = "to_jsonb(t)::text";
constexpr char kCutRow[] =
    "(SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(to_jsonb(t)) AS e"
    " WHERE e.key = ANY(${columns}::text[]))::text";
// {table} is the quoted table; $1 the name.
constexpr char kParentSql[] = "SELECT {row} AS row FROM {table} AS t WHERE t.name = $1";
// $1 the parent's name, $2 its DocType, $3 the Table field.
constexpr char kChildrenSql[] =
    "SELECT {row} AS row FROM {table} AS t WHERE t.parent = $1 AND t.parenttype = $2"
    " AND t.parentfield = $3 ORDER BY t.idx, t.name";

// Many at once (ReadDocuments): $1 the names; children also by $2 the
// parent DocType, $3 the Table field.
constexpr char kParentsSql[] =
    "SELECT t.name, to_jsonb(t)::text AS row FROM {table} AS t WHERE t.name = ANY($1::text[])";
constexpr char kChildrenOfSql[] =
    "SELECT t.parent, to_jsonb(t)::text AS row FROM {table} AS t"
    " WHERE t.parent = ANY($1::text[]) AND t.parenttype = $2 AND t.parentfield = $3"
    " ORDER BY t.parent, t.idx, t.name";

// ReadDocumentsJson, built by PostgreSQL's json functions (to_jsonb's
// rendering of every type): {members} the row's registry columns that the
// table has, "doctype" and a parent's child arrays, in key order (so the
// text has its keys sorted, as Value::ToJson writes them and as a reader
// then need not sort them). $1 the names, $2 the parent's DocType.
constexpr char kRowJsonSql[] = "SELECT {members}";
// One Table field's rows of every named parent, as one array per parent
// (a join, not a subquery per parent: one scan even where `parent` has no
// index): {row} a child's row, {child} its table, {field} the field's
// parameter, {j} the join's alias.
constexpr char kTableJoinSql[] =
    " LEFT JOIN (SELECT c.parent AS parent_name,"
    "   json_agg((SELECT row_to_json(y) FROM ({row}) AS y) ORDER BY c.idx, c.name) AS rows"
    "   FROM {child} AS c WHERE c.parent = ANY($1::text[]) AND c.parenttype = $2::text"
    "   AND c.parentfield = {field}::text GROUP BY c.parent) AS {j} ON {j}.parent_name = t.name";
constexpr char kDocumentsJsonSql[] =
    "SELECT t.name, (SELECT row_to_json(x) FROM ({row}) AS x)::text AS doc"
    " FROM {table} AS t{joins} WHERE t.name = ANY($1::text[])";
constexpr pg::Query kTableColumns{
    "es_table_columns",
    "SELECT a.attname::text AS column_name FROM pg_attribute a"
    " WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped"};
// PostgreSQL cuts longer aliases (NAMEDATALEN).
constexpr size_t kMaxAlias = 63;

// Documents already warned about (bounded: past it, no more warnings).
constexpr size_t kMaxWarned = 10000;
ABSL_CONST_INIT absl::Mutex warned_mu(absl::kConstInit);
std::set<std::pair<std::string, std::string>>* warned ABSL_GUARDED_BY(warned_mu) = nullptr;

absl::Status Annotate(const absl::Status& status, const DocTypeDef& def,
                      absl::string_view name) {
  return absl::Status(status.code(),
                      absl::StrCat("reading document \"", name, "\" of DocType \"",
                                   def.name, "\": ", status.message()));
}

std::string Sql(const char* query, const DocTypeDef& table, bool cut, int columns_param) {
  std::string row = cut ? absl::StrReplaceAll(kCutRow, {{"{columns}", absl::StrCat(
                                                                         columns_param)}})
                        : kWholeRow;
  return absl::StrReplaceAll(query,
                             {{"{row}", row}, {"{table}", pg::QuoteIdentifier(table.table)}});
}

// Parses one row as a document reads it: the registry's columns and "doctype".
absl::StatusOr<Value> ParseRow(absl::string_view text, const DocTypeDef& of) {
  ASSIGN_OR_RETURN(Value v, Value::ParseJson(std::string_view(text.data(), text.size())));
  KeepReplicatedColumns(&of, &v);
  v["doctype"] = Value::String(of.name);
  return v;
}

// Reads one document. A row that does not parse sets `unparsable` and
// returns its parse error.
absl::StatusOr<std::optional<Value>> Read(pg::Connection* conn, const DocTypeRegistry& registry,
                                          const DocTypeDef& def, absl::string_view name,
                                          bool cut, bool same_work_when_missing,
                                          bool* unparsable) {
  auto parse = [&](absl::string_view text, const DocTypeDef& of) -> absl::StatusOr<Value> {
    absl::StatusOr<Value> v = ParseRow(text, of);
    if (!v.ok()) *unparsable = true;
    return v;
  };
  *unparsable = false;
  pg::Params params = {name};
  if (cut) params.emplace_back(pg::TextArray(ReplicatedColumns(def)));
  ASSIGN_OR_RETURN(pg::Result parent, conn->Exec(Sql(kParentSql, def, cut, 2), params));
  const bool exists = parent.rows() > 0;
  if (!exists && !same_work_when_missing) return std::optional<Value>();
  Value doc;
  if (exists) {
    ASSIGN_OR_RETURN(doc, parse(parent.Get(0, "row"), def));
  }
  for (const FieldDef& field : def.fields) {
    if (!field.is_table()) continue;
    Value rows = Value::EmptyArray();
    if (const DocTypeDef* child = registry.Find(field.options)) {
      pg::Params child_params = {name, def.name, field.fieldname};
      if (cut) child_params.emplace_back(pg::TextArray(ReplicatedColumns(*child)));
      ASSIGN_OR_RETURN(pg::Result r,
                       conn->Exec(Sql(kChildrenSql, *child, cut, 4), child_params));
      for (int i = 0; exists && i < r.rows(); ++i) {
        ASSIGN_OR_RETURN(Value row, parse(r.Get(i, "row"), *child));
        rows.mutable_array().push_back(std::move(row));
      }
    }
    if (exists) doc[field.fieldname] = std::move(rows);
  }
  if (!exists) return std::optional<Value>();
  return std::optional<Value>(std::move(doc));
}

void WarnUnrepresentable(const DocTypeDef& def, absl::string_view name,
                         const absl::Status& why) {
  {
    absl::MutexLock lock(&warned_mu);
    if (warned == nullptr) warned = new std::set<std::pair<std::string, std::string>>();
    if (warned->size() >= kMaxWarned ||
        !warned->emplace(def.name, std::string(name)).second) {
      return;
    }
  }
  spdlog::warn(
      "document \"{}\" of DocType \"{}\" cannot be represented ({}); it is treated as "
      "absent: not served and not judged by conditions",
      absl::CHexEscape(name), absl::CHexEscape(def.name), std::string(why.message()));
}


}  // namespace

absl::StatusOr<std::map<std::string, Value>> ReadDocuments(pg::Connection* conn,
                                                          const DocTypeRegistry& registry,
                                                          const DocTypeDef& def,
                                                          const std::vector<std::string>& names) {
  std::map<std::string, Value> out;
  std::set<std::string> alone;  // rows that do not parse: read one by one
  const std::string all = pg::TextArray(names);
  ASSIGN_OR_RETURN(pg::Result parents,
                   conn->Exec(absl::StrReplaceAll(kParentsSql, {{"{table}",
                                                                 pg::QuoteIdentifier(def.table)}}),
                              {all}));
  for (int i = 0; i < parents.rows(); ++i) {
    const std::string name(parents.Get(i, "name"));
    absl::StatusOr<Value> doc = ParseRow(parents.Get(i, "row"), def);
    if (!doc.ok()) {
      alone.insert(name);
      continue;
    }
    for (const FieldDef& field : def.fields) {
      if (field.is_table()) (*doc)[field.fieldname] = Value::EmptyArray();
    }
    out.emplace(name, *std::move(doc));
  }
  for (const FieldDef& field : def.fields) {
    const DocTypeDef* child = field.is_table() ? registry.Find(field.options) : nullptr;
    if (child == nullptr) continue;
    ASSIGN_OR_RETURN(pg::Result rows,
                     conn->Exec(absl::StrReplaceAll(kChildrenOfSql,
                                                    {{"{table}", pg::QuoteIdentifier(child->table)}}),
                                {all, def.name, field.fieldname}));
    for (int i = 0; i < rows.rows(); ++i) {
      const std::string parent(rows.Get(i, "parent"));
      auto it = out.find(parent);
      if (it == out.end()) continue;
      absl::StatusOr<Value> row = ParseRow(rows.Get(i, "row"), *child);
      if (!row.ok()) {
        alone.insert(parent);
        out.erase(it);
        continue;
      }
      it->second[field.fieldname].mutable_array().push_back(*std::move(row));
    }
  }
  for (const std::string& name : alone) {
    out.erase(name);
    ASSIGN_OR_RETURN(std::optional<Value> doc, ReadDocument(conn, registry, def, name));
    if (doc) out.emplace(name, *std::move(doc));
  }
  return out;
}

namespace {

// One member of a kRowJsonSql row: its JSON key and the SQL that gives it.
using RowMember = std::pair<std::string, std::string>;

// kRowJsonSql for `of` aliased `alias`: the registry's columns its table
// has, "doctype" (as ParseRow sets it, not the column) and `tables` (a
// parent's child arrays); appends its parameters to `params`.
// `doctype`: the parameter naming its DocType, or "" to append one.
absl::StatusOr<std::string> RowJsonSql(pg::Connection* conn, const DocTypeDef& of,
                                       absl::string_view alias, std::vector<RowMember> tables,
                                       std::string doctype, pg::Params* params) {
  ASSIGN_OR_RETURN(pg::Result r,
                   conn->ExecPrepared(kTableColumns, {pg::QuoteIdentifier(of.table)}));
  std::set<std::string> present;
  for (int i = 0; i < r.rows(); ++i) present.emplace(r.Get(i, "column_name"));
  if (doctype.empty()) {
    params->emplace_back(of.name);
    doctype = absl::StrCat("$", params->size());
  }
  // Keyed by the member's name: one of each, in key order.
  std::map<std::string, std::string> members;
  for (const std::string& c : ReplicatedColumns(of)) {
    if (c == "doctype" || present.count(c) == 0) continue;
    members.emplace(c, absl::StrCat(alias, ".", pg::QuoteIdentifier(c)));
  }
  members["doctype"] = absl::StrCat(doctype, "::text AS doctype");
  for (RowMember& t : tables) members[t.first] = std::move(t.second);
  std::vector<std::string> list;
  for (auto& [key, sql] : members) list.push_back(std::move(sql));
  return absl::StrReplaceAll(kRowJsonSql, {{"{members}", absl::StrJoin(list, ", ")}});
}

// kDocumentsJsonSql for `def` with its parameters ($1, $2 left to the
// caller); nullopt when a Table field's name is too long for an alias.
absl::StatusOr<std::optional<std::string>> DocumentsJsonSql(pg::Connection* conn,
                                                            const DocTypeRegistry& registry,
                                                            const DocTypeDef& def,
                                                            pg::Params* params) {
  std::vector<RowMember> tables;
  std::string joins;
  for (const FieldDef& field : def.fields) {
    if (!field.is_table()) continue;
    if (field.fieldname.size() > kMaxAlias) return std::optional<std::string>();
    params->emplace_back(field.fieldname);
    const std::string name = absl::StrCat("$", params->size());
    const std::string alias = pg::QuoteIdentifier(field.fieldname);
    const DocTypeDef* child = registry.Find(field.options);
    if (child == nullptr) {
      tables.emplace_back(field.fieldname, absl::StrCat("'[]'::json AS ", alias));
      continue;
    }
    const std::string j = absl::StrCat("j", params->size());
    ASSIGN_OR_RETURN(const std::string row, RowJsonSql(conn, *child, "c", {}, "", params));
    tables.emplace_back(field.fieldname,
                        absl::StrCat("coalesce(", j, ".rows, '[]'::json) AS ", alias));
    absl::StrAppend(&joins, absl::StrReplaceAll(
                                kTableJoinSql, {{"{row}", row},
                                                {"{child}", pg::QuoteIdentifier(child->table)},
                                                {"{field}", name},
                                                {"{j}", j}}));
  }
  ASSIGN_OR_RETURN(const std::string row,
                   RowJsonSql(conn, def, "t", std::move(tables), "$2", params));
  return std::optional<std::string>(absl::StrReplaceAll(
      kDocumentsJsonSql,
      {{"{row}", row}, {"{table}", pg::QuoteIdentifier(def.table)}, {"{joins}", joins}}));
}

}  // namespace

absl::StatusOr<std::map<std::string, std::string>> ReadDocumentsJson(
    pg::Connection* conn, const DocTypeRegistry& registry, const DocTypeDef& def,
    const std::vector<std::string>& names) {
  std::map<std::string, std::string> out;
  if (names.empty()) return out;
  pg::Params params = {pg::TextArray(names), def.name};
  ASSIGN_OR_RETURN(std::optional<std::string> sql,
                   DocumentsJsonSql(conn, registry, def, &params));
  if (!sql) {  // as ReadDocuments reads them
    ASSIGN_OR_RETURN(auto docs, ReadDocuments(conn, registry, def, names));
    for (auto& [name, doc] : docs) out.emplace(name, doc.ToJson());
    return out;
  }
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(*sql, params));
  const int name_col = r.ColumnIndex("name"), doc_col = r.ColumnIndex("doc");
  for (int i = 0; i < r.rows(); ++i) {
    std::string name(r.Get(i, name_col));
    absl::string_view doc = r.Get(i, doc_col);
    if (Value::NestingWithinLimit(std::string_view(doc.data(), doc.size()))) {
      out.emplace(std::move(name), std::string(doc));
      continue;
    }
    // Too deep as a whole: as ReadDocument has it (row by row, cut), or absent.
    ASSIGN_OR_RETURN(std::optional<Value> alone, ReadDocument(conn, registry, def, name));
    if (alone) out.emplace(std::move(name), alone->ToJson());
  }
  return out;
}

absl::StatusOr<std::optional<Value>> ReadDocument(
    pg::Connection* conn, const DocTypeRegistry& registry,
    const DocTypeDef& def, absl::string_view name, bool same_work_when_missing) {
  bool unparsable = false;
  auto doc = Read(conn, registry, def, name, /*cut=*/false, same_work_when_missing,
                  &unparsable);
  if (unparsable) {
    doc = Read(conn, registry, def, name, /*cut=*/true, same_work_when_missing, &unparsable);
  }
  if (unparsable) {
    WarnUnrepresentable(def, name, doc.status());
    return std::optional<Value>();
  }
  if (!doc.ok()) return Annotate(doc.status(), def, name);
  return doc;
}

}  // namespace eventstream
