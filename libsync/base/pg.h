// A small PostgreSQL access layer over libpq.
//
// Contract:
//  * Values reach SQL only as parameters ($1, $2 ...), never spliced into the
//    text; identifiers (table and column names from the DocType registry) go
//    through QuoteIdentifier.
//  * Every failure is an absl::Status whose message starts with the SQLSTATE
//    ("SQLSTATE 23505: duplicate key value ..."); SqlStateOf() reads it back.
//  * A Connection is used by one thread at a time. Transaction is RAII: it
//    rolls back unless Commit() was called, so an early return cannot leave a
//    half-done write behind.
#ifndef EVENTSTREAM_LIBSYNC_BASE_PG_H_
#define EVENTSTREAM_LIBSYNC_BASE_PG_H_

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct pg_conn;
struct pg_result;

namespace eventstream::pg {

// One query parameter in text form; std::nullopt is SQL NULL.
class Param {
 public:
  Param() = default;  // NULL
  Param(std::nullopt_t) {}
  Param(std::string s) : value_(std::move(s)) {}
  Param(absl::string_view s) : value_(std::string(s)) {}
  Param(const char* s) : value_(std::string(s)) {}
  Param(int64_t n) : value_(std::to_string(n)) {}
  Param(int n) : value_(std::to_string(n)) {}
  Param(bool b) : value_(b ? "true" : "false") {}
  Param(std::optional<std::string> s) : value_(std::move(s)) {}

  const std::optional<std::string>& value() const { return value_; }

 private:
  std::optional<std::string> value_;
};
using Params = std::vector<Param>;

// A statement with its name, as each store keeps its queries (userver's
// Query{sql, Name} is the model):
//   constexpr pg::Query kFindNote{"find_note", "SELECT name FROM t WHERE x = $1"};
// The name prefixes errors ("find_note: ERROR: ..."), so a failure names the
// query; ExecPrepared(query, ...) prepares it once per connection under it.
// Parameters only; identifiers that vary (a DocType's table) are not
// constants, build those with QuoteIdentifier and Exec(string).
struct Query {
  const char* name;
  const char* sql;
};

// The rows of one statement, in text form. Move-only.
class Result {
 public:
  Result() = default;
  explicit Result(pg_result* res);
  Result(Result&& other) noexcept;
  Result& operator=(Result&& other) noexcept;
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  ~Result();

  int rows() const;
  int columns() const;
  absl::string_view column_name(int col) const;
  // -1 when there is no such column.
  int ColumnIndex(absl::string_view name) const;
  bool IsNull(int row, int col) const;
  absl::string_view Get(int row, int col) const;  // "" for NULL
  std::optional<std::string> GetOptional(int row, int col) const;
  int64_t GetInt64(int row, int col) const;      // 0 for NULL
  bool GetBool(int row, int col) const;          // 't' -> true
  // The same by column name, as stores read rows (a missing column is a
  // programming error: it aborts). Loops over many rows may look the index
  // up once with ColumnIndex instead.
  bool IsNull(int row, const char* column) const;
  absl::string_view Get(int row, const char* column) const;
  std::optional<std::string> GetOptional(int row, const char* column) const;
  int64_t GetInt64(int row, const char* column) const;
  bool GetBool(int row, const char* column) const;
  // Rows affected by INSERT/UPDATE/DELETE.
  int64_t affected_rows() const;
  pg_result* raw() const;

 private:
  // ColumnIndex(column), aborting when there is no such column.
  int RequireColumn(const char* column) const;

  pg_result* res_ = nullptr;
};

class Connection {
 public:
  // `url` is a libpq connection string or URI ("postgresql:///db?host=/tmp").
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::string& url);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // One statement with parameters.
  absl::StatusOr<Result> Exec(absl::string_view sql, const Params& params = {});
  // A statement prepared once per connection under `name` and reused.
  absl::StatusOr<Result> ExecPrepared(const std::string& name,
                                      absl::string_view sql,
                                      const Params& params = {});
  // A named query (see Query), plain or prepared under its name.
  absl::StatusOr<Result> Exec(const Query& query, const Params& params = {});
  absl::StatusOr<Result> ExecPrepared(const Query& query, const Params& params = {});
  // Several statements without parameters (migrations, DDL scripts).
  absl::Status ExecScript(absl::string_view sql);

