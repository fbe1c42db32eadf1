#include "services/producer/document_reader.h"

#include "absl/strings/str_cat.h"

namespace eventstream {
namespace {

absl::Status Annotate(const absl::Status& status, const DocTypeDef& def,
                      absl::string_view name) {
  return absl::Status(status.code(),
                      absl::StrCat("reading document \"", name, "\" of DocType \"",
                                   def.name, "\": ", status.message()));
}

absl::StatusOr<Value> ParseJsonText(absl::string_view text) {
  return Value::ParseJson(std::string_view(text.data(), text.size()));
}

}  // namespace

absl::StatusOr<std::optional<Value>> ReadDocument(
    pg::Connection* conn, const DocTypeRegistry& registry,
    const DocTypeDef& def, absl::string_view name) {
  auto parent = conn->Exec(absl::StrCat("SELECT to_jsonb(t)::text FROM ",
                                        pg::QuoteIdentifier(def.table),
                                        " AS t WHERE t.name = $1"),
                           {name});
  if (!parent.ok()) return Annotate(parent.status(), def, name);
  if (parent->rows() == 0) return std::optional<Value>();
  auto doc = ParseJsonText(parent->Get(0, 0));
  if (!doc.ok()) return Annotate(doc.status(), def, name);
  (*doc)["doctype"] = Value::String(def.name);
  for (const FieldDef& field : def.fields) {
    if (!field.is_table()) continue;
    Value rows = Value::EmptyArray();
    const DocTypeDef* child = registry.Find(field.options);
    if (child != nullptr) {
      auto r = conn->Exec(
          absl::StrCat("SELECT to_jsonb(c)::text FROM ",
                       pg::QuoteIdentifier(child->table),
                       " AS c WHERE c.parent = $1 AND c.parenttype = $2"
                       " AND c.parentfield = $3 ORDER BY c.idx, c.name"),
          {name, def.name, field.fieldname});
      if (!r.ok()) return Annotate(r.status(), def, name);
      for (int i = 0; i < r->rows(); ++i) {
        auto row = ParseJsonText(r->Get(i, 0));
        if (!row.ok()) return Annotate(row.status(), def, name);
        (*row)["doctype"] = Value::String(child->name);
        rows.mutable_array().push_back(std::move(*row));
      }
    }
    (*doc)[field.fieldname] = std::move(rows);
  }
  return std::optional<Value>(std::move(*doc));
}

}  // namespace eventstream
