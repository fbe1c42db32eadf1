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
#include "libsync/diff.h"
#include "libsync/document.h"
#include "libsync/naming.h"
#include "services/common/update_type.h"

namespace eventstream::apply {
namespace {

using pg::QuoteIdentifier;

constexpr int kMaxDependencyDepth = 64;

bool IsTextType(const std::string& type) {
  return type == "text" || absl::StartsWith(type, "character") || type == "name" ||
         type == "citext";
}

bool IsJsonType(const std::string& type) {
  return type == "json" || type == "jsonb" || absl::EndsWith(type, "[]");
}

bool IsNumericFieldtype(const std::string& fieldtype) {
  return fieldtype == "Int" || fieldtype == "Float" || fieldtype == "Currency" ||
         fieldtype == "Check" || fieldtype == "Percent";
}

pg::Param ToParam(const Value& v, const std::string& column_type) {
  switch (v.kind()) {
    case Value::Kind::kNull:
      return pg::Param();
    case Value::Kind::kBool:
      if (column_type == "boolean") return pg::Param(v.as_bool() ? "true" : "false");
      return pg::Param(v.as_bool() ? "1" : "0");
    case Value::Kind::kString:
      if (v.as_string().empty() && !IsTextType(column_type)) return pg::Param();
      return pg::Param(v.as_string());
    case Value::Kind::kArray:
    case Value::Kind::kObject:
      return pg::Param(v.ToJson());
    case Value::Kind::kNumber:
      return pg::Param(v.number_text());
  }
  return pg::Param();
}

std::string Key(const std::string& doctype, const std::string& name) {
  return absl::StrCat(doctype, std::string(1, '\0'), name);
}

std::string Doc(const std::string& doctype, const std::string& name) {
  return absl::StrCat(doctype, " \"", name, "\"");
}

absl::Status Annotate(const absl::Status& s, const std::string& prefix) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(prefix, ": ", std::string(s.message())));
}

// Parent-row keys the applier sets itself or that are not columns.
const std::set<std::string>& ParentSkip() {
  static const auto* skip =
      new std::set<std::string>{"name", "doctype", "remote_docname", "remote_site_name"};
  return *skip;
}
const std::set<std::string>& ChildSkip() {
  static const auto* skip =
      new std::set<std::string>{"name",        "doctype",        "parent",          "parenttype",
                                "parentfield", "remote_docname", "remote_site_name"};
  return *skip;
}

}  // namespace

namespace {
// The prepared statement's name: one per SQL text and parameter count.
std::string StatementName(const std::string& sql, size_t params) {
  return absl::StrCat("es_apply_", absl::Hex(std::hash<std::string>{}(sql)), "_", params);
}
}  // namespace

absl::StatusOr<pg::Result> RunPrepared(pg::Connection* conn, const std::string& sql,
                                       const pg::Params& params) {
  return conn->ExecPrepared(StatementName(sql, params.size()), sql, params);
}

absl::Status RunPreparedDeferred(pg::Connection* conn, const std::string& sql,
                                 const pg::Params& params, std::string what) {
  return conn->ExecPreparedDeferred(StatementName(sql, params.size()), sql, params,
                                    std::move(what));
}

// ---- TableCache -------------------------------------------------------------

absl::StatusOr<const TableInfo*> TableCache::Get(pg::Connection* conn, const std::string& table) {
  auto it = tables_.find(table);
  if (it != tables_.end()) return &it->second;
  auto r = RunPrepared(conn,
                       "SELECT a.attname, format_type(a.atttypid, a.atttypmod)"
                       " FROM pg_attribute a WHERE a.attrelid = to_regclass($1)"
                       " AND a.attnum > 0 AND NOT a.attisdropped",
                       {QuoteIdentifier(table)});
  if (!r.ok()) return Annotate(r.status(), absl::StrCat("reading columns of table ", table));
  if (r->rows() == 0) {
    return absl::NotFoundError(absl::StrCat("table \"", table, "\" does not exist on this site"));
  }
  TableInfo info;
  info.table = table;
  for (int i = 0; i < r->rows(); ++i) {
    info.columns[std::string(r->Get(i, 0))] = std::string(r->Get(i, 1));
  }
  return &tables_.emplace(table, std::move(info)).first->second;
}

