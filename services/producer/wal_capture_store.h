// WalCaptureStore: the SQL of WAL capture (wal_capture.h), on a normal
// (not replication) connection:
//  * the approvals side: the slot and the publication kept in step with the
//    captured DocTypes, where trigger mode syncs its triggers;
//  * the capture side: the last logged end LSN (es_producer.wal_position,
//    migration 0012), the published tables, capture_error rows of
//    documents that could not become entries.
//
// SyncPublication (contract, as CaptureInstaller::SyncTriggers):
//  * Creates the slot first if it is missing (outside any transaction:
//    pg_create_logical_replication_slot), so WAL is kept from before the
//    first table joins the publication and no committed change is missed.
//  * One transaction (lock_timeout 10 s, the capture install lock): creates
//    the publication if missing; sets REPLICA IDENTITY FULL on each table
//    that joins (Update diffs need the whole old row, as the trigger had
//    it; docs/design.md "WAL capture"); adds the captured DocTypes' tables
//    and their child tables; drops every other table. A crash before COMMIT
//    leaves the previous publication. Idempotent: a no-op sync takes no
//    table lock. Adding a table needs its ownership (PostgreSQL's rule).
//  * Creates `<publication>_origin` over es_consumer.last_update (the
//    consumer's apply marker, wal_capture_plan.h OriginOf) when that table
//    exists and this role owns it; otherwise the consumer's role must
//    create it (README), or its applied changes are echoed.
//  * Then removes the capture triggers (wal mode installs none), in
//    SyncTriggers' own transaction: a change committed between the two
//    commits is captured twice when switching from trigger mode, never lost.
#ifndef EVENTSTREAM_SERVICES_PRODUCER_WAL_CAPTURE_STORE_H_
#define EVENTSTREAM_SERVICES_PRODUCER_WAL_CAPTURE_STORE_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libsync/base/pg.h"
#include "libsync/model/doctype.h"
#include "libsync/rules/assembly_plan.h"
#include "libsync/rules/chunk_plan.h"
#include "libsync/wal/pgoutput.h"

namespace eventstream {

class WalCaptureStore {
 public:
  // `slot` and `publication`: names wal::ValidSlotName accepts.
  WalCaptureStore(std::string slot, std::string publication)
      : slot_(std::move(slot)), publication_(std::move(publication)) {}
  const std::string& slot() const { return slot_; }
  const std::string& publication() const { return publication_; }
  std::string origin_publication() const { return publication_ + "_origin"; }

  // ---- approvals side (see file comment) ----
  absl::Status SyncPublication(pg::Connection* conn, const DocTypeRegistry& registry,
                               const std::set<std::string>& doctypes) const;

  // ---- capture side: inside the log transaction unless said ----
  // The last logged end LSN; 0 when none.
  absl::StatusOr<wal::Lsn> LoggedEnd(pg::Connection* conn) const;
  absl::Status SaveLoggedEnd(pg::Connection* conn, wal::Lsn end) const;
  // A new snapshot (outside the log transaction): which decoded commits
  // other sessions see yet (WalCaptureLoop::AwaitVisible).
  static absl::StatusOr<XidSnapshot> CurrentSnapshot(pg::Connection* conn);
  // The unqualified names of the publication's tables.
  absl::StatusOr<std::set<std::string>> PublishedTables(pg::Connection* conn) const;
  // The publications to stream: the publication, and the origin one when
  // it exists (outside a transaction, before the stream starts).
  absl::StatusOr<std::vector<std::string>> Publications(pg::Connection* conn) const;
  // One capture_error row per failure, its rows (looked up by raw id in
  // `rows`, the batch's) as raw_rows; sets record_id.
  static absl::Status RecordFailures(pg::Connection* conn,
                                     const std::map<int64_t, const RawChange*>& rows,
                                     std::vector<CaptureFailure>* failures);

 private:
  absl::Status EnsureSlot(pg::Connection* conn) const;
  // In SyncPublication's transaction: the tables of `tables` in, the rest out.
  absl::Status SetTables(pg::Connection* conn, const std::set<std::string>& tables) const;
  absl::Status EnsureOriginPublication(pg::Connection* conn) const;

  std::string slot_;
  std::string publication_;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_WAL_CAPTURE_STORE_H_