  // Deferred statements (libpq pipeline mode): a write whose result the
  // caller does not need is sent at once and not waited for, saving a round
  // trip per statement. `what` names it in an error ("inserting X: SQLSTATE
  // ..."). Every other call on this connection (Exec, ExecPrepared,
  // ExecScript, FlushDeferred) first collects the deferred results and, if
  // one failed, returns the first failure instead of running (the server
  // skipped the statements after it, and an open transaction is aborted).
  // So errors still arrive in statement order, just later.
  absl::Status ExecPreparedDeferred(const std::string& name, absl::string_view sql,
                                    const Params& params, std::string what);
  // A named query (see Query), prepared under its name; errors name it.
  absl::Status ExecPreparedDeferred(const Query& query, const Params& params = {});
  // The same for a statement without parameters or preparation (BEGIN).
  absl::Status ExecDeferred(absl::string_view sql, std::string what);
  // Waits for every deferred statement; the first failure, or OK. (Exec and
  // ExecPrepared send their statement after the deferred ones and collect
  // all in one round trip.)
  absl::Status FlushDeferred();
  int deferred() const { return static_cast<int>(deferred_.size()); }
  // Statements run through Exec / ExecPrepared on this connection so far
  // (the work a caller did, e.g. to show its cost does not depend on data
  // the caller may not see; update_feed.h).
  int64_t statements() const { return statements_; }

  // COPY ... FROM STDIN in text format, with `data` (built by CopyText) as
  // the input: many rows in one statement without building a JSON or array
  // parameter (the fastest way to insert them). Returns the rows copied.
  // A failed COPY inserts nothing (and aborts an open transaction).
  absl::StatusOr<int64_t> CopyIn(absl::string_view copy_sql,
                                 absl::string_view data);

  // Runs before each statement this connection sends (every call above;
  // not ROLLBACK, not while it runs itself): a caller that holds writes
  // back (the consumer's row buffer) sends them first, so statements still
  // reach the server in the order they were asked for. Its failure is
  // returned instead of running the statement. Set nullptr before what it
  // captures is gone.
  void SetBeforeStatement(std::function<absl::Status()> hook) { before_ = std::move(hook); }

  // Session settings for later statements on this connection.
  absl::Status SetApplicationName(absl::string_view name);

  bool ok() const;           // the connection is usable
  pg_conn* raw() { return conn_; }

 private:
  explicit Connection(pg_conn* conn) : conn_(conn) {}
  // Ends the pipeline: reads the deferred results, then (when `own`) the
  // result of the statement sent after them; the first failure, or OK.
  absl::Status SyncPipeline(pg_result** own);
  absl::StatusOr<Result> SyncWithOwn();
  // The hook (SetBeforeStatement), unless it is running.
  absl::Status BeforeStatement();
  // Flushes at kMaxDeferred and enters pipeline mode: a deferred statement
  // may be sent now.
  absl::Status BeginDeferred();
  // Sends a prepared statement (preparing it first on this connection)
  // without reading its result; `what` names its errors.
  absl::Status SendPrepared(const std::string& name, absl::string_view sql,
                            const Params& params, const std::string& what);
  // Transaction's: the deferred results read and ignored, ROLLBACK, no hook.
  void Rollback();
  friend class Transaction;
  struct Deferred {
    std::string what;
    std::string prepared;  // a PQsendPrepare of this statement name, or ""
  };
  pg_conn* conn_;
  std::unordered_set<std::string> prepared_;  // statement names on the server
  std::vector<Deferred> deferred_;  // sent, results not read yet (in order)
  int64_t statements_ = 0;
  std::function<absl::Status()> before_;
  bool in_before_ = false;
};

// BEGIN on construction (deferred: it travels with the first statement);
// ROLLBACK in the destructor unless committed.
class Transaction {
 public:
  static absl::StatusOr<std::unique_ptr<Transaction>> Begin(
      Connection* conn, absl::string_view options = "");
  ~Transaction();
  absl::Status Commit();
  Connection* conn() { return conn_; }

 private:
  explicit Transaction(Connection* conn) : conn_(conn) {}
  Connection* conn_;
  bool done_ = false;
};

// Rows in COPY's text format, for Connection::CopyIn: fields separated by
// tabs, `\N` for NULL, backslash, tab, newline and carriage return escaped.
class CopyText {
 public:
  CopyText& Field(absl::string_view value);
  CopyText& Field(int64_t value);
  CopyText& Null();
  void EndRow();
  const std::string& data() const { return data_; }

 private:
  void Separate();
  std::string data_;
  bool row_open_ = false;
};

// A text[] literal ("{\"a\",\"b \\\"c\\\"\"}") for a parameter compared with
// `= ANY($n::text[])`: every element quoted, `"` and `\` escaped.
std::string TextArray(const std::vector<std::string>& items);
// A bigint[] literal ("{1,2,3}").
std::string Int64Array(const std::vector<int64_t>& items);
// A text[] literal with NULL elements (nullopt), for a parameter unnest()ed into
// rows whose column may be NULL.
std::string NullableTextArray(const std::vector<std::optional<std::string>>& items);
// "\"tabSales Invoice\"": doubles embedded quotes.
std::string QuoteIdentifier(absl::string_view identifier);
// "public.\"tabX\"" style for schema-qualified names.
std::string QuoteQualified(absl::string_view schema, absl::string_view name);
// The SQLSTATE carried by a status from this layer, or "" if none.
std::string SqlStateOf(const absl::Status& status);

}  // namespace eventstream::pg

#endif  // EVENTSTREAM_LIBSYNC_BASE_PG_H_
