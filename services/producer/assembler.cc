#include "services/producer/assembler.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "libsync/diff.h"
#include "libsync/row_groups.h"
#include "libsync/status_macros.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

using DocKey = std::pair<std::string, std::string>;  // doctype, name

// The life of one table row within a transaction.
struct RowState {
  std::string doctype;
  std::optional<Value> first_old;  // absent: the row did not exist before
  std::optional<Value> last_new;   // absent: the row does not exist after
  int64_t first_id = 0;
  std::set<std::optional<std::string>> origins;
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
  std::stable_sort(rows->begin(), rows->end(),
                   [](const Value& a, const Value& b) {
                     int64_t ia = IdxOf(a), ib = IdxOf(b);
                     if (ia != ib) return ia < ib;
                     return StringField(a, "name") < StringField(b, "name");
                   });
}

bool IsNumber(const Value* v, std::string_view text) {
  return v != nullptr && v->is_number() && v->number_text() == text;
}

// One document touched by the transaction.
struct DocChange {
  std::string doctype;
  std::string name;           // the parent's name (final, if renamed)
  int parent = -1;            // index of the parent's RowState, or -1
  std::vector<int> children;  // indexes of child RowStates
  int64_t first_id = 0;
  std::set<std::optional<std::string>> origins;
};

}  // namespace

