#include "services/producer/wal_capture.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_join.h"
#include "libsync/base/status_macros.h"
#include "libsync/wal/pgoutput.h"
#include "libsync/wal/wal_capture_plan.h"
#include "services/producer/raw_change_store.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

// The transactions of `txs` not logged before, as the planner's rows (ids
// ascending across the batch; transactions without captured rows left out).
std::vector<TxRows> PickRows(const DocTypeRegistry& registry, const wal::CapturedTables& captured,
                             const std::vector<wal::WalTransaction>& txs, wal::Lsn logged) {
  std::vector<TxRows> picked;
  int64_t next_id = 1;
  for (const wal::WalTransaction& t : txs) {
    if (wal::AlreadyLogged(t, logged)) continue;
    TxRows rows = wal::ToTxRows(registry, captured, t, next_id);
    if (rows.rows.empty()) continue;
    next_id = rows.last_id + 1;
    picked.push_back(std::move(rows));
  }
  return picked;
}

}  // namespace

WalCapture::WalCapture(const DocTypeRegistry* registry, WalCaptureStore store,
                       Assembler::Options reports)
    : registry_(registry), store_(std::move(store)), reports_(std::move(reports)) {}

absl::StatusOr<int> WalCapture::LogTransactions(pg::Connection* conn,
                                                const std::vector<wal::WalTransaction>& txs,
                                                int64_t* last_seq) const {
  if (txs.empty()) return 0;
  ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn));
  // Seqs in commit order: the assembler's lock, as its passes and initial
  // sync chunks take it.
  RETURN_IF_ERROR(RawChangeStore::Lock(conn));
  ASSIGN_OR_RETURN(const wal::Lsn logged, store_.LoggedEnd(conn));
  ASSIGN_OR_RETURN(const std::set<std::string> tables, store_.PublishedTables(conn));
  std::vector<TxRows> picked =
      PickRows(*registry_, wal::CapturedFrom(*registry_, tables), txs, logged);
  PassOutcome pass;
  std::map<int64_t, const RawChange*> by_id;
  for (const TxRows& t : picked) {
    for (const RawChange& c : t.rows) by_id[c.id] = &c;
    std::optional<std::vector<LogEntry>> whole = BuildWhole(*registry_, t);
    pass.Add(t, whole ? TxOutcome{std::move(*whole), {}} : BuildByDocument(*registry_, t, {}));
  }
  ASSIGN_OR_RETURN(RawChangeStore::Logged written,
                   WritePass(conn, &pass,
                             [&by_id](pg::Connection* c, std::vector<CaptureFailure>* failures) {
                               return WalCaptureStore::RecordFailures(c, by_id, failures);
                             }));
  const int64_t end_seq = written.end_seq;
  const wal::Lsn end = txs.back().end_lsn;
  if (end > logged) RETURN_IF_ERROR(store_.SaveLoggedEnd(conn, end));
  // Dying before this COMMIT writes nothing: the slot was not confirmed, so
  // the server sends these transactions again. Dying after it, before the
  // caller confirms: they come again and are skipped (at or below `end`).
  RETURN_IF_ERROR(tx->Commit());
  ReportPass(reports_, pass, std::move(written));
  if (!pass.entries.empty() && last_seq != nullptr) *last_seq = end_seq;
  return static_cast<int>(pass.entries.size());
}

WalCaptureLoop::WalCaptureLoop(const WalCapture* capture, Options options,
                               std::function<void(int64_t)> on_entries)
    : capture_(capture), options_(std::move(options)), on_entries_(std::move(on_entries)) {}

WalCaptureLoop::~WalCaptureLoop() { Stop(); }

void WalCaptureLoop::Start() {
  absl::MutexLock lock(&thread_mu_);
  if (thread_.joinable()) return;
  sleeper_.Resume();
  thread_ = std::thread([this] { Run(); });
}

