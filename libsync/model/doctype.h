// DocType registry: what each document type of a site looks like.
//
// The registry comes from the `doctypes:` section of the service config
// (see config.h). It answers the questions replication asks: which table
// holds a DocType's rows, which fields are child tables (and of which child
// DocType), which are Links / Dynamic Links, which are required.
//
// Invariant (checked by DocTypeRegistry::Create): every Table field's options
// names an `istable` DocType of the same registry; names are unique.
#ifndef EVENTSTREAM_LIBSYNC_MODEL_DOCTYPE_H_
#define EVENTSTREAM_LIBSYNC_MODEL_DOCTYPE_H_

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "libsync/base/value.h"

namespace eventstream {

struct FieldDef {
  std::string fieldname;
  std::string fieldtype;  // Data, Int, Float, Currency, Check, Link, Table ...
  std::string options;    // Link: target DocType; Dynamic Link: field holding
                          // the target DocType; Table: child DocType.
  bool reqd = false;
  std::optional<std::string> default_value;  // `default:` in config

  bool is_table() const { return fieldtype == "Table"; }
  bool is_link() const { return fieldtype == "Link"; }
  bool is_dynamic_link() const { return fieldtype == "Dynamic Link"; }
};

struct DocTypeDef {
  std::string name;
  std::string table;  // defaults to "tab" + name
  std::string autoname =
      "hash";            // hash | uuid | field:<f> | series:PREFIX-.#####
  bool istable = false;  // a child DocType
  bool is_submittable = false;
  std::vector<FieldDef> fields;

  const FieldDef* FindField(std::string_view fieldname) const;
};

// Field types the registry accepts: the Frappe value types that have a
// column, plus Link, Dynamic Link and Table. Layout-only types (Section
// Break, Column Break, HTML, Button ...) have no column and are rejected.
bool IsKnownFieldtype(std::string_view fieldtype);
const std::vector<std::string_view>& KnownFieldtypes();

// Whether `autoname` is one of the forms NamingPolicy::Parse (naming.h)
// accepts: `hash`, `uuid`, `field:<fieldname>`, `series:PREFIX.#####`
// (PREFIX non-empty, then 1 to 18 '#', optionally after a '.', e.g.
// `series:NOTE-.#####`). "" when it is, else what was expected.
std::string AutonameProblem(std::string_view autoname);

// Where DocTypeRegistry::Create found a problem, so that the config loader
// can report it as `doctypes[2].fields[0].options: ...`.
struct DocTypeProblem {
  size_t doctype_index = 0;           // index into the defs given
  std::optional<size_t> field_index;  // set when the problem is a field's
  std::string key;                    // "name", "autoname", "options" ...
  std::string message;                // what is wrong / what was expected
};

// Columns every DocType table has; never listed under `fields:`.
// name, creation, modified, modified_by, owner, docstatus, idx
// (+ parent, parenttype, parentfield for child DocTypes).
bool IsStandardColumn(std::string_view column, bool istable);
// Bookkeeping columns that change on every save and are not replicated as
// part of a diff: modified, modified_by, creation, owner.
bool IsBookkeepingColumn(std::string_view column);

// What of a DocType table's row is replicated (captured into entries, served
// by GetDocument / FindDocuments, seen by conditions and webhooks): the
// standard columns and the registry's fields that have a column (every
// field but Table fields, whose rows live in the child table). A column the
// site added for itself (an internal note, a secret) is not. `def` null (a
// DocType the registry does not know) keeps the standard columns of a child
// row, parent/parenttype/parentfield included.
bool IsReplicatedColumn(const DocTypeDef* def, std::string_view column);
// Those columns of `def` (standard ones first, then fields in registry
// order), e.g. to filter a row in SQL.
std::vector<std::string> ReplicatedColumns(const DocTypeDef& def);
// Removes every key of the object `row` that IsReplicatedColumn refuses; a
// row that is not an object is left alone.
void KeepReplicatedColumns(const DocTypeDef* def, Value* row);

class DocTypeRegistry {
 public:
  DocTypeRegistry() = default;
  // Fills defaults (`table` = "tab" + name) and validates: unique names and
  // tables, known fieldtypes, identifier fieldnames that are not standard
  // columns and not repeated, Link/Table/Dynamic Link options, no Table
  // field in a child DocType (Frappe has no nested tables), autoname syntax
  // and its field. Errors are INVALID_ARGUMENT naming the DocType and field
  // (`DocType "Note": field "seen_by": options: ...`); when `problem` is not
  // null it also receives the location of the first problem.
  static absl::StatusOr<DocTypeRegistry> Create(
      std::vector<DocTypeDef> defs, DocTypeProblem* problem = nullptr);

  const DocTypeDef* Find(std::string_view name) const;
  // Find or NOT_FOUND naming the DocType ("unknown DocType \"X\"").
  absl::StatusOr<const DocTypeDef*> Get(std::string_view name) const;
  const std::vector<DocTypeDef>& all() const { return defs_; }

 private:
  std::vector<DocTypeDef> defs_;
  std::map<std::string, size_t, std::less<>> index_;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_MODEL_DOCTYPE_H_
