#include "libsync/rules/assembly_plan.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace eventstream {
namespace {

// The string at `key` of object `row`, or nullopt.
std::optional<std::string> StringAt(const Value& row, std::string_view key) {
  const Value* v = row.Find(key);
  if (v == nullptr || !v->is_string()) return std::nullopt;
  return v->as_string();
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

// The entries of one group of rows (one or more whole documents), or the
// failure it is.
void BuildGroup(const DocTypeRegistry& registry, const TxRows& tx,
                const std::vector<RowKeys>& keys, const std::vector<size_t>& group,
                TxOutcome* out) {
  std::vector<RawChange> part;
  std::string error;
  for (size_t i : group) {
    part.push_back(tx.rows[i]);
    if (error.empty()) error = tx.rows[i].unreadable;
  }
  if (error.empty()) {
    absl::StatusOr<std::vector<LogEntry>> built = BuildEntries(registry, part);
    if (built.ok()) {
      for (LogEntry& e : *built) out->entries.push_back(std::move(e));
      return;
    }
    error = std::string(built.status().message());
  }
  CaptureFailure failure;
  std::tie(failure.doctype, failure.docname) = NameOfGroup(keys, group);
  failure.txid = tx.txid;
  failure.error = std::move(error);
  for (const RawChange& c : part) failure.raw_ids.push_back(c.id);
  out->failures.push_back(std::move(failure));
}

}  // namespace

void ParseRawSide(const DocTypeDef* def, std::string_view side, int64_t id,
                  std::optional<std::string_view> json, std::optional<Value>* out,
                  std::string* unreadable) {
  out->reset();
  if (!json) return;
  absl::StatusOr<Value> v = Value::ParseJson(*json);
  if (!v.ok()) {
    *unreadable = absl::StrCat(std::string(side), " of raw change ", id, " does not parse: ",
                               v.status().message());
    return;
  }
  KeepReplicatedColumns(def, &*v);
  *out = std::move(*v);
}

RawChange ParseRawChange(const DocTypeRegistry& registry, const RawChangeText& text) {
  RawChange c;
  c.id = text.id;
  c.txid = std::string(text.txid);
  c.doctype = std::string(text.doctype);
  c.op = text.op.empty() ? 'U' : text.op[0];
  const DocTypeDef* def = registry.Find(c.doctype);
  ParseRawSide(def, "old_row", c.id, text.old_row, &c.old_row, &c.unreadable);
  ParseRawSide(def, "new_row", c.id, text.new_row, &c.new_row, &c.unreadable);
  if (text.origin) c.origin = std::string(*text.origin);
  return c;
}

std::vector<TxRows> GroupByTransaction(std::vector<RawChange> rows) {
  std::map<std::string, TxRows> by_txid;
  for (RawChange& c : rows) {
    TxRows& t = by_txid[c.txid];
    t.txid = c.txid;
    t.last_id = std::max(t.last_id, c.id);
    t.rows.push_back(std::move(c));
  }
  std::vector<TxRows> out;
  out.reserve(by_txid.size());
  for (auto& [txid, t] : by_txid) out.push_back(std::move(t));
  std::sort(out.begin(), out.end(),
            [](const TxRows& a, const TxRows& b) { return a.last_id < b.last_id; });
  return out;
}

WindowPlan PlanWindow(std::vector<RawChange> rows, int limit) {
  // The window's rows include the first `limit` ids of all: the limit-th of
  // them is the cutoff.
  const bool all = static_cast<int64_t>(rows.size()) < limit;
  const int64_t cutoff = all ? INT64_MAX : rows[limit - 1].id;
  WindowPlan plan;
  for (TxRows& t : GroupByTransaction(std::move(rows))) {
    if (t.last_id <= cutoff) {
      plan.picked.push_back(std::move(t));
    } else {
      plan.more = true;
    }
  }
  if (plan.picked.empty() && plan.more) plan.take_first_whole = true;
  return plan;
}

std::optional<std::vector<LogEntry>> BuildWhole(const DocTypeRegistry& registry,
                                                const TxRows& tx) {
  for (const RawChange& c : tx.rows) {
    if (!c.unreadable.empty()) return std::nullopt;
  }
  absl::StatusOr<std::vector<LogEntry>> built = BuildEntries(registry, tx.rows);
  if (!built.ok()) return std::nullopt;
  return std::move(*built);
}

TxOutcome BuildByDocument(const DocTypeRegistry& registry, const TxRows& tx,
                          const std::map<int64_t, RowKeys>& reread_keys) {
  std::vector<RowKeys> keys;
  keys.reserve(tx.rows.size());
  for (const RawChange& c : tx.rows) {
    auto it = reread_keys.find(c.id);
    keys.push_back(it != reread_keys.end() ? it->second : KeysOf(registry, c));
  }
  TxOutcome out;
  for (const std::vector<size_t>& group : GroupRowsByDocument(keys)) {
    BuildGroup(registry, tx, keys, group, &out);
  }
  return out;
}

RowKeys KeysOf(const DocTypeRegistry& registry, const RawChange& c) {
  RowKeys k;
  k.doctype = c.doctype;
  const DocTypeDef* def = registry.Find(c.doctype);
  const std::optional<Value>& any = c.new_row ? c.new_row : c.old_row;
  k.child = def != nullptr ? def->istable : any && any->Find("parentfield") != nullptr;
  auto side = [&](const std::optional<Value>& row, std::optional<std::string>* name,
                  std::optional<std::pair<std::string, std::string>>* parent) {
    if (!row) return;
    *name = StringAt(*row, "name");
    if (k.child) {
      *parent = {StringAt(*row, "parenttype").value_or(""), StringAt(*row, "parent").value_or("")};
    }
  };
  side(c.old_row, &k.old_name, &k.old_parent);
  side(c.new_row, &k.new_name, &k.new_parent);
  return k;
}

std::optional<RowKeys> KeysOfUnreadable(const DocTypeRegistry& registry, const RawChange& c,
                                        const std::string& docname) {
  const DocTypeDef* def = registry.Find(c.doctype);
  if (def == nullptr || def->istable || docname.empty()) return std::nullopt;
  RowKeys k;
  k.doctype = c.doctype;
  if (c.op != 'I') k.old_name = docname;
  if (c.op != 'D') k.new_name = docname;
  return k;
}

void PassOutcome::Add(const TxRows& tx, TxOutcome outcome) {
  for (LogEntry& e : outcome.entries) entries.push_back(std::move(e));
  for (CaptureFailure& f : outcome.failures) failures.push_back(std::move(f));
  txids.push_back(tx.txid);
  raw_rows += tx.rows.size();
}

EntryColumns TakeEntryColumns(std::vector<LogEntry>* entries) {
  EntryColumns out;
  for (LogEntry& e : *entries) {
    out.doctypes.push_back(e.doctype);
    out.docnames.push_back(e.docname);
    out.update_types.push_back(e.update_type);
    out.txids.push_back(e.txid);
    out.data.push_back(e.data.is_null() ? std::nullopt
                                        : std::optional<std::string>(e.data.ToJson()));
    out.origins.push_back(e.origin);
    e.data = Value();
  }
  return out;
}

std::map<std::pair<std::string, std::string>, int> CountByType(
    const std::vector<LogEntry>& entries) {
  std::map<std::pair<std::string, std::string>, int> counts;
  for (const LogEntry& e : entries) ++counts[{e.doctype, e.update_type}];
  return counts;
}

std::string ReplicatedColumnsJson(const DocTypeRegistry& registry) {
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

}  // namespace eventstream
