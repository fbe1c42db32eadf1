// DocumentApplier: applies one Event Update Log entry to this site's tables,
// inside the caller's transaction (the Applier wraps it in a savepoint and
// writes the sync log; see applier.h). Lifecycle per entry: mapping ->
// dependencies -> validation -> write.
//
// Decisions (docs/design.md "Consumer" leaves these open):
//  * Columns written are the document's keys that are columns of the table
//    (read once per table from pg_attribute, resolved through search_path);
//    other keys are ignored. "" for a non-text column is written as NULL.
//  * use_same_name: false. The parent gets a name from its DocType's
//    autoname; child rows get names from their child DocType's autoname
//    too (child names are unique per table). Both store the producer's
//    name in remote_docname and the producer (consumer.producers[].name) in
//    remote_site_name; Update/Cancel/Rename/Delete find the parent by that
//    pair, and child rows by (parent, remote_docname).
//  * Dependencies (Link, Link in child rows, Dynamic Link) are inserted
//    under the producer's name, as Frappe's sync_dependencies did, at any
//    depth. A GetDocument brings the target's own dependencies along, so a
//    chain costs one round trip (the rest of the batch uses them too).
//    When the target table has remote columns they are filled too, and a
//    link value that matches a remote_docname of this producer is
//    rewritten to the local name. Targets outside the registry, and links to child DocTypes,
//    are left as they are.
//  * Cycles (A -> B -> A): every document being inserted by the current
//    entry is "pending" under its local name; a link to a pending document
//    counts as present. All of them are inserted in the entry's savepoint,
//    so links are plain columns (Frappe has no foreign keys); a site with
//    foreign keys on link columns needs them DEFERRABLE INITIALLY DEFERRED.
//  * Update of an existing document: removed, row_changed, changed, added,
//    as libsync Patch does. An added row that already exists is updated
//    (an Update-missing fetch may have brought it already); row_changed or
//    removed for a row that does not exist changes nothing (as Frappe). A
//    parent docstatus change is copied to the child rows.
//  * Update/Cancel/Rename of a document missing here: the current document
//    is fetched with GetDocument and inserted (note says so); when the
//    producer does not have it either (or does not show it to this site),
//    nothing is applied and the note says so (absent on both sites).
//  * Rename does not rewrite links in other documents: the producer's own
//    rename updates those documents, which reach us as their Updates.
//  * Sync (the producer's whole current document: move-in, initial sync):
//    missing here -> inserted as a Create; here -> made equal to it
//    (libsync/rules/sync_plan.h decides what differs, in the local shape after
//    the mapping; written as an Update's diff). Idempotent; the note says
//    "inserted", "replaced N fields and M child rows" or "already equal".
//  * Revoke (move-out): the DocType row's on_move_out: delete (as a
//    Delete; "not here" when missing) or keep (left as it is, noted "kept,
//    no longer followed").
//  * Replays (entries that repeat what a Sync already brought): Create of
//    a document here is left alone; Update's added rows that exist are
//    updated, removed or changed rows that do not exist change nothing
//    (the Sync came from a newer state without them; a partial row could
//    not be inserted whole); Rename whose old name is gone and new name here, and Delete
//    of a missing document, change nothing and say so.
//  * An entry that came without its data (UpdateLogEntry.data_omitted_bytes:
//    larger than consumer.max_message_mb) fails, naming its size and that
//    key; its sync log row keeps no data. Resync of such a row (a non-Delete
//    entry without data) fetches the current document whole when it is
//    missing here (GetDocument, within the raised limit); when it is here,
//    it fails again saying so: delete the local copy, then Resync.
#ifndef EVENTSTREAM_SERVICES_CONSUMER_APPLY_DOCUMENT_H_
#define EVENTSTREAM_SERVICES_CONSUMER_APPLY_DOCUMENT_H_

#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "eventstream/v1/common.pb.h"
#include "libsync/config/config.h"
#include "libsync/model/diff.h"
#include "libsync/model/doctype.h"
#include "libsync/model/mapping.h"
#include "libsync/base/pg.h"
#include "libsync/rules/update_plan.h"
#include "libsync/base/value.h"
#include "services/consumer/applier.h"

