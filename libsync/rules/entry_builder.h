// BuildEntries: the raw row versions one transaction changed -> its Event
// Update Log entries. Pure: it neither knows nor cares how the rows were
// captured (row triggers into es_producer.raw_change today, see services/
// producer/capture.h; a WAL reader could hand over the same rows).
//
// Entries, per transaction and document (docs/design.md "Producer / Capture"):
//  * Create  the parent row was inserted in the transaction: the whole
//            document (parent columns, "doctype", every Table field of the
//            registry as an array of its child rows ordered by idx, each row
//            with its own "doctype"). Inserted and deleted in the same
//            transaction: no entry.
//  * Delete  the parent row was deleted; data NULL. Child deletes that go
//            with it are part of the same entry.
//  * Rename  the parent's `name` changed: {"old_name", "new_name"}. If other
//            fields changed in the same transaction, an Update (or Cancel)
//            follows it as a separate entry, computed as if the document had
//            always had the new name (children's `parent` moving to the new
//            name is part of the rename, not of the diff).
//  * Cancel  docstatus went 1 -> 2: the diff (libsync Diff).
//  * Update  anything else: the diff of the rows the transaction touched
//            (first old version vs last new version of each row); rows it did
//            not touch appear on neither side. An empty diff (e.g. only
//            `modified` changed) is no entry.
//  An entry's docname is the document's name after the entry (for Delete,
//  the name it had). Its origin is the origin shared by all its raw rows
//  (NULL when they differ: a mixed transaction is treated as local).
//  Several changes to one document in one transaction are one entry
//  (Rename + Update being the one exception above). Entries follow the
//  order in which the transaction first touched each document.
//  Timestamps and numbers are whatever the rows hold (to_jsonb's rendering
//  for trigger rows): numerics digit for digit.
//
// Tests: tests/unit/entry_builder_test.cc.
#ifndef EVENTSTREAM_LIBSYNC_RULES_ENTRY_BUILDER_H_
#define EVENTSTREAM_LIBSYNC_RULES_ENTRY_BUILDER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libsync/model/doctype.h"
#include "libsync/base/value.h"

namespace eventstream {

// One captured change of one table row (a raw row). Its rows hold the
// registry's columns only (KeepReplicatedColumns).
struct RawChange {
  int64_t id = 0;  // capture order: ids ascend in the order rows changed
  std::string txid;
  std::string doctype;           // the DocType whose table the row is in
  char op = 'U';                 // 'I', 'U' or 'D'
  std::optional<Value> old_row;  // absent for 'I'
  std::optional<Value> new_row;  // absent for 'D'
  std::optional<std::string> origin;
  // Why old_row / new_row could not be read (JSON nested deeper than
  // value.h allows); "" when they were.
  std::string unreadable;
};

// One Event Update Log entry before it gets its seq.
struct LogEntry {
  std::string doctype;
  std::string docname;
  std::string update_type;  // Create | Update | Cancel | Rename | Delete
  Value data;               // null for Delete
  std::optional<std::string> origin;
  std::string txid;
};

// The entries of ONE transaction, from its raw rows in id order (see the
// file comment). The registry tells child DocTypes from parents and lists
// Table fields; a row of a DocType the registry does not know counts as a
// child row when it has a "parentfield" key. INTERNAL naming the raw row id
// for a row without a string "name" or without the row versions its op
// needs.
absl::StatusOr<std::vector<LogEntry>> BuildEntries(
    const DocTypeRegistry& registry, const std::vector<RawChange>& tx_rows);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_ENTRY_BUILDER_H_