absl::StatusOr<std::vector<LogEntry>> BuildEntries(
    const DocTypeRegistry& registry, const std::vector<RawChange>& tx_rows) {
  std::vector<LogEntry> out;
  if (tx_rows.empty()) return out;
  const std::string& txid = tx_rows.front().txid;

  auto is_child = [&](const std::string& doctype, const Value& row) {
    const DocTypeDef* def = registry.Find(doctype);
    if (def != nullptr) return def->istable;
    return row.Find("parentfield") != nullptr;
  };

  // 1. Fold the raw rows into one RowState per table row, following renames.
  std::vector<RowState> states;
  std::map<DocKey, int> current;  // (doctype, current name) -> state
  for (const RawChange& raw : tx_rows) {
    bool shape_ok = raw.op == 'I'   ? raw.new_row.has_value()
                    : raw.op == 'D' ? raw.old_row.has_value()
                    : raw.op == 'U' ? raw.old_row && raw.new_row
                                    : false;
    if (!shape_ok) {
      return absl::InternalError(
          absl::StrCat("raw change ", raw.id, " of DocType \"", raw.doctype,
                       "\": op '", std::string(1, raw.op),
                       "' without the rows it needs; cannot assemble"));
    }
    if (!HasStringName(raw.old_row) || !HasStringName(raw.new_row)) {
      return absl::InternalError(absl::StrCat(
          "raw change ", raw.id, " of DocType \"", raw.doctype,
          "\" has no row with a string \"name\"; cannot assemble"));
    }
    if (raw.op == 'I') {
      DocKey key{raw.doctype, StringField(*raw.new_row, "name")};
      auto it = current.find(key);
      if (it != current.end()) {
        states[it->second].last_new =
            raw.new_row;  // deleted earlier, re-inserted
        states[it->second].origins.insert(raw.origin);
      } else {
        current[key] = static_cast<int>(states.size());
        states.push_back(RowState{
            raw.doctype, std::nullopt, raw.new_row, raw.id, {raw.origin}});
      }
      continue;
    }
    DocKey key{raw.doctype, StringField(*raw.old_row, "name")};
    auto it = current.find(key);
    int index;
    if (it != current.end()) {
      index = it->second;
      states[index].origins.insert(raw.origin);
    } else {
      index = static_cast<int>(states.size());
      states.push_back(RowState{
          raw.doctype, raw.old_row, std::nullopt, raw.id, {raw.origin}});
      current[key] = index;
    }
    states[index].last_new = raw.op == 'D' ? std::nullopt : raw.new_row;
    if (raw.op == 'U') {
      DocKey new_key{raw.doctype, StringField(*raw.new_row, "name")};
      if (new_key != key) {
        current.erase(key);
        current[new_key] = index;
      }
    }
  }

  // 2. Group rows into documents: parents by their names (old and new, so
  //    children pointing at either find them), children by parenttype/parent.
  std::vector<DocChange> docs;
  std::map<DocKey, int> doc_of;  // (doctype, name) -> docs index
  for (int i = 0; i < static_cast<int>(states.size()); ++i) {
    const RowState& s = states[i];
    const Value& row = s.last_new ? *s.last_new : *s.first_old;
    if (is_child(s.doctype, row)) continue;
    DocChange doc;
    doc.doctype = s.doctype;
    doc.name = StringField(row, "name");
    doc.parent = i;
    doc.first_id = s.first_id;
    doc.origins = s.origins;
    int d = static_cast<int>(docs.size());
    docs.push_back(std::move(doc));
    if (s.first_old) doc_of[{s.doctype, StringField(*s.first_old, "name")}] = d;
    if (s.last_new) doc_of[{s.doctype, StringField(*s.last_new, "name")}] = d;
  }
  for (int i = 0; i < static_cast<int>(states.size()); ++i) {
    const RowState& s = states[i];
    const Value& row = s.last_new ? *s.last_new : *s.first_old;
    if (!is_child(s.doctype, row)) continue;
    DocKey parent{StringField(row, "parenttype"), StringField(row, "parent")};
    auto it = doc_of.find(parent);
    if (it == doc_of.end() && s.last_new && s.first_old) {
      // The row moved to another parent name; try the one it had.
      it = doc_of.find({StringField(*s.first_old, "parenttype"),
                        StringField(*s.first_old, "parent")});
    }
    int d;
    if (it != doc_of.end()) {
      d = it->second;
    } else {
      d = static_cast<int>(docs.size());
      DocChange doc;
      doc.doctype = parent.first;
      doc.name = parent.second;
      doc.first_id = s.first_id;
      docs.push_back(std::move(doc));
      doc_of[parent] = d;
    }
    docs[d].children.push_back(i);
    docs[d].first_id = std::min(docs[d].first_id, s.first_id);
    docs[d].origins.insert(s.origins.begin(), s.origins.end());
  }
  std::stable_sort(docs.begin(), docs.end(),
                   [](const DocChange& a, const DocChange& b) {
                     return a.first_id < b.first_id;
                   });

  // 3. One entry per document (Rename + Update/Cancel for a renamed one).
  for (const DocChange& doc : docs) {
    std::optional<std::string> origin;
    if (doc.origins.size() == 1) origin = *doc.origins.begin();
    auto entry = [&](std::string name, std::string type, Value data) {
      out.push_back(LogEntry{doc.doctype, std::move(name), std::move(type),
                             std::move(data), origin, txid});
    };
    const RowState* parent = doc.parent >= 0 ? &states[doc.parent] : nullptr;
    if (parent != nullptr && !parent->first_old && !parent->last_new) continue;

    if (parent != nullptr && !parent->first_old) {
      // Create: the whole document as it is at the end of the transaction.
      Value full = *parent->last_new;
      full["doctype"] = Value::String(doc.doctype);
      if (const DocTypeDef* def = registry.Find(doc.doctype)) {
        for (const FieldDef& f : def->fields) {
          if (f.is_table()) full[f.fieldname] = Value::EmptyArray();
        }
      }
      for (int c : doc.children) {
        const RowState& s = states[c];
        if (!s.last_new) continue;
        Value row = *s.last_new;
        row["doctype"] = Value::String(s.doctype);
        Value& table = full[StringField(row, "parentfield")];
        if (!table.is_array()) table = Value::EmptyArray();
        table.mutable_array().push_back(std::move(row));
      }
      for (auto& [field, value] : full.mutable_object()) {
        if (value.is_array()) SortRows(&value.mutable_array());
      }
      entry(doc.name, "Create", std::move(full));
      continue;
    }
    if (parent != nullptr && !parent->last_new) {
      entry(StringField(*parent->first_old, "name"), "Delete", Value());
      continue;
    }

    // Update / Cancel (and Rename): old and new documents of the rows touched.
    std::string old_name =
        parent ? StringField(*parent->first_old, "name") : doc.name;
    std::string new_name =
        parent ? StringField(*parent->last_new, "name") : doc.name;
    if (old_name != new_name) {
      Value data = Value::EmptyObject();
      data["old_name"] = Value::String(old_name);
      data["new_name"] = Value::String(new_name);
      entry(new_name, "Rename", std::move(data));
    }
    Value old_doc = Value::EmptyObject();
    Value new_doc = Value::EmptyObject();
    if (parent != nullptr) {
      old_doc = *parent->first_old;
      new_doc = *parent->last_new;
    } else {
      old_doc["name"] = Value::String(doc.name);
      new_doc["name"] = Value::String(doc.name);
    }
    old_doc["name"] = Value::String(new_name);  // the rename is its own entry
    old_doc["doctype"] = Value::String(doc.doctype);
    new_doc["doctype"] = Value::String(doc.doctype);
    for (int c : doc.children) {
      const RowState& s = states[c];
      if (s.first_old) {
        Value row = *s.first_old;
        row["doctype"] = Value::String(s.doctype);
        if (StringField(row, "parent") == old_name)
          row["parent"] = Value::String(new_name);
        Value& table = old_doc[StringField(row, "parentfield")];
        if (!table.is_array()) table = Value::EmptyArray();
        table.mutable_array().push_back(std::move(row));
      }
      if (s.last_new) {
        Value row = *s.last_new;
        row["doctype"] = Value::String(s.doctype);
        Value& table = new_doc[StringField(row, "parentfield")];
        if (!table.is_array()) table = Value::EmptyArray();
        table.mutable_array().push_back(std::move(row));
      }
    }
    // A table touched on one side only is an empty table on the other.
    for (Value* side : {&old_doc, &new_doc}) {
      Value* other = side == &old_doc ? &new_doc : &old_doc;
      for (auto& [field, value] : side->mutable_object()) {
        if (!value.is_array()) continue;
        SortRows(&value.mutable_array());
        if (other->Find(field) == nullptr)
          (*other)[field] = Value::EmptyArray();
      }
    }
    DocDiff diff = Diff(old_doc, new_doc);
    if (diff.empty()) continue;
    bool cancel = parent != nullptr &&
                  IsNumber(parent->first_old->Find("docstatus"), "1") &&
                  IsNumber(parent->last_new->Find("docstatus"), "2");
    entry(new_name, cancel ? "Cancel" : "Update", diff.ToJson());
  }
  return out;
}

