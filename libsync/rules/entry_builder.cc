#include "libsync/rules/entry_builder.h"

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libsync/model/diff.h"
#include "libsync/base/status_macros.h"

namespace eventstream {
namespace {

using DocKey = std::pair<std::string, std::string>;  // doctype, name
using Origins = std::set<std::optional<std::string>>;

// The life of one table row within a transaction.
struct RowState {
  std::string doctype;
  std::optional<Value> first_old;  // absent: the row did not exist before
  std::optional<Value> last_new;   // absent: the row does not exist after
  int64_t first_id = 0;
  Origins origins;

  // The row as it is after the transaction, else as it was before it.
  const Value& latest() const { return last_new ? *last_new : *first_old; }
};

// One document touched by the transaction.
struct DocChange {
  std::string doctype;
  std::string name;           // the parent's name (final, if renamed)
  int parent = -1;            // index of the parent's RowState, or -1
  std::vector<int> children;  // indexes of child RowStates
  int64_t first_id = 0;
  Origins origins;
};

std::string StringField(const Value& row, std::string_view key) {
  const Value* v = row.Find(key);
  return v != nullptr && v->is_string() ? v->as_string() : std::string();
}

bool HasStringName(const std::optional<Value>& row) {
  if (!row) return true;
  const Value* v = row->Find("name");
  return v != nullptr && v->is_string();
}

// idx as a number for ordering child rows; rows without one go last.
int64_t IdxOf(const Value& row) {
  const Value* v = row.Find("idx");
  if (v == nullptr || !v->is_number()) return INT64_MAX;
  return std::strtoll(v->number_text().c_str(), nullptr, 10);
}

void SortRows(Value::Array* rows) {
  std::stable_sort(rows->begin(), rows->end(), [](const Value& a, const Value& b) {
    int64_t ia = IdxOf(a), ib = IdxOf(b);
    if (ia != ib) return ia < ib;
    return StringField(a, "name") < StringField(b, "name");
  });
}

bool IsNumber(const Value* v, std::string_view text) {
  return v != nullptr && v->is_number() && v->number_text() == text;
}

bool IsChild(const DocTypeRegistry& registry, const std::string& doctype, const Value& row) {
  const DocTypeDef* def = registry.Find(doctype);
  if (def != nullptr) return def->istable;
  return row.Find("parentfield") != nullptr;
}

// INTERNAL naming the raw row when it lacks what assembling it needs.
absl::Status CheckRow(const RawChange& raw) {
  bool shape_ok = raw.op == 'I'   ? raw.new_row.has_value()
                  : raw.op == 'D' ? raw.old_row.has_value()
                  : raw.op == 'U' ? raw.old_row && raw.new_row
                                  : false;
  if (!shape_ok) {
    return absl::InternalError(absl::StrCat("raw change ", raw.id, " of DocType \"",
                                            raw.doctype, "\": op '", std::string(1, raw.op),
                                            "' without the rows it needs; cannot assemble"));
  }
  if (!HasStringName(raw.old_row) || !HasStringName(raw.new_row)) {
    return absl::InternalError(
        absl::StrCat("raw change ", raw.id, " of DocType \"", raw.doctype,
                     "\" has no row with a string \"name\"; cannot assemble"));
  }
  return absl::OkStatus();
}

// Step 1: the raw rows folded into one RowState per table row, following
// renames (a row is found by its current (DocType, name)).
class RowFolder {
 public:
  absl::Status Add(const RawChange& raw) {
    RETURN_IF_ERROR(CheckRow(raw));
    if (raw.op == 'I') {
      Insert(raw);
    } else {
      Change(raw);
    }
    return absl::OkStatus();
  }
  std::vector<RowState> Take() { return std::move(states_); }

 private:
  void Insert(const RawChange& raw) {
    DocKey key{raw.doctype, StringField(*raw.new_row, "name")};
    auto it = current_.find(key);
    if (it != current_.end()) {  // deleted earlier, re-inserted
      states_[it->second].last_new = raw.new_row;
      states_[it->second].origins.insert(raw.origin);
      return;
    }
    current_[key] = static_cast<int>(states_.size());
    states_.push_back(RowState{raw.doctype, std::nullopt, raw.new_row, raw.id, {raw.origin}});
  }

