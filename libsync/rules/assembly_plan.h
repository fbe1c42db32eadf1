// The pure decisions of one assembler pass (services/producer/assembler.h),
// apart from the SQL that reads and writes the rows:
//  * ParseRawChange: a raw row as JSON text -> RawChange, cut to the
//    registry's columns; a side nested deeper than value.h reads is kept as
//    `unreadable` (the row fails its document, not the pass).
//  * PlanWindow: which transactions a pass takes (never splitting one; the
//    ones whose rows all lie within the first `limit` ids, in the order of
//    their last id, else the first to finish, whole).
//  * BuildWhole / BuildByDocument: one transaction's entries. The usual case
//    is one BuildEntries call (entry_builder.h); only when a row does not
//    read or BuildEntries refuses is it split by document (row_groups.h),
//    each document that cannot become an entry turning into a
//    CaptureFailure while the others are assembled as usual.
//  * TakeEntryColumns / CountByType: the entries as the update_log insert
//    takes them, and as metrics count them.
// Independent of how rows were captured: a RawChange is all they see.
//
// Tests: tests/unit/assembly_plan_test.cc.
#ifndef EVENTSTREAM_LIBSYNC_RULES_ASSEMBLY_PLAN_H_
#define EVENTSTREAM_LIBSYNC_RULES_ASSEMBLY_PLAN_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "libsync/model/doctype.h"
#include "libsync/rules/entry_builder.h"
#include "libsync/model/row_groups.h"
#include "libsync/base/value.h"

namespace eventstream {

// A document whose raw rows of one transaction could not be turned into an
// entry; recorded in es_producer.capture_error.
struct CaptureFailure {
  std::string doctype;  // the document's DocType and name
  std::string docname;
  std::string txid;
  std::string error;  // what was wrong
  std::vector<int64_t> raw_ids;
  int64_t record_id = 0;  // its es_producer.capture_error id
};

// One raw row as a capture source hands it over: row versions as JSON text
// (views into the source's buffers).
struct RawChangeText {
  int64_t id = 0;
  std::string_view txid, doctype, op;
  std::optional<std::string_view> old_row, new_row, origin;  // nullopt: NULL
};

// `text` parsed, each side cut to the registry columns of its DocType; an
// empty op reads as 'U'.
RawChange ParseRawChange(const DocTypeRegistry& registry, const RawChangeText& text);
// One side (`side` is "old_row" or "new_row") of raw row `id` into `out`
// (reset first; nullopt stays absent). JSON that does not parse leaves `out`
// absent and `unreadable` saying why.
void ParseRawSide(const DocTypeDef* def, std::string_view side, int64_t id,
                  std::optional<std::string_view> json, std::optional<Value>* out,
                  std::string* unreadable);

// The raw rows of one transaction, in id order.
struct TxRows {
  std::string txid;
  int64_t last_id = 0;
  std::vector<RawChange> rows;
};

// `rows` (in id order) by transaction, ordered by last id.
std::vector<TxRows> GroupByTransaction(std::vector<RawChange> rows);

struct WindowPlan {
  std::vector<TxRows> picked;  // ordered by last id
  bool more = false;           // raw rows are left behind
  // Nothing fits: the caller takes the transaction that finished writing
  // first whole (picked is empty, more is set).
  bool take_first_whole = false;
};
// `rows`: every raw row (in id order) of the transactions with a row among
// the first `limit` ids. Picks those whose rows all lie within the first
// `limit` ids (see assembler.h "Ordering").
WindowPlan PlanWindow(std::vector<RawChange> rows, int limit);

// How one transaction's rows turned out.
struct TxOutcome {
  std::vector<LogEntry> entries;
  std::vector<CaptureFailure> failures;
};

// The fast path: one BuildEntries call over every row; nullopt when a row
// does not read or BuildEntries refuses them (then: BuildByDocument).
std::optional<std::vector<LogEntry>> BuildWhole(const DocTypeRegistry& registry,
                                                const TxRows& tx);
// The slow path: each document of `tx` on its own, grouped by the rows'
// keys (`reread_keys` by raw id, else KeysOf); a group with an unreadable row
// or that BuildEntries refuses becomes a CaptureFailure named after its
// first parent row (else its first child row's parent).
TxOutcome BuildByDocument(const DocTypeRegistry& registry, const TxRows& tx,
                          const std::map<int64_t, RowKeys>& reread_keys);
// The keys that place readable raw row `c` in its document.
RowKeys KeysOf(const DocTypeRegistry& registry, const RawChange& c);
// The keys of raw row `c` that nobody can read (not the services, not
// PostgreSQL's JSON functions), from the name its trigger recorded
// (raw_change.docname): a parent row's name on the sides its op has;
// nullopt for a child row (its parent is in the unreadable JSON).
std::optional<RowKeys> KeysOfUnreadable(const DocTypeRegistry& registry, const RawChange& c,
                                        const std::string& docname);

// Everything one pass decided, over the transactions it took.
struct PassOutcome {
  std::vector<LogEntry> entries;
  std::vector<CaptureFailure> failures;
  std::vector<std::string> txids;  // consumed: every transaction taken
  size_t raw_rows = 0;
  void Add(const TxRows& tx, TxOutcome outcome);
};

// The update_log insert's columns, one element per entry in order (the
// insert numbers them from its block's first seq): each entry's data
// rendered as JSON text once (nullopt for a null one) and moved out of
// `entries`, which keep the rest.
struct EntryColumns {
  std::vector<std::string> doctypes, docnames, update_types, txids;
  std::vector<std::optional<std::string>> data, origins;
};
EntryColumns TakeEntryColumns(std::vector<LogEntry>* entries);
// Entries per (doctype, update_type).
std::map<std::pair<std::string, std::string>, int> CountByType(
    const std::vector<LogEntry>& entries);
// {"DocType": [replicated column, ...], ..., "": [those of an unknown
// DocType's child row]}: what SQL keeps of a raw row (assembler's re-read).
std::string ReplicatedColumnsJson(const DocTypeRegistry& registry);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_ASSEMBLY_PLAN_H_
