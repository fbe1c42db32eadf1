#include "services/consumer/apply_sql.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libsync/base/status_macros.h"

namespace eventstream::apply::internal {

using pg::QuoteIdentifier;


bool IsTextType(const std::string& type) {
  return type == "text" || absl::StartsWith(type, "character") || type == "name" ||
         type == "citext";
}

bool IsJsonType(const std::string& type) {
  return type == "json" || type == "jsonb" || absl::EndsWith(type, "[]");
}

bool IsNumericFieldtype(const std::string& fieldtype) {
  return fieldtype == "Int" || fieldtype == "Float" || fieldtype == "Currency" ||
         fieldtype == "Check" || fieldtype == "Percent";
}

pg::Param ToParam(const Value& v, const std::string& column_type) {
  switch (v.kind()) {
    case Value::Kind::kNull:
      return pg::Param();
    case Value::Kind::kBool:
      if (column_type == "boolean") return pg::Param(v.as_bool() ? "true" : "false");
      return pg::Param(v.as_bool() ? "1" : "0");
    case Value::Kind::kString:
      if (v.as_string().empty() && !IsTextType(column_type)) return pg::Param();
      return pg::Param(v.as_string());
    case Value::Kind::kArray:
    case Value::Kind::kObject:
      return pg::Param(v.ToJson());
    case Value::Kind::kNumber:
      return pg::Param(v.number_text());
  }
  return pg::Param();
}

std::string Key(const std::string& doctype, const std::string& name) {
  return absl::StrCat(doctype, std::string(1, '\0'), name);
}

std::string Doc(const std::string& doctype, const std::string& name) {
  return absl::StrCat(doctype, " \"", name, "\"");
}

absl::Status Annotate(const absl::Status& s, const std::string& prefix) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(prefix, ": ", std::string(s.message())));
}



// Idempotent DDL adding remote_docname / remote_site_name and their index.
std::vector<std::string> AddRemoteColumnsSql(const std::string& table) {
  const std::string q = QuoteIdentifier(table);
  return {absl::StrCat("ALTER TABLE ", q, " ADD COLUMN IF NOT EXISTS remote_docname text"),
          absl::StrCat("ALTER TABLE ", q, " ADD COLUMN IF NOT EXISTS remote_site_name text"),
          absl::StrCat("CREATE INDEX IF NOT EXISTS ",
                       QuoteIdentifier(absl::StrCat(table.substr(0, 40), "_remote_name")), " ON ",
                       q, " (remote_site_name, remote_docname)")};
}

// Both look each name up on its own (a LATERAL subquery that OFFSET 0
// keeps from being flattened into a join): an equality on the name's index
// is planned as an index scan whatever the table's statistics say, where
// `name = ANY($1)` on a table that grew since it was last analyzed (an
// initial sync into an empty table) was planned as a sequential scan of the
// whole table: 1 ms instead of 0.15 ms for 62 names at 8,000 rows.
std::string PrefetchByNameSql(const std::string& table) {
  return absl::StrCat("SELECT u.n AS remote_name, t.name AS local_name",
                      " FROM unnest($1::text[]) AS u(n),"
                      " LATERAL (SELECT name FROM ", QuoteIdentifier(table),
                      " WHERE name = u.n OFFSET 0) AS t");
}

std::string PrefetchByRemoteSql(const std::string& table) {
  return absl::StrCat("SELECT u.n AS remote_name, t.local_name",
                      " FROM unnest($2::text[]) AS u(n),"
                      " LATERAL (SELECT min(name) AS local_name FROM ", QuoteIdentifier(table),
                      " WHERE remote_site_name = $1 AND remote_docname = u.n) AS t"
                      " WHERE t.local_name IS NOT NULL");
}

// A document by name ($1): name.
std::string FindByNameSql(const std::string& table) {
  return absl::StrCat("SELECT name FROM ", QuoteIdentifier(table), " WHERE name = $1");
}

// A document by remote name ($1: producer, $2: remote name): name.
std::string FindByRemoteSql(const std::string& table) {
  return absl::StrCat("SELECT name FROM ", QuoteIdentifier(table),
                      " WHERE remote_site_name = $1 AND remote_docname = $2"
                      " ORDER BY name LIMIT 1");
}

// Copies of a producer's documents ($1: producer): remote_name.
std::string CopiesByRemoteSql(const std::string& table) {
  return absl::StrCat("SELECT DISTINCT remote_docname AS remote_name FROM ", QuoteIdentifier(table),
                      " WHERE remote_site_name = $1 AND remote_docname IS NOT NULL");
}

// Same-name copies: names es_consumer.same_name_copy holds for ($1
// producer, $2 its DocType) that exist here: remote_name.
std::string CopiesByNameSql(const std::string& table) {
  return absl::StrCat("SELECT c.docname AS remote_name FROM es_consumer.same_name_copy c"
                      " JOIN ", QuoteIdentifier(table), " t ON t.name = c.docname"
                      " WHERE c.producer = $1 AND c.doctype = $2");
}

// One child row: $1 parent, $2 parenttype, $3 the row's `key` (ChildRowKey).
std::string ChildRowWhere(const std::string& key) {
  return absl::StrCat("parent = $1 AND parenttype = $2 AND ", QuoteIdentifier(key), " = $3");
}

// A column of a parent row ($1: name) as text: value.
std::string ParentColumnSql(const std::string& table, const std::string& column) {
  return absl::StrCat("SELECT ", QuoteIdentifier(column), "::text AS value FROM ",
                      QuoteIdentifier(table), " WHERE name = $1");
}