namespace {

constexpr char kAnyRawSql[] = "SELECT EXISTS (SELECT 1 FROM es_producer.raw_change)";
constexpr char kLockSql[] =
    "SELECT pg_try_advisory_xact_lock(hashtext('es_producer.assembler'))";
// The transactions with a row among the first $1 ids.
constexpr char kWindowTxSql[] =
    "SELECT DISTINCT txid::text FROM (SELECT txid FROM es_producer.raw_change"
    " ORDER BY id LIMIT $1) w";
// All rows of the transactions $1 (not prepared: see AssembleOnce).
constexpr char kWindowRowsSql[] =
    "SELECT r.id, r.txid::text AS txid, r.doctype, r.op, r.old_row::text AS old_row,"
    " r.new_row::text AS new_row, r.origin"
    " FROM es_producer.raw_change r WHERE r.txid = ANY($1::xid8[])"
    " ORDER BY r.id";
// The rows of the transaction that finished writing first.
constexpr char kFirstTxRowsSql[] =
    "SELECT r.id, r.txid::text AS txid, r.doctype, r.op, r.old_row::text AS old_row,"
    " r.new_row::text AS new_row, r.origin"
    " FROM es_producer.raw_change r WHERE r.txid ="
    "   (SELECT txid FROM es_producer.raw_change GROUP BY txid ORDER BY max(id) LIMIT 1)"
    " ORDER BY r.id";
// A contiguous block of $1 seq numbers; returns its last.
constexpr char kSeqBlockSql[] =
    "SELECT setval('es_producer.update_log_seq',"
    "              nextval('es_producer.update_log_seq') + $1 - 1)";
constexpr char kInsertEntriesSql[] =
    "INSERT INTO es_producer.update_log"
    "   (seq, doctype, docname, update_type, data, origin, txid)"
    " SELECT (e->>'seq')::bigint, e->>'doctype', e->>'docname', e->>'update_type',"
    "        NULLIF(e->'data', 'null'::jsonb), e->>'origin', (e->>'txid')::xid8"
    " FROM jsonb_array_elements($1::jsonb) AS e";
// Not prepared either: planned with the actual array (see AssembleOnce).
constexpr char kConsumeSql[] =
    "DELETE FROM es_producer.raw_change WHERE txid = ANY($1::xid8[])";

// The registry columns of raw row side {side} (old_row / new_row of `r`),
// cut by PostgreSQL, which reads JSON of any depth. $2 maps each DocType to
// its replicated columns ("" to those of a DocType the registry lacks).
// Costs about 20 us a row, so it runs only for rows the services cannot read.
constexpr char kRegistryColumns[] =
    "(SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(r.{side}) AS e"
    " WHERE coalesce($2::jsonb -> r.doctype, $2::jsonb -> '') ? e.key)";
// Rows $1 again, registry columns only, with the keys that place them in
// their document.
constexpr char kRereadSql[] =
    "SELECT r.id, {old}::text AS old_row, {new}::text AS new_row,"
    " r.old_row ->> 'name' AS old_name, r.new_row ->> 'name' AS new_name,"
    " r.old_row ->> 'parenttype' AS old_parenttype, r.old_row ->> 'parent' AS old_parent,"
    " r.new_row ->> 'parenttype' AS new_parenttype, r.new_row ->> 'parent' AS new_parent,"
    " coalesce(r.new_row, r.old_row) ? 'parentfield' AS has_parentfield"
    " FROM es_producer.raw_change r WHERE r.id = ANY($1::bigint[])";
// Moves rows $1 (registry columns only) into one capture_error row.
constexpr char kRecordFailureSql[] =
    "INSERT INTO es_producer.capture_error (txid, doctype, docname, error, raw_rows)"
    " SELECT $3::xid8, $4, $5, $6, jsonb_agg(jsonb_build_object("
    "   'id', r.id, 'table_name', r.table_name, 'doctype', r.doctype, 'op', r.op,"
    "   'old_row', {old}, 'new_row', {new}, 'origin', r.origin) ORDER BY r.id)"
    " FROM es_producer.raw_change r WHERE r.id = ANY($1::bigint[])"
    " RETURNING id";

std::string WithRegistryColumns(const char* sql) {
  return absl::StrReplaceAll(
      sql, {{"{old}", absl::StrReplaceAll(kRegistryColumns, {{"{side}", "old_row"}})},
            {"{new}", absl::StrReplaceAll(kRegistryColumns, {{"{side}", "new_row"}})}});
}

// $2 of kRegistryColumns for `registry`.
std::string ColumnsJson(const DocTypeRegistry& registry) {
  auto columns = [](const DocTypeDef& def) {
    Value::Array out;
    for (std::string& c : ReplicatedColumns(def)) out.push_back(Value::String(std::move(c)));
    return Value::FromArray(std::move(out));
  };
  Value map = Value::EmptyObject();
  DocTypeDef unknown;
  unknown.istable = true;  // an unknown DocType keeps a child row's columns
  map[""] = columns(unknown);
  for (const DocTypeDef& def : registry.all()) map[def.name] = columns(def);
  return map.ToJson();
}

std::string XidArray(const std::vector<std::string>& txids) {
  return absl::StrCat("{", absl::StrJoin(txids, ","), "}");
}

std::string IdArray(const std::vector<int64_t>& ids) {
  return absl::StrCat("{", absl::StrJoin(ids, ","), "}");
}

struct TxRows {
  std::string txid;
  int64_t last_id = 0;
  std::vector<RawChange> rows;
};

// Parses side `col` of raw row `i` into `out`, cut to `def`'s registry
// columns. A side that does not parse leaves `unreadable` saying why.
void ParseSide(const pg::Result& r, int i, int col, const DocTypeDef* def,
               std::optional<Value>* out, std::string* unreadable) {
  out->reset();
  if (r.IsNull(i, col)) return;
  absl::string_view text = r.Get(i, col);
  auto v = Value::ParseJson(std::string_view(text.data(), text.size()));
  if (!v.ok()) {
    *unreadable = absl::StrCat(r.column_name(col), " of raw change ",
                               r.Get(i, "id"), " does not parse: ", v.status().message());
    return;
  }
  KeepReplicatedColumns(def, &*v);
  *out = std::move(*v);
}

// The rows of `r` by transaction, parsed and cut to their registry columns;
// a row that does not parse is kept with `unreadable` set.
void CollectRows(const DocTypeRegistry& registry, const pg::Result& r,
                 std::map<std::string, TxRows>* txs) {
  const int id = r.ColumnIndex("id"), txid = r.ColumnIndex("txid"),
            doctype = r.ColumnIndex("doctype"), op = r.ColumnIndex("op"),
            old_row = r.ColumnIndex("old_row"), new_row = r.ColumnIndex("new_row"),
            origin = r.ColumnIndex("origin");
  for (int i = 0; i < r.rows(); ++i) {
    RawChange c;
    c.id = r.GetInt64(i, id);
    c.txid = std::string(r.Get(i, txid));
    c.doctype = std::string(r.Get(i, doctype));
    c.op = r.Get(i, op).empty() ? 'U' : r.Get(i, op)[0];
    const DocTypeDef* def = registry.Find(c.doctype);
    ParseSide(r, i, old_row, def, &c.old_row, &c.unreadable);
    ParseSide(r, i, new_row, def, &c.new_row, &c.unreadable);
    c.origin = r.GetOptional(i, origin);
    TxRows& t = (*txs)[c.txid];
    t.txid = c.txid;
    t.last_id = std::max(t.last_id, c.id);
    t.rows.push_back(std::move(c));
  }
}

// The transactions this pass assembles, ordered by their last raw row id:
// those whose rows all lie within the first `limit` ids, or else the one
// that finished writing first, whole (see the header). `more` is set when
// raw rows are left behind.
absl::StatusOr<std::vector<TxRows>> ReadWindow(pg::Connection* conn,
                                               const DocTypeRegistry& registry,
                                               int limit, bool* more) {
  // Two statements: the transactions, then their rows. They had committed
  // when the first statement ran, so the second (a later snapshot of this
  // READ COMMITTED transaction) sees every row of theirs, and no one else
  // deletes raw rows while we hold the lock. One statement (`txid IN
  // (SELECT txid ... LIMIT n)`) left the join to the planner, which, with
  // statistics taken while raw_change was nearly empty, chose a nested loop
  // over the whole table per window row: one call ran 90 s while capture
  // fell behind. The second statement is planned with the actual array each
  // time (not prepared), so whichever plan it picks is linear: index probes
  // on txid, or a scan with a hashed ANY.
  ASSIGN_OR_RETURN(pg::Result window, conn->ExecPrepared("es_asm_window_tx", kWindowTxSql,
                                                         {limit}));
  std::vector<std::string> window_txids;
  window_txids.reserve(window.rows());
  for (int i = 0; i < window.rows(); ++i) window_txids.emplace_back(window.Get(i, 0));
  ASSIGN_OR_RETURN(pg::Result rows, conn->Exec(kWindowRowsSql, {XidArray(window_txids)}));
  std::map<std::string, TxRows> fetched;
  CollectRows(registry, rows, &fetched);

  std::vector<TxRows> picked;
  const bool all = rows.rows() < limit;
  const int64_t cutoff = all ? INT64_MAX : rows.GetInt64(limit - 1, 0);
  for (auto& [txid, t] : fetched) {
    if (t.last_id <= cutoff) {
      picked.push_back(std::move(t));
    } else {
      *more = true;
    }
  }
  if (picked.empty() && !fetched.empty()) {
    // One transaction larger than the window: taken whole.
    ASSIGN_OR_RETURN(pg::Result first, conn->ExecPrepared("es_asm_first", kFirstTxRowsSql));
    std::map<std::string, TxRows> single;
    CollectRows(registry, first, &single);
    for (auto& [txid, t] : single) picked.push_back(std::move(t));
    *more = true;
  }
  std::sort(picked.begin(), picked.end(),
            [](const TxRows& a, const TxRows& b) { return a.last_id < b.last_id; });
  return picked;
}

// The keys that place raw row `c` (read) in its document.
RowKeys KeysOf(const DocTypeRegistry& registry, const RawChange& c) {
  RowKeys k;
  k.doctype = c.doctype;
  const DocTypeDef* def = registry.Find(c.doctype);
  const std::optional<Value>& any = c.new_row ? c.new_row : c.old_row;
  k.child = def != nullptr ? def->istable : any && any->Find("parentfield") != nullptr;
  auto side = [&](const std::optional<Value>& row, std::optional<std::string>* name,
                  std::optional<std::pair<std::string, std::string>>* parent) {
    if (!row) return;
    if (HasStringName(row)) *name = StringField(*row, "name");
    if (k.child) *parent = {StringField(*row, "parenttype"), StringField(*row, "parent")};
  };
  side(c.old_row, &k.old_name, &k.old_parent);
  side(c.new_row, &k.new_name, &k.new_parent);
  return k;
}

// Reads the unreadable rows of `rows` again with their registry columns
// cut out by PostgreSQL: a row whose too-deep JSON was in a column the
// registry does not know reads now. Fills `keys` for each of them.
absl::Status Reread(pg::Connection* conn, const DocTypeRegistry& registry,
                    const std::string& columns_json, std::vector<RawChange>* rows,
                    std::map<int64_t, RowKeys>* keys) {
  std::vector<int64_t> ids;
  std::map<int64_t, RawChange*> by_id;
  for (RawChange& c : *rows) {
    if (c.unreadable.empty()) continue;
    ids.push_back(c.id);
    by_id[c.id] = &c;
  }
  if (ids.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(WithRegistryColumns(kRereadSql),
                                            {IdArray(ids), columns_json}));
  for (int i = 0; i < r.rows(); ++i) {
    RawChange& c = *by_id.at(r.GetInt64(i, 0));
    const DocTypeDef* def = registry.Find(c.doctype);
    c.unreadable.clear();
    ParseSide(r, i, r.ColumnIndex("old_row"), def, &c.old_row, &c.unreadable);
    ParseSide(r, i, r.ColumnIndex("new_row"), def, &c.new_row, &c.unreadable);
    RowKeys& k = (*keys)[c.id];
    k.doctype = c.doctype;
    k.child = def != nullptr ? def->istable : r.GetBool(i, r.ColumnIndex("has_parentfield"));
    k.old_name = r.GetOptional(i, r.ColumnIndex("old_name"));
    k.new_name = r.GetOptional(i, r.ColumnIndex("new_name"));
    if (!k.child) continue;
    if (c.op != 'I')
      k.old_parent = {std::string(r.Get(i, "old_parenttype")), std::string(r.Get(i, "old_parent"))};
    if (c.op != 'D')
      k.new_parent = {std::string(r.Get(i, "new_parenttype")), std::string(r.Get(i, "new_parent"))};
  }
  return absl::OkStatus();
}

// The document a failed group of rows is named after: its first parent
// row's, else its first child row's parent.
std::pair<std::string, std::string> NameOfGroup(const std::vector<RowKeys>& keys,
                                                const std::vector<size_t>& group) {
  for (size_t i : group) {
    const RowKeys& k = keys[i];
    if (!k.child) return {k.doctype, k.new_name ? *k.new_name : k.old_name.value_or("")};
  }
  for (size_t i : group) {
    const auto& parent = keys[i].new_parent ? keys[i].new_parent : keys[i].old_parent;
    if (parent) return *parent;
  }
  return {keys[group.front()].doctype, ""};
}

// How one transaction's rows turned out.
struct TxOutcome {
  std::vector<LogEntry> entries;
  std::vector<CaptureFailure> failures;
};

// The slow path of AssembleTransaction: each document of the transaction on
// its own, so that one that cannot become an entry fails alone.
absl::StatusOr<TxOutcome> AssembleByDocument(pg::Connection* conn,
                                             const DocTypeRegistry& registry,
                                             const std::string& columns_json, TxRows* t) {
  std::map<int64_t, RowKeys> reread_keys;
  RETURN_IF_ERROR(Reread(conn, registry, columns_json, &t->rows, &reread_keys));
  std::vector<RowKeys> keys;
  for (const RawChange& c : t->rows) {
    auto it = reread_keys.find(c.id);
    keys.push_back(it != reread_keys.end() ? it->second : KeysOf(registry, c));
  }
  TxOutcome out;
  for (const std::vector<size_t>& group : GroupRowsByDocument(keys)) {
    std::vector<RawChange> part;
    std::string error;
    for (size_t i : group) {
      part.push_back(t->rows[i]);
      if (error.empty()) error = t->rows[i].unreadable;
    }
    if (error.empty()) {
      auto built = BuildEntries(registry, part);
      if (built.ok()) {
        for (LogEntry& e : *built) out.entries.push_back(std::move(e));
        continue;
      }
      error = std::string(built.status().message());
    }
    CaptureFailure failure;
    std::tie(failure.doctype, failure.docname) = NameOfGroup(keys, group);
    failure.txid = t->txid;
    failure.error = std::move(error);
    for (const RawChange& c : part) failure.raw_ids.push_back(c.id);
    out.failures.push_back(std::move(failure));
  }
  return out;
}

// The entries of one transaction. The usual case is one BuildEntries call;
// only when a row does not parse or BuildEntries refuses the rows does it
// go document by document.
absl::StatusOr<TxOutcome> AssembleTransaction(pg::Connection* conn,
                                              const DocTypeRegistry& registry,
                                              const std::string& columns_json, TxRows* t) {
  bool readable = std::all_of(t->rows.begin(), t->rows.end(),
                              [](const RawChange& c) { return c.unreadable.empty(); });
  if (readable) {
    auto built = BuildEntries(registry, t->rows);
    if (built.ok()) return TxOutcome{std::move(*built), {}};
  }
  return AssembleByDocument(conn, registry, columns_json, t);
}

// Inserts `entries` with a contiguous block of seqs; returns the last seq.
absl::StatusOr<int64_t> WriteEntries(pg::Connection* conn, std::vector<LogEntry>* entries) {
  // Only the lock holder draws from the sequence, so setval cannot race
  // with another nextval.
  ASSIGN_OR_RETURN(pg::Result block,
                   conn->ExecPrepared("es_asm_seq", kSeqBlockSql,
                                      {static_cast<int64_t>(entries->size())}));
  const int64_t end_seq = block.GetInt64(0, 0);
  Value::Array json;
  json.reserve(entries->size());
  int64_t seq = end_seq - static_cast<int64_t>(entries->size()) + 1;
  for (LogEntry& e : *entries) {
    Value v = Value::EmptyObject();
    v["seq"] = Value::Int(seq++);
    v["doctype"] = Value::String(e.doctype);
    v["docname"] = Value::String(e.docname);
    v["update_type"] = Value::String(e.update_type);
    v["data"] = std::move(e.data);
    v["origin"] = e.origin ? Value::String(*e.origin) : Value();
    v["txid"] = Value::String(e.txid);
    json.push_back(std::move(v));
  }
  RETURN_IF_ERROR(conn->ExecPrepared("es_asm_insert", kInsertEntriesSql,
                                     {Value::FromArray(std::move(json)).ToJson()})
                      .status());
  return end_seq;
}

// One capture_error row per failure (in the pass's transaction); sets each
// failure's record_id.
absl::Status RecordFailures(pg::Connection* conn, const std::string& columns_json,
                            std::vector<CaptureFailure>* failures) {
  for (CaptureFailure& f : *failures) {
    ASSIGN_OR_RETURN(pg::Result r,
                     conn->Exec(WithRegistryColumns(kRecordFailureSql),
                                {IdArray(f.raw_ids), columns_json, f.txid, f.doctype,
                                 f.docname, f.error}));
    f.record_id = r.GetInt64(0, 0);
  }
  return absl::OkStatus();
}

// What a log line may carry of a name: control characters escaped.
std::string Printable(const std::string& s) { return absl::CHexEscape(s); }

}  // namespace

