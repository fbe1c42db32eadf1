#include "services/producer/log_tail.h"

#include <algorithm>
#include <utility>

#include "libsync/base/status_macros.h"

namespace eventstream {
namespace {

// Entries past $1 in seq order, at most $2; data is read while the stored
// sizes of the entries before stay below $3 (the first always), and the
// read stops at the first entry without it.
constexpr pg::Query kFill{
    "es_tail_fill",
    "SELECT seq, doctype, docname, update_type,"
    "  CASE WHEN read_data THEN data::text END AS data, coalesce(origin, '') AS origin,"
    "  coalesce(for_site, '') AS for_site,"
    "  to_char(created_at AT TIME ZONE 'UTC',"
    "          'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at, read_data"
    " FROM (SELECT *, coalesce(sum(pg_column_size(data))"
    "         OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)"
    "         < $3 AS read_data"
    "       FROM es_producer.update_log WHERE seq > $1 ORDER BY seq LIMIT $2) AS f"
    " ORDER BY seq"};

// Reads of the log one Read may make (a second when the first stopped at
// its limits and the window wants more).
constexpr int kMaxFillsPerRead = 2;

}  // namespace

absl::StatusOr<std::optional<LogTail::Window>> LogTail::Read(pg::Connection* conn,
                                                             int64_t after,
                                                             const WindowAsk& ask,
                                                             int64_t known_end) {
  const int64_t ticket = calls_.fetch_add(1) + 1;
  absl::MutexLock lock(&mu_);
  if (!started_ || after > hi_) Restart(after);
  for (int fills = 0;; ++fills) {
    if (after < lo_) {
      ++stats_.misses;
      return std::nullopt;
    }
    bool reached_end = false;
    Window w = Answer(after, ask, &reached_end);
    const bool current = fresh_for_ >= ticket || (known_end > 0 && hi_ >= known_end);
    const bool log_ends_here = current && !truncated_;
    if (!reached_end || log_ends_here || fills == kMaxFillsPerRead) {
      if (reached_end) w.more = !log_ends_here;
      ++stats_.hits;
      Trim();  // the answer holds its own records
      return w;
    }
    RETURN_IF_ERROR(Fill(conn));
  }
}

LogTail::Window LogTail::Answer(int64_t after, const WindowAsk& ask, bool* reached_end) const {
  auto first = std::upper_bound(
      records_.begin(), records_.end(), after,
      [](int64_t seq, const std::shared_ptr<const LogRecord>& r) { return seq < r->seq; });
  const size_t start = static_cast<size_t>(first - records_.begin());
  const WindowPick pick =
      PickWindow(absl::MakeConstSpan(records_.data() + start, records_.size() - start), ask);
  Window w;
  w.examined = pick.examined;
  w.more = pick.cut;
  *reached_end = !pick.cut;
  for (size_t i : pick.wanted) w.wanted.push_back(records_[start + i]);
  return w;
}

absl::Status LogTail::Fill(pg::Connection* conn) {
  // Every call that took its ticket before this line is served by what
  // this read sees: the statement's snapshot is taken after it.
  const int64_t fresh_for = calls_.load();
  ASSIGN_OR_RETURN(pg::Result rows, conn->ExecPrepared(kFill, {hi_, options_.fill_entries,
                                                               options_.fill_bytes}));
  ++stats_.fills;
  const int c_seq = rows.ColumnIndex("seq"), c_doctype = rows.ColumnIndex("doctype"),
            c_docname = rows.ColumnIndex("docname"), c_type = rows.ColumnIndex("update_type"),
            c_data = rows.ColumnIndex("data"), c_origin = rows.ColumnIndex("origin"),
            c_for = rows.ColumnIndex("for_site"), c_created = rows.ColumnIndex("created_at"),
            c_read = rows.ColumnIndex("read_data");
  truncated_ = rows.rows() >= options_.fill_entries;
  for (int i = 0; i < rows.rows(); ++i) {
    if (!rows.GetBool(i, c_read)) {
      truncated_ = true;
      break;
    }
    auto r = std::make_shared<LogRecord>();
    r->seq = rows.GetInt64(i, c_seq);
    r->doctype = std::string(rows.Get(i, c_doctype));
    r->docname = std::string(rows.Get(i, c_docname));
    r->update_type = std::string(rows.Get(i, c_type));
    r->data = rows.GetOptional(i, c_data);
    r->origin = std::string(rows.Get(i, c_origin));
    r->for_site = std::string(rows.Get(i, c_for));
    r->created_at = std::string(rows.Get(i, c_created));
    bytes_ += r->bytes();
    hi_ = r->seq;
    records_.push_back(std::move(r));
  }
  fresh_for_ = fresh_for;
  return absl::OkStatus();
}

void LogTail::Append(int64_t prev_end, std::vector<std::shared_ptr<const LogRecord>> records) {
  absl::MutexLock lock(&mu_);
  // The tail holds every entry up to hi_; these continue it only if nothing
  // was logged between (prev_end was read under the assembler's lock, after
  // every earlier writer committed).
  if (!started_ || records.empty() || prev_end != hi_ || records.front()->seq <= hi_) return;
  for (auto& r : records) {
    bytes_ += r->bytes();
    hi_ = r->seq;
    records_.push_back(std::move(r));
    ++stats_.appended;
  }
  Trim();
}

void LogTail::Restart(int64_t at) {
  records_.clear();
  started_ = true;
  lo_ = hi_ = at;
  bytes_ = 0;
  fresh_for_ = 0;
  truncated_ = false;
}

void LogTail::Trim() {
  size_t drop = 0;
  while (drop < records_.size() && bytes_ > options_.max_bytes) {
    bytes_ -= records_[drop]->bytes();
    lo_ = records_[drop]->seq;
    ++drop;
  }
  records_.erase(records_.begin(), records_.begin() + static_cast<std::ptrdiff_t>(drop));
}

LogTail::Stats LogTail::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace eventstream