absl::Status TableCache::EnsureRemoteColumns(pg::Connection* conn, const std::string& table) {
  auto info = Get(conn, table);
  if (!info.ok()) return info.status();
  if ((*info)->has_remote()) return absl::OkStatus();
  std::string q = QuoteIdentifier(table);
  // Each statement commits on its own and is idempotent: dying between them
  // leaves columns without the index; the next start adds it.
  for (const std::string& sql :
       {absl::StrCat("ALTER TABLE ", q, " ADD COLUMN IF NOT EXISTS remote_docname text"),
        absl::StrCat("ALTER TABLE ", q, " ADD COLUMN IF NOT EXISTS remote_site_name text"),
        absl::StrCat("CREATE INDEX IF NOT EXISTS ",
                     QuoteIdentifier(absl::StrCat(table.substr(0, 40), "_remote_name")), " ON ", q,
                     " (remote_site_name, remote_docname)")}) {
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
  auto t = Resolve(e.doctype());
  if (!t.ok()) return t.status();
  if (e.data_omitted_bytes() > 0 ||
      (e.data_json().empty() && e.update_type() != v1::UPDATE_TYPE_DELETE)) {
    return DataNeverArrived(*t, e);
  }
  switch (e.update_type()) {
    case v1::UPDATE_TYPE_CREATE: {
      auto doc = Value::ParseJson(e.data_json());
      if (!doc.ok()) return Annotate(doc.status(), "Create data");
      if (!doc->is_object()) return absl::InvalidArgumentError("Create data is not an object");
      std::string name = e.docname().empty() ? NameOf(*doc) : e.docname();
      return Create(*t, name, *std::move(doc), "");
    }
    case v1::UPDATE_TYPE_UPDATE:
      return Update(*t, e, /*cancel=*/false);
    case v1::UPDATE_TYPE_CANCEL:
      return Update(*t, e, /*cancel=*/true);
    case v1::UPDATE_TYPE_RENAME:
      return Rename(*t, e);
    case v1::UPDATE_TYPE_DELETE:
      return Delete(*t, e);
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
    const std::string q = QuoteIdentifier(def->table);
    absl::StatusOr<pg::Result> r =
        same_name
            ? RunPrepared(conn_,
                          absl::StrCat("SELECT name, name FROM ", q,
                                       " WHERE name = ANY($1::text[])"),
                          {array})
            : RunPrepared(conn_,
                          absl::StrCat("SELECT remote_docname, min(name) FROM ", q,
                                       " WHERE remote_site_name = $1"
                                       " AND remote_docname = ANY($2::text[])"
                                       " GROUP BY remote_docname"),
                          {producer_, array});
    if (!r.ok()) return Annotate(r.status(), absl::StrCat("looking up ", def->name, " documents"));
    for (const std::string& n : names) SetKnown(*def, n, same_name, std::nullopt);
    for (int i = 0; i < r->rows(); ++i) {
      SetKnown(*def, std::string(r->Get(i, 0)), same_name, std::string(r->Get(i, 1)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> DocumentApplier::FindLocal(
    const DocTypeDef& def, const std::string& remote_name, bool same_name) {
  if (auto it = known_.find(KnownKey(def.name, same_name, remote_name)); it != known_.end()) {
    return it->second;
  }
  auto info = tables_->Get(conn_, def.table);
  if (!info.ok()) return info.status();
  std::string q = QuoteIdentifier(def.table);
  absl::StatusOr<pg::Result> r;
  if (same_name) {
    r = RunPrepared(conn_, absl::StrCat("SELECT name FROM ", q, " WHERE name = $1"), {remote_name});
  } else {
    if (!(*info)->has_remote()) {
      return absl::FailedPreconditionError(
          absl::StrCat("table \"", def.table, "\" has no remote_docname/remote_site_name columns"));
    }
    r = RunPrepared(conn_,
                    absl::StrCat("SELECT name FROM ", q,
                                 " WHERE remote_site_name = $1 AND remote_docname = $2"
                                 " ORDER BY name LIMIT 1"),
                    {producer_, remote_name});
  }
  if (!r.ok()) return Annotate(r.status(), absl::StrCat("looking up ", Doc(def.name, remote_name)));
  if (r->rows() == 0) return std::optional<std::string>();
  return std::optional<std::string>(std::string(r->Get(0, 0)));
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
        absl::Status s = Validate(*child, row, false,
                                  absl::StrCat(where, " row ", Doc(child->name, NameOf(row))));
        if (!s.ok()) return s;
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
        absl::Status s = ResolveLinks(
            *child, row, absl::StrCat(where, " row ", Doc(child->name, NameOf(row))), nullptr);
        if (!s.ok()) return s;
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
        auto local = fallback(f.options);
        if (!local.ok()) return local.status();
        target = *local;
      }
    }
    if (target.empty()) continue;
    const DocTypeDef* tdef = config_.registry.Find(target);
    if (tdef == nullptr || tdef->istable) continue;  // not ours to resolve
    auto local =
        EnsureDocument(target, v.as_string(),
                       absl::StrCat(where, " field \"", f.fieldname, "\" (", f.fieldtype, ")"));
    if (!local.ok()) return local.status();
    if (*local != v.as_string()) v = Value::String(*local);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> DocumentApplier::EnsureDocument(const std::string& doctype,
                                                            const std::string& name,
                                                            const std::string& via) {
  if (auto it = pending_.find(Key(doctype, name)); it != pending_.end()) return it->second;
  const DocTypeDef* def = config_.registry.Find(doctype);
  auto info = tables_->Get(conn_, def->table);
  if (!info.ok()) return Annotate(info.status(), via);
  auto local = FindLocal(*def, name, /*same_name=*/true);
  if (!local.ok()) return local.status();
  if (local->has_value()) return **local;
  if ((*info)->has_remote()) {
    local = FindLocal(*def, name, /*same_name=*/false);
    if (!local.ok()) return local.status();
    if (local->has_value()) return **local;
  }
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
  auto fetched = deps_->GetDocument(doctype, name);
  if (!fetched.ok()) return fetched.status();
  if (!fetched->has_value()) return std::optional<Value>();
  for (Value& dep : (*fetched)->dependencies) {
    std::string dep_doctype = DocTypeOf(dep), dep_name = NameOf(dep);
    if (!dep_doctype.empty() && !dep_name.empty()) {
      fetched_.insert_or_assign(Key(dep_doctype, dep_name), std::move(dep));
    }
  }
  return std::optional<Value>(std::move((*fetched)->document));
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
  auto found = deps_->FindDocuments(remote_doctype, f, 1);
  if (!found.ok()) return found.status();
  if (found->empty()) return std::optional<Value>();
  return std::optional<Value>(found->front());
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
  auto info = tables_->Get(conn_, def->table);
  if (!info.ok()) return info.status();
  auto local = FindLocal(*def, name, /*same_name=*/true);
  if (!local.ok()) return local.status();
  if (local->has_value()) return **local;
  if ((*info)->has_remote()) {
    local = FindLocal(*def, name, /*same_name=*/false);
    if (!local.ok()) return local.status();
    if (local->has_value()) return **local;
  }
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
  std::vector<std::string> cols, holders;
  pg::Params params;
  for (auto& [k, v] : values) {
    cols.push_back(QuoteIdentifier(k));
    holders.push_back(absl::StrCat("$", params.size() + 1));
    params.push_back(ToParam(v, info.columns.at(k)));
  }
  return RunPreparedDeferred(
      conn_,
      absl::StrCat("INSERT INTO ", QuoteIdentifier(info.table), " (", absl::StrJoin(cols, ", "),
                   ") VALUES (", absl::StrJoin(holders, ", "), ")"),
      params, absl::StrCat("inserting ", what));
}

absl::Status DocumentApplier::UpdateRow(const TableInfo& info,
                                        const std::map<std::string, Value>& values,
                                        const std::string& where_sql,
                                        const pg::Params& where_params, const std::string& what) {
  if (values.empty()) return absl::OkStatus();
  pg::Params params = where_params;
  std::vector<std::string> sets;
  for (const auto& [k, v] : values) {
    params.push_back(ToParam(v, info.columns.at(k)));
    sets.push_back(absl::StrCat(QuoteIdentifier(k), " = $", params.size()));
  }
  return RunPreparedDeferred(conn_,
                             absl::StrCat("UPDATE ", QuoteIdentifier(info.table), " SET ",
                                          absl::StrJoin(sets, ", "), " WHERE ", where_sql),
                             params, absl::StrCat("updating ", what));
}

absl::Status DocumentApplier::InsertDocument(const DocTypeDef& def, const Value& doc,
                                             const std::string& local_name,
                                             const std::string& remote_name, bool same_name) {
  auto info = tables_->Get(conn_, def.table);
  if (!info.ok()) return info.status();
  std::set<std::string> skip = ParentSkip();
  for (const FieldDef& f : def.fields) {
    if (f.is_table()) skip.insert(f.fieldname);
  }
  std::map<std::string, Value> values = RowValues(**info, doc, skip);
  values["name"] = Value::String(local_name);
  if ((*info)->has_remote()) {
    values["remote_docname"] = Value::String(remote_name);
    values["remote_site_name"] = Value::String(producer_);
  } else if (!same_name) {
    return absl::FailedPreconditionError(
        absl::StrCat("table \"", def.table, "\" has no remote_docname/remote_site_name columns"));
  }
  const bool has_remote = (*info)->has_remote();
  absl::Status s = InsertRow(**info, std::move(values), Doc(def.name, local_name));
  if (!s.ok()) return s;
  SetKnown(def, local_name, /*same_name=*/true, local_name);
  if (has_remote) SetKnown(def, remote_name, /*same_name=*/false, local_name);
  for (const FieldDef& f : def.fields) {
    if (!f.is_table()) continue;
    const ::eventstream::Value::Array* rows = ChildRows(doc, f.fieldname);
    const DocTypeDef* child = config_.registry.Find(f.options);
    if (rows == nullptr || rows->empty() || child == nullptr) continue;
    std::vector<RowValuesMap> collected;
    for (const Value& row : *rows) {
      s = UpsertChildRow(def, f, local_name, row, same_name, /*may_exist=*/false, &collected);
      if (!s.ok()) return s;
    }
    auto child_info = tables_->Get(conn_, child->table);
    if (!child_info.ok()) return child_info.status();
    s = InsertRows(**child_info, collected,
                   absl::StrCat(Doc(def.name, local_name), " rows of \"", f.fieldname, "\""));
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status DocumentApplier::InsertRows(const TableInfo& info,
                                         const std::vector<RowValuesMap>& rows,
                                         const std::string& what) {
  size_t start = 0;
  while (start < rows.size()) {
    // A run of rows with the same columns (usually all of them).
    size_t end = start + 1;
    auto same_columns = [](const RowValuesMap& a, const RowValuesMap& b) {
      if (a.size() != b.size()) return false;
      for (auto i = a.begin(), j = b.begin(); i != a.end(); ++i, ++j) {
        if (i->first != j->first) return false;
      }
      return true;
    };
    while (end < rows.size() && end - start < 200 && same_columns(rows[start], rows[end])) ++end;
    if (end - start == 1) {
      absl::Status s = InsertRow(info, rows[start], what);
      if (!s.ok()) return s;
      start = end;
      continue;
    }
    std::vector<std::string> cols;
    for (const auto& [k, v] : rows[start]) cols.push_back(QuoteIdentifier(k));
    std::vector<std::string> tuples;
    pg::Params params;
    for (size_t i = start; i < end; ++i) {
      std::vector<std::string> holders;
      for (const auto& [k, v] : rows[i]) {
        params.push_back(ToParam(v, info.columns.at(k)));
        holders.push_back(absl::StrCat("$", params.size()));
      }
      tuples.push_back(absl::StrCat("(", absl::StrJoin(holders, ", "), ")"));
    }
    absl::Status s = RunPreparedDeferred(
        conn_,
        absl::StrCat("INSERT INTO ", QuoteIdentifier(info.table), " (", absl::StrJoin(cols, ", "),
                     ") VALUES ", absl::StrJoin(tuples, ", ")),
        params, absl::StrCat("inserting ", what));
    if (!s.ok()) return s;
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
  auto info = tables_->Get(conn_, child->table);
  if (!info.ok()) return info.status();
  std::string remote_row = NameOf(row);
  std::string what =
      absl::StrCat(Doc(parent_def.name, parent_local), " row ", Doc(child->name, remote_row),
                   " of \"", table_field.fieldname, "\"");
  if (!same_name && !(*info)->has_remote()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "table \"", child->table, "\" has no remote_docname/remote_site_name columns"));
  }
  std::map<std::string, Value> values = RowValues(**info, row, ChildSkip());
  if (may_exist && !remote_row.empty()) {
    std::string key = same_name ? "name" : "remote_docname";
    std::string where =
        absl::StrCat("parent = $1 AND parenttype = $2 AND ", QuoteIdentifier(key), " = $3");
    auto r = RunPrepared(
        conn_, absl::StrCat("SELECT name FROM ", QuoteIdentifier(child->table), " WHERE ", where),
        {parent_local, parent_def.name, remote_row});
    if (!r.ok()) return Annotate(r.status(), absl::StrCat("looking up ", what));
    if (r->rows() > 0) {
      values["parentfield"] = Value::String(table_field.fieldname);
      return UpdateRow(**info, values, where, {parent_local, parent_def.name, remote_row}, what);
    }
  }
  std::string local_row = remote_row;
  if (!same_name || local_row.empty()) {
    auto name = NewName(*child, row);
    if (!name.ok()) return name.status();
    local_row = *name;
  }
  values["name"] = Value::String(local_row);
  values["parent"] = Value::String(parent_local);
  values["parenttype"] = Value::String(parent_def.name);
  values["parentfield"] = Value::String(table_field.fieldname);
  if ((*info)->has_remote()) {
    values["remote_docname"] = Value::String(remote_row);
    values["remote_site_name"] = Value::String(producer_);
  }
  for (const char* col : {"parent", "parenttype", "parentfield"}) {
    if (!(*info)->Has(col)) {
      return absl::FailedPreconditionError(
          absl::StrCat("child table \"", child->table, "\" has no column \"", col, "\""));
    }
  }
  if (collect != nullptr) {
    collect->push_back(std::move(values));
    return absl::OkStatus();
  }
  return InsertRow(**info, std::move(values), what);
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
  auto existing = FindLocal(def, remote_name, t.same_name);
  if (!existing.ok()) return existing.status();
  if (existing->has_value()) {
    out.local_docname = **existing;
    out.note = absl::StrCat(note.empty() ? "" : absl::StrCat(note, "; "),
                            "already exists here as \"", out.local_docname, "\"; left alone");
    return out;
  }
  std::string local = remote_name;
  if (!t.same_name) {
    auto name = NewName(def, doc);
    if (!name.ok()) return name.status();
    local = *name;
  }
  pending_[Key(def.name, remote_name)] = local;
  std::string where = Doc(def.name, remote_name);
  FillDefaults(def, doc);
  absl::Status s = ResolveLinks(def, doc, where, nullptr);
  if (!s.ok()) return s;
  s = Validate(def, doc, false, where);
  if (!s.ok()) return s;
  s = InsertDocument(def, doc, local, remote_name, t.same_name);
  if (!s.ok()) return s;
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
  auto local = FindLocal(*t.def, e.docname(), t.same_name);
  if (!local.ok()) return local.status();
  if (!local->has_value()) return InsertFetched(t, e.docname(), why);
  return absl::FailedPreconditionError(absl::StrCat(
      why, ": ", Doc(e.doctype(), e.docname()), " is here as \"", **local,
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

  auto local = FindLocal(def, e.docname(), t.same_name);
  if (!local.ok()) return local.status();
  if (!local->has_value()) {
    auto out = InsertFetched(t, e.docname(), absl::StrCat(kind, " of a document missing here"));
    if (!out.ok() || !cancel) return out;
    // The fetched copy is the current one; a Cancel still means docstatus 2.
    auto info = tables_->Get(conn_, def.table);
    if (!info.ok()) return info.status();
    absl::Status s = UpdateRow(**info, {{"docstatus", Value::Int(2)}}, "name = $1",
                               {out->local_docname}, Doc(def.name, out->local_docname));
    if (!s.ok()) return s;
    return out;
  }
  const std::string name = **local;
  if (t.mapping != nullptr) {
    auto mapped = mappings_->MapDiff(t.mapping->name, *diff, this);
    if (!mapped.ok()) {
      return Annotate(mapped.status(),
                      absl::StrCat("mapping ", Doc(t.remote_doctype, e.docname())));
    }
    diff = *std::move(mapped);
  }
  if (cancel) diff->changed["docstatus"] = Value::Int(2);
  const std::string where = Doc(def.name, name);
  auto info = tables_->Get(conn_, def.table);
  if (!info.ok()) return info.status();
  const std::string q = QuoteIdentifier(def.table);

  Fallback parent_column = [&](const std::string& column) -> absl::StatusOr<std::string> {
    if (!(*info)->Has(column)) return std::string();
    auto r = RunPrepared(
        conn_,
        absl::StrCat("SELECT ", QuoteIdentifier(column), "::text FROM ", q, " WHERE name = $1"),
        {name});
    if (!r.ok()) return r.status();
    return r->rows() > 0 ? std::string(r->Get(0, 0)) : std::string();
  };
  // The child DocType and child table field of a table key in the diff.
  auto table_of = [&](const std::string& field) -> std::pair<const FieldDef*, const DocTypeDef*> {
    const FieldDef* f = def.FindField(field);
    if (f == nullptr || !f->is_table()) return {nullptr, nullptr};
    return {f, config_.registry.Find(f->options)};
  };
  const std::string row_key = t.same_name ? "name" : "remote_docname";

  // Dependencies, then validation, for everything the diff writes.
  absl::Status s = ResolveLinks(def, diff->changed, where, parent_column);
  if (!s.ok()) return s;
  for (auto& [table, rows] : diff->added.mutable_object()) {
    auto [f, child] = table_of(table);
    if (child == nullptr || !rows.is_array()) continue;
    for (Value& row : rows.mutable_array()) {
      std::string w = absl::StrCat(where, " row ", Doc(child->name, NameOf(row)));
      s = ResolveLinks(*child, row, w, nullptr);
      if (s.ok()) s = Validate(*child, row, false, w);
      if (!s.ok()) return s;
    }
  }
  for (auto& [table, rows] : diff->row_changed.mutable_object()) {
    auto [f, child] = table_of(table);
    if (child == nullptr || !rows.is_array()) continue;
    for (Value& row : rows.mutable_array()) {
      std::string remote_row = NameOf(row);
      std::string w = absl::StrCat(where, " row ", Doc(child->name, remote_row));
      const DocTypeDef* cd = child;
      Fallback child_column =
          [&, cd, remote_row](const std::string& column) -> absl::StatusOr<std::string> {
        auto ci = tables_->Get(conn_, cd->table);
        if (!ci.ok()) return ci.status();
        if (!(*ci)->Has(column)) return std::string();
        auto r = RunPrepared(
            conn_,
            absl::StrCat("SELECT ", QuoteIdentifier(column), "::text FROM ",
                         QuoteIdentifier(cd->table), " WHERE parent = $1 AND parenttype = $2 AND ",
                         QuoteIdentifier(row_key), " = $3"),
            {name, def.name, remote_row});
        if (!r.ok()) return r.status();
        return r->rows() > 0 ? std::string(r->Get(0, 0)) : std::string();
      };
      s = ResolveLinks(*child, row, w, child_column);
      if (s.ok()) s = Validate(*child, row, true, w);
      if (!s.ok()) return s;
    }
  }
  s = Validate(def, diff->changed, true, where);
  if (!s.ok()) return s;

  // removed
  for (const auto& [table, names] : diff->removed.as_object()) {
    auto [f, child] = table_of(table);
    if (child == nullptr || !names.is_array()) continue;
    for (const Value& n : names.as_array()) {
      s = RunPreparedDeferred(conn_,
                              absl::StrCat("DELETE FROM ", QuoteIdentifier(child->table),
                                           " WHERE parent = $1 AND parenttype = $2 AND ",
                                           QuoteIdentifier(row_key), " = $3"),
                              {name, def.name, n.ToText()},
                              absl::StrCat("deleting ", where, " row ", Doc(child->name, n.ToText())));
      if (!s.ok()) return s;
    }
  }
  // row_changed
  for (const auto& [table, rows] : diff->row_changed.as_object()) {
    auto [f, child] = table_of(table);
    if (child == nullptr || !rows.is_array()) continue;
    auto ci = tables_->Get(conn_, child->table);
    if (!ci.ok()) return ci.status();
    for (const Value& row : rows.as_array()) {
      std::string remote_row = NameOf(row);
      s = UpdateRow(
          **ci, RowValues(**ci, row, ChildSkip()),
          absl::StrCat("parent = $1 AND parenttype = $2 AND ", QuoteIdentifier(row_key), " = $3"),
          {name, def.name, remote_row}, absl::StrCat(where, " row ", Doc(child->name, remote_row)));
      if (!s.ok()) return s;
    }
  }
  // changed: parent columns; a whole table in `changed` replaces its rows.
  std::set<std::string> skip = ParentSkip();
  for (const FieldDef& f : def.fields) {
    if (!f.is_table()) continue;
    skip.insert(f.fieldname);
    const Value* rows = diff->changed.Find(f.fieldname);
    const DocTypeDef* child = config_.registry.Find(f.options);
    if (rows == nullptr || child == nullptr) continue;
    s = RunPreparedDeferred(
        conn_,
        absl::StrCat("DELETE FROM ", QuoteIdentifier(child->table),
                     " WHERE parent = $1 AND parenttype = $2 AND parentfield = $3"),
        {name, def.name, f.fieldname}, absl::StrCat("replacing ", where, " table ", f.fieldname));
    if (!s.ok()) return s;
    if (rows->is_array()) {
      for (const Value& row : rows->as_array()) {
        s = UpsertChildRow(def, f, name, row, t.same_name, /*may_exist=*/false);
        if (!s.ok()) return s;
      }
    }
  }
  s = UpdateRow(**info, RowValues(**info, diff->changed, skip), "name = $1", {name}, where);
  if (!s.ok()) return s;
  // added
  for (const auto& [table, rows] : diff->added.as_object()) {
    auto [f, child] = table_of(table);
    if (child == nullptr || !rows.is_array()) continue;
    for (const Value& row : rows.as_array()) {
      s = UpsertChildRow(def, *f, name, row, t.same_name, /*may_exist=*/true);
      if (!s.ok()) return s;
    }
  }
  // A child row's docstatus follows its parent's (diff.h).
  if (const Value* ds = diff->changed.Find("docstatus"); ds != nullptr && !ds->is_null()) {
    for (const FieldDef& f : def.fields) {
      const DocTypeDef* child = f.is_table() ? config_.registry.Find(f.options) : nullptr;
      if (child == nullptr) continue;
      auto ci = tables_->Get(conn_, child->table);
      if (!ci.ok()) return ci.status();
      if (!(*ci)->Has("docstatus")) continue;
      s = UpdateRow(**ci, {{"docstatus", *ds}}, "parent = $1 AND parenttype = $2", {name, def.name},
                    absl::StrCat(where, " rows of ", f.fieldname));
      if (!s.ok()) return s;
    }
  }
  Outcome out;
  out.local_doctype = def.name;
  out.local_docname = name;
  return out;
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
  auto local = FindLocal(def, old_name, t.same_name);
  if (!local.ok()) return local.status();
  if (!local->has_value()) {
    auto renamed = FindLocal(def, new_name, t.same_name);
    if (!renamed.ok()) return renamed.status();
    if (renamed->has_value()) {
      out.local_docname = **renamed;
      out.note = "already renamed here";
      return out;
    }
    return InsertFetched(t, new_name, "Rename of a document missing here");
  }
  const std::string where = Doc(def.name, **local);
  Forget forget{this, def, old_name, new_name};
  if (!t.same_name) {
    // Only the remote name changes; the local name stays.
    auto r = RunPrepared(conn_,
                         absl::StrCat("UPDATE ", QuoteIdentifier(def.table),
                                      " SET remote_docname = $1 WHERE name = $2"),
                         {new_name, **local});
    if (!r.ok()) return Annotate(r.status(), absl::StrCat("renaming ", where));
    out.local_docname = **local;
    return out;
  }
  auto clash = FindLocal(def, new_name, true);
  if (!clash.ok()) return clash.status();
  if (clash->has_value()) {
    return absl::AlreadyExistsError(absl::StrCat("cannot rename ", where, " to \"", new_name,
                                                 "\": that name exists here already"));
  }
  auto r = RunPrepared(
      conn_, absl::StrCat("UPDATE ", QuoteIdentifier(def.table), " SET name = $1 WHERE name = $2"),
      {new_name, old_name});
  if (!r.ok()) return Annotate(r.status(), absl::StrCat("renaming ", where));
  for (const FieldDef& f : def.fields) {
    const DocTypeDef* child = f.is_table() ? config_.registry.Find(f.options) : nullptr;
    if (child == nullptr) continue;
    r = RunPrepared(conn_,
                    absl::StrCat("UPDATE ", QuoteIdentifier(child->table),
                                 " SET parent = $1 WHERE parent = $2 AND parenttype = $3"),
                    {new_name, old_name, def.name});
    if (!r.ok()) {
      return Annotate(r.status(), absl::StrCat("renaming ", where, " rows of ", f.fieldname));
    }
  }
  out.local_docname = new_name;
  return out;
}

absl::StatusOr<Outcome> DocumentApplier::Delete(const Target& t, const v1::UpdateLogEntry& e) {
  const DocTypeDef& def = *t.def;
  Outcome out;
  out.local_doctype = def.name;
  auto local = FindLocal(def, e.docname(), t.same_name);
  if (!local.ok()) return local.status();
  if (!local->has_value()) {
    out.note = "not present here; nothing to delete";
    return out;
  }
  const std::string name = **local;
  out.local_docname = name;
  Unknow(def, name);
  Unknow(def, e.docname());
  for (const FieldDef& f : def.fields) {
    const DocTypeDef* child = f.is_table() ? config_.registry.Find(f.options) : nullptr;
    if (child == nullptr) continue;
    absl::Status s = RunPreparedDeferred(conn_,
                                         absl::StrCat("DELETE FROM ", QuoteIdentifier(child->table),
                                                      " WHERE parent = $1 AND parenttype = $2"),
                                         {name, def.name},
                                         absl::StrCat("deleting rows of ", Doc(def.name, name)));
    if (!s.ok()) return s;
  }
  absl::Status s = RunPreparedDeferred(
      conn_, absl::StrCat("DELETE FROM ", QuoteIdentifier(def.table), " WHERE name = $1"), {name},
      absl::StrCat("deleting ", Doc(def.name, name)));
  if (!s.ok()) return s;
  return out;
}

}  // namespace eventstream::apply
