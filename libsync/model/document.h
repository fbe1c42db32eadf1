// Document: the wire form of one document, as a Value.
//
// A document is a JSON object holding "doctype", "name", the parent's
// columns, and each Table field as an array of child row objects (each row
// keyed by its own "name", ordered by "idx"). See docs/design.md "Site data
// model". These helpers read that shape without a DocType registry: a field
// whose value is an array is a child table.
#ifndef EVENTSTREAM_LIBSYNC_MODEL_DOCUMENT_H_
#define EVENTSTREAM_LIBSYNC_MODEL_DOCUMENT_H_

#include <string>
#include <string_view>
#include <vector>

#include "libsync/base/value.h"

namespace eventstream {

// The document's "doctype" / "name" when they are strings, else "".
std::string DocTypeOf(const Value& doc);
std::string NameOf(const Value& doc);

// Names of the fields of `doc` whose value is an array (its child tables),
// in key order.
std::vector<std::string> TableFieldsOf(const Value& doc);

// The rows of child table `field`, or nullptr when `doc` has no array there.
const Value::Array* ChildRows(const Value& doc, std::string_view field);

// The row of child table `field` whose "name" is `row_name`, or nullptr.
const Value* FindChildRow(const Value& doc, std::string_view field,
                          std::string_view row_name);

// True if `v` is null, absent-equivalent, or the empty string: Frappe's
// notion of a field "not set".
bool IsEmptyFieldValue(const Value* v);

// A copy of `doc` without bookkeeping columns (modified, modified_by,
// creation, owner) on the parent and on every child row. Two copies of one
// document that differ only by when/who saved them compare equal after this.
Value StripBookkeeping(const Value& doc);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_MODEL_DOCUMENT_H_