// A column of a child row (ChildRowWhere) as text: value.
std::string ChildColumnSql(const std::string& table, const std::string& column,
                           const std::string& key) {
  return absl::StrCat("SELECT ", QuoteIdentifier(column), "::text AS value FROM ",
                      QuoteIdentifier(table), " WHERE ", ChildRowWhere(key));
}

// Whether a child row exists (ChildRowWhere): name.
std::string FindChildRowSql(const std::string& table, const std::string& key) {
  return absl::StrCat("SELECT name FROM ", QuoteIdentifier(table), " WHERE ", ChildRowWhere(key));
}

// `rows` rows of `columns`, parameters $1... row by row.
std::string InsertSql(const std::string& table, const std::vector<std::string>& columns,
                      size_t rows) {
  std::vector<std::string> quoted;
  for (const std::string& c : columns) quoted.push_back(QuoteIdentifier(c));
  std::string sql = absl::StrCat("INSERT INTO ", QuoteIdentifier(table), " (",
                                 absl::StrJoin(quoted, ", "), ") VALUES ");
  sql.reserve(sql.size() + rows * columns.size() * 8);
  size_t n = 0;
  for (size_t i = 0; i < rows; ++i) {
    sql += i == 0 ? "(" : ", (";
    for (size_t k = 0; k < columns.size(); ++k) {
      absl::StrAppend(&sql, k == 0 ? "$" : ", $", ++n);
    }
    sql += ')';
  }
  return sql;
}

// Sets `columns` from $first on; `where_sql` uses the parameters before.
std::string UpdateSql(const std::string& table, const std::vector<std::string>& columns,
                      size_t first, const std::string& where_sql) {
  std::vector<std::string> sets;
  for (size_t i = 0; i < columns.size(); ++i) {
    sets.push_back(absl::StrCat(QuoteIdentifier(columns[i]), " = $", first + i));
  }
  return absl::StrCat("UPDATE ", QuoteIdentifier(table), " SET ", absl::StrJoin(sets, ", "),
                      " WHERE ", where_sql);
}

// A document's row as JSON ($1: name): doc.
std::string ReadDocumentSql(const std::string& table) {
  return absl::StrCat("SELECT to_jsonb(t)::text AS doc FROM ", QuoteIdentifier(table),
                      " t WHERE name = $1");
}

// A table's rows of a document as a JSON array: $1 parent, $2 parenttype,
// $3 parentfield: rows.
std::string ReadTableRowsSql(const std::string& table) {
  return absl::StrCat("SELECT COALESCE(jsonb_agg(to_jsonb(t)), '[]'::jsonb)::text AS rows FROM ",
                      QuoteIdentifier(table),
                      " t WHERE parent = $1 AND parenttype = $2 AND parentfield = $3");
}

// One child row (ChildRowWhere).
std::string DeleteChildRowSql(const std::string& table, const std::string& key) {
  return absl::StrCat("DELETE FROM ", QuoteIdentifier(table), " WHERE ", ChildRowWhere(key));
}

// A table's rows of a document: $1 parent, $2 parenttype, $3 parentfield.
std::string DeleteTableRowsSql(const std::string& table) {
  return absl::StrCat("DELETE FROM ", QuoteIdentifier(table),
                      " WHERE parent = $1 AND parenttype = $2 AND parentfield = $3");
}

// Every row of a document in a child table: $1 parent, $2 parenttype.
std::string DeleteChildRowsSql(const std::string& table) {
  return absl::StrCat("DELETE FROM ", QuoteIdentifier(table), " WHERE ", kDocumentRowsWhere);
}

// A document ($1: name).
std::string DeleteDocumentSql(const std::string& table) {
  return absl::StrCat("DELETE FROM ", QuoteIdentifier(table), " WHERE name = $1");
}

// $1 the new remote name of the document named $2.
std::string RenameRemoteSql(const std::string& table) {
  return absl::StrCat("UPDATE ", QuoteIdentifier(table),
                      " SET remote_docname = $1 WHERE name = $2");
}

// $1 the new name of the document named $2.
std::string RenameSql(const std::string& table) {
  return absl::StrCat("UPDATE ", QuoteIdentifier(table), " SET name = $1 WHERE name = $2");
}

// A renamed document's rows: $1 new parent, $2 old parent, $3 parenttype.
std::string RenameChildRowsSql(const std::string& table) {
  return absl::StrCat("UPDATE ", QuoteIdentifier(table),
                      " SET parent = $1 WHERE parent = $2 AND parenttype = $3");
}

// The prepared statement's name: one per SQL text and parameter count.
std::string StatementName(const std::string& sql, size_t params) {
  return absl::StrCat("es_apply_", absl::Hex(std::hash<std::string>{}(sql)), "_", params);
}

// Runs `sql` as a prepared statement named after its text.
absl::StatusOr<pg::Result> RunPrepared(pg::Connection* conn, const std::string& sql,
                                       const pg::Params& params) {
  return conn->ExecPrepared(StatementName(sql, params.size()), sql, params);
}

// The same, deferred (pg::Connection::ExecPreparedDeferred): for writes. A
// failure comes back from a later call on `conn`, named by `what`.
absl::Status RunPreparedDeferred(pg::Connection* conn, const std::string& sql,
                                 const pg::Params& params, std::string what) {
  return conn->ExecPreparedDeferred(StatementName(sql, params.size()), sql, params,
                                    std::move(what));
}

absl::Status RunPreparedDeferred(pg::Connection* conn, const pg::Query& query,
                                 const pg::Params& params, std::string what) {
  return conn->ExecPreparedDeferred(query.name, query.sql, params, std::move(what));
}

}  // namespace eventstream::apply::internal
