// RawChangeStore: the SQL of one assembler pass (assembler.h), and nothing
// else: reading the trigger capture's raw rows (es_producer.raw_change),
// writing the entries (es_producer.update_log) and the failures
// (es_producer.capture_error), consuming the raw rows. What the rows become
// is decided by libsync/assembly_plan.h and entry_builder.h.
//
// Every call runs on the caller's connection, inside the pass's transaction
// (but AnyRaw, the idle check, which runs before it): the assembler's crash
// safety (assembler.h) is that of that one transaction.
#ifndef EVENTSTREAM_SERVICES_PRODUCER_RAW_CHANGE_STORE_H_
#define EVENTSTREAM_SERVICES_PRODUCER_RAW_CHANGE_STORE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libsync/assembly_plan.h"
#include "libsync/doctype.h"
#include "libsync/pg.h"
#include "libsync/row_groups.h"

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
  // A contiguous block of `n` seqs; returns its last. Only the lock holder
  // may call it (so setval cannot race with another nextval).
  static absl::StatusOr<int64_t> ReserveSeqs(pg::Connection* conn, int64_t n);

  // The transactions this pass takes (assembly_plan.h PlanWindow), parsed
  // and cut to the registry's columns; the first to finish, whole, when no
  // transaction fits within the first `limit` ids.
  absl::StatusOr<WindowPlan> ReadWindow(pg::Connection* conn, int limit) const;
  // Reads the unreadable rows of `tx` again with their non-registry columns
  // cut out by PostgreSQL (deep JSON outside the registry fails nothing);
  // fills `keys` for each of them from PostgreSQL's reading, which works at
  // any depth.
  absl::Status Reread(pg::Connection* conn, TxRows* tx,
                      std::map<int64_t, RowKeys>* keys) const;

  // Inserts `entries` (their data moved out) with a contiguous block of
  // seqs; returns the last seq. Only the lock holder may call it.
  static absl::StatusOr<int64_t> AppendEntries(pg::Connection* conn,
                                               std::vector<LogEntry>* entries);
  // Moves each failure's raw rows (registry columns only) into one
  // capture_error row; sets its record_id.
  absl::Status RecordFailures(pg::Connection* conn,
                              std::vector<CaptureFailure>* failures) const;
  // Deletes the raw rows of the transactions `txids`; how many.
  static absl::StatusOr<int64_t> Consume(pg::Connection* conn,
                                         const std::vector<std::string>& txids);
  // VACUUM of the queue (libsync/queue_vacuum.h says when); `conn` must not
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
