#include "services/producer/assembler.h"

#include <algorithm>
#include <chrono>
#include <map>

#include "absl/strings/escaping.h"
#include "libsync/base/status_macros.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

// What a log line may carry of a name: control characters escaped.
std::string Printable(const std::string& s) { return absl::CHexEscape(s); }

}  // namespace

Assembler::Assembler(DocTypeRegistry registry) : Assembler(std::move(registry), Options()) {}

Assembler::Assembler(DocTypeRegistry registry, Options options)
    : registry_(std::move(registry)), options_(std::move(options)), store_(&registry_) {}

absl::StatusOr<PassOutcome> Assembler::AssemblePicked(pg::Connection* conn,
                                                      std::vector<TxRows>* picked) const {
  PassOutcome pass;
  for (TxRows& t : *picked) {
    if (std::optional<std::vector<LogEntry>> whole = BuildWhole(registry_, t)) {
      pass.Add(t, TxOutcome{std::move(*whole), {}});
      continue;
    }
    std::map<int64_t, RowKeys> reread_keys;
    RETURN_IF_ERROR(store_.Reread(conn, &t, &reread_keys));
    pass.Add(t, BuildByDocument(registry_, t, reread_keys));
  }
  return pass;
}

absl::StatusOr<int> Assembler::AssembleOnce(pg::Connection* conn, int64_t* last_seq,
                                            bool* more, int64_t* consumed_rows) const {
  if (more != nullptr) *more = false;
  if (consumed_rows != nullptr) *consumed_rows = 0;
  // Cheap idle check outside any transaction.
  ASSIGN_OR_RETURN(bool waiting, RawChangeStore::AnyRaw(conn));
  if (!waiting) return 0;

  // READ COMMITTED on purpose: each statement after the lock sees what the
  // previous lock holder committed.
  ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn));
  ASSIGN_OR_RETURN(bool locked, RawChangeStore::TryLock(conn));
  if (!locked) return 0;  // another assembler is at work

  ASSIGN_OR_RETURN(WindowPlan window, store_.ReadWindow(conn, std::max(1, options_.max_raw_rows)));
  if (window.picked.empty()) return 0;
  ASSIGN_OR_RETURN(PassOutcome pass, AssemblePicked(conn, &window.picked));
  ASSIGN_OR_RETURN(RawChangeStore::Logged logged,
                   WritePass(conn, &pass,
                             [this](pg::Connection* c, std::vector<CaptureFailure>* failures) {
                               return store_.RecordFailures(c, failures);
                             }));
  const int64_t end_seq = logged.end_seq;
  ASSIGN_OR_RETURN(const int64_t consumed, RawChangeStore::Consume(conn, pass.txids));
  // Dying before this COMMIT leaves everything as it was (see header): the
  // next pass assembles, records and consumes the same rows again.
  RETURN_IF_ERROR(tx->Commit());

  if (more != nullptr) *more = window.more;
  if (consumed_rows != nullptr) *consumed_rows = consumed;
  ReportPass(options_, pass, std::move(logged));
  if (!pass.entries.empty() && last_seq != nullptr) *last_seq = end_seq;
  return static_cast<int>(pass.entries.size());
}

absl::StatusOr<RawChangeStore::Logged> WritePass(pg::Connection* conn, PassOutcome* pass,
                                                 const FailureRecorder& record_failures) {
  RawChangeStore::Logged logged;
  if (!pass->entries.empty()) {
    ASSIGN_OR_RETURN(logged, RawChangeStore::AppendEntries(conn, &pass->entries));
  }
  if (!pass->failures.empty()) RETURN_IF_ERROR(record_failures(conn, &pass->failures));
  return logged;
}

void ReportPass(const Assembler::Options& options, const PassOutcome& pass,
                RawChangeStore::Logged logged) {
  const int64_t end_seq = logged.end_seq;
  for (const CaptureFailure& f : pass.failures) {
    spdlog::error(
        "capture error: document \"{}\" of DocType \"{}\" in transaction {} cannot become "
        "an entry: {}; its {} raw rows are kept as es_producer.capture_error id {}, and "
        "capture goes on",
        Printable(f.docname), Printable(f.doctype), f.txid, f.error, f.raw_ids.size(),
        f.record_id);
    if (options.on_failed) options.on_failed(f);
  }
  if (pass.entries.empty()) return;
  if (options.on_committed) {
    for (const auto& [key, n] : CountByType(pass.entries)) {
      options.on_committed(key.first, key.second, n);
    }
  }
  if (options.on_logged) options.on_logged(logged.prev_end, std::move(logged.records));
  spdlog::debug("logged {} captured rows of {} transactions as update_log seq {}..{}",
                pass.raw_rows, pass.txids.size(),
                end_seq - static_cast<int64_t>(pass.entries.size()) + 1, end_seq);
}

