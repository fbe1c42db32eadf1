#include "services/producer/assembler.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libsync/diff.h"
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

absl::StatusOr<std::optional<Value>> ParseRow(const pg::Result& r, int row,
                                              int col, int64_t id) {
  if (r.IsNull(row, col)) return std::optional<Value>();
  absl::string_view text = r.Get(row, col);
  auto v = Value::ParseJson(std::string_view(text.data(), text.size()));
  if (!v.ok()) {
    return absl::InternalError(
        absl::StrCat("raw change ", id,
                     ": row JSON does not parse: ", v.status().message()));
  }
  return std::optional<Value>(std::move(*v));
}

struct TxRows {
  std::string txid;
  int64_t last_id = 0;
  std::vector<RawChange> rows;
};

}  // namespace

absl::StatusOr<int> Assembler::AssembleOnce(pg::Connection* conn,
                                            int64_t* last_seq,
                                            bool* more) const {
  if (more != nullptr) *more = false;
  // Cheap idle check outside any transaction.
  auto any = conn->ExecPrepared(
      "es_asm_any", "SELECT EXISTS (SELECT 1 FROM es_producer.raw_change)");
  if (!any.ok()) return any.status();
  if (!any->GetBool(0, 0)) return 0;

  // READ COMMITTED on purpose: each statement after the lock sees what the
  // previous lock holder committed.
  auto tx = pg::Transaction::Begin(conn);
  if (!tx.ok()) return tx.status();
  auto locked = conn->ExecPrepared(
      "es_asm_lock",
      "SELECT pg_try_advisory_xact_lock(hashtext('es_producer.assembler'))");
  if (!locked.ok()) return locked.status();
  if (!locked->GetBool(0, 0)) return 0;  // another assembler is at work

  const int limit = std::max(1, options_.max_raw_rows);
  // All rows of the transactions that have a row among the first `limit`
  // ids, in two statements: those transactions, then their rows. They had
  // committed when the first statement ran, so the second (a later snapshot
  // of this READ COMMITTED transaction) sees every row of theirs, and no
  // one else deletes raw rows while we hold the lock. One statement
  // (`txid IN (SELECT txid ... LIMIT n)`) left the join to the planner,
  // which, with statistics taken while raw_change was nearly empty, chose a
  // nested loop over the whole table per window row: one call ran 90 s
  // while capture fell behind. The second statement is planned with the
  // actual array each time (not prepared), so whichever plan it picks is
  // linear: index probes on txid, or a scan with a hashed ANY.
  auto window = conn->ExecPrepared(
      "es_asm_window_tx",
      "SELECT DISTINCT txid::text FROM (SELECT txid FROM es_producer.raw_change"
      " ORDER BY id LIMIT $1) w",
      {limit});
  if (!window.ok()) return window.status();
  std::vector<std::string> window_txids;
  window_txids.reserve(window->rows());
  for (int i = 0; i < window->rows(); ++i) {
    window_txids.emplace_back(window->Get(i, 0));
  }
  auto rows = conn->Exec(
      "SELECT r.id, r.txid::text, r.doctype, r.op, r.old_row::text,"
      " r.new_row::text, r.origin"
      " FROM es_producer.raw_change r WHERE r.txid = ANY($1::xid8[])"
      " ORDER BY r.id",
      {absl::StrCat("{", absl::StrJoin(window_txids, ","), "}")});
  if (!rows.ok()) return rows.status();

  auto collect = [](const pg::Result& r,
                    std::map<std::string, TxRows>* txs) -> absl::Status {
    for (int i = 0; i < r.rows(); ++i) {
      RawChange c;
      c.id = r.GetInt64(i, 0);
      c.txid = std::string(r.Get(i, 1));
      c.doctype = std::string(r.Get(i, 2));
      c.op = r.Get(i, 3).empty() ? 'U' : r.Get(i, 3)[0];
      auto old_row = ParseRow(r, i, 4, c.id);
      if (!old_row.ok()) return old_row.status();
      auto new_row = ParseRow(r, i, 5, c.id);
      if (!new_row.ok()) return new_row.status();
      c.old_row = std::move(*old_row);
      c.new_row = std::move(*new_row);
      c.origin = r.GetOptional(i, 6);
      TxRows& t = (*txs)[c.txid];
      t.txid = c.txid;
      t.last_id = std::max(t.last_id, c.id);
      t.rows.push_back(std::move(c));
    }
    return absl::OkStatus();
  };
  std::map<std::string, TxRows> fetched;
  if (absl::Status s = collect(*rows, &fetched); !s.ok()) return s;
  if (fetched.empty()) return 0;

  // Which transactions to take: those whose rows all lie within the window
  // (last id <= the window's last id), i.e. the smallest last ids.
  std::vector<TxRows*> picked;
  bool all = rows->rows() < limit;
  int64_t cutoff = all ? INT64_MAX : rows->GetInt64(limit - 1, 0);
  for (auto& [txid, t] : fetched) {
    if (t.last_id <= cutoff)
      picked.push_back(&t);
    else if (more != nullptr)
      *more = true;
  }
  std::map<std::string, TxRows> single;
  if (picked.empty()) {
    // One transaction larger than the window: take the one that finished
    // writing first, whole.
    auto first =
        conn->ExecPrepared("es_asm_first",
                           "SELECT r.id, r.txid::text, r.doctype, r.op, "
                           "r.old_row::text, r.new_row::text,"
                           "       r.origin"
                           " FROM es_producer.raw_change r WHERE r.txid ="
                           "   (SELECT txid FROM es_producer.raw_change GROUP "
                           "BY txid ORDER BY max(id) LIMIT 1)"
                           " ORDER BY r.id");
    if (!first.ok()) return first.status();
    if (absl::Status s = collect(*first, &single); !s.ok()) return s;
    for (auto& [txid, t] : single) picked.push_back(&t);
    if (more != nullptr) *more = true;
  }
  std::sort(picked.begin(), picked.end(), [](const TxRows* a, const TxRows* b) {
    return a->last_id < b->last_id;
  });

  std::vector<LogEntry> entries;
  std::vector<std::string> txids;
  size_t raw_count = 0;
  for (const TxRows* t : picked) {
    auto built = BuildEntries(registry_, t->rows);
    if (!built.ok()) return built.status();
    for (LogEntry& e : *built) entries.push_back(std::move(e));
    txids.push_back(t->txid);
    raw_count += t->rows.size();
  }

  int64_t first_seq = 0, end_seq = 0;
  if (!entries.empty()) {
    // A contiguous block of seq numbers; only the lock holder draws from the
    // sequence, so setval cannot race with another nextval.
    auto block = conn->ExecPrepared(
        "es_asm_seq",
        "SELECT setval('es_producer.update_log_seq',"
        "              nextval('es_producer.update_log_seq') + $1 - 1)",
        {static_cast<int64_t>(entries.size())});
    if (!block.ok()) return block.status();
    end_seq = block->GetInt64(0, 0);
    first_seq = end_seq - static_cast<int64_t>(entries.size()) + 1;
    Value::Array json;
    json.reserve(entries.size());
    int64_t seq = first_seq;
    for (LogEntry& e : entries) {
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
    auto inserted = conn->ExecPrepared(
        "es_asm_insert",
        "INSERT INTO es_producer.update_log"
        "   (seq, doctype, docname, update_type, data, origin, txid)"
        " SELECT (e->>'seq')::bigint, e->>'doctype', e->>'docname', "
        "e->>'update_type',"
        "        NULLIF(e->'data', 'null'::jsonb), e->>'origin', "
        "(e->>'txid')::xid8"
        " FROM jsonb_array_elements($1::jsonb) AS e",
        {Value::FromArray(std::move(json)).ToJson()});
    if (!inserted.ok()) return inserted.status();
  }
  // Not prepared either: planned with the actual array (see the window).
  auto consumed = conn->Exec(
      "DELETE FROM es_producer.raw_change WHERE txid = ANY($1::xid8[])",
      {absl::StrCat("{", absl::StrJoin(txids, ","), "}")});
  if (!consumed.ok()) return consumed.status();
  // Dying before this COMMIT leaves everything as it was (see header).
  if (absl::Status s = (*tx)->Commit(); !s.ok()) return s;

  if (!entries.empty()) {
    if (last_seq != nullptr) *last_seq = end_seq;
    if (options_.on_committed) {
      std::map<std::pair<std::string, std::string>, int> counts;
      for (const LogEntry& e : entries) ++counts[{e.doctype, e.update_type}];
      for (const auto& [key, n] : counts) options_.on_committed(key.first, key.second, n);
    }
    spdlog::debug(
        "assembled {} raw rows of {} transactions into update_log seq {}..{}",
        raw_count, txids.size(), first_seq, end_seq);
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
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { Run(); });
}

void AssemblerLoop::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void AssemblerLoop::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

bool AssemblerLoop::Sleep(int ms) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms),
               [this] { return stop_ || woken_; });
  woken_ = false;
  return !stop_;
}

