// Diff and Patch: the Update payload of the Event Update Log.
//
// Semantics follow Frappe's get_update (seed 001):
//   changed     {field: new value}           parent fields that changed
//   added       {table: [full row, ...]}     child rows new in `new`
//   removed     {table: [row name, ...]}     child rows gone from `new`
//   row_changed {table: [{name, field: new value, ...}, ...]}
// Child rows are matched by "name". A field whose value is an array is a
// child table (no registry needed). Rules:
//  * "doctype" and the bookkeeping columns (modified, modified_by, creation,
//    owner) are never reported, on the parent or in rows; added rows are
//    carried whole, bookkeeping included.
//  * docstatus of the parent is reported in `changed` whenever it changes.
//    A child row's docstatus follows its parent's, as in Frappe: it is not
//    diffed, and Patch copies a changed parent docstatus onto every row that
//    has a docstatus.
//  * a row's idx is an ordinary field, so reordering shows in row_changed.
//  * a field present in `old` and absent from `new` is reported in `changed`
//    as null (unless it was already null): a diff cannot delete a column, and
//    for a database row absent and null are the same. Likewise an absent
//    child table is an empty one.
//  * a table whose rows are not all objects with distinct string names
//    cannot be matched by name; it is reported whole in `changed`.
// Invariant (checked by the property test): for documents whose rows have
// distinct names and idx consistent with their position,
//   StripBookkeeping(Patch(old, Diff(old, new))) == StripBookkeeping(new)
// where fields removed in `new` come back as null.
#ifndef EVENTSTREAM_LIBSYNC_MODEL_DIFF_H_
#define EVENTSTREAM_LIBSYNC_MODEL_DIFF_H_

#include "absl/status/statusor.h"
#include "libsync/base/value.h"

namespace eventstream {

struct DocDiff {
  Value changed = Value::EmptyObject();      // field -> new value
  Value added = Value::EmptyObject();        // table -> [full row]
  Value removed = Value::EmptyObject();      // table -> [row name]
  Value row_changed = Value::EmptyObject();  // table -> [{name, field: v}]

  bool empty() const;
  // {"added":{..},"changed":{..},"removed":{..},"row_changed":{..}}; all four
  // keys always present.
  Value ToJson() const;
  // Checks the shape above (missing keys mean empty); INVALID_ARGUMENT
  // naming the offending key, table or row otherwise.
  static absl::StatusOr<DocDiff> FromJson(const Value& json);
};

// What turns `old_doc` into `new_doc`. Both are document objects.
DocDiff Diff(const Value& old_doc, const Value& new_doc);

// Applies `diff` to `doc`: removed, row_changed, changed, added, then sorts
// each child table the diff touched by idx (stable) when all its rows have a
// numeric idx. A diff that does not fit the document (removing or changing a
// row it does not have, adding a row name twice, a table that is not an
// array) is INVALID_ARGUMENT naming the table and row.
absl::StatusOr<Value> Patch(const Value& doc, const DocDiff& diff);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_MODEL_DIFF_H_
