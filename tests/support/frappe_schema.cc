#include "tests/support/frappe_schema.h"

#include "absl/strings/str_cat.h"
#include "libsync/pg.h"

namespace eventstream::testing {

std::string FrappeTable(absl::string_view doctype, absl::string_view columns, bool child) {
  return absl::StrCat(
      "CREATE TABLE ", pg::QuoteIdentifier(absl::StrCat("tab", doctype)),
      " (name text PRIMARY KEY, creation timestamptz, modified timestamptz, modified_by text,"
      " owner text, docstatus int NOT NULL DEFAULT 0, idx int NOT NULL DEFAULT 0",
      child ? ", parent text, parenttype text, parentfield text" : "",
      columns.empty() ? "" : ", ", columns, ");\n");
}

const char kLinkedDocTypes[] = R"(  - name: Note Seen By
    istable: true
    fields:
      - {fieldname: user, fieldtype: Link, options: User}
  - name: User
    fields:
      - {fieldname: full_name, fieldtype: Data}
      - {fieldname: roles, fieldtype: Table, options: Has Role}
  - name: Has Role
    istable: true
    fields:
      - {fieldname: role, fieldtype: Link, options: Role}
      - {fieldname: ref_type, fieldtype: Data}
      - {fieldname: ref_name, fieldtype: Dynamic Link, options: ref_type}
  - name: Role
    fields:
      - {fieldname: parent_role, fieldtype: Link, options: Role}
  - name: Project
    fields:
      - {fieldname: title, fieldtype: Data}
)";

std::string LinkedTables() {
  return absl::StrCat(FrappeTable("Note Seen By", "\"user\" text", /*child=*/true),
                      FrappeTable("User", "full_name text"),
                      FrappeTable("Has Role", "role text, ref_type text, ref_name text",
                                  /*child=*/true),
                      FrappeTable("Role", "parent_role text"), FrappeTable("Project", "title text"));
}

}  // namespace eventstream::testing