void WalCaptureLoop::Stop() {
  sleeper_.Stop();
  absl::MutexLock lock(&thread_mu_);
  if (thread_.joinable()) thread_.join();
}

bool WalCaptureLoop::Streaming() const {
  absl::MutexLock lock(&watch_mu_);
  return streaming_;
}

bool WalCaptureLoop::WaitCaptured(uint64_t lsn, absl::Duration timeout) const {
  absl::MutexLock lock(&watch_mu_);
  auto done = [this, lsn]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(watch_mu_) {
    return !streaming_ || captured_ >= lsn;
  };
  watch_mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return streaming_ && captured_ >= lsn;
}

void WalCaptureLoop::Captured(wal::Lsn lsn, bool streaming) {
  absl::MutexLock lock(&watch_mu_);
  captured_ = std::max(captured_, lsn);
  streaming_ = streaming;
}

absl::Status WalCaptureLoop::Open(Stream* s) {
  if (s->conn == nullptr || !s->conn->ok()) {
    s->conn.reset();
    ASSIGN_OR_RETURN(s->conn, pg::Connection::Open(options_.database_url));
    RETURN_IF_ERROR(s->conn->SetApplicationName("eventstream-wal-capture"));
  }
  if (s->stream != nullptr) return absl::OkStatus();
  const WalCaptureStore& store = capture_->store();
  ASSIGN_OR_RETURN(s->logged, store.LoggedEnd(s->conn.get()));
  wal::ReplicationOptions o;
  o.conninfo = options_.database_url;
  o.slot = store.slot();
  o.status_interval = options_.status_interval;
  ASSIGN_OR_RETURN(o.publications, store.Publications(s->conn.get()));
  // From the slot's confirmed position: every transaction not confirmed
  // comes again, whole.
  ASSIGN_OR_RETURN(s->stream, wal::ReplicationStream::Start(o));
  s->builder.Reset();
  s->waiting.clear();
  s->waiting_rows = 0;
  Captured(s->logged);
  spdlog::info("WAL capture streaming from slot {} (publications: {}; last logged end {})",
               o.slot, absl::StrJoin(o.publications, ", "), wal::FormatLsn(s->logged));
  return absl::OkStatus();
}

absl::Status WalCaptureLoop::Take(Stream* s, const wal::WalMessage& message) {
  ASSIGN_OR_RETURN(wal::PgOutputMessage decoded, wal::DecodePgOutput(message.payload));
  ASSIGN_OR_RETURN(std::optional<wal::WalTransaction> tx, s->builder.Add(std::move(decoded)));
  if (!tx) return absl::OkStatus();
  if (s->waiting.empty() && wal::AlreadyLogged(*tx, s->logged)) {
    // Its entries committed before a restart.
    RETURN_IF_ERROR(s->stream->Confirm(tx->end_lsn));
    Captured(tx->end_lsn);
    return absl::OkStatus();
  }
  s->waiting_rows += tx->changes.size();
  s->waiting.push_back(*std::move(tx));
  return absl::OkStatus();
}

absl::Status WalCaptureLoop::AwaitVisible(Stream* s) {
  // Microseconds as a rule: the committing backends are between flushing
  // their commit records and leaving the proc array. Past kVisibleWarnAfter
  // it is more likely a synchronous standby not answering: said once.
  constexpr absl::Duration kVisibleWarnAfter = absl::Seconds(5);
  Backoff backoff({absl::Milliseconds(1), absl::Milliseconds(50), 2.0, 0.0});
  const absl::Time started = sleeper_.Now();
  bool warned = false;
  return PollUntil(sleeper_, backoff, [&]() -> absl::StatusOr<bool> {
    // Nothing is read from the slot meanwhile: the server must still hear
    // from us, or past wal_sender_timeout it ends the stream.
    RETURN_IF_ERROR(s->stream->KeepAlive());
    ASSIGN_OR_RETURN(const XidSnapshot now, WalCaptureStore::CurrentSnapshot(s->conn.get()));
    const bool visible = std::all_of(
        s->waiting.begin(), s->waiting.end(),
        [&](const wal::WalTransaction& t) { return VisibleInSnapshot(now, t.xid); });
    if (!visible && !warned && sleeper_.Now() - started > kVisibleWarnAfter) {
      warned = true;
      spdlog::warn("WAL capture: {} committed transaction(s) (the first: xid {}) are still not "
                   "visible to other sessions after {}; their entries wait (a synchronous "
                   "standby that does not answer holds commits back)",
                   s->waiting.size(), s->waiting.front().xid,
                   absl::FormatDuration(kVisibleWarnAfter));
    }
    return visible;
  });
}

