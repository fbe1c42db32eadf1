#include "libsync/rules/sync_plan.h"

#include <map>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"

namespace eventstream {
namespace {

// A number as stored: numbers, bools (0/1); nullopt otherwise.
std::optional<double> AsNumber(const Value& v) {
  double d = 0;
  if (v.is_bool()) return v.as_bool() ? 1.0 : 0.0;
  if (v.is_number() && absl::SimpleAtod(v.number_text(), &d)) return d;
  return std::nullopt;
}

bool IsNullOrEmpty(const Value& v) {
  return v.is_null() || (v.is_string() && v.as_string().empty());
}

// `local_row` cut to the keys `incoming_row` carries, each value replaced
// by the incoming one when they are the same once stored; the incoming row
// cut to the keys the local row has. Both keep "name".
void Comparable(const Value& local_row, const Value& incoming_row, Value* local_out,
                Value* incoming_out);

// The local table's rows for Diff: rows the incoming table also has cut as
// Comparable, rows it lacks by name only (Diff reports them removed).
void ComparableTable(const Value::Array& local_rows, const Value::Array& incoming_rows,
                     Value* local_out, Value* incoming_out) {
  std::map<std::string, const Value*> local_by_name;
  for (const Value& row : local_rows) {
    const Value* n = row.Find("name");
    if (n != nullptr && n->is_string()) local_by_name.emplace(n->as_string(), &row);
  }
  Value::Array lo, in;
  std::map<std::string, bool> seen;
  for (const Value& row : incoming_rows) {
    const Value* n = row.Find("name");
    auto it = (n != nullptr && n->is_string()) ? local_by_name.find(n->as_string())
                                               : local_by_name.end();
    if (it == local_by_name.end() || seen.count(it->first) > 0 || !row.is_object()) {
      in.push_back(row);  // a new row (or one Diff cannot match): whole
      continue;
    }
    seen[it->first] = true;
    Value l, i;
    Comparable(*it->second, row, &l, &i);
    lo.push_back(std::move(l));
    in.push_back(std::move(i));
  }
  for (const auto& [name, row] : local_by_name) {
    if (seen.count(name) > 0) continue;
    Value stub = Value::EmptyObject();
    stub["name"] = Value::String(name);
    lo.push_back(std::move(stub));
  }
  *local_out = Value::FromArray(std::move(lo));
  *incoming_out = Value::FromArray(std::move(in));
}

void Comparable(const Value& local_row, const Value& incoming_row, Value* local_out,
                Value* incoming_out) {
  *local_out = Value::EmptyObject();
  *incoming_out = Value::EmptyObject();
  for (const auto& [key, iv] : incoming_row.as_object()) {
    const Value* lv = local_row.Find(key);
    if (key == "name" || key == "doctype") {
      (*local_out)[key] = iv;
      (*incoming_out)[key] = iv;
      continue;
    }
    if (lv == nullptr) continue;  // not a column here
    if (lv->is_array() && iv.is_array()) {
      ComparableTable(lv->as_array(), iv.as_array(), &(*local_out)[key], &(*incoming_out)[key]);
      continue;
    }
    (*local_out)[key] = SameStoredValue(*lv, iv) ? iv : *lv;
    (*incoming_out)[key] = iv;
  }
}

}  // namespace

bool SameStoredValue(const Value& a, const Value& b) {
  if (a == b) return true;
  if (IsNullOrEmpty(a) && IsNullOrEmpty(b)) return true;
  std::optional<double> x = AsNumber(a), y = AsNumber(b);
  // A number against numeric text (a text column read back, or a value
  // sent as a string): compare the text's number.
  double d = 0;
  if (x && !y && b.is_string() && absl::SimpleAtod(b.as_string(), &d)) y = d;
  if (y && !x && a.is_string() && absl::SimpleAtod(a.as_string(), &d)) x = d;
  return x.has_value() && y.has_value() && *x == *y;
}

Value LocalAsRemote(const DocTypeDef& def, Value local, const std::string& remote_name,
                    bool same_name) {
  if (!local.is_object()) return local;
  local["name"] = Value::String(remote_name);
  local.Erase("remote_docname");
  local.Erase("remote_site_name");
  for (const FieldDef& f : def.fields) {
    if (!f.is_table()) continue;
    auto it = local.mutable_object().find(f.fieldname);
    if (it == local.mutable_object().end() || !it->second.is_array()) continue;
    for (Value& row : it->second.mutable_array()) {
      const Value* remote = row.Find("remote_docname");
      if (!same_name && remote != nullptr && remote->is_string() && !remote->as_string().empty()) {
        row["name"] = *remote;
      }
      for (const char* k :
           {"remote_docname", "remote_site_name", "parent", "parenttype", "parentfield"}) {
        row.Erase(k);
      }
    }
  }
  return local;
}

SyncChange PlanSync(const Value& local, const Value& incoming) {
  SyncChange out;
  if (!local.is_object() || !incoming.is_object()) return out;
  Value l, i;
  Comparable(local, incoming, &l, &i);
  out.diff = Diff(l, i);
  auto count_rows = [](const Value& tables) {
    int n = 0;
    if (!tables.is_object()) return n;
    for (const auto& [table, rows] : tables.as_object()) {
      if (rows.is_array()) n += static_cast<int>(rows.as_array().size());
    }
    return n;
  };
  out.rows = count_rows(out.diff.added) + count_rows(out.diff.removed) +
             count_rows(out.diff.row_changed);
  for (const auto& [key, v] : out.diff.changed.as_object()) {
    if (v.is_array()) {
      out.rows += static_cast<int>(v.as_array().size());  // a table replaced whole
    } else {
      ++out.fields;
    }
  }
  return out;
}

}  // namespace eventstream
