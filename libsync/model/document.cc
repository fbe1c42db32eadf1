#include "libsync/model/document.h"

#include "libsync/model/doctype.h"

namespace eventstream {

std::string DocTypeOf(const Value& doc) {
  const Value* v = doc.Find("doctype");
  return v != nullptr && v->is_string() ? v->as_string() : std::string();
}

std::string NameOf(const Value& doc) {
  const Value* v = doc.Find("name");
  return v != nullptr && v->is_string() ? v->as_string() : std::string();
}

std::vector<std::string> TableFieldsOf(const Value& doc) {
  std::vector<std::string> out;
  if (!doc.is_object()) return out;
  for (const auto& [key, value] : doc.as_object()) {
    if (value.is_array()) out.push_back(key);
  }
  return out;
}

const Value::Array* ChildRows(const Value& doc, std::string_view field) {
  const Value* v = doc.Find(field);
  return v != nullptr && v->is_array() ? &v->as_array() : nullptr;
}

const Value* FindChildRow(const Value& doc, std::string_view field,
                          std::string_view row_name) {
  const Value::Array* rows = ChildRows(doc, field);
  if (rows == nullptr) return nullptr;
  for (const Value& row : *rows) {
    const Value* n = row.Find("name");
    if (n != nullptr && n->is_string() && n->as_string() == row_name) {
      return &row;
    }
  }
  return nullptr;
}

bool IsEmptyFieldValue(const Value* v) {
  return v == nullptr || v->is_null() ||
         (v->is_string() && v->as_string().empty());
}

namespace {

Value StripRow(const Value& row) {
  if (!row.is_object()) return row;
  Value::Object out;
  for (const auto& [key, value] : row.as_object()) {
    if (!IsBookkeepingColumn(key)) out.emplace(key, value);
  }
  return Value::FromObject(std::move(out));
}

}  // namespace

Value StripBookkeeping(const Value& doc) {
  if (!doc.is_object()) return doc;
  Value::Object out;
  for (const auto& [key, value] : doc.as_object()) {
    if (IsBookkeepingColumn(key)) continue;
    if (value.is_array()) {
      Value::Array rows;
      rows.reserve(value.as_array().size());
      for (const Value& row : value.as_array()) rows.push_back(StripRow(row));
      out.emplace(key, Value::FromArray(std::move(rows)));
    } else {
      out.emplace(key, value);
    }
  }
  return Value::FromObject(std::move(out));
}

}  // namespace eventstream