namespace eventstream::apply {

struct TableInfo {
  std::string table;
  // name -> format_type; hashed: every value of every applied row is looked
  // up here (RowValues), and nothing iterates it.
  absl::flat_hash_map<std::string, std::string> columns;
  bool Has(const std::string& column) const { return columns.count(column) > 0; }
  bool has_remote() const { return Has("remote_docname") && Has("remote_site_name"); }
};

// Columns of the site's tables, read once per table.
class TableCache {
 public:
  // NOT_FOUND naming the table when it does not exist.
  absl::StatusOr<const TableInfo*> Get(pg::Connection* conn, const std::string& table);
  void Invalidate(const std::string& table) { tables_.erase(table); }

  // Adds remote_docname / remote_site_name (and their index) to `table`
  // when missing. Each statement is idempotent (IF NOT EXISTS) and commits
  // on its own: dying in between leaves a column without the index, which
  // the next call adds.
  absl::Status EnsureRemoteColumns(pg::Connection* conn, const std::string& table);

 private:
  std::map<std::string, TableInfo> tables_;
};

struct Outcome {
  // What a Sync entry did (Resnapshot's dry run counts them).
  enum class SyncEffect { kNone, kInserted, kReplaced, kEqual };
  SyncEffect sync = SyncEffect::kNone;
  std::string note;
  std::string local_doctype;
  std::string local_docname;
};

// A row's values by column name, in name order: a flat vector, since a
// batch builds and drops rows by the thousand.
class ColumnValues {
 public:
  using Entry = std::pair<std::string, Value>;
  ColumnValues() = default;
  ColumnValues(std::initializer_list<Entry> values);
  // Sets `column`, replacing its value if it has one.
  void Set(const std::string& column, Value value);
  // Adds `column`, which sorts after every column set so far.
  void Append(const std::string& column, Value value) {
    values_.emplace_back(column, std::move(value));
  }
  bool empty() const { return values_.empty(); }
  size_t size() const { return values_.size(); }
  std::vector<Entry>::const_iterator begin() const { return values_.begin(); }
  std::vector<Entry>::const_iterator end() const { return values_.end(); }
  bool SameColumns(const ColumnValues& other) const;

 private:
  std::vector<Entry> values_;
};

class DocumentApplier : public DocumentFetcher {
 public:
  // `mappings` may be null when the config has none. All pointers outlive
  // this object.
  DocumentApplier(pg::Connection* conn, const Config& config, const MappingSet* mappings,
                  TableCache* tables, std::string producer, DependencySource* deps);
  ~DocumentApplier() override;
  DocumentApplier(const DocumentApplier&) = delete;
  DocumentApplier& operator=(const DocumentApplier&) = delete;

  // From now on, inserted rows are held back and written table by table,
  // up to 200 rows (of many documents) to a statement, just before the
  // connection's next other statement (pg::Connection::SetBeforeStatement),
  // so every statement still sees them. For a batch's pipelined attempt
  // only: a failing statement fails rows of several entries, and that
  // attempt is run again with a savepoint per entry. Rows still held when
  // this object goes are dropped (its transaction is being abandoned).
  void HoldRows();

  // Applies `entry`; an error leaves partial writes that the caller must
  // roll back (to its savepoint). Messages name the DocType, document and
  // field concerned. Writes are deferred (ExecPreparedDeferred): success
  // means "sent"; the caller flushes the connection to learn whether they
  // all landed (a later read on the connection does it too).
  absl::StatusOr<Outcome> Apply(const v1::UpdateLogEntry& entry);

  // Looks up, in one query per table, whether the documents `entries`
  // concern exist here, so that Apply needs no round trip to find them.
  // The answers stay right for this object's writes (inserts, deletes and
  // renames update them); ForgetKnown drops them, which the caller must do
  // when it rolls back a write of this object (a failed entry).
  absl::Status Prefetch(const std::vector<v1::UpdateLogEntry>& entries);
  // Also drops the same-name provenance the current entry recorded.
  void ForgetKnown() {
    known_.clear();
    copies_.resize(entry_copies_start_);
  }
  // Writes the same-name provenance (es_consumer.same_name_copy) the
  // entries applied so far recorded, in at most two statements; the caller
  // runs it in the batch's transaction before COMMIT.
  absl::Status FlushCopies();

  // The producer's names of the copies here of its documents of
  // `remote_doctype`: rows whose remote_site_name is the producer, or, with
  // use_same_name (rows carry no provenance), the names its sync log
  // mentions that exist here.
  absl::StatusOr<std::vector<std::string>> LocalCopies(const std::string& remote_doctype);