Assembler::Assembler(DocTypeRegistry registry) : Assembler(std::move(registry), Options()) {}

Assembler::Assembler(DocTypeRegistry registry, Options options)
    : registry_(std::move(registry)),
      options_(std::move(options)),
      columns_json_(ColumnsJson(registry_)) {}

absl::StatusOr<int> Assembler::AssembleOnce(pg::Connection* conn,
                                            int64_t* last_seq,
                                            bool* more) const {
  bool more_rows = false;
  if (more != nullptr) *more = false;
  // Cheap idle check outside any transaction.
  ASSIGN_OR_RETURN(pg::Result any, conn->ExecPrepared("es_asm_any", kAnyRawSql));
  if (!any.GetBool(0, 0)) return 0;

  // READ COMMITTED on purpose: each statement after the lock sees what the
  // previous lock holder committed.
  ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn));
  ASSIGN_OR_RETURN(pg::Result locked, conn->ExecPrepared("es_asm_lock", kLockSql));
  if (!locked.GetBool(0, 0)) return 0;  // another assembler is at work

  ASSIGN_OR_RETURN(std::vector<TxRows> picked,
                   ReadWindow(conn, registry_, std::max(1, options_.max_raw_rows),
                              &more_rows));
  if (picked.empty()) return 0;
  std::vector<LogEntry> entries;
  std::vector<CaptureFailure> failures;
  std::vector<std::string> txids;
  size_t raw_count = 0;
  for (TxRows& t : picked) {
    ASSIGN_OR_RETURN(TxOutcome outcome, AssembleTransaction(conn, registry_, columns_json_, &t));
    for (LogEntry& e : outcome.entries) entries.push_back(std::move(e));
    for (CaptureFailure& f : outcome.failures) failures.push_back(std::move(f));
    txids.push_back(t.txid);
    raw_count += t.rows.size();
  }
  int64_t end_seq = 0;
  if (!entries.empty()) {
    ASSIGN_OR_RETURN(end_seq, WriteEntries(conn, &entries));
  }
  RETURN_IF_ERROR(RecordFailures(conn, columns_json_, &failures));
  RETURN_IF_ERROR(conn->Exec(kConsumeSql, {XidArray(txids)}).status());
  // Dying before this COMMIT leaves everything as it was (see header): the
  // next pass assembles, records and consumes the same rows again.
  RETURN_IF_ERROR(tx->Commit());

  if (more != nullptr) *more = more_rows;
  for (const CaptureFailure& f : failures) {
    spdlog::error(
        "capture error: document \"{}\" of DocType \"{}\" in transaction {} cannot become "
        "an entry: {}; its {} raw rows are kept as es_producer.capture_error id {}, and "
        "capture goes on",
        Printable(f.docname), Printable(f.doctype), f.txid, f.error, f.raw_ids.size(),
        f.record_id);
    if (options_.on_failed) options_.on_failed(f);
  }
  if (!entries.empty()) {
    if (last_seq != nullptr) *last_seq = end_seq;
    if (options_.on_committed) {
      std::map<std::pair<std::string, std::string>, int> counts;
      for (const LogEntry& e : entries) ++counts[{e.doctype, e.update_type}];
      for (const auto& [key, n] : counts) options_.on_committed(key.first, key.second, n);
    }
    spdlog::debug("assembled {} raw rows of {} transactions into update_log seq {}..{}",
                  raw_count, txids.size(), end_seq - static_cast<int64_t>(entries.size()) + 1,
                  end_seq);
  }
  return static_cast<int>(entries.size());
}