  // An update or delete.
  void Change(const RawChange& raw) {
    DocKey key{raw.doctype, StringField(*raw.old_row, "name")};
    auto it = current_.find(key);
    int index;
    if (it != current_.end()) {
      index = it->second;
      states_[index].origins.insert(raw.origin);
    } else {
      index = static_cast<int>(states_.size());
      states_.push_back(RowState{raw.doctype, raw.old_row, std::nullopt, raw.id, {raw.origin}});
      current_[key] = index;
    }
    states_[index].last_new = raw.op == 'D' ? std::nullopt : raw.new_row;
    if (raw.op != 'U') return;
    DocKey new_key{raw.doctype, StringField(*raw.new_row, "name")};
    if (new_key != key) {
      current_.erase(key);
      current_[new_key] = index;
    }
  }

  std::vector<RowState> states_;
  std::map<DocKey, int> current_;  // (doctype, current name) -> state
};

// Step 2: rows grouped into documents, in the order the transaction first
// touched each: parents by their names (old and new, so children pointing
// at either find them), children by parenttype/parent.
class DocumentGrouper {
 public:
  DocumentGrouper(const DocTypeRegistry& registry, const std::vector<RowState>& states)
      : registry_(registry), states_(states) {}

  std::vector<DocChange> Group() {
    for (int i = 0; i < static_cast<int>(states_.size()); ++i) {
      if (!IsChild(registry_, states_[i].doctype, states_[i].latest())) AddParent(i);
    }
    for (int i = 0; i < static_cast<int>(states_.size()); ++i) {
      if (IsChild(registry_, states_[i].doctype, states_[i].latest())) AddChild(i);
    }
    std::stable_sort(docs_.begin(), docs_.end(), [](const DocChange& a, const DocChange& b) {
      return a.first_id < b.first_id;
    });
    return std::move(docs_);
  }

 private:
  void AddParent(int i) {
    const RowState& s = states_[i];
    DocChange doc;
    doc.doctype = s.doctype;
    doc.name = StringField(s.latest(), "name");
    doc.parent = i;
    doc.first_id = s.first_id;
    doc.origins = s.origins;
    int d = static_cast<int>(docs_.size());
    docs_.push_back(std::move(doc));
    if (s.first_old) doc_of_[{s.doctype, StringField(*s.first_old, "name")}] = d;
    if (s.last_new) doc_of_[{s.doctype, StringField(*s.last_new, "name")}] = d;
  }

  void AddChild(int i) {
    const RowState& s = states_[i];
    DocKey parent{StringField(s.latest(), "parenttype"), StringField(s.latest(), "parent")};
    auto it = doc_of_.find(parent);
    if (it == doc_of_.end() && s.last_new && s.first_old) {
      // The row moved to another parent name; try the one it had.
      it = doc_of_.find(
          {StringField(*s.first_old, "parenttype"), StringField(*s.first_old, "parent")});
    }
    int d;
    if (it != doc_of_.end()) {
      d = it->second;
    } else {  // its parent row was not touched
      d = static_cast<int>(docs_.size());
      DocChange doc;
      doc.doctype = parent.first;
      doc.name = parent.second;
      doc.first_id = s.first_id;
      docs_.push_back(std::move(doc));
      doc_of_[parent] = d;
    }
    docs_[d].children.push_back(i);
    docs_[d].first_id = std::min(docs_[d].first_id, s.first_id);
    docs_[d].origins.insert(s.origins.begin(), s.origins.end());
  }