  // DocumentFetcher, for `Document` mappings.
  absl::StatusOr<std::optional<Value>> FindRemote(const std::string& remote_doctype,
                                                  const Value& filters) override;
  absl::StatusOr<std::string> InsertLocal(const Value& mapped_doc) override;

 private:
  struct Target {
    const DocTypeDef* def = nullptr;
    const DocTypeMapping* mapping = nullptr;
    bool same_name = false;
    std::string remote_doctype;
    ProducerDocTypeConfig::MoveOut on_move_out = ProducerDocTypeConfig::MoveOut::kDelete;
  };
  // For a column of the local row that an object does not carry (the
  // DocType of a Dynamic Link in a diff): "" when unknown.
  using Fallback = std::function<absl::StatusOr<std::string>(const std::string& column)>;

  absl::StatusOr<Outcome> ApplyEntry(const v1::UpdateLogEntry& entry);
  absl::StatusOr<Target> Resolve(const std::string& remote_doctype) const;
  absl::StatusOr<Outcome> Create(const Target& t, const std::string& remote_name, Value doc,
                                 std::string note);
  absl::StatusOr<Outcome> Update(const Target& t, const v1::UpdateLogEntry& e, bool cancel);
  // An Update / Cancel (`kind`) of a document missing here: the current one
  // is fetched and inserted (a Cancel then sets its docstatus to 2).
  absl::StatusOr<Outcome> UpdateMissing(const Target& t, const std::string& remote_name,
                                        const std::string& kind, bool cancel);
  // Inserts the dependencies `diff` links to (rewriting its links to local
  // names) and validates what it writes to the document `name`.
  absl::Status ResolveDiff(const DocTypeDef& def, bool same_name, const std::string& name,
                           DocDiff& diff);
  // A column of a child row (`row`: parent, parenttype, and its `key`) as
  // text; "" when the table has no such column or no such row.
  absl::StatusOr<std::string> ChildColumn(const DocTypeDef& child, const std::string& key,
                                          const pg::Params& row, const std::string& column);
  // Runs `plan` (PlanUpdate of `diff`) against the document `name`.
  absl::Status WriteUpdate(const DocTypeDef& def, bool same_name, const std::string& name,
                           const DocDiff& diff, const UpdatePlan& plan);
  // Same-name copies' provenance (es_consumer.same_name_copy): `name` here
  // is this producer's copy of t's DocType (Hold), or was until now
  // (Release); recorded, written by FlushCopies. No-ops for targets with
  // remote columns, whose rows carry it.
  absl::Status HoldCopy(const Target& t, const std::string& name);
  absl::Status ReleaseCopy(const Target& t, const std::string& name);
  // Sync: insert (as Create) or make the copy here equal to the document.
  absl::StatusOr<Outcome> Sync(const Target& t, const v1::UpdateLogEntry& e);
  // The copy here (`name`) made equal to `doc` (already mapped).
  absl::StatusOr<Outcome> Replace(const Target& t, const std::string& remote_name,
                                  const std::string& name, Value doc);
  // The document `name` as it is here: its row, and each Table field's rows.
  absl::StatusOr<Value> ReadLocal(const DocTypeDef& def, const std::string& name);
  absl::StatusOr<Outcome> Revoke(const Target& t, const v1::UpdateLogEntry& e);
  absl::StatusOr<Outcome> Rename(const Target& t, const v1::UpdateLogEntry& e);
  absl::StatusOr<Outcome> Delete(const Target& t, const v1::UpdateLogEntry& e);
  absl::StatusOr<Outcome> InsertFetched(const Target& t, const std::string& remote_name,
                                        const std::string& why);
  // An entry whose data never arrived (larger than consumer.max_message_mb;
  // see the file comment).
  absl::StatusOr<Outcome> DataNeverArrived(const Target& t, const v1::UpdateLogEntry& e);

