// Crash safety of every write below: DocumentApplier only runs inside the
// caller's transaction (a batch or a Resync, with a savepoint per entry), so
// if the process dies between any two statements nothing of the entry is
// visible and the entry is pulled (or resynced) again. The one exception is
// TableCache::EnsureRemoteColumns, which runs outside and is idempotent.
#include "services/consumer/apply_document.h"

#include <algorithm>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libsync/model/diff.h"
#include "libsync/model/document.h"
#include "libsync/model/naming.h"
#include "libsync/base/status_macros.h"
#include "libsync/rules/batch_plan.h"
#include "services/consumer/apply_sql.h"

namespace eventstream::apply {
namespace {

using namespace internal;  // NOLINT: the applier's own helpers (apply_sql.h)
using pg::QuoteIdentifier;

constexpr int kMaxDependencyDepth = 64;

}  // namespace

// ---- TableCache -------------------------------------------------------------

absl::StatusOr<const TableInfo*> TableCache::Get(pg::Connection* conn, const std::string& table) {
  auto it = tables_.find(table);
  if (it != tables_.end()) return &it->second;
  ASSIGN_OR_RETURN(pg::Result r,
                   Annotated(conn->ExecPrepared(kTableColumns, {QuoteIdentifier(table)}),
                             absl::StrCat("reading columns of table ", table)));
  if (r.rows() == 0) {
    return absl::NotFoundError(absl::StrCat("table \"", table, "\" does not exist on this site"));
  }
  TableInfo info;
  info.table = table;
  for (int i = 0; i < r.rows(); ++i) {
    info.columns[std::string(r.Get(i, "column_name"))] = std::string(r.Get(i, "column_type"));
  }
  return &tables_.emplace(table, std::move(info)).first->second;
}

absl::Status TableCache::EnsureRemoteColumns(pg::Connection* conn, const std::string& table) {
  ASSIGN_OR_RETURN(const TableInfo* info, Get(conn, table));
  if (info->has_remote()) return absl::OkStatus();
  // Each statement commits on its own and is idempotent: dying between them
  // leaves columns without the index; the next start adds it.
  for (const std::string& sql : AddRemoteColumnsSql(table)) {
    RETURN_IF_ERROR(Annotate(conn->Exec(sql).status(),
                             absl::StrCat("adding remote columns to ", table)));
  }
  Invalidate(table);
  return absl::OkStatus();
}

// ---- DocumentApplier --------------------------------------------------------

DocumentApplier::DocumentApplier(pg::Connection* conn, const Config& config,
                                 const MappingSet* mappings, TableCache* tables,
                                 std::string producer, DependencySource* deps)
    : conn_(conn),
      config_(config),
      mappings_(mappings),
      tables_(tables),
      producer_(std::move(producer)),
      deps_(deps) {}

DocumentApplier::~DocumentApplier() {
  if (hold_rows_) conn_->SetBeforeStatement(nullptr);
}

void DocumentApplier::HoldRows() {
  hold_rows_ = true;
  conn_->SetBeforeStatement([this] { return WriteHeldRows(); });
}

absl::Status DocumentApplier::WriteHeldRows() {
  std::vector<HeldRows> held;
  held.swap(held_);  // written once, even if writing fails
  for (const HeldRows& h : held) {
    RETURN_IF_ERROR(WriteRows(*h.info, h.rows,
                              absl::StrCat(h.rows.size(), " rows of \"", h.info->table,
                                           "\" (several documents)")));
  }
  return absl::OkStatus();
}

absl::StatusOr<DocumentApplier::Target> DocumentApplier::Resolve(
    const std::string& remote_doctype) const {
  const EventProducerConfig* pc =
      config_.consumer ? config_.consumer->FindProducer(producer_) : nullptr;
  if (pc == nullptr) {
    return absl::NotFoundError(absl::StrCat("producer \"", producer_, "\" is not configured"));
  }
  for (const ProducerDocTypeConfig& row : pc->doctypes) {
    Target t;
    t.same_name = row.use_same_name;
    t.remote_doctype = remote_doctype;
    t.on_move_out = row.on_move_out;
    std::string local;
    if (!row.mapping.empty()) {
      const DocTypeMapping* m = mappings_ ? mappings_->Find(row.mapping) : nullptr;
      if (m == nullptr || m->remote_doctype != remote_doctype) continue;
      t.mapping = m;
      local = m->local_doctype;
    } else if (row.doctype == remote_doctype) {
      local = row.doctype;
    } else {
      continue;
    }
    t.def = config_.registry.Find(local);
    if (t.def == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("DocType \"", local, "\" is not in this site's registry"));
    }
    return t;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "DocType \"", remote_doctype, "\" is not subscribed from producer \"", producer_, "\""));
}