absl::Status WalCaptureLoop::Flush(Stream* s) {
  // Entries only for changes every new snapshot sees: a pull reads the
  // current documents to judge conditions, a consumer fetches links.
  RETURN_IF_ERROR(AwaitVisible(s));
  int64_t last_seq = 0;
  ASSIGN_OR_RETURN(const int written,
                   capture_->LogTransactions(s->conn.get(), s->waiting, &last_seq));
  s->logged = std::max(s->logged, s->waiting.back().end_lsn);
  s->waiting.clear();
  s->waiting_rows = 0;
  // Only now, after COMMIT, may the slot move past them.
  RETURN_IF_ERROR(s->stream->Confirm(s->logged));
  Captured(s->logged);
  if (written > 0 && on_entries_) on_entries_(last_seq);
  return absl::OkStatus();
}

absl::Status WalCaptureLoop::Step(Stream* s) {
  RETURN_IF_ERROR(Open(s));
  const absl::Time until = sleeper_.Now() + options_.idle_wait;
  while (!sleeper_.stopped()) {
    // Waiting transactions are logged as soon as nothing more is at hand.
    const absl::Duration wait = s->waiting.empty()
                                    ? std::max(absl::ZeroDuration(), until - sleeper_.Now())
                                    : absl::ZeroDuration();
    ASSIGN_OR_RETURN(std::optional<wal::WalMessage> message, s->stream->Next(wait));
    if (message) {
      RETURN_IF_ERROR(Take(s, *message));
      if (s->waiting_rows >= static_cast<size_t>(std::max(1, options_.max_batch_rows))) {
        RETURN_IF_ERROR(Flush(s));
      }
      continue;
    }
    if (!s->waiting.empty()) {
      RETURN_IF_ERROR(Flush(s));
      continue;
    }
    // Quiet: the server's position, unless a transaction is half read.
    const wal::Lsn idle = wal::IdleConfirm(s->builder.in_transaction(), 0, s->stream->server_end());
    RETURN_IF_ERROR(s->stream->Confirm(idle));
    Captured(idle);
    return absl::OkStatus();
  }
  return absl::OkStatus();
}

void WalCaptureLoop::Run() {
  spdlog::info("WAL capture loop started (slot {})", capture_->store().slot());
  Stream s;
  Backoff backoff({absl::Milliseconds(50), absl::Milliseconds(options_.max_backoff_ms), 2.0, 0.0});
  RunLoop(
      sleeper_, backoff,
      [&]() -> absl::StatusOr<absl::Duration> {
        absl::Status status = Step(&s);
        if (status.ok()) return absl::ZeroDuration();
        // Start over from the slot's confirmed position.
        Captured(0, false);
        s.stream.reset();
        if (s.conn != nullptr && !s.conn->ok()) s.conn.reset();
        return status;
      },
      {[](const absl::Status& status, int failures) {
         if (failures == 1) {
           spdlog::error("WAL capture: {}; retrying with backoff", std::string(status.message()));
         }
       },
       [](int) { spdlog::info("WAL capture: recovered"); }});
  Captured(0, false);
  spdlog::info("WAL capture loop stopped");
}

}  // namespace eventstream