  absl::StatusOr<std::optional<std::string>> FindLocal(const DocTypeDef& def,
                                                       const std::string& remote_name,
                                                       bool same_name);
  // What FindLocal(def, remote_name, same_name) answers from now on.
  void SetKnown(const DocTypeDef& def, const std::string& remote_name, bool same_name,
                std::optional<std::string> local);
  // FindLocal asks the database again for `name` (both kinds of key).
  void Unknow(const DocTypeDef& def, const std::string& name);
  // FindLocal by name, then (when the table has remote columns) by remote
  // name.
  absl::StatusOr<std::optional<std::string>> FindEither(const DocTypeDef& def,
                                                        const TableInfo& info,
                                                        const std::string& name);
  absl::StatusOr<std::string> EnsureDocument(const std::string& doctype, const std::string& name,
                                             const std::string& via);
  // The producer's current document (nullopt: it has none it may show):
  // from what earlier fetches brought along, else one GetDocument, whose
  // dependencies are kept for the next calls.
  absl::StatusOr<std::optional<Value>> Fetch(const std::string& doctype, const std::string& name);
  absl::StatusOr<std::string> InsertDependency(const DocTypeDef& def, Value doc);
  absl::Status ResolveLinks(const DocTypeDef& def, Value& obj, const std::string& where,
                            const Fallback& fallback);
  absl::Status Validate(const DocTypeDef& def, const Value& obj, bool partial,
                        const std::string& where) const;
  void FillDefaults(const DocTypeDef& def, Value& doc) const;

  absl::Status InsertDocument(const DocTypeDef& def, const Value& doc,
                              const std::string& local_name, const std::string& remote_name,
                              bool same_name);
  // A child row to insert is collected (`collect`) so that a table's rows
  // go in one multi-row INSERT.
  absl::Status UpsertChildRow(const DocTypeDef& parent_def, const FieldDef& table_field,
                              const std::string& parent_local, const Value& row, bool same_name,
                              bool may_exist, std::vector<ColumnValues>* collect = nullptr);
  absl::Status InsertRow(const TableInfo& info, ColumnValues values, const std::string& what);
  // `rows` into one table (held back after HoldRows).
  absl::Status InsertRows(const TableInfo& info, std::vector<ColumnValues> rows,
                          const std::string& what);
  // One INSERT per run of rows with the same columns.
  absl::Status WriteRows(const TableInfo& info, const std::vector<ColumnValues>& rows,
                         const std::string& what);
  // The rows HoldRows held back, table by table in order of first use.
  absl::Status WriteHeldRows();
  absl::Status UpdateRow(const TableInfo& info, const ColumnValues& values,
                         const std::string& where_sql, const pg::Params& where_params,
                         const std::string& what);
  // The members of `obj` that are columns of the table, except `skip`.
  ColumnValues RowValues(const TableInfo& info, const Value& obj,
                         const std::set<std::string>& skip) const;
  absl::StatusOr<std::string> NewName(const DocTypeDef& def, const Value& doc);

  pg::Connection* conn_;
  const Config& config_;
  const MappingSet* mappings_;
  TableCache* tables_;
  std::string producer_;
  DependencySource* deps_;
  // Documents being inserted by the current entry: DocType + '\0' + the
  // producer's name -> local name (cycles resolve to these).
  std::map<std::string, std::string> pending_;
  int depth_ = 0;
  // FindLocal answers known without a query (Prefetch, and this object's
  // own writes): DocType + '\0' + ('N' name | 'R' remote name) + '\0' +
  // name -> the local name, or nullopt for "not here".
  std::map<std::string, std::optional<std::string>> known_;
  // HoldRows: the rows not written yet, one element per table.
  struct HeldRows {
    const TableInfo* info;  // TableCache entries stay put
    std::vector<ColumnValues> rows;
  };
  bool hold_rows_ = false;
  std::vector<HeldRows> held_;
  // Same-name provenance recorded by HoldCopy/ReleaseCopy, in order:
  // (remote DocType, name, held); written by FlushCopies. Entries from
  // entry_copies_start_ on are the current entry's.
  struct CopyMark {
    std::string doctype, name;
    bool held = false;
  };
  std::vector<CopyMark> copies_;
  size_t entry_copies_start_ = 0;
  // Documents the producer sent along with a fetched one (FetchedDocument::
  // dependencies), by DocType + '\0' + name; read, not yet inserted. Not
  // local state, so a rolled-back entry leaves them valid.
  std::map<std::string, Value> fetched_;
};

}  // namespace eventstream::apply

#endif  // EVENTSTREAM_SERVICES_CONSUMER_APPLY_DOCUMENT_H_