absl::StatusOr<Outcome> DocumentApplier::Apply(const v1::UpdateLogEntry& e) {
  entry_copies_start_ = copies_.size();
  auto out = ApplyEntry(e);
  // The caller rolls the entry back: what it wrote is not known any more.
  if (!out.ok()) ForgetKnown();
  return out;
}

absl::StatusOr<Outcome> DocumentApplier::ApplyEntry(const v1::UpdateLogEntry& e) {
  pending_.clear();
  depth_ = 0;
  absl::StatusOr<Target> resolved = Resolve(e.doctype());
  if (!resolved.ok() && e.update_type() == v1::UPDATE_TYPE_REVOKE) {
    // A subscription this site dropped from its config: the producer
    // revokes what it held, and there is nothing here to apply it to.
    Outcome out;
    out.note = absl::StrCat("not subscribed here any more (", resolved.status().message(),
                            "); nothing to do");
    return out;
  }
  ASSIGN_OR_RETURN(const Target t, std::move(resolved));
  if (e.data_omitted_bytes() > 0 ||
      (e.data_json().empty() && e.update_type() != v1::UPDATE_TYPE_DELETE &&
       e.update_type() != v1::UPDATE_TYPE_REVOKE)) {
    return DataNeverArrived(t, e);
  }
  switch (e.update_type()) {
    case v1::UPDATE_TYPE_CREATE: {
      ASSIGN_OR_RETURN(Value doc, Annotated(Value::ParseJson(e.data_json()), "Create data"));
      if (!doc.is_object()) return absl::InvalidArgumentError("Create data is not an object");
      std::string name = e.docname().empty() ? NameOf(doc) : e.docname();
      return Create(t, name, std::move(doc), "");
    }
    case v1::UPDATE_TYPE_UPDATE:
      return Update(t, e, /*cancel=*/false);
    case v1::UPDATE_TYPE_CANCEL:
      return Update(t, e, /*cancel=*/true);
    case v1::UPDATE_TYPE_RENAME:
      return Rename(t, e);
    case v1::UPDATE_TYPE_DELETE:
      return Delete(t, e);
    case v1::UPDATE_TYPE_SYNC:
      return Sync(t, e);
    case v1::UPDATE_TYPE_REVOKE:
      return Revoke(t, e);
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown update type ", static_cast<int>(e.update_type())));
  }
}

namespace {
std::string KnownKey(const std::string& doctype, bool same_name, const std::string& name) {
  return absl::StrCat(doctype, std::string(1, '\0'), same_name ? "N" : "R",
                      std::string(1, '\0'), name);
}
}  // namespace

void DocumentApplier::SetKnown(const DocTypeDef& def, const std::string& remote_name,
                               bool same_name, std::optional<std::string> local) {
  known_[KnownKey(def.name, same_name, remote_name)] = std::move(local);
}

void DocumentApplier::Unknow(const DocTypeDef& def, const std::string& name) {
  known_.erase(KnownKey(def.name, true, name));
  known_.erase(KnownKey(def.name, false, name));
}

