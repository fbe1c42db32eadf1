#include "libsync/base/pg.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "libsync/base/input_rules.h"
#include "libsync/base/status_macros.h"
#include "spdlog/spdlog.h"

namespace eventstream::pg {
namespace {

constexpr char kSqlStatePayload[] = "type.eventstream/sqlstate";

constexpr Query kSetApplicationName{
    "set_application_name", "SELECT set_config('application_name', $1, false)"};

// Maps SQLSTATE classes onto the closest absl code so callers can branch on
// the code and users still see the exact SQLSTATE in the message.
absl::StatusCode CodeForSqlState(absl::string_view state) {
  if (state.size() < 2) return absl::StatusCode::kInternal;
  absl::string_view cls = state.substr(0, 2);
  if (state == "23505") return absl::StatusCode::kAlreadyExists;
  if (cls == "23" || cls == "22") return absl::StatusCode::kInvalidArgument;
  if (state == "42P01" || state == "42703" || state == "42883")
    return absl::StatusCode::kNotFound;
  if (cls == "42") return absl::StatusCode::kInvalidArgument;
  if (cls == "40") return absl::StatusCode::kAborted;  // serialization, deadlock
  if (cls == "08" || cls == "57") return absl::StatusCode::kUnavailable;
  if (cls == "28") return absl::StatusCode::kPermissionDenied;
  if (cls == "P0") return absl::StatusCode::kFailedPrecondition;  // RAISE
  return absl::StatusCode::kInternal;
}

absl::Status ErrorFrom(pg_conn* conn, PGresult* res) {
  const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  std::string message =
      res ? PQresultErrorMessage(res) : (conn ? PQerrorMessage(conn) : "");
  if (message.empty() && conn) message = PQerrorMessage(conn);
  message = std::string(absl::StripTrailingAsciiWhitespace(message));
  if (state == nullptr) {
    // No server answer at all: the connection is gone.
    return absl::UnavailableError(absl::StrCat("PostgreSQL: ", message));
  }
  absl::Status status(CodeForSqlState(state),
                      absl::StrCat("SQLSTATE ", state, ": ", message));
  status.SetPayload(kSqlStatePayload, absl::Cord(state));
  return status;
}

absl::StatusOr<Result> Check(pg_conn* conn, PGresult* res) {
  Result result(res);
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return result;
  return ErrorFrom(conn, res);
}

// libpq takes parameters as C strings and would cut one at a NUL byte,
// matching a different value: refuse such a value instead.
absl::Status CheckParams(const Params& params) {
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].value()) continue;
    if (std::string problem = NulProblem(*params[i].value()); !problem.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("a value (query parameter $", i + 1,
                                                     ") ", problem));
    }
  }
  return absl::OkStatus();
}

// libpq wants parallel arrays of C strings.
struct ParamArrays {
  std::vector<const char*> values;
  explicit ParamArrays(const Params& params) {
    values.reserve(params.size());
    for (const Param& p : params)
      values.push_back(p.value() ? p.value()->c_str() : nullptr);
  }
};

}  // namespace

// ---- Result ----------------------------------------------------------------

