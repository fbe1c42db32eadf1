// The writes of an Update (or Cancel) entry to a document that exists on
// the consumer, apart from SQL: which child rows to delete, update in
// place, replace or insert, and which parent keys to write, given the
// entry's diff (libsync/model/diff.h) and the local DocType. The consumer's
// DocumentApplier (services/consumer/apply_document.cc) runs the plan in
// this order, which is libsync Patch's: removed, row_changed, changed (a
// whole table in `changed` replaces its rows; then the parent columns),
// added, then the parent's docstatus copied to its child rows.
// Pure (tests/unit/update_plan_test.cc). The plan points into `def`,
// the registry and the diff: it lives no longer than they do, and the diff
// must not change meanwhile.
#ifndef EVENTSTREAM_LIBSYNC_RULES_UPDATE_PLAN_H_
#define EVENTSTREAM_LIBSYNC_RULES_UPDATE_PLAN_H_

#include <set>
#include <string>
#include <vector>

#include "libsync/model/diff.h"
#include "libsync/model/doctype.h"
#include "libsync/base/value.h"

namespace eventstream {

// Keys of a parent / child row the applier sets itself or that are not
// columns: never copied from the producer's document into a row.
const std::set<std::string>& ParentSkipKeys();
const std::set<std::string>& ChildSkipKeys();

// The column that finds a child row by the producer's row name: "name"
// (use_same_name) or "remote_docname".
const char* ChildRowKey(bool same_name);

// A Table field of a DocType and its child DocType; both null when `field`
// is not a Table field of `def` or its DocType is not in the registry.
struct ChildTable {
  const FieldDef* field = nullptr;
  const DocTypeDef* child = nullptr;
};
ChildTable ChildTableOf(const DocTypeDef& def, const DocTypeRegistry& registry,
                        const std::string& field);

struct UpdatePlan {
  // removed: one child row each, by the producer's row name.
  struct RowDelete {
    const DocTypeDef* child = nullptr;
    std::string row;
  };
  // row_changed: a table's partial rows ({name, field: value}), each updated
  // in place when it exists (nothing otherwise).
  // added: a table's full rows, each inserted, or updated when it exists.
  struct TableRows {
    const FieldDef* field = nullptr;
    const DocTypeDef* child = nullptr;
    const Value::Array* rows = nullptr;
  };
  // changed: a whole table; its rows are deleted, then `rows` (null when
  // the new value is not a list: the table ends empty) inserted.
  using TableReplace = TableRows;

  std::vector<RowDelete> deletes;
  std::vector<TableRows> row_updates;
  std::vector<TableReplace> replaced;
  // The keys of `changed` not to write to the parent row: ParentSkipKeys
  // and every Table field of the DocType.
  std::set<std::string> parent_skip;
  std::vector<TableRows> added;
  // Set when `changed` carries a non-null docstatus: it goes to every child
  // table of `docstatus_tables` (those whose table has the column).
  const Value* docstatus = nullptr;
  std::vector<ChildTable> docstatus_tables;
};

// Tables of the diff that are not Table fields of `def` with a known child
// DocType, and tables whose value is not a list, are left out.
UpdatePlan PlanUpdate(const DocTypeDef& def, const DocTypeRegistry& registry,
                      const DocDiff& diff);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_UPDATE_PLAN_H_