absl::Status DocumentApplier::Prefetch(const std::vector<v1::UpdateLogEntry>& entries) {
  // (DocType, by local name?) -> the producer's names to look up.
  std::map<std::pair<const DocTypeDef*, bool>, std::set<std::string>> wanted;
  for (const v1::UpdateLogEntry& e : entries) {
    auto t = Resolve(e.doctype());
    if (!t.ok()) continue;  // the entry fails on its own in Apply
    std::set<std::string>& names = wanted[{t->def, t->same_name}];
    names.insert(e.docname());
    if (e.update_type() == v1::UPDATE_TYPE_RENAME) {
      auto json = Value::ParseJson(e.data_json());
      if (json.ok()) {
        for (const char* key : {"old_name", "new_name"}) {
          const Value* v = json->Find(key);
          if (v != nullptr && v->is_string()) names.insert(v->as_string());
        }
      }
    }
  }
  for (const auto& [target, names] : wanted) {
    const auto& [def, same_name] = target;
    auto info = tables_->Get(conn_, def->table);
    if (!info.ok()) continue;  // named by the entries' own failures
    if (!same_name && !(*info)->has_remote()) continue;
    const std::string array =
        pg::TextArray(std::vector<std::string>(names.begin(), names.end()));
    // Not prepared: a generic plan made while the table was nearly empty
    // could keep a sequential scan per name as it grows (an initial sync's
    // batches got slower and slower); an unnamed statement is planned for
    // the table as it is each time (apply_sql.cc on the statement's shape).
    absl::StatusOr<pg::Result> r =
        same_name ? conn_->Exec(PrefetchByNameSql(def->table), {array})
                  : conn_->Exec(PrefetchByRemoteSql(def->table), {producer_, array});
    if (!r.ok()) return Annotate(r.status(), absl::StrCat("looking up ", def->name, " documents"));
    for (const std::string& n : names) SetKnown(*def, n, same_name, std::nullopt);
    for (int i = 0; i < r->rows(); ++i) {
      SetKnown(*def, std::string(r->Get(i, "remote_name")), same_name,
               std::string(r->Get(i, "local_name")));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> DocumentApplier::FindLocal(
    const DocTypeDef& def, const std::string& remote_name, bool same_name) {
  if (auto it = known_.find(KnownKey(def.name, same_name, remote_name)); it != known_.end()) {
    return it->second;
  }
  ASSIGN_OR_RETURN(const TableInfo* info, tables_->Get(conn_, def.table));
  absl::StatusOr<pg::Result> r;
  if (same_name) {
    r = RunPrepared(conn_, FindByNameSql(def.table), {remote_name});
  } else {
    if (!info->has_remote()) {
      return absl::FailedPreconditionError(
          absl::StrCat("table \"", def.table, "\" has no remote_docname/remote_site_name columns"));
    }
    r = RunPrepared(conn_, FindByRemoteSql(def.table), {producer_, remote_name});
  }
  if (!r.ok()) return Annotate(r.status(), absl::StrCat("looking up ", Doc(def.name, remote_name)));
  if (r->rows() == 0) return std::optional<std::string>();
  return std::optional<std::string>(std::string(r->Get(0, "name")));
}

absl::StatusOr<std::string> DocumentApplier::NewName(const DocTypeDef& def, const Value& doc) {
  ASSIGN_OR_RETURN(NamingPolicy policy, Annotated(NamingPolicy::Parse(def.autoname),
                                                  absl::StrCat("DocType \"", def.name, "\"")));
  PgSeriesCounter counter(conn_, "es_consumer.series");
  return Annotated(policy.NewName(doc, &counter), absl::StrCat("naming a new ", def.name));
}

void DocumentApplier::FillDefaults(const DocTypeDef& def, Value& doc) const {
  if (!doc.is_object()) return;
  for (const FieldDef& f : def.fields) {
    if (f.is_table()) {
      const DocTypeDef* child = config_.registry.Find(f.options);
      Value* rows = nullptr;
      auto it = doc.mutable_object().find(f.fieldname);
      if (it != doc.mutable_object().end()) rows = &it->second;
      if (child != nullptr && rows != nullptr && rows->is_array()) {
        for (Value& row : rows->mutable_array()) FillDefaults(*child, row);
      }
      continue;
    }
    if (f.default_value.has_value() && IsEmptyFieldValue(doc.Find(f.fieldname))) {
      doc[f.fieldname] = Value::String(*f.default_value);
    }
  }
}

absl::Status DocumentApplier::Validate(const DocTypeDef& def, const Value& obj, bool partial,
                                       const std::string& where) const {
  if (!obj.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": not an object"));
  }
  for (const FieldDef& f : def.fields) {
    const Value* v = obj.Find(f.fieldname);
    if (partial && v == nullptr) continue;
    if (f.is_table()) {
      if (v == nullptr || v->is_null()) continue;
      if (!v->is_array()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": field \"", f.fieldname, "\" (Table) must be a list of rows"));
      }
      const DocTypeDef* child = config_.registry.Find(f.options);
      if (child == nullptr) continue;
      for (const Value& row : v->as_array()) {
        RETURN_IF_ERROR(Validate(*child, row, false,
                                 absl::StrCat(where, " row ", Doc(child->name, NameOf(row)))));
      }
      continue;
    }
    if (f.reqd && IsEmptyFieldValue(v)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": field \"", f.fieldname, "\" is required (reqd) but empty"));
    }
    if (IsNumericFieldtype(f.fieldtype) && !IsEmptyFieldValue(v)) {
      bool ok = v->is_number() || (f.fieldtype == "Check" && v->is_bool()) ||
                (v->is_string() && Value::IsNumberText(v->as_string()));
      if (!ok) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": field \"", f.fieldname, "\" (",
                                                       f.fieldtype, ") must be a number, got ",
                                                       v->ToJson()));
      }
    }
    if ((f.is_link() || f.is_dynamic_link()) && !IsEmptyFieldValue(v) && !v->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": field \"", f.fieldname, "\" (",
                                                     f.fieldtype, ") must be a name, got ",
                                                     v->ToJson()));
    }
  }
  return absl::OkStatus();
}