Result::Result(pg_result* res) : res_(res) {}
Result::Result(Result&& other) noexcept : res_(other.res_) { other.res_ = nullptr; }
Result& Result::operator=(Result&& other) noexcept {
  if (this != &other) {
    if (res_) PQclear(res_);
    res_ = other.res_;
    other.res_ = nullptr;
  }
  return *this;
}
Result::~Result() {
  if (res_) PQclear(res_);
}
int Result::rows() const { return res_ ? PQntuples(res_) : 0; }
int Result::columns() const { return res_ ? PQnfields(res_) : 0; }
absl::string_view Result::column_name(int col) const { return PQfname(res_, col); }
int Result::ColumnIndex(absl::string_view name) const {
  for (int c = 0; c < columns(); ++c)
    if (column_name(c) == name) return c;
  return -1;
}
bool Result::IsNull(int row, int col) const { return PQgetisnull(res_, row, col); }
absl::string_view Result::Get(int row, int col) const {
  return absl::string_view(PQgetvalue(res_, row, col), PQgetlength(res_, row, col));
}
int Result::RequireColumn(const char* column) const {
  int col = ColumnIndex(column);
  if (col < 0) {
    spdlog::critical("query result has no column \"{}\"", column);
    std::abort();
  }
  return col;
}
bool Result::IsNull(int row, const char* column) const {
  return IsNull(row, RequireColumn(column));
}
absl::string_view Result::Get(int row, const char* column) const {
  return Get(row, RequireColumn(column));
}
std::optional<std::string> Result::GetOptional(int row, const char* column) const {
  return GetOptional(row, RequireColumn(column));
}
int64_t Result::GetInt64(int row, const char* column) const {
  return GetInt64(row, RequireColumn(column));
}
bool Result::GetBool(int row, const char* column) const {
  return GetBool(row, RequireColumn(column));
}
std::optional<std::string> Result::GetOptional(int row, int col) const {
  if (IsNull(row, col)) return std::nullopt;
  return std::string(Get(row, col));
}
int64_t Result::GetInt64(int row, int col) const {
  if (IsNull(row, col)) return 0;
  return std::strtoll(PQgetvalue(res_, row, col), nullptr, 10);
}
bool Result::GetBool(int row, int col) const {
  return !IsNull(row, col) && PQgetvalue(res_, row, col)[0] == 't';
}
pg_result* Result::raw() const { return res_; }
int64_t Result::affected_rows() const {
  const char* n = res_ ? PQcmdTuples(res_) : "";
  return *n ? std::strtoll(n, nullptr, 10) : 0;
}

// ---- Connection ------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(const std::string& url) {
  pg_conn* conn = PQconnectdb(url.c_str());
  if (conn == nullptr) return absl::ResourceExhaustedError("PostgreSQL: out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    // The URL may carry a password: name only what libpq said.
    std::string message(absl::StripTrailingAsciiWhitespace(PQerrorMessage(conn)));
    PQfinish(conn);
    return absl::UnavailableError(
        absl::StrCat("cannot connect to PostgreSQL: ", message));
  }
  auto result = std::unique_ptr<Connection>(new Connection(conn));
  // Quiet NOTICEs (e.g. "relation already exists, skipping") instead of
  // letting libpq print them on stderr.
  PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
  return result;
}

Connection::~Connection() {
  if (conn_) PQfinish(conn_);
}

bool Connection::ok() const { return conn_ && PQstatus(conn_) == CONNECTION_OK; }

absl::Status Connection::BeforeStatement() {
  if (!before_ || in_before_) return absl::OkStatus();
  in_before_ = true;
  absl::Status s = before_();
  in_before_ = false;
  return s;
}

absl::StatusOr<Result> Connection::Exec(absl::string_view sql, const Params& params) {
  RETURN_IF_ERROR(CheckParams(params));
  RETURN_IF_ERROR(BeforeStatement());
  ++statements_;
  std::string text(sql);
  ParamArrays arrays(params);
  if (!deferred_.empty()) {  // one round trip for the deferred ones and this
    if (PQsendQueryParams(conn_, text.c_str(), static_cast<int>(params.size()), nullptr,
                          arrays.values.data(), nullptr, nullptr, 0) != 1) {
      absl::Status e = ErrorFrom(conn_, nullptr);
      (void)FlushDeferred();
      return e;
    }
    return SyncWithOwn();
  }
  return Check(conn_, PQexecParams(conn_, text.c_str(), static_cast<int>(params.size()),
                                   nullptr, arrays.values.data(), nullptr, nullptr, 0));
}

absl::StatusOr<Result> Connection::ExecPrepared(const std::string& name,
                                                absl::string_view sql,
                                                const Params& params) {
  RETURN_IF_ERROR(CheckParams(params));
  RETURN_IF_ERROR(BeforeStatement());
  if (!deferred_.empty()) {  // one round trip for the deferred ones and this
    RETURN_IF_ERROR(BeginDeferred());
    RETURN_IF_ERROR(SendPrepared(name, sql, params, name));
    ++statements_;
    return SyncWithOwn();
  }
  if (prepared_.count(name) == 0) {
    std::string text(sql);
    PGresult* prepared = PQprepare(conn_, name.c_str(), text.c_str(),
                                   static_cast<int>(params.size()), nullptr);
    RETURN_IF_ERROR(Check(conn_, prepared).status());
    prepared_.insert(name);
  }
  ++statements_;
  ParamArrays arrays(params);
  return Check(conn_, PQexecPrepared(conn_, name.c_str(), static_cast<int>(params.size()),
                                     arrays.values.data(), nullptr, nullptr, 0));
}

