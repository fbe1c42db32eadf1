#include "libsync/model/diff.h"

#include <algorithm>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libsync/base/status_macros.h"
#include "libsync/model/doctype.h"

namespace eventstream {
namespace {

// Keys never diffed. For child rows docstatus follows the parent too.
bool Skipped(std::string_view key, bool for_child) {
  return key == "doctype" || IsBookkeepingColumn(key) ||
         (for_child && key == "docstatus");
}

// Rows that can be matched by name: every row an object with a distinct
// string "name". Fills `by_name` (name -> row).
bool IndexRows(const Value::Array& rows,
               std::map<std::string_view, const Value*>* by_name) {
  for (const Value& row : rows) {
    const Value* name = row.Find("name");
    if (name == nullptr || !name->is_string()) return false;
    if (!by_name->emplace(name->as_string(), &row).second) return false;
  }
  return true;
}

// Scalar field diff of two objects (a parent without its tables, or a child
// row, in which an array is just a value).
void DiffFields(const Value& old_obj, const Value& new_obj, bool for_child,
                Value::Object* changed) {
  for (const auto& [key, nv] : new_obj.as_object()) {
    if (Skipped(key, for_child)) continue;
    if (!for_child && nv.is_array()) continue;  // tables: see DiffTables
    const Value* ov = old_obj.Find(key);
    if (!for_child && ov != nullptr && ov->is_array() && nv.is_null()) {
      continue;  // table -> null: handled as a table
    }
    if (ov == nullptr || *ov != nv) (*changed)[key] = nv;
  }
  for (const auto& [key, ov] : old_obj.as_object()) {
    if (Skipped(key, for_child) || ov.is_null()) continue;
    if (!for_child && ov.is_array()) continue;
    if (new_obj.Find(key) == nullptr) (*changed)[key] = Value::Null();
  }
}

void DiffTable(const std::string& field, const Value::Array& old_rows,
               const Value::Array& new_rows, DocDiff* out) {
  std::map<std::string_view, const Value*> old_by_name, new_by_name;
  if (!IndexRows(old_rows, &old_by_name) ||
      !IndexRows(new_rows, &new_by_name)) {
    out->changed[field] = Value::FromArray(new_rows);
    return;
  }
  for (const Value& row : new_rows) {
    const std::string& name = row.Find("name")->as_string();
    auto it = old_by_name.find(name);
    if (it == old_by_name.end()) {
      Value& list = out->added[field];
      if (list.is_null()) list = Value::EmptyArray();
      list.mutable_array().push_back(row);
      continue;
    }
    Value::Object changed;
    DiffFields(*it->second, row, /*for_child=*/true, &changed);
    if (changed.empty()) continue;
    changed["name"] = Value::String(name);
    Value& list = out->row_changed[field];
    if (list.is_null()) list = Value::EmptyArray();
    list.mutable_array().push_back(Value::FromObject(std::move(changed)));
  }
  for (const Value& row : old_rows) {
    const std::string& name = row.Find("name")->as_string();
    if (new_by_name.count(name) != 0) continue;
    Value& list = out->removed[field];
    if (list.is_null()) list = Value::EmptyArray();
    list.mutable_array().push_back(Value::String(name));
  }
}

}  // namespace

bool DocDiff::empty() const {
  auto is_empty = [](const Value& v) {
    return !v.is_object() || v.as_object().empty();
  };
  return is_empty(changed) && is_empty(added) && is_empty(removed) &&
         is_empty(row_changed);
}

Value DocDiff::ToJson() const {
  Value out = Value::EmptyObject();
  out["changed"] = changed.is_object() ? changed : Value::EmptyObject();
  out["added"] = added.is_object() ? added : Value::EmptyObject();
  out["removed"] = removed.is_object() ? removed : Value::EmptyObject();
  out["row_changed"] =
      row_changed.is_object() ? row_changed : Value::EmptyObject();
  return out;
}

namespace {

absl::Status CheckTables(const Value& v, absl::string_view what,
                         Value::Kind row_kind, bool rows_need_name) {
  if (!v.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("diff: \"", what, "\" must be an object"));
  }
  for (const auto& [table, rows] : v.as_object()) {
    if (!rows.is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "diff: ", what, ".", table, " must be an array of rows"));
    }
    for (size_t i = 0; i < rows.as_array().size(); ++i) {
      const Value& row = rows.as_array()[i];
      if (row.kind() != row_kind) {
        return absl::InvalidArgumentError(absl::StrCat(
            "diff: ", what, ".", table, "[", i, "] must be ",
            row_kind == Value::Kind::kString ? "a row name (string)"
                                             : "a row object"));
      }
      if (rows_need_name) {
        const Value* name = row.Find("name");
        if (name == nullptr || !name->is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat("diff: ", what, ".", table, "[", i,
                           "] must have a string \"name\""));
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Validate(const DocDiff& d) {
  if (!d.changed.is_object()) {
    return absl::InvalidArgumentError("diff: \"changed\" must be an object");
  }
  RETURN_IF_ERROR(CheckTables(d.added, "added", Value::Kind::kObject, false));
  RETURN_IF_ERROR(CheckTables(d.removed, "removed", Value::Kind::kString, false));
  return CheckTables(d.row_changed, "row_changed", Value::Kind::kObject, true);
}

}  // namespace

absl::StatusOr<DocDiff> DocDiff::FromJson(const Value& json) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError("diff: expected a JSON object");
  }
  DocDiff d;
  for (const auto& [key, v] : json.as_object()) {
    if (key == "changed") {
      d.changed = v;
    } else if (key == "added") {
      d.added = v;
    } else if (key == "removed") {
      d.removed = v;
    } else if (key == "row_changed") {
      d.row_changed = v;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("diff: unknown key \"", key,
                       "\" (expected changed, added, removed, row_changed)"));
    }
  }
  RETURN_IF_ERROR(Validate(d));
  return d;
}