absl::Status DocumentApplier::ResolveLinks(const DocTypeDef& def, Value& obj,
                                           const std::string& where, const Fallback& fallback) {
  if (!obj.is_object()) return absl::OkStatus();
  for (const FieldDef& f : def.fields) {
    auto it = obj.mutable_object().find(f.fieldname);
    if (it == obj.mutable_object().end()) continue;
    Value& v = it->second;
    if (f.is_table()) {
      const DocTypeDef* child = config_.registry.Find(f.options);
      if (child == nullptr || !v.is_array()) continue;
      for (Value& row : v.mutable_array()) {
        RETURN_IF_ERROR(ResolveLinks(
            *child, row, absl::StrCat(where, " row ", Doc(child->name, NameOf(row))), nullptr));
      }
      continue;
    }
    if (!f.is_link() && !f.is_dynamic_link()) continue;
    if (IsEmptyFieldValue(&v) || !v.is_string()) continue;  // Validate reports non-strings
    std::string target;
    if (f.is_link()) {
      target = f.options;
    } else {
      const Value* dt = obj.Find(f.options);
      if (dt != nullptr && dt->is_string()) {
        target = dt->as_string();
      } else if (dt == nullptr && fallback) {
        ASSIGN_OR_RETURN(target, fallback(f.options));
      }
    }
    if (target.empty()) continue;
    const DocTypeDef* tdef = config_.registry.Find(target);
    if (tdef == nullptr || tdef->istable) continue;  // not ours to resolve
    ASSIGN_OR_RETURN(
        std::string local,
        EnsureDocument(target, v.as_string(),
                       absl::StrCat(where, " field \"", f.fieldname, "\" (", f.fieldtype, ")")));
    if (local != v.as_string()) v = Value::String(local);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> DocumentApplier::FindEither(const DocTypeDef& def,
                                                                      const TableInfo& info,
                                                                      const std::string& name) {
  ASSIGN_OR_RETURN(std::optional<std::string> local, FindLocal(def, name, /*same_name=*/true));
  if (local.has_value() || !info.has_remote()) return local;
  return FindLocal(def, name, /*same_name=*/false);
}

absl::StatusOr<std::string> DocumentApplier::EnsureDocument(const std::string& doctype,
                                                            const std::string& name,
                                                            const std::string& via) {
  if (auto it = pending_.find(Key(doctype, name)); it != pending_.end()) return it->second;
  const DocTypeDef* def = config_.registry.Find(doctype);
  ASSIGN_OR_RETURN(const TableInfo* info, Annotated(tables_->Get(conn_, def->table), via));
  ASSIGN_OR_RETURN(std::optional<std::string> local, FindEither(*def, *info, name));
  if (local.has_value()) return *local;
  if (deps_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("missing dependency: ", via, " links to ", Doc(doctype, name),
                     ", which does not exist here (no producer connection to fetch it)"));
  }
  auto fetched = Fetch(doctype, name);
  if (!fetched.ok()) {
    return Annotate(fetched.status(), absl::StrCat("fetching dependency ", Doc(doctype, name),
                                                   " (linked from ", via, ")"));
  }
  if (!fetched->has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("missing dependency: ", via, " links to ", Doc(doctype, name),
                     ", which does not exist here and the producer does not have it"));
  }
  Value doc = **std::move(fetched);
  doc["name"] = Value::String(name);
  doc["doctype"] = Value::String(doctype);
  return InsertDependency(*def, std::move(doc));
}

