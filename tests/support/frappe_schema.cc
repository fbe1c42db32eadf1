#include "tests/support/frappe_schema.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libsync/base/pg.h"

namespace eventstream::testing {
namespace {

struct NoteField {
  const char* name;
  const char* yaml;    // the registry item's keys after the fieldname
  const char* column;  // "" for a Table field
};

constexpr NoteField kNoteFields[] = {
    {"title", "fieldtype: Data", "title text"},
    {"public", "fieldtype: Check", "public int DEFAULT 0"},
    {"amount", "fieldtype: Currency", "amount numeric(30,9)"},
    {"author", "fieldtype: Link, options: User", "author text"},
    {"ref_type", "fieldtype: Data", "ref_type text"},
    {"ref_name", "fieldtype: Dynamic Link, options: ref_type", "ref_name text"},
    {"data", "fieldtype: JSON", "data jsonb"},
    {"items", "fieldtype: Table, options: Note Item", ""},
    {"seen_by", "fieldtype: Table, options: Note Seen By", ""},
};

// "title" and `fields`, each as its kNoteFields row.
std::vector<const NoteField*> NoteFields(const std::vector<std::string>& fields) {
  std::vector<const NoteField*> out = {&kNoteFields[0]};
  for (const std::string& name : fields) {
    const NoteField* found = nullptr;
    for (const NoteField& f : kNoteFields)
      if (name == f.name) found = &f;
    if (found == nullptr) ADD_FAILURE() << "no Note field " << name;
    if (found != nullptr) out.push_back(found);
  }
  return out;
}

}  // namespace

std::string NoteDocType(const std::vector<std::string>& fields, bool submittable) {
  std::string out = absl::StrCat("  - name: Note\n", submittable ? "    is_submittable: true\n" : "",
                                 "    fields:\n");
  for (const NoteField* f : NoteFields(fields))
    absl::StrAppend(&out, "      - {fieldname: ", f->name, ", ", f->yaml, "}\n");
  return out;
}

std::string NoteTable(const std::vector<std::string>& fields) {
  std::string columns;
  for (const NoteField* f : NoteFields(fields)) {
    if (*f->column == '\0') continue;
    absl::StrAppend(&columns, columns.empty() ? "" : ", ", f->column);
  }
  return FrappeTable("Note", columns);
}

std::string FrappeTable(absl::string_view doctype, absl::string_view columns, bool child) {
  return absl::StrCat(
      "CREATE TABLE ", pg::QuoteIdentifier(absl::StrCat("tab", doctype)),
      " (name text PRIMARY KEY, creation timestamptz, modified timestamptz, modified_by text,"
      " owner text, docstatus int NOT NULL DEFAULT 0, idx int NOT NULL DEFAULT 0",
      child ? ", parent text, parenttype text, parentfield text" : "",
      columns.empty() ? "" : ", ", columns, ");\n");
}

const char kPurchaseOrderDocTypes[] = R"(  - name: Purchase Order
    fields:
      - {fieldname: supplier_ref, fieldtype: Data}
      - {fieldname: customer_link, fieldtype: Link, options: Customer}
      - {fieldname: items, fieldtype: Table, options: Purchase Order Item}
  - name: Purchase Order Item
    istable: true
    fields:
      - {fieldname: item, fieldtype: Data}
      - {fieldname: qty, fieldtype: Float}
)";

std::string PurchaseOrderTables() {
  return FrappeTable("Purchase Order", "supplier_ref text, customer_link text") +
         FrappeTable("Purchase Order Item", "item text, qty numeric(30,9)", /*child=*/true);
}

const char kMemoDocType[] = R"(  - name: Memo
    fields:
      - {fieldname: code, fieldtype: Data}
      - {fieldname: text, fieldtype: Data}
)";

const char kSoiToPoiMapping[] = R"(    - name: soi-to-poi
      local_doctype: Purchase Order Item
      remote_doctype: Sales Order Item
      field_mapping:
        - {remote_fieldname: item_code, local_fieldname: item}
        - {remote_fieldname: qty, local_fieldname: qty}
)";

const char kCustomerMapping[] = R"(    - name: cust
      local_doctype: Customer
      remote_doctype: Customer
      field_mapping:
        - {remote_fieldname: customer_name, local_fieldname: customer_name}
)";

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