namespace {

// The error with the query's name in front; payloads (the SQLSTATE that
// SqlStateOf reads) are kept.
absl::StatusOr<Result> Named(const Query& query, absl::StatusOr<Result> result) {
  if (result.ok()) return result;
  absl::Status named(result.status().code(),
                     absl::StrCat(query.name, ": ", result.status().message()));
  result.status().ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    named.SetPayload(url, payload);
  });
  return named;
}

}  // namespace

absl::StatusOr<Result> Connection::Exec(const Query& query, const Params& params) {
  return Named(query, Exec(absl::string_view(query.sql), params));
}

absl::StatusOr<Result> Connection::ExecPrepared(const Query& query, const Params& params) {
  return Named(query, ExecPrepared(std::string(query.name), query.sql, params));
}

absl::Status Connection::ExecScript(absl::string_view sql) {
  RETURN_IF_ERROR(BeforeStatement());
  RETURN_IF_ERROR(FlushDeferred());
  std::string text(sql);
  PGresult* res = PQexec(conn_, text.c_str());
  auto result = Check(conn_, res);
  // PQexec returns only the last result; drain nothing more (sync API).
  return result.status();
}

absl::StatusOr<int64_t> Connection::CopyIn(absl::string_view copy_sql,
                                           absl::string_view data) {
  RETURN_IF_ERROR(BeforeStatement());
  RETURN_IF_ERROR(FlushDeferred());
  std::string text(copy_sql);
  PGresult* started = PQexec(conn_, text.c_str());
  if (PQresultStatus(started) != PGRES_COPY_IN) {
    auto r = Check(conn_, started);
    return r.ok() ? absl::InternalError(absl::StrCat(
                        "not a COPY FROM STDIN statement: ", copy_sql))
                  : r.status();
  }
  PQclear(started);
  // Blocking mode: PQputCopyData sends (in chunks) or fails.
  constexpr size_t kChunk = 1 << 20;
  const char* error = nullptr;
  for (size_t at = 0; at < data.size() && error == nullptr; at += kChunk) {
    size_t n = std::min(kChunk, data.size() - at);
    if (PQputCopyData(conn_, data.data() + at, static_cast<int>(n)) != 1) {
      error = "sending COPY data failed";
    }
  }
  if (PQputCopyEnd(conn_, error) != 1) {
    return absl::UnavailableError(
        absl::StrCat("PostgreSQL: ending COPY: ", PQerrorMessage(conn_)));
  }
  absl::StatusOr<int64_t> copied = int64_t{0};
  // The COPY's result, then NULL (drain everything so the connection is
  // ready for the next statement).
  while (PGresult* res = PQgetResult(conn_)) {
    if (copied.ok()) {
      auto r = Check(conn_, res);
      if (!r.ok()) {
        copied = r.status();
      } else {
        int64_t n = 0;
        (void)absl::SimpleAtoi(PQcmdTuples(r->raw()), &n);
        copied = n;
      }
    } else {
      PQclear(res);
    }
  }
  return copied;
}

// At most this many statements wait for their results: their answers then
// stay far below the socket buffers, so neither side blocks writing while
// the other is not reading (libpq's blocking mode is used throughout).
constexpr size_t kMaxDeferred = 256;

absl::Status Connection::BeginDeferred() {
  if (deferred_.size() >= kMaxDeferred) {
    RETURN_IF_ERROR(FlushDeferred());
  }
  if (deferred_.empty() && PQpipelineStatus(conn_) == PQ_PIPELINE_OFF &&
      PQenterPipelineMode(conn_) != 1) {
    return ErrorFrom(conn_, nullptr);
  }
  return absl::OkStatus();
}