absl::StatusOr<std::optional<Value>> DocumentApplier::Fetch(const std::string& doctype,
                                                            const std::string& name) {
  if (auto it = fetched_.find(Key(doctype, name)); it != fetched_.end()) {
    return std::optional<Value>(it->second);
  }
  ASSIGN_OR_RETURN(auto fetched, deps_->GetDocument(doctype, name));
  if (!fetched.has_value()) return std::optional<Value>();
  for (Value& dep : fetched->dependencies) {
    std::string dep_doctype = DocTypeOf(dep), dep_name = NameOf(dep);
    if (!dep_doctype.empty() && !dep_name.empty()) {
      fetched_.insert_or_assign(Key(dep_doctype, dep_name), std::move(dep));
    }
  }
  return std::optional<Value>(std::move(fetched->document));
}

absl::StatusOr<std::string> DocumentApplier::InsertDependency(const DocTypeDef& def, Value doc) {
  if (++depth_ > kMaxDependencyDepth) {
    return absl::FailedPreconditionError(absl::StrCat("dependencies nest deeper than ",
                                                      kMaxDependencyDepth, " documents at ",
                                                      Doc(def.name, NameOf(doc))));
  }
  std::string name = NameOf(doc);
  if (name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("a ", def.name, " document without a name"));
  }
  pending_[Key(def.name, name)] = name;
  std::string where = Doc(def.name, name);
  FillDefaults(def, doc);
  absl::Status s = ResolveLinks(def, doc, where, nullptr);
  if (s.ok()) s = Validate(def, doc, false, where);
  if (s.ok()) s = InsertDocument(def, doc, name, name, /*same_name=*/true);
  --depth_;
  RETURN_IF_ERROR(s);
  return name;
}

absl::StatusOr<std::optional<Value>> DocumentApplier::FindRemote(const std::string& remote_doctype,
                                                                 const Value& filters) {
  if (deps_ == nullptr) {
    return absl::FailedPreconditionError("no producer connection to find documents with");
  }
  std::map<std::string, std::string> f;
  if (filters.is_object()) {
    for (const auto& [k, v] : filters.as_object()) f[k] = v.ToText();
  }
  ASSIGN_OR_RETURN(auto found, deps_->FindDocuments(remote_doctype, f, 1));
  if (found.empty()) return std::optional<Value>();
  return std::optional<Value>(found.front());
}

absl::StatusOr<std::string> DocumentApplier::InsertLocal(const Value& mapped_doc) {
  std::string doctype = DocTypeOf(mapped_doc);
  std::string name = NameOf(mapped_doc);
  const DocTypeDef* def = config_.registry.Find(doctype);
  if (def == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("DocType \"", doctype, "\" is not in this site's registry"));
  }
  if (auto it = pending_.find(Key(doctype, name)); it != pending_.end()) return it->second;
  ASSIGN_OR_RETURN(const TableInfo* info, tables_->Get(conn_, def->table));
  ASSIGN_OR_RETURN(std::optional<std::string> local, FindEither(*def, *info, name));
  if (local.has_value()) return *local;
  return InsertDependency(*def, mapped_doc);
}

// ---- writes -------------------------------------------------------------

ColumnValues::ColumnValues(std::initializer_list<Entry> values) {
  for (const Entry& e : values) Set(e.first, e.second);
}

