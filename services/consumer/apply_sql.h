// Internal to the consumer's DocumentApplier (apply_document.cc,
// apply_membership.cc): the SQL it runs, built per table with quoted
// identifiers and parameters only, the statements prepared under a name
// derived from their text, and the small helpers both files use. Not for
// other code: its contract is the applier's.
#ifndef EVENTSTREAM_SERVICES_CONSUMER_APPLY_SQL_H_
#define EVENTSTREAM_SERVICES_CONSUMER_APPLY_SQL_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libsync/base/pg.h"
#include "libsync/base/value.h"

namespace eventstream::apply::internal {

// ---- the store's statements -------------------------------------------------
// SQL over a DocType's table is built at runtime (its table and column
// names quoted with QuoteIdentifier, values only as $n parameters): one
// builder per statement kind. Each runs prepared under a name derived from
// its text (RunPrepared), so a table's statement is prepared once per
// connection.
constexpr pg::Query kTableColumns{
    "consumer_table_columns",
    "SELECT a.attname AS column_name, format_type(a.atttypid, a.atttypmod) AS column_type"
    " FROM pg_attribute a WHERE a.attrelid = to_regclass($1)"
    " AND a.attnum > 0 AND NOT a.attisdropped"};

// Provenance of same-name copies (es_consumer.same_name_copy, migration
// 0005), a batch at a time: $1 producer, $2 the producer's DocTypes, $3 the
// names (text[] of the same length). Deferred writes in the batch's
// transaction.
constexpr pg::Query kHoldSameNameCopies{
    "consumer_hold_same_name_copies",
    "INSERT INTO es_consumer.same_name_copy AS c (producer, doctype, docname)"
    " SELECT $1, u.d, u.n FROM unnest($2::text[], $3::text[]) AS u(d, n)"
    " ON CONFLICT (producer, doctype, docname) DO UPDATE SET released_at = NULL"
    " WHERE c.released_at IS NOT NULL"};
constexpr pg::Query kReleaseSameNameCopies{
    "consumer_release_same_name_copies",
    "UPDATE es_consumer.same_name_copy AS c SET released_at = now()"
    " FROM unnest($2::text[], $3::text[]) AS u(d, n)"
    " WHERE c.producer = $1 AND c.doctype = u.d AND c.docname = u.n AND c.released_at IS NULL"};

// Every row of one document's child table: $1 parent, $2 parenttype.
constexpr char kDocumentRowsWhere[] = "parent = $1 AND parenttype = $2";

bool IsTextType(const std::string& type);

bool IsJsonType(const std::string& type);

bool IsNumericFieldtype(const std::string& fieldtype);

pg::Param ToParam(const Value& v, const std::string& column_type);

std::string Key(const std::string& doctype, const std::string& name);

std::string Doc(const std::string& doctype, const std::string& name);

absl::Status Annotate(const absl::Status& s, const std::string& prefix);

// `value`, or its error annotated with `prefix`, so a step reads as the
// happy path: ASSIGN_OR_RETURN(pg::Result r, Annotated(RunPrepared(...), what)).
template <typename T>
absl::StatusOr<T> Annotated(absl::StatusOr<T> value, const std::string& prefix) {
  if (!value.ok()) return Annotate(value.status(), prefix);
  return value;
}

// Idempotent DDL adding remote_docname / remote_site_name and their index.
std::vector<std::string> AddRemoteColumnsSql(const std::string& table);

// Documents by name ($1: text[]): remote_name, local_name.
std::string PrefetchByNameSql(const std::string& table);

// Documents by remote name ($1: producer, $2: text[]): remote_name, local_name.
std::string PrefetchByRemoteSql(const std::string& table);

// A document by name ($1): name.
std::string FindByNameSql(const std::string& table);

// A document by remote name ($1: producer, $2: remote name): name.
std::string FindByRemoteSql(const std::string& table);

// Copies of a producer's documents ($1: producer): remote_name.
std::string CopiesByRemoteSql(const std::string& table);

// Same-name copies: names es_consumer.same_name_copy holds for ($1
// producer, $2 its DocType) that exist here: remote_name.
std::string CopiesByNameSql(const std::string& table);

// One child row: $1 parent, $2 parenttype, $3 the row's `key` (ChildRowKey).
std::string ChildRowWhere(const std::string& key);

// A column of a parent row ($1: name) as text: value.
std::string ParentColumnSql(const std::string& table, const std::string& column);

// A column of a child row (ChildRowWhere) as text: value.
std::string ChildColumnSql(const std::string& table, const std::string& column,
                           const std::string& key);

// Whether a child row exists (ChildRowWhere): name.
std::string FindChildRowSql(const std::string& table, const std::string& key);

// `rows` rows of `columns`, parameters $1... row by row.
std::string InsertSql(const std::string& table, const std::vector<std::string>& columns,
                      size_t rows);

// Sets `columns` from $first on; `where_sql` uses the parameters before.
std::string UpdateSql(const std::string& table, const std::vector<std::string>& columns,
                      size_t first, const std::string& where_sql);

// A document's row as JSON ($1: name): doc.
std::string ReadDocumentSql(const std::string& table);

// A table's rows of a document as a JSON array: $1 parent, $2 parenttype,
// $3 parentfield: rows.
std::string ReadTableRowsSql(const std::string& table);

// One child row (ChildRowWhere).
std::string DeleteChildRowSql(const std::string& table, const std::string& key);

// A table's rows of a document: $1 parent, $2 parenttype, $3 parentfield.
std::string DeleteTableRowsSql(const std::string& table);

std::string DeleteChildRowsSql(const std::string& table);

// A document ($1: name).
std::string DeleteDocumentSql(const std::string& table);

// $1 the new remote name of the document named $2.
std::string RenameRemoteSql(const std::string& table);

// $1 the new name of the document named $2.
std::string RenameSql(const std::string& table);

// A renamed document's rows: $1 new parent, $2 old parent, $3 parenttype.
std::string RenameChildRowsSql(const std::string& table);

// The prepared statement's name: one per SQL text and parameter count.
std::string StatementName(const std::string& sql, size_t params);

// Runs `sql` as a prepared statement named after its text.
absl::StatusOr<pg::Result> RunPrepared(pg::Connection* conn, const std::string& sql,
                                       const pg::Params& params = {});

// The same, deferred (pg::Connection::ExecPreparedDeferred): for writes. A
// failure comes back from a later call on `conn`, named by `what`.
absl::Status RunPreparedDeferred(pg::Connection* conn, const std::string& sql,
                                 const pg::Params& params, std::string what);
absl::Status RunPreparedDeferred(pg::Connection* conn, const pg::Query& query,
                                 const pg::Params& params, std::string what);

}  // namespace eventstream::apply::internal

#endif  // EVENTSTREAM_SERVICES_CONSUMER_APPLY_SQL_H_
