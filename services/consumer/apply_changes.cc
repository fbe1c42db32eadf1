// DocumentApplier's change entries (apply_document.h): Create, Update and
// Cancel (with the Update of a document missing here), Rename and Delete,
// and an entry whose data never arrived. Same crash safety as
// apply_document.cc: inside the caller's transaction, a savepoint per entry.
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libsync/base/status_macros.h"
#include "libsync/model/diff.h"
#include "libsync/model/document.h"
#include "libsync/rules/update_plan.h"
#include "services/common/update_type.h"
#include "services/consumer/apply_document.h"
#include "services/consumer/apply_sql.h"

namespace eventstream::apply {

using namespace internal;  // NOLINT: the applier's own helpers (apply_sql.h)

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
    // Absent on both sites: nothing to apply. Failing would park the
    // document's later entries (its Delete, a Create of the name again)
    // behind an error no Resync clears, the producer not having it then
    // either. Whatever becomes of it later arrives as its own entry.
    Outcome out;
    out.note = absl::StrCat(why, ": ", what,
                            " is missing here and the producer no longer has it (or no longer "
                            "shows it to this site); nothing to apply");
    return out;
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
  if (!cancel || out.local_docname.empty()) return out;  // nothing inserted: nothing to cancel
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
  ASSIGN_OR_RETURN(Value json, Annotated(Value::ParseJson(e.data_json()), "Rename data"));
  const Value* old_v = json.Find("old_name");
  const Value* new_v = json.Find("new_name");
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
    RETURN_IF_ERROR(
        Annotate(RunPrepared(conn_, RenameRemoteSql(def.table), {new_name, *local}).status(),
                 absl::StrCat("renaming ", where)));
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