void ColumnValues::Set(const std::string& column, Value value) {
  auto it = std::lower_bound(values_.begin(), values_.end(), column,
                             [](const Entry& e, const std::string& c) { return e.first < c; });
  if (it != values_.end() && it->first == column) {
    it->second = std::move(value);
  } else {
    values_.emplace(it, column, std::move(value));
  }
}

bool ColumnValues::SameColumns(const ColumnValues& other) const {
  return std::equal(values_.begin(), values_.end(), other.values_.begin(), other.values_.end(),
                    [](const Entry& a, const Entry& b) { return a.first == b.first; });
}

ColumnValues DocumentApplier::RowValues(const TableInfo& info, const Value& obj,
                                        const std::set<std::string>& skip) const {
  ColumnValues out;
  if (!obj.is_object()) return out;
  for (const auto& [k, v] : obj.as_object()) {  // in name order
    if (skip.count(k) > 0) continue;
    auto col = info.columns.find(k);
    if (col == info.columns.end()) continue;
    if ((v.is_array() || v.is_object()) && !IsJsonType(col->second) && !IsTextType(col->second)) {
      continue;
    }
    out.Append(k, v);
  }
  return out;
}

absl::Status DocumentApplier::InsertRow(const TableInfo& info, ColumnValues values,
                                        const std::string& what) {
  std::vector<ColumnValues> rows;
  rows.push_back(std::move(values));
  return InsertRows(info, std::move(rows), what);
}

absl::Status DocumentApplier::UpdateRow(const TableInfo& info, const ColumnValues& values,
                                        const std::string& where_sql,
                                        const pg::Params& where_params, const std::string& what) {
  if (values.empty()) return absl::OkStatus();
  pg::Params params = where_params;
  std::vector<std::string> columns;
  for (const auto& [k, v] : values) {
    params.push_back(ToParam(v, info.columns.at(k)));
    columns.push_back(k);
  }
  return RunPreparedDeferred(conn_,
                             UpdateSql(info.table, columns, where_params.size() + 1, where_sql),
                             params, absl::StrCat("updating ", what));
}

absl::Status DocumentApplier::InsertDocument(const DocTypeDef& def, const Value& doc,
                                             const std::string& local_name,
                                             const std::string& remote_name, bool same_name) {
  ASSIGN_OR_RETURN(const TableInfo* info, tables_->Get(conn_, def.table));
  std::set<std::string> skip = ParentSkipKeys();
  for (const FieldDef& f : def.fields) {
    if (f.is_table()) skip.insert(f.fieldname);
  }
  ColumnValues values = RowValues(*info, doc, skip);
  values.Set("name", Value::String(local_name));
  if (info->has_remote()) {
    values.Set("remote_docname", Value::String(remote_name));
    values.Set("remote_site_name", Value::String(producer_));
  } else if (!same_name) {
    return absl::FailedPreconditionError(
        absl::StrCat("table \"", def.table, "\" has no remote_docname/remote_site_name columns"));
  }
  RETURN_IF_ERROR(InsertRow(*info, std::move(values), Doc(def.name, local_name)));
  SetKnown(def, local_name, /*same_name=*/true, local_name);
  if (info->has_remote()) SetKnown(def, remote_name, /*same_name=*/false, local_name);
  for (const FieldDef& f : def.fields) {
    if (!f.is_table()) continue;
    const ::eventstream::Value::Array* rows = ChildRows(doc, f.fieldname);
    const DocTypeDef* child = config_.registry.Find(f.options);
    if (rows == nullptr || rows->empty() || child == nullptr) continue;
    std::vector<ColumnValues> collected;
    for (const Value& row : *rows) {
      RETURN_IF_ERROR(
          UpsertChildRow(def, f, local_name, row, same_name, /*may_exist=*/false, &collected));
    }
    ASSIGN_OR_RETURN(const TableInfo* child_info, tables_->Get(conn_, child->table));
    RETURN_IF_ERROR(InsertRows(*child_info, std::move(collected),
                               absl::StrCat(Doc(def.name, local_name), " rows of \"", f.fieldname,
                                            "\"")));
  }
  return absl::OkStatus();
}

