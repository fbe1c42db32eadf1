// Crash safety of every write below: DocumentApplier only runs inside the
// caller's transaction (a batch or a Resync, with a savepoint per entry), so
// if the process dies between any two statements nothing of the entry is
// visible and the entry is pulled (or resynced) again. The one exception is
// TableCache::EnsureRemoteColumns, which runs outside and is idempotent.
#include "services/consumer/apply_document.h"

#include <functional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libsync/model/diff.h"
#include "libsync/model/document.h"
#include "libsync/model/naming.h"
#include "libsync/base/status_macros.h"
#include "libsync/rules/sync_plan.h"
#include "libsync/rules/update_plan.h"
#include "services/common/update_type.h"
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
  auto r = conn->ExecPrepared(kTableColumns, {QuoteIdentifier(table)});
  if (!r.ok()) return Annotate(r.status(), absl::StrCat("reading columns of table ", table));
  if (r->rows() == 0) {
    return absl::NotFoundError(absl::StrCat("table \"", table, "\" does not exist on this site"));
  }
  TableInfo info;
  info.table = table;
  for (int i = 0; i < r->rows(); ++i) {
    info.columns[std::string(r->Get(i, "column_name"))] = std::string(r->Get(i, "column_type"));
  }
  return &tables_.emplace(table, std::move(info)).first->second;
}