void AssemblerLoop::Run() {
  spdlog::info("assembler loop started (idle poll {} ms)",
               options_.idle_poll_ms);
  std::unique_ptr<pg::Connection> conn;
  int backoff_ms = 0;
  bool failing = false;
  int poll_ms = options_.idle_poll_ms;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) break;
    }
    absl::Status status;
    bool more = false;
    int64_t last_seq = 0;
    int written = 0;
    if (conn == nullptr || !conn->ok()) {
      auto opened = pg::Connection::Open(options_.database_url);
      if (opened.ok()) {
        conn = std::move(*opened);
        status = conn->SetApplicationName("eventstream-assembler");
      } else {
        conn.reset();
        status = opened.status();
      }
    }
    if (status.ok()) {
      auto n = assembler_->AssembleOnce(conn.get(), &last_seq, &more);
      if (n.ok()) {
        written = *n;
      } else {
        status = n.status();
      }
    }
    if (!status.ok()) {
      if (!failing) {
        spdlog::error("assembler: {}; retrying with backoff",
                      std::string(status.message()));
      }
      failing = true;
      backoff_ms =
          std::min(options_.max_backoff_ms, std::max(50, backoff_ms * 2));
      if (conn != nullptr && !conn->ok()) conn.reset();
      if (!Sleep(backoff_ms)) break;
      continue;
    }
    if (failing) spdlog::info("assembler: recovered");
    failing = false;
    backoff_ms = 0;
    if (written > 0 && on_entries_) on_entries_(last_seq);
    if (more) continue;
    poll_ms = written > 0 ? std::max(1, std::min(options_.busy_poll_ms, options_.idle_poll_ms))
                          : std::min(options_.idle_poll_ms, poll_ms * 2);
    if (!Sleep(poll_ms)) break;
  }
  spdlog::info("assembler loop stopped");
}

}  // namespace eventstream
