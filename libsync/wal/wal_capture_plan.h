// The pure decisions of WAL capture (services/producer/wal_capture.h), apart
// from the replication connection and the SQL:
//  * CapturedFrom: which tables the publication holds, as DocTypes: parent
//    tables are captured DocTypes, a child table's rows count only when
//    their parenttype is a captured parent (the trigger's argument list).
//  * OriginOf: a transaction's origin. The consumer's apply transactions
//    write es_consumer.last_update (producer, last_seq) for the producer they
//    apply: such a row in the transaction names its origin. Only the
//    consumer's role can write that table, so the site's applications cannot
//    hide a write (as may_mark_origin() ensures for triggers). A transaction
//    replayed under a PostgreSQL replication origin gets that origin's name.
//  * ToTxRows: a committed transaction's rows of captured tables as the
//    assembly planner's TxRows (rules/assembly_plan.h), ids in WAL order; an
//    UPDATE that changed nothing is dropped (as the trigger drops it); a row
//    whose old version or unchanged TOAST columns the WAL lacked (a table
//    without REPLICA IDENTITY FULL) is marked unreadable, so its document
//    fails visibly (capture_error) instead of logging a wrong diff.
//  * AlreadyLogged / IdleConfirm: the exactly-once rules around the slot.
//
// Tests: tests/unit/wal_capture_plan_test.cc.
#ifndef EVENTSTREAM_LIBSYNC_WAL_WAL_CAPTURE_PLAN_H_
#define EVENTSTREAM_LIBSYNC_WAL_WAL_CAPTURE_PLAN_H_

#include <map>
#include <optional>
#include <set>
#include <string>

#include "libsync/model/doctype.h"
#include "libsync/rules/assembly_plan.h"
#include "libsync/wal/pgoutput.h"
#include "libsync/wal/transaction_builder.h"

namespace eventstream::wal {

// The consumer's watermark table: its row in a transaction marks the origin.
inline constexpr char kOriginSchema[] = "es_consumer";
inline constexpr char kOriginTable[] = "last_update";

struct CapturedTables {
  std::map<std::string, std::string> doctype_of_table;  // "tabNote" -> "Note"
  // Child DocType -> the captured parent DocTypes whose rows count.
  std::map<std::string, std::set<std::string>> parents_of_child;
};
// `tables`: the (unqualified) table names the publication holds. Tables the
// registry does not know are left out.
CapturedTables CapturedFrom(const DocTypeRegistry& registry, const std::set<std::string>& tables);

std::optional<std::string> OriginOf(const WalTransaction& tx);

// `tx`'s captured rows; `first_id` numbers them (ids ascend across calls
// when the caller passes the previous call's next id).
TxRows ToTxRows(const DocTypeRegistry& registry, const CapturedTables& captured,
                const WalTransaction& tx, int64_t first_id = 1);

// A transaction whose end is at or below the last end LSN logged was logged
// before a restart (its entries committed, the slot not yet confirmed).
inline bool AlreadyLogged(const WalTransaction& tx, Lsn logged_end) {
  return tx.end_lsn <= logged_end;
}
// What to confirm when the stream is quiet: the server's position when no
// transaction is open or waiting to be logged (the slot must not hold WAL
// that other tables wrote), else nothing (0).
inline Lsn IdleConfirm(bool in_transaction, size_t waiting, Lsn server_end) {
  return in_transaction || waiting > 0 ? 0 : server_end;
}

}  // namespace eventstream::wal

#endif  // EVENTSTREAM_LIBSYNC_WAL_WAL_CAPTURE_PLAN_H_
