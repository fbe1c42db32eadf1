#include "libsync/wal/wal_capture_plan.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace eventstream::wal {
namespace {

// Whether a child row's parenttype (either version) is a captured parent.
bool ParentCaptured(const std::set<std::string>& parents, const RawChange& c) {
  for (const std::optional<Value>* row : {&c.new_row, &c.old_row}) {
    if (!*row) continue;
    const Value* type = (*row)->Find("parenttype");
    if (type != nullptr && type->is_string() && parents.count(type->as_string())) return true;
  }
  return false;
}

// Why the WAL's version of `c` cannot make a correct entry; "" when it can.
std::string Incomplete(const WalRowChange& c) {
  if (!c.missing_columns.empty()) {
    return absl::StrCat("unchanged TOAST columns [", absl::StrJoin(c.missing_columns, ", "),
                        "] of table ", c.table,
                        " are not in the WAL: it needs REPLICA IDENTITY FULL");
  }
  if (c.op == 'U' && (!c.old_row || c.old_is_key_only)) {
    return absl::StrCat("the WAL has no old row for an update of table ", c.table,
                        ": it needs REPLICA IDENTITY FULL");
  }
  return "";
}

}  // namespace

CapturedTables CapturedFrom(const DocTypeRegistry& registry,
                            const std::set<std::string>& tables) {
  CapturedTables out;
  for (const DocTypeDef& def : registry.all()) {
    if (def.istable || !tables.count(def.table)) continue;
    out.doctype_of_table[def.table] = def.name;
    for (const FieldDef& field : def.fields) {
      if (!field.is_table()) continue;
      const DocTypeDef* child = registry.Find(field.options);
      if (child == nullptr || !tables.count(child->table)) continue;
      out.doctype_of_table[child->table] = child->name;
      out.parents_of_child[child->name].insert(def.name);
    }
  }
  return out;
}

std::optional<std::string> OriginOf(const WalTransaction& tx) {
  for (const WalRowChange& c : tx.changes) {
    if (c.schema != kOriginSchema || c.table != kOriginTable || !c.new_row) continue;
    absl::StatusOr<Value> row = Value::ParseJson(*c.new_row);
    if (!row.ok()) continue;
    const Value* producer = row->Find("producer");
    if (producer != nullptr && producer->is_string()) return producer->as_string();
  }
  return tx.origin;
}

TxRows ToTxRows(const DocTypeRegistry& registry, const CapturedTables& captured,
                const WalTransaction& tx, int64_t first_id) {
  TxRows out;
  out.txid = tx.txid;
  const std::optional<std::string> origin = OriginOf(tx);
  int64_t id = first_id;
  for (const WalRowChange& c : tx.changes) {
    if (c.schema == kOriginSchema) continue;  // the origin marker, never a document
    auto table = captured.doctype_of_table.find(c.table);
    if (table == captured.doctype_of_table.end()) continue;
    if (c.op == 'U' && c.old_row && !c.old_is_key_only && c.missing_columns.empty() &&
        c.old_row == c.new_row) {
      continue;  // changed nothing (the trigger records no such row either)
    }
    RawChange row = ParseRawChange(registry, ToRawChangeText(tx, c, table->second, id));
    const std::string incomplete = Incomplete(c);
    auto parents = captured.parents_of_child.find(table->second);
    if (incomplete.empty() && parents != captured.parents_of_child.end() &&
        !ParentCaptured(parents->second, row)) {
      continue;  // a child row of a parent that is not captured
    }
    if (row.unreadable.empty()) row.unreadable = incomplete;
    row.origin = origin;
    out.last_id = id++;
    out.rows.push_back(std::move(row));
  }
  return out;
}

}  // namespace eventstream::wal
