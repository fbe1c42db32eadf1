#include "tests/support/frappe_schema.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libsync/base/pg.h"

namespace eventstream::testing {
namespace {

struct KnownField {
  const char* doctype;
  const char* name;
  const char* yaml;    // the registry item's keys after the fieldname
  const char* column;  // "" for a Table field
};

// Each DocType's first row is the field it always has.
constexpr KnownField kKnownFields[] = {
    {"Note", "title", "fieldtype: Data", "title text"},
    {"Note", "public", "fieldtype: Check", "public int DEFAULT 0"},
    {"Note", "amount", "fieldtype: Currency", "amount numeric(30,9)"},
    {"Note", "author", "fieldtype: Link, options: User", "author text"},
    {"Note", "ref_type", "fieldtype: Data", "ref_type text"},
    {"Note", "ref_name", "fieldtype: Dynamic Link, options: ref_type", "ref_name text"},
    {"Note", "data", "fieldtype: JSON", "data jsonb"},
    {"Note", "items", "fieldtype: Table, options: Note Item", ""},
    {"Note", "seen_by", "fieldtype: Table, options: Note Seen By", ""},
    {"Note Item", "item", "fieldtype: Data", "item text"},
    {"Note Item", "qty", "fieldtype: Float", "qty numeric(30,9)"},
    {"Note Item", "user", "fieldtype: Link, options: User", "\"user\" text"},
    {"Note Item", "customer", "fieldtype: Link, options: Customer", "customer text"},
    {"Sales Order", "customer", "fieldtype: Link, options: Customer", "customer text"},
    {"Sales Order", "items", "fieldtype: Table, options: Sales Order Item", ""},
    {"Sales Order Item", "item_code", "fieldtype: Data", "item_code text"},
    {"Sales Order Item", "qty", "fieldtype: Float", "qty numeric(30,9)"},
    {"Purchase Order", "supplier_ref", "fieldtype: Data", "supplier_ref text"},
    {"Purchase Order", "customer_link", "fieldtype: Link, options: Customer", "customer_link text"},
    {"Purchase Order", "items", "fieldtype: Table, options: Purchase Order Item", ""},
    {"Purchase Order Item", "item", "fieldtype: Data", "item text"},
    {"Purchase Order Item", "qty", "fieldtype: Float", "qty numeric(30,9)"},
};

constexpr char kChildHead[] = "    istable: true\n";

// `doctype`'s first field and `fields`, each as its kKnownFields row.
std::vector<const KnownField*> Fields(absl::string_view doctype,
                                      const std::vector<std::string>& fields) {
  std::vector<const KnownField*> out;
  for (const KnownField& f : kKnownFields) {
    if (f.doctype == doctype) {
      out.push_back(&f);
      break;
    }
  }
  for (const std::string& name : fields) {
    const KnownField* found = nullptr;
    for (const KnownField& f : kKnownFields)
      if (f.doctype == doctype && name == f.name) found = &f;
    if (found == nullptr) ADD_FAILURE() << "no " << doctype << " field " << name;
    if (found != nullptr) out.push_back(found);
  }
  return out;
}

// The registry entry: `head` (e.g. "    istable: true\n") before its fields.
std::string DocTypeYaml(absl::string_view doctype, const std::vector<std::string>& fields,
                        absl::string_view head) {
  std::string out = absl::StrCat("  - name: ", doctype, "\n", head, "    fields:\n");
  for (const KnownField* f : Fields(doctype, fields))
    absl::StrAppend(&out, "      - {fieldname: ", f->name, ", ", f->yaml, "}\n");
  return out;
}

std::string Table(absl::string_view doctype, const std::vector<std::string>& fields,
                  bool child) {
  std::string columns;
  for (const KnownField* f : Fields(doctype, fields)) {
    if (*f->column == '\0') continue;
    absl::StrAppend(&columns, columns.empty() ? "" : ", ", f->column);
  }
  return FrappeTable(doctype, columns, child);
}

}  // namespace

std::string NoteDocType(const std::vector<std::string>& fields, bool submittable) {
  return DocTypeYaml("Note", fields, submittable ? "    is_submittable: true\n" : "");
}

std::string NoteTable(const std::vector<std::string>& fields) {
  return Table("Note", fields, /*child=*/false);
}

std::string NoteItemDocType(const std::vector<std::string>& fields) {
  return DocTypeYaml("Note Item", fields, kChildHead);
}

std::string NoteItemTable(const std::vector<std::string>& fields) {
  return Table("Note Item", fields, /*child=*/true);
}

std::string FrappeTable(absl::string_view doctype, absl::string_view columns, bool child) {
  return absl::StrCat(
      "CREATE TABLE ", pg::QuoteIdentifier(absl::StrCat("tab", doctype)),
      " (name text PRIMARY KEY, creation timestamptz, modified timestamptz, modified_by text,"
      " owner text, docstatus int NOT NULL DEFAULT 0, idx int NOT NULL DEFAULT 0",
      child ? ", parent text, parenttype text, parentfield text" : "",
      columns.empty() ? "" : ", ", columns, ");\n");
}

std::string SalesOrderDocTypes() {
  return DocTypeYaml("Sales Order", {"items"}, "") +
         DocTypeYaml("Sales Order Item", {"qty"}, kChildHead);
}

std::string SalesOrderTables() {
  return Table("Sales Order", {"items"}, false) + Table("Sales Order Item", {"qty"}, true);
}

std::string PurchaseOrderDocTypes() {
  return DocTypeYaml("Purchase Order", {"customer_link", "items"}, "") +
         DocTypeYaml("Purchase Order Item", {"qty"}, kChildHead);
}

std::string PurchaseOrderTables() {
  return Table("Purchase Order", {"customer_link", "items"}, false) +
         Table("Purchase Order Item", {"qty"}, true);
}

const char kMemoDocType[] = R"(  - name: Memo
    fields:
      - {fieldname: code, fieldtype: Data}
      - {fieldname: text, fieldtype: Data}
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