absl::Status DocumentApplier::InsertRows(const TableInfo& info, std::vector<ColumnValues> rows,
                                         const std::string& what) {
  if (!hold_rows_) return WriteRows(info, rows, what);
  auto it = std::find_if(held_.begin(), held_.end(),
                         [&info](const HeldRows& h) { return h.info == &info; });
  if (it == held_.end()) {
    held_.push_back({&info, std::move(rows)});
    return absl::OkStatus();
  }
  for (ColumnValues& row : rows) it->rows.push_back(std::move(row));
  return absl::OkStatus();
}

absl::Status DocumentApplier::WriteRows(const TableInfo& info,
                                        const std::vector<ColumnValues>& rows,
                                        const std::string& what) {
  size_t start = 0;
  while (start < rows.size()) {
    // A run of rows with the same columns (usually all of them), cut to a
    // statement's size (RowsPerInsert).
    size_t run = 1;
    while (start + run < rows.size() && run < kMaxRowsPerInsert &&
           rows[start].SameColumns(rows[start + run])) {
      ++run;
    }
    const size_t n = RowsPerInsert(run);
    std::vector<std::string> cols;
    std::vector<const std::string*> types;  // each column's type, looked up once
    for (const auto& [k, v] : rows[start]) {
      cols.push_back(k);
      types.push_back(&info.columns.at(k));
    }
    pg::Params params;
    params.reserve(n * cols.size());
    for (size_t i = start; i < start + n; ++i) {
      size_t c = 0;
      for (const auto& [k, v] : rows[i]) params.push_back(ToParam(v, *types[c++]));
    }
    RETURN_IF_ERROR(RunPreparedDeferred(conn_, InsertSql(info.table, cols, n), params,
                                        absl::StrCat("inserting ", what)));
    start += n;
  }
  return absl::OkStatus();
}

absl::Status DocumentApplier::UpsertChildRow(const DocTypeDef& parent_def,
                                             const FieldDef& table_field,
                                             const std::string& parent_local, const Value& row,
                                             bool same_name, bool may_exist,
                                             std::vector<ColumnValues>* collect) {
  const DocTypeDef* child = config_.registry.Find(table_field.options);
  if (child == nullptr) return absl::OkStatus();
  ASSIGN_OR_RETURN(const TableInfo* info, tables_->Get(conn_, child->table));
  std::string remote_row = NameOf(row);
  std::string what =
      absl::StrCat(Doc(parent_def.name, parent_local), " row ", Doc(child->name, remote_row),
                   " of \"", table_field.fieldname, "\"");
  if (!same_name && !info->has_remote()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "table \"", child->table, "\" has no remote_docname/remote_site_name columns"));
  }
  ColumnValues values = RowValues(*info, row, ChildSkipKeys());
  if (may_exist && !remote_row.empty()) {
    const std::string key = ChildRowKey(same_name);
    const pg::Params where_params{parent_local, parent_def.name, remote_row};
    ASSIGN_OR_RETURN(pg::Result r,
                     Annotated(RunPrepared(conn_, FindChildRowSql(child->table, key), where_params),
                               absl::StrCat("looking up ", what)));
    if (r.rows() > 0) {
      values.Set("parentfield", Value::String(table_field.fieldname));
      return UpdateRow(*info, values, ChildRowWhere(key), where_params, what);
    }
  }
  std::string local_row = remote_row;
  if (!same_name || local_row.empty()) {
    ASSIGN_OR_RETURN(local_row, NewName(*child, row));
  }
  values.Set("name", Value::String(local_row));
  values.Set("parent", Value::String(parent_local));
  values.Set("parenttype", Value::String(parent_def.name));
  values.Set("parentfield", Value::String(table_field.fieldname));
  if (info->has_remote()) {
    values.Set("remote_docname", Value::String(remote_row));
    values.Set("remote_site_name", Value::String(producer_));
  }
  for (const char* col : {"parent", "parenttype", "parentfield"}) {
    if (!info->Has(col)) {
      return absl::FailedPreconditionError(
          absl::StrCat("child table \"", child->table, "\" has no column \"", col, "\""));
    }
  }
  if (collect != nullptr) {
    collect->push_back(std::move(values));
    return absl::OkStatus();
  }
  return InsertRow(*info, std::move(values), what);
}

}  // namespace eventstream::apply
