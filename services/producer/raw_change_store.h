// RawChangeStore: the SQL of one assembler pass (assembler.h), and nothing
// else: reading the trigger capture's raw rows (es_producer.raw_change),
// writing the entries (es_producer.update_log) and the failures
// (es_producer.capture_error), consuming the raw rows. What the rows become
// is decided by libsync/rules/assembly_plan.h and entry_builder.h.
//
// Every call runs on the caller's connection, inside the pass's transaction
// (but AnyRaw, the idle check, which runs before it): the assembler's crash
// safety (assembler.h) is that of that one transaction.
#ifndef EVENTSTREAM_SERVICES_PRODUCER_RAW_CHANGE_STORE_H_
#define EVENTSTREAM_SERVICES_PRODUCER_RAW_CHANGE_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libsync/rules/assembly_plan.h"
#include "libsync/model/doctype.h"
#include "libsync/base/pg.h"
#include "libsync/model/row_groups.h"
#include "libsync/rules/log_window.h"

namespace eventstream {

class RawChangeStore {
 public:
  // `registry` must outlive the store.
  explicit RawChangeStore(const DocTypeRegistry* registry);

  // Whether any raw row is waiting (outside any transaction: cheap).
  static absl::StatusOr<bool> AnyRaw(pg::Connection* conn);
  // The assembler's transaction-level advisory lock; false when another
  // assembler holds it.
  static absl::StatusOr<bool> TryLock(pg::Connection* conn);
  // The same lock, waiting for it (initial sync chunks, initial_sync.h).
  static absl::Status Lock(pg::Connection* conn);
  // A contiguous block of `n` seqs, the newest entry logged before it
  // (under the lock every earlier writer has committed) and the
  // transaction's time as update_log.created_at records it (RFC 3339 UTC).
  // Only the lock holder may call it (so setval cannot race with another
  // nextval).
  struct SeqBlock {
    int64_t end_seq = 0;   // the block's last seq
    int64_t prev_end = 0;  // the newest entry before the block (0: none)
    std::string created_at;
  };
  static absl::StatusOr<SeqBlock> ReserveBlock(pg::Connection* conn, int64_t n);

  // The transactions this pass takes (assembly_plan.h PlanWindow), parsed
  // and cut to the registry's columns; the first to finish, whole, when no
  // transaction fits within the first `limit` ids.
  absl::StatusOr<WindowPlan> ReadWindow(pg::Connection* conn, int limit) const;
  // Reads the unreadable rows of `tx` again with their non-registry columns
  // cut out by PostgreSQL (deep JSON outside the registry fails nothing);
  // fills `keys` for each of them from PostgreSQL's reading, which works at
  // any depth. Rows PostgreSQL refuses as well stay unreadable.
  absl::Status Reread(pg::Connection* conn, TxRows* tx,
                      std::map<int64_t, RowKeys>* keys) const;

  // What AppendEntries (or an initial sync chunk) logged: the last seq, the
  // newest entry before them (ReserveBlock's prev_end), and the entries
  // as the log tail keeps them (log_tail.h Append), their created_at the
  // transaction's.
  struct Logged {
    int64_t end_seq = 0;
    int64_t prev_end = 0;
    std::vector<std::shared_ptr<const LogRecord>> records;
  };
  // Where a writer hands what it logged once committed (the producer: its
  // log tail, log_tail.h Append); null = nowhere.
  using LoggedSink =
      std::function<void(int64_t prev_end, std::vector<std::shared_ptr<const LogRecord>>)>;
  // Inserts `entries` (their data moved out) with a contiguous block of
  // seqs. Only the lock holder may call it.
  static absl::StatusOr<Logged> AppendEntries(pg::Connection* conn,
                                              std::vector<LogEntry>* entries);
  // Moves each failure's raw rows (registry columns only) into one
  // capture_error row; sets its record_id. Rows PostgreSQL cannot take
  // apart (a "\u0000" in a json column) are kept whole, as text
  // (old_row_text / new_row_text).
  absl::Status RecordFailures(pg::Connection* conn,
                              std::vector<CaptureFailure>* failures) const;
  // Deletes the raw rows of the transactions `txids`; how many.
  static absl::StatusOr<int64_t> Consume(pg::Connection* conn,
                                         const std::vector<std::string>& txids);
  // VACUUM of the queue (libsync/rules/queue_vacuum.h says when); `conn` must not
  // be in a transaction.
  static absl::Status Vacuum(pg::Connection* conn);

 private:
  // The rows of `r` (kWindowRows' columns), parsed.
  std::vector<RawChange> ParseRows(const pg::Result& r) const;

  const DocTypeRegistry* registry_;
  std::string columns_json_;  // ReplicatedColumnsJson(registry), for SQL
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_RAW_CHANGE_STORE_H_