absl::Status Connection::SendPrepared(const std::string& name, absl::string_view sql,
                                      const Params& params, const std::string& what) {
  if (prepared_.count(name) == 0) {
    std::string text(sql);
    if (PQsendPrepare(conn_, name.c_str(), text.c_str(), static_cast<int>(params.size()),
                      nullptr) != 1) {
      return ErrorFrom(conn_, nullptr);
    }
    prepared_.insert(name);
    deferred_.push_back({absl::StrCat(what, " (preparing)"), name});
  }
  ParamArrays arrays(params);
  if (PQsendQueryPrepared(conn_, name.c_str(), static_cast<int>(params.size()),
                          arrays.values.data(), nullptr, nullptr, 0) != 1) {
    return ErrorFrom(conn_, nullptr);
  }
  return absl::OkStatus();
}

absl::Status Connection::ExecPreparedDeferred(const std::string& name, absl::string_view sql,
                                              const Params& params, std::string what) {
  RETURN_IF_ERROR(CheckParams(params));
  RETURN_IF_ERROR(BeforeStatement());
  RETURN_IF_ERROR(BeginDeferred());
  RETURN_IF_ERROR(SendPrepared(name, sql, params, what));
  deferred_.push_back({std::move(what), ""});
  return absl::OkStatus();
}

absl::Status Connection::ExecPreparedDeferred(const Query& query, const Params& params) {
  return ExecPreparedDeferred(std::string(query.name), query.sql, params,
                              std::string(query.name));
}

absl::Status Connection::ExecDeferred(absl::string_view sql, std::string what) {
  RETURN_IF_ERROR(BeforeStatement());
  RETURN_IF_ERROR(BeginDeferred());
  std::string text(sql);
  if (PQsendQueryParams(conn_, text.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) != 1) {
    return ErrorFrom(conn_, nullptr);
  }
  deferred_.push_back({std::move(what), ""});
  return absl::OkStatus();
}

absl::StatusOr<Result> Connection::SyncWithOwn() {
  PGresult* own = nullptr;
  absl::Status first = SyncPipeline(&own);
  if (!first.ok()) {
    if (own != nullptr) PQclear(own);
    return first;
  }
  return Check(conn_, own);
}

absl::Status Connection::FlushDeferred() {
  RETURN_IF_ERROR(BeforeStatement());
  if (PQpipelineStatus(conn_) == PQ_PIPELINE_OFF) return absl::OkStatus();
  return SyncPipeline(nullptr);
}

absl::Status Connection::SyncPipeline(pg_result** own) {
  absl::Status first;
  auto note = [&first](absl::Status s) {
    if (first.ok() && !s.ok()) first = std::move(s);
  };
  std::vector<Deferred> pending = std::move(deferred_);
  deferred_.clear();
  if (PQpipelineSync(conn_) != 1) note(ErrorFrom(conn_, nullptr));
  // Each statement's results end with a NULL; the sync point follows.
  for (const Deferred& d : pending) {
    while (PGresult* res = PQgetResult(conn_)) {
      ExecStatusType st = PQresultStatus(res);
      if (st == PGRES_FATAL_ERROR) {
        absl::Status e = ErrorFrom(conn_, res);
        absl::Status named(e.code(), absl::StrCat(d.what, ": ", e.message()));
        if (auto state = e.GetPayload(kSqlStatePayload)) named.SetPayload(kSqlStatePayload, *state);
        note(std::move(named));
        if (!d.prepared.empty()) {
          prepared_.erase(d.prepared);
        }
      } else if (st == PGRES_PIPELINE_ABORTED && !d.prepared.empty()) {
        prepared_.erase(d.prepared);
      }
      PQclear(res);
    }
  }
  if (own != nullptr) {  // the statement sent last, after the deferred ones
    while (PGresult* res = PQgetResult(conn_)) {
      if (*own == nullptr) {
        *own = res;
      } else {
        PQclear(res);
      }
    }
  }
  bool synced = false;
  for (int i = 0; i < 4 && !synced; ++i) {  // PGRES_PIPELINE_SYNC, maybe after a NULL
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) {
      if (PQstatus(conn_) == CONNECTION_BAD) break;
      continue;
    }
    synced = PQresultStatus(res) == PGRES_PIPELINE_SYNC;
    PQclear(res);
  }
  if (!synced || PQexitPipelineMode(conn_) != 1) {
    note(absl::UnavailableError(absl::StrCat("PostgreSQL: pipeline did not end cleanly: ",
                                             PQerrorMessage(conn_))));
  }
  return first;
}

