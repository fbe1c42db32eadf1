// Which changed rows of one transaction make up one document, decided from
// each row's keys alone (its DocType, its name and, for a child row, its
// parent), never from its other contents. The assembler (services/producer/
// assembler.h) uses it when a transaction's rows cannot all be turned into
// entries: a row whose JSON cannot be read (nested deeper than value.h
// allows) still has keys PostgreSQL can extract, so it fails its own
// document and no other.
//
// Pure (tests/unit/row_groups_test.cc).
#ifndef EVENTSTREAM_LIBSYNC_MODEL_ROW_GROUPS_H_
#define EVENTSTREAM_LIBSYNC_MODEL_ROW_GROUPS_H_

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace eventstream {

// The keys of one changed row (a raw change: insert, update or delete).
struct RowKeys {
  std::string doctype;  // the DocType whose table the row is in
  bool child = false;   // a child row, part of the document (parenttype, parent)
  // The row's name before and after the change (absent for an insert /
  // a delete).
  std::optional<std::string> old_name, new_name;
  // A child row's (parenttype, parent) before and after the change.
  std::optional<std::pair<std::string, std::string>> old_parent, new_parent;
};

// Groups of indexes into `rows`. Two rows are in one group when they share a
// document key: a parent row's (DocType, name) before or after the change
// (so a rename joins both names), a child row's (parenttype, parent) before
// or after (a child row moved to another parent joins both documents), or
// the same child row's (DocType, name). A group may thus hold more than one
// document, never less than one whole document. Indexes ascend within a
// group; groups are ordered by their first index.
std::vector<std::vector<size_t>> GroupRowsByDocument(const std::vector<RowKeys>& rows);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_MODEL_ROW_GROUPS_H_