DocDiff Diff(const Value& old_doc, const Value& new_doc) {
  DocDiff out;
  static const Value kEmpty = Value::EmptyObject();
  const Value& o = old_doc.is_object() ? old_doc : kEmpty;
  const Value& n = new_doc.is_object() ? new_doc : kEmpty;
  Value::Object changed;
  DiffFields(o, n, /*for_child=*/false, &changed);
  out.changed = Value::FromObject(std::move(changed));

  // Child tables: a key that is an array on one side and an array, absent
  // or null on the other.
  static const Value::Array kNoRows;
  auto rows_of = [](const Value* v) -> const Value::Array* {
    if (v == nullptr || v->is_null()) return &kNoRows;
    return v->is_array() ? &v->as_array() : nullptr;
  };
  auto diff_key = [&](const std::string& key) {
    if (Skipped(key, false)) return;
    const Value* ov = o.Find(key);
    const Value* nv = n.Find(key);
    const Value::Array* old_rows = rows_of(ov);
    const Value::Array* new_rows = rows_of(nv);
    if (old_rows == nullptr || new_rows == nullptr) {
      // An array on one side, a scalar on the other: a plain value change.
      if (nv == nullptr) {
        out.changed[key] = Value::Null();
      } else {
        out.changed[key] = *nv;
      }
      return;
    }
    DiffTable(key, *old_rows, *new_rows, &out);
  };
  for (const auto& [key, nv] : n.as_object()) {
    const Value* ov = o.Find(key);
    if (nv.is_array() || (ov != nullptr && ov->is_array())) diff_key(key);
  }
  for (const auto& [key, ov] : o.as_object()) {
    if (ov.is_array() && n.Find(key) == nullptr) diff_key(key);
  }

  return out;
}

