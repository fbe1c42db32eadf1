// Frappe-shaped DocTypes and tables shared by the integration tests, so a
// test states only what is particular to it.
//  * FrappeTable: a DocType's table with Frappe's standard columns (name,
//    creation, modified, modified_by, owner, docstatus, idx; a child table
//    also parent, parenttype, parentfield) plus the test's own columns.
//  * The linked world: Note Seen By (a Note child row linking a User), User
//    (with Has Role rows linking a Role, and a Dynamic Link), Role (linking
//    a parent Role: chains and cycles) and Project. Tests add their own Note
//    in front (its fields vary); the registry YAML and the tables match.
#ifndef EVENTSTREAM_TESTS_SUPPORT_FRAPPE_SCHEMA_H_
#define EVENTSTREAM_TESTS_SUPPORT_FRAPPE_SCHEMA_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace eventstream::testing {

// CREATE TABLE "tab<doctype>" (standard columns, `columns`); with `;`.
std::string FrappeTable(absl::string_view doctype, absl::string_view columns,
                        bool child = false);

// Note, the DocType the tests sync, from one definition of its fields:
// "title" first, then `fields` in the order given, each one of public
// (Check), amount (Currency), author (Link User), ref_type, ref_name
// (Dynamic Link on ref_type), data (JSON), items (Table Note Item), seen_by (Table Note
// Seen By). An unknown name fails the test.
// The registry entry (YAML list item, 2-space indent).
std::string NoteDocType(const std::vector<std::string>& fields, bool submittable = false);
// Its table: FrappeTable("Note", the fields' columns; Table fields have none).
std::string NoteTable(const std::vector<std::string>& fields);
// Note Item, its child table, the same way: "item" first, then any of qty
// (Float), user (Link User), customer (Link Customer).
std::string NoteItemDocType(const std::vector<std::string>& fields);
std::string NoteItemTable(const std::vector<std::string>& fields);

// The hq side of the tests' Sales Order -> Purchase Order mapping: Sales
// Order (customer Link Customer, items) and Sales Order Item (item_code,
// qty), as registry entries; and their tables.
std::string SalesOrderDocTypes();
std::string SalesOrderTables();
// The branch side of the tests' Sales Order -> Purchase Order mapping:
// Purchase Order (supplier_ref, customer_link Link Customer, items) and
// Purchase Order Item (item, qty), as registry entries; and their tables.
std::string PurchaseOrderDocTypes();
std::string PurchaseOrderTables();
// Memo (code, text), a registry entry.
extern const char kMemoDocType[];
// consumer.mappings items (4-space indent). Inline here, so that unit tests
// (which link no support library) can use them too.
// so-to-po: Sales Order's customer and items into Purchase Order's
// supplier_ref and items (the items through soi-to-poi); a test may add
// field_mapping items after it.
inline constexpr char kSoToPoMapping[] = R"(    - name: so-to-po
      local_doctype: Purchase Order
      remote_doctype: Sales Order
      field_mapping:
        - {remote_fieldname: customer, local_fieldname: supplier_ref}
        - {remote_fieldname: items, local_fieldname: items, mapping_type: Child Table, mapping: soi-to-poi}
)";
// soi-to-poi: Sales Order Item's item_code and qty into Purchase Order
// Item's item and qty.
inline constexpr char kSoiToPoiMapping[] = R"(    - name: soi-to-poi
      local_doctype: Purchase Order Item
      remote_doctype: Sales Order Item
      field_mapping:
        - {remote_fieldname: item_code, local_fieldname: item}
        - {remote_fieldname: qty, local_fieldname: qty}
)";
// cust: Customer's customer_name as it is.
inline constexpr char kCustomerMapping[] = R"(    - name: cust
      local_doctype: Customer
      remote_doctype: Customer
      field_mapping:
        - {remote_fieldname: customer_name, local_fieldname: customer_name}
)";

// Registry entries (YAML list items, 2-space indent) of the linked world.
extern const char kLinkedDocTypes[];
// Their tables.
std::string LinkedTables();

}  // namespace eventstream::testing

#endif  // EVENTSTREAM_TESTS_SUPPORT_FRAPPE_SCHEMA_H_
