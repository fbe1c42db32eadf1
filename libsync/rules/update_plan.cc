#include "libsync/rules/update_plan.h"

namespace eventstream {

const std::set<std::string>& ParentSkipKeys() {
  static const auto* skip =
      new std::set<std::string>{"name", "doctype", "remote_docname", "remote_site_name"};
  return *skip;
}

const std::set<std::string>& ChildSkipKeys() {
  static const auto* skip =
      new std::set<std::string>{"name",        "doctype",        "parent",          "parenttype",
                                "parentfield", "remote_docname", "remote_site_name"};
  return *skip;
}

const char* ChildRowKey(bool same_name) { return same_name ? "name" : "remote_docname"; }

ChildTable ChildTableOf(const DocTypeDef& def, const DocTypeRegistry& registry,
                        const std::string& field) {
  const FieldDef* f = def.FindField(field);
  if (f == nullptr || !f->is_table()) return {};
  return {f, registry.Find(f->options)};
}

namespace {

// The tables of `tables` (table -> list) with their child DocType.
std::vector<UpdatePlan::TableRows> KnownTables(const DocTypeDef& def,
                                               const DocTypeRegistry& registry,
                                               const Value& tables) {
  std::vector<UpdatePlan::TableRows> out;
  if (!tables.is_object()) return out;
  for (const auto& [table, rows] : tables.as_object()) {
    ChildTable ct = ChildTableOf(def, registry, table);
    if (ct.child == nullptr || !rows.is_array()) continue;
    out.push_back({ct.field, ct.child, &rows.as_array()});
  }
  return out;
}

}  // namespace

UpdatePlan PlanUpdate(const DocTypeDef& def, const DocTypeRegistry& registry,
                      const DocDiff& diff) {
  UpdatePlan plan;
  for (const UpdatePlan::TableRows& t : KnownTables(def, registry, diff.removed)) {
    for (const Value& n : *t.rows) plan.deletes.push_back({t.child, n.ToText()});
  }
  plan.row_updates = KnownTables(def, registry, diff.row_changed);
  plan.parent_skip = ParentSkipKeys();
  for (const FieldDef& f : def.fields) {
    if (!f.is_table()) continue;
    plan.parent_skip.insert(f.fieldname);
    const Value* rows = diff.changed.Find(f.fieldname);
    const DocTypeDef* child = registry.Find(f.options);
    if (rows == nullptr || child == nullptr) continue;
    plan.replaced.push_back({&f, child, rows->is_array() ? &rows->as_array() : nullptr});
  }
  plan.added = KnownTables(def, registry, diff.added);
  if (const Value* ds = diff.changed.Find("docstatus"); ds != nullptr && !ds->is_null()) {
    plan.docstatus = ds;
    for (const FieldDef& f : def.fields) {
      const DocTypeDef* child = f.is_table() ? registry.Find(f.options) : nullptr;
      if (child != nullptr) plan.docstatus_tables.push_back({&f, child});
    }
  }
  return plan;
}

}  // namespace eventstream