AssemblerLoop::AssemblerLoop(const Assembler* assembler, Options options,
                             std::function<void(int64_t)> on_entries,
                             const InitialSyncWriter* initial_sync)
    : assembler_(assembler),
      options_(std::move(options)),
      on_entries_(std::move(on_entries)),
      initial_sync_(initial_sync) {}

bool AssemblerLoop::SyncChunk(pg::Connection* conn, std::string* last_error) {
  if (initial_sync_ == nullptr) return false;
  absl::StatusOr<InitialSyncWriter::Chunk> chunk = initial_sync_->WriteOne(conn);
  if (!chunk.ok()) {
    // Once per streak of failures (their texts differ in seqs and txids).
    if (last_error->empty()) {
      spdlog::warn("initial sync: {}; retrying after each pass (logged again once it has "
                   "worked)",
                   std::string(chunk.status().message()));
    }
    *last_error = std::string(chunk.status().message());
    return false;
  }
  if (!last_error->empty()) spdlog::info("initial sync: working again");
  last_error->clear();
  if (chunk->written > 0 && on_entries_) on_entries_(chunk->last_seq);
  return chunk->more;
}

void AssemblerLoop::VacuumQueue(pg::Connection* conn, QueueVacuumPlanner* vacuum) {
  VacuumQueueIfDue(
      vacuum, [this] { return sleeper_.Now(); }, [conn] { return RawChangeStore::Vacuum(conn); },
      {"assembler", "raw_change"});
}

AssemblerLoop::~AssemblerLoop() { Stop(); }

void AssemblerLoop::Start() {
  absl::MutexLock lock(&thread_mu_);
  if (thread_.joinable()) return;
  sleeper_.Resume();
  thread_ = std::thread([this] { Run(); });
}

void AssemblerLoop::Stop() {
  sleeper_.Stop();
  absl::MutexLock lock(&thread_mu_);
  if (thread_.joinable()) thread_.join();
}

void AssemblerLoop::Wake() { sleeper_.Wake(); }

BackoffPolicy AssemblerLoop::RetryPolicy(const Options& options) {
  return {absl::Milliseconds(50), absl::Milliseconds(options.max_backoff_ms), 2.0, 0.0};
}

void AssemblerLoop::Run() {
  spdlog::info("assembler loop started (idle poll {} ms)",
               options_.idle_poll_ms);
  std::unique_ptr<pg::Connection> conn;
  int poll_ms = options_.idle_poll_ms;
  std::string sync_error;  // the last initial sync failure logged
  QueueVacuumPlanner vacuum(options_.queue_vacuum);
  // One pass: the wait before the next (zero while there is backlog), or
  // the error that makes RunLoop back off.
  auto pass = [&]() -> absl::StatusOr<absl::Duration> {
    if (conn == nullptr || !conn->ok()) {
      conn.reset();
      ASSIGN_OR_RETURN(conn, pg::Connection::Open(options_.database_url));
      RETURN_IF_ERROR(conn->SetApplicationName("eventstream-assembler"));
    }
    bool more = false;
    int64_t last_seq = 0, consumed = 0;
    absl::StatusOr<int> written =
        assembler_->AssembleOnce(conn.get(), &last_seq, &more, &consumed);
    if (!written.ok()) {
      if (!conn->ok()) conn.reset();
      return written.status();
    }
    vacuum.Consumed(consumed);
    if (vacuum.Due(sleeper_.Now())) VacuumQueue(conn.get(), &vacuum);
    if (*written > 0 && on_entries_) on_entries_(last_seq);
    if (SyncChunk(conn.get(), &sync_error)) more = true;
    if (!conn->ok()) conn.reset();
    if (more) return absl::ZeroDuration();
    poll_ms = *written > 0
                  ? std::max(1, std::min(options_.busy_poll_ms, options_.idle_poll_ms))
                  : std::min(options_.idle_poll_ms, poll_ms * 2);
    return absl::Milliseconds(poll_ms);
  };
  Backoff backoff(RetryPolicy(options_));
  RunLoop(sleeper_, backoff, pass,
          {[](const absl::Status& status, int failures) {
             if (failures == 1) {
               spdlog::error("assembler: {}; retrying with backoff",
                             std::string(status.message()));
             }
           },
           [](int) { spdlog::info("assembler: recovered"); }});
  spdlog::info("assembler loop stopped");
}

}  // namespace eventstream