AssemblerLoop::AssemblerLoop(const Assembler* assembler, Options options,
                             std::function<void(int64_t)> on_entries)
    : assembler_(assembler),
      options_(std::move(options)),
      on_entries_(std::move(on_entries)) {}

AssemblerLoop::~AssemblerLoop() { Stop(); }

void AssemblerLoop::Start() {
  absl::MutexLock lock(&thread_mu_);
  if (thread_.joinable()) return;
  sleeper_.Resume();
  thread_ = std::thread([this] { Run(); });
}

void AssemblerLoop::Stop() {
  sleeper_.Stop();
  absl::MutexLock lock(&thread_mu_);
  if (thread_.joinable()) thread_.join();
}

void AssemblerLoop::Wake() { sleeper_.Wake(); }

BackoffPolicy AssemblerLoop::RetryPolicy(const Options& options) {
  return {absl::Milliseconds(50), absl::Milliseconds(options.max_backoff_ms), 2.0, 0.0};
}

void AssemblerLoop::Run() {
  spdlog::info("assembler loop started (idle poll {} ms)",
               options_.idle_poll_ms);
  std::unique_ptr<pg::Connection> conn;
  int poll_ms = options_.idle_poll_ms;
  // One pass: the wait before the next (zero while there is backlog), or
  // the error that makes RunLoop back off.
  auto pass = [&]() -> absl::StatusOr<absl::Duration> {
    if (conn == nullptr || !conn->ok()) {
      conn.reset();
      ASSIGN_OR_RETURN(conn, pg::Connection::Open(options_.database_url));
      RETURN_IF_ERROR(conn->SetApplicationName("eventstream-assembler"));
    }
    bool more = false;
    int64_t last_seq = 0;
    absl::StatusOr<int> written = assembler_->AssembleOnce(conn.get(), &last_seq, &more);
    if (!written.ok()) {
      if (!conn->ok()) conn.reset();
      return written.status();
    }
    if (*written > 0 && on_entries_) on_entries_(last_seq);
    if (more) return absl::ZeroDuration();
    poll_ms = *written > 0
                  ? std::max(1, std::min(options_.busy_poll_ms, options_.idle_poll_ms))
                  : std::min(options_.idle_poll_ms, poll_ms * 2);
    return absl::Milliseconds(poll_ms);
  };
  Backoff backoff(RetryPolicy(options_));
  RunLoop(sleeper_, backoff, pass,
          {[](const absl::Status& status, int failures) {
             if (failures == 1) {
               spdlog::error("assembler: {}; retrying with backoff",
                             std::string(status.message()));
             }
           },
           [](int) { spdlog::info("assembler: recovered"); }});
  spdlog::info("assembler loop stopped");
}

}  // namespace eventstream