  const DocTypeRegistry& registry_;
  const std::vector<RowState>& states_;
  std::vector<DocChange> docs_;
  std::map<DocKey, int> doc_of_;  // (doctype, name) -> docs_ index
};

// Appends child row `row` of DocType `doctype` to its table (parentfield)
// in `doc`.
void AddToTable(Value* doc, Value row, const std::string& doctype) {
  row["doctype"] = Value::String(doctype);
  Value& table = (*doc)[StringField(row, "parentfield")];
  if (!table.is_array()) table = Value::EmptyArray();
  table.mutable_array().push_back(std::move(row));
}

// Create: the whole document as it is at the end of the transaction. Its
// rows are moved out of `states` (each row state belongs to one document,
// and a Create is that document's only entry).
Value CreateData(const DocTypeRegistry& registry, const DocChange& doc,
                 std::vector<RowState>& states) {
  Value full = std::move(*states[doc.parent].last_new);
  full["doctype"] = Value::String(doc.doctype);
  if (const DocTypeDef* def = registry.Find(doc.doctype)) {
    for (const FieldDef& f : def->fields) {
      if (f.is_table()) full[f.fieldname] = Value::EmptyArray();
    }
  }
  for (int c : doc.children) {
    if (states[c].last_new) {
      AddToTable(&full, std::move(*states[c].last_new), states[c].doctype);
    }
  }
  for (auto& [field, value] : full.mutable_object()) {
    if (value.is_array()) SortRows(&value.mutable_array());
  }
  return full;
}

// The old and new documents of the rows `doc`'s transaction touched, as if
// the document had always been named `new_name`.
std::pair<Value, Value> TouchedSides(const DocChange& doc, const std::vector<RowState>& states,
                                     const std::string& old_name, const std::string& new_name) {
  Value old_doc = Value::EmptyObject();
  Value new_doc = Value::EmptyObject();
  if (doc.parent >= 0) {
    old_doc = *states[doc.parent].first_old;
    new_doc = *states[doc.parent].last_new;
  } else {
    new_doc["name"] = Value::String(doc.name);
  }
  old_doc["name"] = Value::String(new_name);  // the rename is its own entry
  old_doc["doctype"] = Value::String(doc.doctype);
  new_doc["doctype"] = Value::String(doc.doctype);
  for (int c : doc.children) {
    const RowState& s = states[c];
    if (s.first_old) {
      Value row = *s.first_old;
      if (StringField(row, "parent") == old_name) row["parent"] = Value::String(new_name);
      AddToTable(&old_doc, std::move(row), s.doctype);
    }
    if (s.last_new) AddToTable(&new_doc, *s.last_new, s.doctype);
  }
  return {std::move(old_doc), std::move(new_doc)};
}

// Sorts each table of `side` by idx; a table touched on one side only is an
// empty table on the other.
void AlignTables(Value* side, Value* other) {
  for (auto& [field, value] : side->mutable_object()) {
    if (!value.is_array()) continue;
    SortRows(&value.mutable_array());
    if (other->Find(field) == nullptr) (*other)[field] = Value::EmptyArray();
  }
}

using Emit = std::function<void(std::string name, std::string type, Value data)>;

// Update / Cancel of an existing document, preceded by its Rename.
void EmitChange(const DocChange& doc, const std::vector<RowState>& states, const Emit& emit) {
  const RowState* parent = doc.parent >= 0 ? &states[doc.parent] : nullptr;
  std::string old_name = parent ? StringField(*parent->first_old, "name") : doc.name;
  std::string new_name = parent ? StringField(*parent->last_new, "name") : doc.name;
  if (old_name != new_name) {
    Value data = Value::EmptyObject();
    data["old_name"] = Value::String(old_name);
    data["new_name"] = Value::String(new_name);
    emit(new_name, "Rename", std::move(data));
  }
  auto [old_doc, new_doc] = TouchedSides(doc, states, old_name, new_name);
  AlignTables(&old_doc, &new_doc);
  AlignTables(&new_doc, &old_doc);
  DocDiff diff = Diff(old_doc, new_doc);
  if (diff.empty()) return;
  bool cancel = parent != nullptr && IsNumber(parent->first_old->Find("docstatus"), "1") &&
                IsNumber(parent->last_new->Find("docstatus"), "2");
  emit(new_name, cancel ? "Cancel" : "Update", diff.ToJson());
}

// Step 3: the entries of one document.
void EmitDocument(const DocTypeRegistry& registry, const DocChange& doc,
                  std::vector<RowState>& states, const Emit& emit) {
  const RowState* parent = doc.parent >= 0 ? &states[doc.parent] : nullptr;
  if (parent != nullptr && !parent->first_old && !parent->last_new) return;
  if (parent != nullptr && !parent->first_old) {
    emit(doc.name, "Create", CreateData(registry, doc, states));
  } else if (parent != nullptr && !parent->last_new) {
    emit(StringField(*parent->first_old, "name"), "Delete", Value());
  } else {
    EmitChange(doc, states, emit);
  }
}

}  // namespace

absl::StatusOr<std::vector<LogEntry>> BuildEntries(const DocTypeRegistry& registry,
                                                   const std::vector<RawChange>& tx_rows) {
  std::vector<LogEntry> out;
  if (tx_rows.empty()) return out;
  RowFolder folder;
  for (const RawChange& raw : tx_rows) RETURN_IF_ERROR(folder.Add(raw));
  std::vector<RowState> states = folder.Take();
  for (const DocChange& doc : DocumentGrouper(registry, states).Group()) {
    std::optional<std::string> origin;
    if (doc.origins.size() == 1) origin = *doc.origins.begin();
    EmitDocument(registry, doc, states, [&](std::string name, std::string type, Value data) {
      out.push_back(LogEntry{doc.doctype, std::move(name), std::move(type), std::move(data),
                             origin, tx_rows.front().txid});
    });
  }
  return out;
}

}  // namespace eventstream