absl::Status TableCache::EnsureRemoteColumns(pg::Connection* conn, const std::string& table) {
  ASSIGN_OR_RETURN(const TableInfo* info, Get(conn, table));
  if (info->has_remote()) return absl::OkStatus();
  // Each statement commits on its own and is idempotent: dying between them
  // leaves columns without the index; the next start adds it.
  for (const std::string& sql : AddRemoteColumnsSql(table)) {
    auto r = conn->Exec(sql);
    if (!r.ok()) return Annotate(r.status(), absl::StrCat("adding remote columns to ", table));
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
      auto doc = Value::ParseJson(e.data_json());
      if (!doc.ok()) return Annotate(doc.status(), "Create data");
      if (!doc->is_object()) return absl::InvalidArgumentError("Create data is not an object");
      std::string name = e.docname().empty() ? NameOf(*doc) : e.docname();
      return Create(t, name, *std::move(doc), "");
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
    // Not prepared: a cached generic plan chosen while the table was small
    // stays a sequential scan as it grows (one scan of the table per batch,
    // so an initial sync's batches got slower and slower); an unnamed
    // statement is planned for its actual array each time.
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
  auto policy = NamingPolicy::Parse(def.autoname);
  if (!policy.ok()) return Annotate(policy.status(), absl::StrCat("DocType \"", def.name, "\""));
  PgSeriesCounter counter(conn_, "es_consumer.series");
  auto name = policy->NewName(doc, &counter);
  if (!name.ok()) return Annotate(name.status(), absl::StrCat("naming a new ", def.name));
  return name;
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
  auto info = tables_->Get(conn_, def->table);
  if (!info.ok()) return Annotate(info.status(), via);
  ASSIGN_OR_RETURN(std::optional<std::string> local, FindEither(*def, **info, name));
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
  if (!s.ok()) return s;
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

std::map<std::string, Value> DocumentApplier::RowValues(const TableInfo& info, const Value& obj,
                                                        const std::set<std::string>& skip) const {
  std::map<std::string, Value> out;
  if (!obj.is_object()) return out;
  for (const auto& [k, v] : obj.as_object()) {
    if (skip.count(k) > 0) continue;
    auto col = info.columns.find(k);
    if (col == info.columns.end()) continue;
    if ((v.is_array() || v.is_object()) && !IsJsonType(col->second) && !IsTextType(col->second)) {
      continue;
    }
    out[k] = v;
  }
  return out;
}

absl::Status DocumentApplier::InsertRow(const TableInfo& info, std::map<std::string, Value> values,
                                        const std::string& what) {
  return InsertRows(info, {std::move(values)}, what);
}

absl::Status DocumentApplier::UpdateRow(const TableInfo& info,
                                        const std::map<std::string, Value>& values,
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
  std::map<std::string, Value> values = RowValues(*info, doc, skip);
  values["name"] = Value::String(local_name);
  if (info->has_remote()) {
    values["remote_docname"] = Value::String(remote_name);
    values["remote_site_name"] = Value::String(producer_);
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
    std::vector<RowValuesMap> collected;
    for (const Value& row : *rows) {
      RETURN_IF_ERROR(
          UpsertChildRow(def, f, local_name, row, same_name, /*may_exist=*/false, &collected));
    }
    ASSIGN_OR_RETURN(const TableInfo* child_info, tables_->Get(conn_, child->table));
    RETURN_IF_ERROR(InsertRows(*child_info, collected,
                               absl::StrCat(Doc(def.name, local_name), " rows of \"", f.fieldname,
                                            "\"")));
  }
  return absl::OkStatus();
}

absl::Status DocumentApplier::InsertRows(const TableInfo& info,
                                         const std::vector<RowValuesMap>& rows,
                                         const std::string& what) {
  auto same_columns = [](const RowValuesMap& a, const RowValuesMap& b) {
    if (a.size() != b.size()) return false;
    for (auto i = a.begin(), j = b.begin(); i != a.end(); ++i, ++j) {
      if (i->first != j->first) return false;
    }
    return true;
  };
  size_t start = 0;
  while (start < rows.size()) {
    // A run of rows with the same columns (usually all of them), at most
    // 200 to a statement.
    size_t end = start + 1;
    while (end < rows.size() && end - start < 200 && same_columns(rows[start], rows[end])) ++end;
    std::vector<std::string> cols;
    for (const auto& [k, v] : rows[start]) cols.push_back(k);
    pg::Params params;
    for (size_t i = start; i < end; ++i) {
      for (const auto& [k, v] : rows[i]) params.push_back(ToParam(v, info.columns.at(k)));
    }
    RETURN_IF_ERROR(RunPreparedDeferred(conn_, InsertSql(info.table, cols, end - start), params,
                                        absl::StrCat("inserting ", what)));
    start = end;
  }
  return absl::OkStatus();
}

absl::Status DocumentApplier::UpsertChildRow(const DocTypeDef& parent_def,
                                             const FieldDef& table_field,
                                             const std::string& parent_local, const Value& row,
                                             bool same_name, bool may_exist,
                                             std::vector<RowValuesMap>* collect) {
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
  std::map<std::string, Value> values = RowValues(*info, row, ChildSkipKeys());
  if (may_exist && !remote_row.empty()) {
    const std::string key = ChildRowKey(same_name);
    const pg::Params where_params{parent_local, parent_def.name, remote_row};
    auto r = RunPrepared(conn_, FindChildRowSql(child->table, key), where_params);
    if (!r.ok()) return Annotate(r.status(), absl::StrCat("looking up ", what));
    if (r->rows() > 0) {
      values["parentfield"] = Value::String(table_field.fieldname);
      return UpdateRow(*info, values, ChildRowWhere(key), where_params, what);
    }
  }
  std::string local_row = remote_row;
  if (!same_name || local_row.empty()) {
    ASSIGN_OR_RETURN(local_row, NewName(*child, row));
  }
  values["name"] = Value::String(local_row);
  values["parent"] = Value::String(parent_local);
  values["parenttype"] = Value::String(parent_def.name);
  values["parentfield"] = Value::String(table_field.fieldname);
  if (info->has_remote()) {
    values["remote_docname"] = Value::String(remote_row);
    values["remote_site_name"] = Value::String(producer_);
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

// ---- entry types ----------------------------------------------------------

absl::StatusOr<Outcome> DocumentApplier::Create(const Target& t, const std::string& remote_name,
                                                Value doc, std::string note) {
  const DocTypeDef& def = *t.def;
  if (t.mapping != nullptr) {
    auto mapped = mappings_->MapDocument(t.mapping->name, doc, this);
    if (!mapped.ok()) {
      return Annotate(mapped.status(),
                      absl::StrCat("mapping ", Doc(t.remote_doctype, remote_name)));
    }
    doc = *std::move(mapped);
  }
  Outcome out;
  out.local_doctype = def.name;
  ASSIGN_OR_RETURN(std::optional<std::string> existing, FindLocal(def, remote_name, t.same_name));
  if (existing.has_value()) {
    out.local_docname = *existing;
    out.note = absl::StrCat(note.empty() ? "" : absl::StrCat(note, "; "),
                            "already exists here as \"", out.local_docname, "\"; left alone");
    return out;
  }
  std::string local = remote_name;
  if (!t.same_name) {
    ASSIGN_OR_RETURN(local, NewName(def, doc));
  }
  pending_[Key(def.name, remote_name)] = local;
  std::string where = Doc(def.name, remote_name);
  FillDefaults(def, doc);
  RETURN_IF_ERROR(ResolveLinks(def, doc, where, nullptr));
  RETURN_IF_ERROR(Validate(def, doc, false, where));
  RETURN_IF_ERROR(InsertDocument(def, doc, local, remote_name, t.same_name));
  RETURN_IF_ERROR(HoldCopy(t, local));
  out.local_docname = local;
  out.note = std::move(note);
  return out;
}

absl::StatusOr<Outcome> DocumentApplier::InsertFetched(const Target& t,
                                                       const std::string& remote_name,
                                                       const std::string& why) {
  std::string what = Doc(t.remote_doctype, remote_name);
  if (deps_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(why, ": ", what, " is missing here (no producer connection to fetch it)"));
  }
  auto fetched = Fetch(t.remote_doctype, remote_name);
  if (!fetched.ok()) return Annotate(fetched.status(), absl::StrCat(why, ": fetching ", what));
  if (!fetched->has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        why, ": ", what, " is missing here and the producer does not have it (any more)"));
  }
  return Create(t, remote_name, **std::move(fetched),
                absl::StrCat(why, ": fetched the whole document with GetDocument and inserted it"));
}

absl::StatusOr<Outcome> DocumentApplier::DataNeverArrived(const Target& t,
                                                          const v1::UpdateLogEntry& e) {
  const int limit_mb = config_.consumer ? config_.consumer->max_message_mb : 0;
  if (e.data_omitted_bytes() > 0) {
    // Straight from a pull: the producer left the data out to fit our limit.
    return absl::ResourceExhaustedError(absl::StrCat(
        "entry ", e.seq(), " (", UpdateTypeName(e.update_type()), " of ",
        Doc(e.doctype(), e.docname()), ") is ", e.data_omitted_bytes(),
        " bytes, more than this consumer accepts in one answer (consumer.max_message_mb: ",
        limit_mb, "); its data was not sent. Raise consumer.max_message_mb, restart, "
        "and Resync this row"));
  }
  // A Resync of such a row: its data never arrived, so take the document as
  // it is now.
  const std::string why = absl::StrCat("Resync of an entry whose data never arrived (over "
                                       "consumer.max_message_mb)");
  ASSIGN_OR_RETURN(std::optional<std::string> local,
                   FindLocal(*t.def, e.docname(), t.same_name));
  if (!local.has_value()) return InsertFetched(t, e.docname(), why);
  return absl::FailedPreconditionError(absl::StrCat(
      why, ": ", Doc(e.doctype(), e.docname()), " is here as \"", *local,
      "\", so its change cannot be replayed; delete it here and Resync this row again to "
      "fetch the current document whole"));
}

absl::StatusOr<Outcome> DocumentApplier::Update(const Target& t, const v1::UpdateLogEntry& e,
                                                bool cancel) {
  const DocTypeDef& def = *t.def;
  const std::string kind = cancel ? "Cancel" : "Update";
  auto json = Value::ParseJson(e.data_json().empty() ? "{}" : e.data_json());
  if (!json.ok()) return Annotate(json.status(), absl::StrCat(kind, " data"));
  auto diff = DocDiff::FromJson(*json);
  if (!diff.ok()) return Annotate(diff.status(), absl::StrCat(kind, " data"));

  ASSIGN_OR_RETURN(std::optional<std::string> local, FindLocal(def, e.docname(), t.same_name));
  if (!local.has_value()) return UpdateMissing(t, e.docname(), kind, cancel);
  const std::string name = *local;
  if (t.mapping != nullptr) {
    auto mapped = mappings_->MapDiff(t.mapping->name, *diff, this);
    if (!mapped.ok()) {
      return Annotate(mapped.status(),
                      absl::StrCat("mapping ", Doc(t.remote_doctype, e.docname())));
    }
    diff = *std::move(mapped);
  }
  if (cancel) diff->changed["docstatus"] = Value::Int(2);
  // Dependencies and validation first (they may rewrite link values), then
  // the writes the plan lists (libsync/rules/update_plan.h).
  RETURN_IF_ERROR(ResolveDiff(def, t.same_name, name, *diff));
  RETURN_IF_ERROR(WriteUpdate(def, t.same_name, name, *diff,
                              PlanUpdate(def, config_.registry, *diff)));
  Outcome out;
  out.local_doctype = def.name;
  out.local_docname = name;
  return out;
}

absl::StatusOr<Outcome> DocumentApplier::UpdateMissing(const Target& t,
                                                       const std::string& remote_name,
                                                       const std::string& kind, bool cancel) {
  ASSIGN_OR_RETURN(Outcome out,
                   InsertFetched(t, remote_name, absl::StrCat(kind, " of a document missing here")));
  if (!cancel) return out;
  // The fetched copy is the current one; a Cancel still means docstatus 2.
  ASSIGN_OR_RETURN(const TableInfo* info, tables_->Get(conn_, t.def->table));
  RETURN_IF_ERROR(UpdateRow(*info, {{"docstatus", Value::Int(2)}}, "name = $1",
                            {out.local_docname}, Doc(t.def->name, out.local_docname)));
  return out;
}

absl::Status DocumentApplier::ResolveDiff(const DocTypeDef& def, bool same_name,
                                          const std::string& name, DocDiff& diff) {
  const std::string where = Doc(def.name, name);
  ASSIGN_OR_RETURN(const TableInfo* info, tables_->Get(conn_, def.table));
  // The Dynamic Link's DocType column when the diff does not carry it.
  Fallback parent_column = [&](const std::string& column) -> absl::StatusOr<std::string> {
    if (!info->Has(column)) return std::string();
    ASSIGN_OR_RETURN(pg::Result r, RunPrepared(conn_, ParentColumnSql(def.table, column), {name}));
    return r.rows() > 0 ? std::string(r.Get(0, "value")) : std::string();
  };
  RETURN_IF_ERROR(ResolveLinks(def, diff.changed, where, parent_column));
  for (auto& [table, rows] : diff.added.mutable_object()) {
    const DocTypeDef* child = ChildTableOf(def, config_.registry, table).child;
    if (child == nullptr || !rows.is_array()) continue;
    for (Value& row : rows.mutable_array()) {
      std::string w = absl::StrCat(where, " row ", Doc(child->name, NameOf(row)));
      RETURN_IF_ERROR(ResolveLinks(*child, row, w, nullptr));
      RETURN_IF_ERROR(Validate(*child, row, false, w));
    }
  }
  for (auto& [table, rows] : diff.row_changed.mutable_object()) {
    const DocTypeDef* child = ChildTableOf(def, config_.registry, table).child;
    if (child == nullptr || !rows.is_array()) continue;
    for (Value& row : rows.mutable_array()) {
      const std::string remote_row = NameOf(row);
      std::string w = absl::StrCat(where, " row ", Doc(child->name, remote_row));
      Fallback child_column = [&, child, remote_row](const std::string& column) {
        return ChildColumn(*child, ChildRowKey(same_name), {name, def.name, remote_row}, column);
      };
      RETURN_IF_ERROR(ResolveLinks(*child, row, w, child_column));
      RETURN_IF_ERROR(Validate(*child, row, true, w));
    }
  }
  return Validate(def, diff.changed, true, where);
}

absl::StatusOr<std::string> DocumentApplier::ChildColumn(const DocTypeDef& child,
                                                         const std::string& key,
                                                         const pg::Params& row,
                                                         const std::string& column) {
  ASSIGN_OR_RETURN(const TableInfo* info, tables_->Get(conn_, child.table));
  if (!info->Has(column)) return std::string();
  ASSIGN_OR_RETURN(pg::Result r, RunPrepared(conn_, ChildColumnSql(child.table, column, key), row));
  return r.rows() > 0 ? std::string(r.Get(0, "value")) : std::string();
}

absl::Status DocumentApplier::WriteUpdate(const DocTypeDef& def, bool same_name,
                                          const std::string& name, const DocDiff& diff,
                                          const UpdatePlan& plan) {
  const std::string where = Doc(def.name, name);
  const std::string key = ChildRowKey(same_name);
  for (const UpdatePlan::RowDelete& d : plan.deletes) {
    RETURN_IF_ERROR(RunPreparedDeferred(conn_, DeleteChildRowSql(d.child->table, key),
                                        {name, def.name, d.row},
                                        absl::StrCat("deleting ", where, " row ",
                                                     Doc(d.child->name, d.row))));
  }
  for (const UpdatePlan::TableRows& t : plan.row_updates) {
    ASSIGN_OR_RETURN(const TableInfo* ci, tables_->Get(conn_, t.child->table));
    for (const Value& row : *t.rows) {
      const std::string remote_row = NameOf(row);
      RETURN_IF_ERROR(UpdateRow(*ci, RowValues(*ci, row, ChildSkipKeys()), ChildRowWhere(key),
                                {name, def.name, remote_row},
                                absl::StrCat(where, " row ", Doc(t.child->name, remote_row))));
    }
  }
  for (const UpdatePlan::TableReplace& t : plan.replaced) {
    RETURN_IF_ERROR(RunPreparedDeferred(
        conn_, DeleteTableRowsSql(t.child->table), {name, def.name, t.field->fieldname},
        absl::StrCat("replacing ", where, " table ", t.field->fieldname)));
    if (t.rows == nullptr) continue;
    for (const Value& row : *t.rows) {
      RETURN_IF_ERROR(UpsertChildRow(def, *t.field, name, row, same_name, /*may_exist=*/false));
    }
  }
  ASSIGN_OR_RETURN(const TableInfo* info, tables_->Get(conn_, def.table));
  RETURN_IF_ERROR(
      UpdateRow(*info, RowValues(*info, diff.changed, plan.parent_skip), "name = $1", {name}, where));
  for (const UpdatePlan::TableRows& t : plan.added) {
    for (const Value& row : *t.rows) {
      RETURN_IF_ERROR(UpsertChildRow(def, *t.field, name, row, same_name, /*may_exist=*/true));
    }
  }
  if (plan.docstatus == nullptr) return absl::OkStatus();
  // A child row's docstatus follows its parent's (diff.h).
  for (const ChildTable& c : plan.docstatus_tables) {
    ASSIGN_OR_RETURN(const TableInfo* ci, tables_->Get(conn_, c.child->table));
    if (!ci->Has("docstatus")) continue;
    RETURN_IF_ERROR(UpdateRow(*ci, {{"docstatus", *plan.docstatus}}, kDocumentRowsWhere,
                              {name, def.name}, absl::StrCat(where, " rows of ", c.field->fieldname)));
  }
  return absl::OkStatus();
}

absl::StatusOr<Outcome> DocumentApplier::Rename(const Target& t, const v1::UpdateLogEntry& e) {
  const DocTypeDef& def = *t.def;
  auto json = Value::ParseJson(e.data_json());
  if (!json.ok()) return Annotate(json.status(), "Rename data");
  const Value* old_v = json->Find("old_name");
  const Value* new_v = json->Find("new_name");
  if (old_v == nullptr || new_v == nullptr || !old_v->is_string() || !new_v->is_string()) {
    return absl::InvalidArgumentError("Rename data needs string \"old_name\" and \"new_name\"");
  }
  const std::string old_name = old_v->as_string(), new_name = new_v->as_string();
  // Whatever happens below, look both names up afresh afterwards.
  struct Forget {
    DocumentApplier* self;
    const DocTypeDef& def;
    const std::string &a, &b;
    ~Forget() {
      self->Unknow(def, a);
      self->Unknow(def, b);
    }
  };
  Outcome out;
  out.local_doctype = def.name;
  ASSIGN_OR_RETURN(std::optional<std::string> local, FindLocal(def, old_name, t.same_name));
  if (!local.has_value()) {
    ASSIGN_OR_RETURN(std::optional<std::string> renamed, FindLocal(def, new_name, t.same_name));
    if (renamed.has_value()) {
      out.local_docname = *renamed;
      out.note = "already renamed here";
      return out;
    }
    return InsertFetched(t, new_name, "Rename of a document missing here");
  }
  const std::string where = Doc(def.name, *local);
  Forget forget{this, def, old_name, new_name};
  if (!t.same_name) {
    // Only the remote name changes; the local name stays.
    auto r = RunPrepared(conn_, RenameRemoteSql(def.table), {new_name, *local});
    if (!r.ok()) return Annotate(r.status(), absl::StrCat("renaming ", where));
    out.local_docname = *local;
    return out;
  }
  ASSIGN_OR_RETURN(std::optional<std::string> clash, FindLocal(def, new_name, true));
  if (clash.has_value()) {
    return absl::AlreadyExistsError(absl::StrCat("cannot rename ", where, " to \"", new_name,
                                                 "\": that name exists here already"));
  }
  auto r = RunPrepared(conn_, RenameSql(def.table), {new_name, old_name});
  if (!r.ok()) return Annotate(r.status(), absl::StrCat("renaming ", where));
  for (const FieldDef& f : def.fields) {
    const DocTypeDef* child = f.is_table() ? config_.registry.Find(f.options) : nullptr;
    if (child == nullptr) continue;
    r = RunPrepared(conn_, RenameChildRowsSql(child->table), {new_name, old_name, def.name});
    if (!r.ok()) {
      return Annotate(r.status(), absl::StrCat("renaming ", where, " rows of ", f.fieldname));
    }
  }
  RETURN_IF_ERROR(ReleaseCopy(t, old_name));
  RETURN_IF_ERROR(HoldCopy(t, new_name));
  out.local_docname = new_name;
  return out;
}

absl::StatusOr<Outcome> DocumentApplier::Delete(const Target& t, const v1::UpdateLogEntry& e) {
  const DocTypeDef& def = *t.def;
  Outcome out;
  out.local_doctype = def.name;
  ASSIGN_OR_RETURN(std::optional<std::string> local, FindLocal(def, e.docname(), t.same_name));
  if (!local.has_value()) {
    out.note = "not present here; nothing to delete";
    return out;
  }
  const std::string name = *local;
  out.local_docname = name;
  Unknow(def, name);
  Unknow(def, e.docname());
  for (const FieldDef& f : def.fields) {
    const DocTypeDef* child = f.is_table() ? config_.registry.Find(f.options) : nullptr;
    if (child == nullptr) continue;
    RETURN_IF_ERROR(RunPreparedDeferred(conn_, DeleteChildRowsSql(child->table), {name, def.name},
                                        absl::StrCat("deleting rows of ", Doc(def.name, name))));
  }
  RETURN_IF_ERROR(RunPreparedDeferred(conn_, DeleteDocumentSql(def.table), {name},
                                      absl::StrCat("deleting ", Doc(def.name, name))));
  RETURN_IF_ERROR(ReleaseCopy(t, name));
  return out;
}

}  // namespace eventstream::apply
