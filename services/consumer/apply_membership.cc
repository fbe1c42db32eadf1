// DocumentApplier's membership entries (issue 14; docs/design.md
// "Membership"): SYNC (the producer's whole current document made the copy
// here) and REVOKE (on_move_out), and the copies Resnapshot compares. Same
// crash safety as apply_document.cc: inside the caller's transaction.
#include <utility>

#include "absl/strings/str_cat.h"
#include "libsync/model/document.h"
#include "libsync/base/status_macros.h"
#include "libsync/rules/sync_plan.h"
#include "libsync/rules/update_plan.h"
#include "services/consumer/apply_document.h"
#include "services/consumer/apply_sql.h"

namespace eventstream::apply {

using namespace internal;  // NOLINT: the applier's own helpers (apply_sql.h)

absl::StatusOr<std::vector<std::string>> DocumentApplier::LocalCopies(
    const std::string& remote_doctype) {
  ASSIGN_OR_RETURN(const Target t, Resolve(remote_doctype));
  ASSIGN_OR_RETURN(const TableInfo* info, tables_->Get(conn_, t.def->table));
  std::vector<std::string> names;
  if (!t.same_name && !info->has_remote()) return names;  // nothing came here yet
  ASSIGN_OR_RETURN(pg::Result r,
                   t.same_name
                       ? RunPrepared(conn_, CopiesByNameSql(t.def->table), {producer_, remote_doctype})
                       : RunPrepared(conn_, CopiesByRemoteSql(t.def->table), {producer_}));
  names.reserve(r.rows());
  for (int i = 0; i < r.rows(); ++i) names.emplace_back(r.Get(i, "remote_name"));
  return names;
}

absl::Status DocumentApplier::HoldCopy(const Target& t, const std::string& name) {
  if (t.same_name) copies_.push_back({t.remote_doctype, name, true});
  return absl::OkStatus();
}

absl::Status DocumentApplier::ReleaseCopy(const Target& t, const std::string& name) {
  if (t.same_name) copies_.push_back({t.remote_doctype, name, false});
  return absl::OkStatus();
}

absl::Status DocumentApplier::FlushCopies() {
  // The last mark of each document wins (a Create then a Delete: released).
  std::map<std::pair<std::string, std::string>, bool> last;
  for (const CopyMark& m : copies_) last[{m.doctype, m.name}] = m.held;
  copies_.clear();
  entry_copies_start_ = 0;
  std::vector<std::string> doctypes[2], names[2];  // [0] released, [1] held
  for (const auto& [key, held] : last) {
    doctypes[held].push_back(key.first);
    names[held].push_back(key.second);
  }
  for (int held : {1, 0}) {
    if (names[held].empty()) continue;
    RETURN_IF_ERROR(RunPreparedDeferred(
        conn_, held ? kHoldSameNameCopies : kReleaseSameNameCopies,
        {producer_, pg::TextArray(doctypes[held]), pg::TextArray(names[held])},
        absl::StrCat(held ? "recording " : "releasing ", names[held].size(),
                     " same-name copies")));
  }
  return absl::OkStatus();
}

absl::StatusOr<Outcome> DocumentApplier::Sync(const Target& t, const v1::UpdateLogEntry& e) {
  ASSIGN_OR_RETURN(Value doc, Annotated(Value::ParseJson(e.data_json()), "Sync data"));
  if (!doc.is_object()) return absl::InvalidArgumentError("Sync data is not an object");
  const std::string remote_name = e.docname().empty() ? NameOf(doc) : e.docname();
  ASSIGN_OR_RETURN(std::optional<std::string> local,
                   FindLocal(*t.def, remote_name, t.same_name));
  if (!local.has_value()) {
    ASSIGN_OR_RETURN(Outcome out, Create(t, remote_name, std::move(doc), "inserted"));
    out.sync = Outcome::SyncEffect::kInserted;
    return out;
  }
  if (t.mapping != nullptr) {
    auto mapped = mappings_->MapDocument(t.mapping->name, doc, this);
    if (!mapped.ok()) {
      return Annotate(mapped.status(), absl::StrCat("mapping ", Doc(t.remote_doctype, remote_name)));
    }
    doc = *std::move(mapped);
  }
  return Replace(t, remote_name, *local, std::move(doc));
}

absl::StatusOr<Outcome> DocumentApplier::Replace(const Target& t, const std::string& remote_name,
                                                 const std::string& name, Value doc) {
  const DocTypeDef& def = *t.def;
  const std::string where = Doc(def.name, remote_name);
  // As Create prepares a document: defaults, dependencies (link values
  // become local names, as the copy here holds them), validation.
  FillDefaults(def, doc);
  RETURN_IF_ERROR(ResolveLinks(def, doc, where, nullptr));
  RETURN_IF_ERROR(Validate(def, doc, false, where));
  ASSIGN_OR_RETURN(Value here, ReadLocal(def, name));
  const SyncChange change =
      PlanSync(LocalAsRemote(def, std::move(here), remote_name, t.same_name), doc);
  // The producer's copy from now on, even where a local document of the
  // same name was here first (as the sync log used to say).
  RETURN_IF_ERROR(HoldCopy(t, name));
  Outcome out;
  out.local_doctype = def.name;
  out.local_docname = name;
  if (change.empty()) {
    out.note = "already equal";
    out.sync = Outcome::SyncEffect::kEqual;
    return out;
  }
  out.sync = Outcome::SyncEffect::kReplaced;
  // The same writes as an Update with this diff; inside the entry's
  // savepoint like every write here.
  RETURN_IF_ERROR(WriteUpdate(def, t.same_name, name, change.diff,
                              PlanUpdate(def, config_.registry, change.diff)));
  out.note = absl::StrCat("replaced ", change.fields, " fields and ", change.rows, " child rows");
  return out;
}

absl::StatusOr<Value> DocumentApplier::ReadLocal(const DocTypeDef& def, const std::string& name) {
  const std::string where = Doc(def.name, name);
  ASSIGN_OR_RETURN(pg::Result r, RunPrepared(conn_, ReadDocumentSql(def.table), {name}));
  if (r.rows() == 0) return absl::NotFoundError(absl::StrCat(where, " vanished while syncing"));
  ASSIGN_OR_RETURN(Value doc, Value::ParseJson(std::string(r.Get(0, "doc"))));
  for (const FieldDef& f : def.fields) {
    const DocTypeDef* child = f.is_table() ? config_.registry.Find(f.options) : nullptr;
    if (child == nullptr) continue;
    ASSIGN_OR_RETURN(pg::Result rows, RunPrepared(conn_, ReadTableRowsSql(child->table),
                                                  {name, def.name, f.fieldname}));
    ASSIGN_OR_RETURN(doc[f.fieldname], Value::ParseJson(std::string(rows.Get(0, "rows"))));
  }
  return doc;
}

absl::StatusOr<Outcome> DocumentApplier::Revoke(const Target& t, const v1::UpdateLogEntry& e) {
  std::string reason;
  if (auto json = Value::ParseJson(e.data_json().empty() ? "{}" : e.data_json()); json.ok()) {
    const Value* r = json->Find("reason");
    if (r != nullptr && r->is_string() && !r->as_string().empty()) {
      reason = absl::StrCat("; moved out: ", r->as_string());
    }
  }
  Outcome out;
  if (t.on_move_out == ProducerDocTypeConfig::MoveOut::kKeep) {
    ASSIGN_OR_RETURN(std::optional<std::string> local,
                     FindLocal(*t.def, e.docname(), t.same_name));
    out.local_doctype = t.def->name;
    out.local_docname = local.value_or("");
    out.note = absl::StrCat(local.has_value() ? "kept, no longer followed (on_move_out: keep)"
                                              : "not here",
                            reason);
    return out;
  }
  ASSIGN_OR_RETURN(out, Delete(t, e));
  out.note = absl::StrCat(out.local_docname.empty() ? "not here" : "deleted (on_move_out: delete)",
                          reason);
  return out;
}

}  // namespace eventstream::apply