absl::Status Connection::SetApplicationName(absl::string_view name) {
  return Exec(kSetApplicationName, {name}).status();
}

// ---- Transaction -----------------------------------------------------------

absl::StatusOr<std::unique_ptr<Transaction>> Transaction::Begin(
    Connection* conn, absl::string_view options) {
  // Deferred: it travels with the transaction's first statement.
  RETURN_IF_ERROR(conn->ExecDeferred(absl::StrCat("BEGIN ", options), "BEGIN"));
  return std::unique_ptr<Transaction>(new Transaction(conn));
}

void Connection::Rollback() {
  // A deferred failure is why we roll back; what the hook holds back is
  // rolled back unsent.
  if (PQpipelineStatus(conn_) != PQ_PIPELINE_OFF) (void)SyncPipeline(nullptr);
  PQclear(PQexec(conn_, "ROLLBACK"));
}

Transaction::~Transaction() {
  if (!done_) conn_->Rollback();
}

absl::Status Transaction::Commit() {
  done_ = true;
  // With deferred writes pending, COMMIT travels with them (one round trip);
  // if one of them failed, COMMIT did not run and the transaction is rolled
  // back here.
  absl::StatusOr<Result> committed = conn_->Exec("COMMIT");
  if (!committed.ok()) {
    conn_->Rollback();
    return committed.status();
  }
  // COMMIT of a transaction that already failed "succeeds" with the tag
  // ROLLBACK: report it, or a caller would believe its writes landed.
  if (std::strcmp(PQcmdStatus(committed->raw()), "ROLLBACK") == 0)
    return absl::AbortedError("transaction was rolled back: an earlier statement failed");
  return absl::OkStatus();
}

// ---- names -----------------------------------------------------------------

void CopyText::Separate() {
  if (row_open_) data_.push_back('\t');
  row_open_ = true;
}

CopyText& CopyText::Field(absl::string_view value) {
  Separate();
  for (char c : value) {
    switch (c) {
      case '\\': data_ += "\\\\"; break;
      case '\t': data_ += "\\t"; break;
      case '\n': data_ += "\\n"; break;
      case '\r': data_ += "\\r"; break;
      default: data_.push_back(c);
    }
  }
  return *this;
}

CopyText& CopyText::Field(int64_t value) {
  Separate();
  absl::StrAppend(&data_, value);
  return *this;
}

CopyText& CopyText::Null() {
  Separate();
  data_ += "\\N";
  return *this;
}

void CopyText::EndRow() {
  data_.push_back('\n');
  row_open_ = false;
}

namespace {
// A text[] literal's element, quoted (`"` and `\` escaped); an absl::StrJoin
// formatter.
void AppendQuotedElement(std::string* out, absl::string_view item) {
  out->push_back('"');
  for (char c : item) {
    if (c == '"' || c == '\\') out->push_back('\\');
    out->push_back(c);
  }
  out->push_back('"');
}
}  // namespace

std::string TextArray(const std::vector<std::string>& items) {
  return absl::StrCat("{", absl::StrJoin(items, ",", AppendQuotedElement), "}");
}

std::string Int64Array(const std::vector<int64_t>& items) {
  return absl::StrCat("{", absl::StrJoin(items, ","), "}");
}

std::string NullableTextArray(const std::vector<std::optional<std::string>>& items) {
  return absl::StrCat(
      "{",
      absl::StrJoin(items, ",",
                    [](std::string* out, const std::optional<std::string>& item) {
                      if (item) {
                        AppendQuotedElement(out, *item);
                      } else {
                        out->append("NULL");
                      }
                    }),
      "}");
}

std::string QuoteIdentifier(absl::string_view identifier) {
  std::string out;
  out.reserve(identifier.size() + 2);
  out.push_back('"');
  for (char c : identifier) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string QuoteQualified(absl::string_view schema, absl::string_view name) {
  return absl::StrCat(QuoteIdentifier(schema), ".", QuoteIdentifier(name));
}

std::string SqlStateOf(const absl::Status& status) {
  auto payload = status.GetPayload(kSqlStatePayload);
  return payload ? std::string(*payload) : std::string();
}

}  // namespace eventstream::pg