namespace {

Value::Array* MutableTable(Value* doc, const std::string& table,
                           absl::string_view op, bool create,
                           absl::Status* status) {
  Value* t = nullptr;
  if (doc->Find(table) != nullptr || create) t = &(*doc)[table];
  if (t != nullptr && t->is_null() && create) *t = Value::EmptyArray();
  if (t == nullptr || !t->is_array()) {
    *status = absl::InvalidArgumentError(absl::StrCat(
        "patch ", op, ": document has no child table \"", table, "\""));
    return nullptr;
  }
  return &t->mutable_array();
}

Value* FindRow(Value::Array* rows, std::string_view name) {
  for (Value& row : *rows) {
    const Value* n = row.Find("name");
    if (n != nullptr && n->is_string() && n->as_string() == name) return &row;
  }
  return nullptr;
}

absl::Status RowNotFound(absl::string_view op, absl::string_view table,
                         absl::string_view row) {
  return absl::InvalidArgumentError(absl::StrCat(
      "patch ", op, ": child table \"", table, "\" has no row \"", row, "\""));
}

void SortByIdx(Value::Array* rows) {
  std::vector<double> keys;
  keys.reserve(rows->size());
  for (const Value& row : *rows) {
    const Value* idx = row.Find("idx");
    double d = 0;
    if (idx == nullptr || !idx->is_number() ||
        !absl::SimpleAtod(idx->number_text(), &d)) {
      return;  // not all rows ordered by idx: keep the order we have
    }
    keys.push_back(d);
  }
  if (std::is_sorted(keys.begin(), keys.end())) return;
  std::vector<size_t> order(rows->size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return keys[a] < keys[b]; });
  Value::Array sorted;
  sorted.reserve(rows->size());
  for (size_t i : order) sorted.push_back(std::move((*rows)[i]));
  *rows = std::move(sorted);
}

}  // namespace

absl::StatusOr<Value> Patch(const Value& doc, const DocDiff& diff) {
  if (!doc.is_object()) {
    return absl::InvalidArgumentError("patch: document must be an object");
  }
  RETURN_IF_ERROR(Validate(diff));
  absl::Status status;  // MutableTable's report
  Value out = doc;
  std::vector<std::string> touched;

  for (const auto& [table, names] : diff.removed.as_object()) {
    Value::Array* rows = MutableTable(&out, table, "removed", false, &status);
    if (rows == nullptr) return status;
    for (const Value& name : names.as_array()) {
      auto it = std::find_if(rows->begin(), rows->end(), [&](const Value& r) {
        const Value* n = r.Find("name");
        return n != nullptr && *n == name;
      });
      if (it == rows->end()) {
        return RowNotFound("removed", table, name.as_string());
      }
      rows->erase(it);
    }
    touched.push_back(table);
  }

  for (const auto& [table, entries] : diff.row_changed.as_object()) {
    Value::Array* rows =
        MutableTable(&out, table, "row_changed", false, &status);
    if (rows == nullptr) return status;
    for (const Value& entry : entries.as_array()) {
      const std::string& name = entry.Find("name")->as_string();
      Value* row = FindRow(rows, name);
      if (row == nullptr) return RowNotFound("row_changed", table, name);
      for (const auto& [field, v] : entry.as_object()) {
        if (field != "name") (*row)[field] = v;
      }
    }
    touched.push_back(table);
  }

  for (const auto& [field, v] : diff.changed.as_object()) out[field] = v;
  // A child row's docstatus follows its parent's (see diff.h).
  if (const Value* ds = diff.changed.Find("docstatus")) {
    for (auto& [field, v] : out.mutable_object()) {
      if (!v.is_array()) continue;
      for (Value& row : v.mutable_array()) {
        if (row.Find("docstatus") != nullptr) row["docstatus"] = *ds;
      }
    }
  }

  for (const auto& [table, new_rows] : diff.added.as_object()) {
    Value::Array* rows = MutableTable(&out, table, "added", true, &status);
    if (rows == nullptr) return status;
    for (const Value& row : new_rows.as_array()) {
      const Value* name = row.Find("name");
      if (name != nullptr && name->is_string() &&
          FindRow(rows, name->as_string()) != nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("patch added: child table \"", table,
                         "\" already has a row \"", name->as_string(), "\""));
      }
      rows->push_back(row);
    }
    touched.push_back(table);
  }

  for (const std::string& table : touched) {
    Value* t = &out[table];
    if (t->is_array()) SortByIdx(&t->mutable_array());
  }
  return out;
}

}  // namespace eventstream
