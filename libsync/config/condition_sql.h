// Conditions as SQL (issue 13 item 9; docs/design.md "What a consumer may
// see"): a subscription condition of the safe language (expr.h) translated
// into a PostgreSQL boolean over one row of a DocType's table, so a query
// can decide visibility itself instead of judging rows one by one.
//
// Exactness is the contract: for every document, the SQL is true exactly
// when Condition::Evaluate on the document as the producer reads it
// (to_jsonb of the row, cut to the registry's columns, plus "doctype";
// document_reader.h) is true; an evaluation error counts as false, as it
// does for visibility. tests/integration/condition_sql_test.cc checks this
// against Evaluate over many documents and conditions.
//
// Translated: fields of the document itself (`doc.f`, `doc.get("f")`,
// `doc.get("f", <literal>)`) compared with scalar literals (== != < <= > >=,
// either side, chained), `in` / `not in` a tuple or list of scalar literals,
// a literal `in` a field, `is` / `is not` None/True/False, a field's or a
// literal's truthiness, and `and` / `or` / `not` of these. Anything else
// (child tables, two fields compared, `cmd:` functions) is UNIMPLEMENTED:
// the caller judges such rows in C++.
#ifndef EVENTSTREAM_LIBSYNC_CONFIG_CONDITION_SQL_H_
#define EVENTSTREAM_LIBSYNC_CONFIG_CONDITION_SQL_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libsync/model/doctype.h"
#include "libsync/config/expr.h"

namespace eventstream {

// SQL text with positional parameters and their values.
struct SqlPredicate {
  std::string sql;                  // a boolean expression, never NULL
  std::vector<std::string> params;  // $first_param, $first_param + 1, ...
};

// How the translation reads a field of row `alias`: by its column
// (to_jsonb(t."f"), the fast way; a query then fails with SQLSTATE 42703
// when the table lacks a column the registry lists) or out of the whole
// row (to_jsonb(t) -> 'f', where a missing column reads None).
enum class RowRead { kByColumn, kWholeRow };
struct RowSql {
  std::string alias = "t";
  RowRead read = RowRead::kByColumn;
};

// `condition` over row `row` of a table of DocType `def`. Parameters are
// numbered from `first_param`.
absl::StatusOr<SqlPredicate> ConditionToSql(const Condition& condition, const DocTypeDef& def,
                                            const RowSql& row, int first_param);

// All of `conditions` (the texts a Subscription holds: "" or an
// expression) at once; "TRUE" for none. UNIMPLEMENTED when one cannot be
// translated (a cmd: function, a parse error, an unsupported form).
absl::StatusOr<SqlPredicate> ConditionsToSql(const std::vector<std::string>& conditions,
                                             const DocTypeDef& def, const RowSql& row,
                                             int first_param);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_CONFIG_CONDITION_SQL_H_
