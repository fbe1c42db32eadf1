#include "services/producer/webhooks/events.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libsync/base/status_macros.h"
#include "libsync/rules/webhook_rules.h"
#include "services/producer/document_reader.h"

namespace eventstream {
namespace {

// A document's entries after a remembered version and before `seq`.
constexpr pg::Query kEntriesSince{
    "webhook_entries_since",
    "SELECT update_type, data::text AS data FROM es_producer.update_log"
    " WHERE doctype = $1 AND docname = $2 AND seq > $3 AND seq < $4 AND for_site IS NULL"
    " ORDER BY seq"};
// A document's entries before `seq` from its latest Create (none: unknown
// to the log).
constexpr pg::Query kEntriesFromCreate{
    "webhook_entries_from_create",
    "SELECT update_type, data::text AS data FROM es_producer.update_log"
    " WHERE doctype = $1 AND docname = $2 AND seq < $3 AND for_site IS NULL"
    "  AND seq >= coalesce((SELECT max(seq) FROM es_producer.update_log"
    "    WHERE doctype = $1 AND docname = $2 AND seq < $3"
    "      AND update_type = 'Create'), $3)"
    " ORDER BY seq"};
// The entries before `seq` that may give a document's docstatus, newest
// first, at most $4: a Create, or an Update / Cancel whose text names
// "docstatus" anywhere (a child row's too). DocstatusSaidBy decides, the
// newest that says one wins; SQL does not look inside: data is json, whose
// operators refuse a "\u0000" anywhere in the text.
constexpr pg::Query kDocstatusEntries{
    "webhook_docstatus_entries",
    "SELECT update_type, data::text AS data FROM es_producer.update_log"
    " WHERE doctype = $1 AND docname = $2 AND seq < $3 AND for_site IS NULL"
    "  AND (update_type = 'Create' OR (update_type IN ('Update', 'Cancel')"
    "       AND strpos(data::text, '\"docstatus\"') > 0))"
    " ORDER BY seq DESC LIMIT $4"};
// Past this many entries without a docstatus, the current document's counts.
constexpr int kMaxDocstatusEntries = 1000;

std::string DocumentKey(const std::string& doctype, const std::string& docname) {
  return absl::StrCat(doctype, absl::string_view("\0", 1), docname);
}

Value ParseOrNull(absl::string_view text) {
  auto v = Value::ParseJson(std::string_view(text.data(), text.size()));
  return v.ok() ? *std::move(v) : Value();
}

// Not followed by the log (it predates capture, or was renamed): the
// current document, and (when the log had no version before the entry)
// the docstatus the log last gave it, else the current one.
absl::StatusOr<EntryDocument> CurrentDocument(pg::Connection* conn,
                                              const DocTypeRegistry& registry,
                                              const WebhookLogEntry& entry,
                                              const std::optional<Value>& prior) {
  EntryDocument out;
  if (prior.has_value()) out.docstatus_before = DocstatusOf(prior->Find("docstatus"));
  const DocTypeDef* def = registry.Find(entry.doctype);
  std::optional<Value> current;
  if (def != nullptr) {
    ASSIGN_OR_RETURN(current, ReadDocument(conn, registry, *def, entry.docname));
  }
  if (!prior.has_value()) {
    ASSIGN_OR_RETURN(pg::Result r,
                     conn->ExecPrepared(kDocstatusEntries, {entry.doctype, entry.docname,
                                                            entry.seq, kMaxDocstatusEntries}));
    std::optional<int> last;  // parsed newest first, up to the first that says
    for (int i = 0; i < r.rows() && !last; ++i) {
      last = DocstatusSaidBy(r.Get(i, "update_type"), ParseOrNull(r.Get(i, "data")));
    }
    if (last) {
      out.docstatus_before = *last;
    } else if (current) {
      out.docstatus_before = DocstatusOf(current->Find("docstatus"));
    }
  }
  out.document = current ? std::move(*current)
                         : DocumentStub(entry.doctype, entry.docname);
  return out;
}

}  // namespace

absl::StatusOr<std::optional<Value>> DocumentVersions::Before(
    pg::Connection* conn, const std::string& doctype,
    const std::string& docname, int64_t seq) {
  std::optional<Value> doc;
  absl::StatusOr<pg::Result> r = absl::UnknownError("");
  auto it = cache_.find(DocumentKey(doctype, docname));
  if (it != cache_.end() && it->second.seq < seq) {
    doc = it->second.doc;
    r = conn->Exec(kEntriesSince, {doctype, docname, it->second.seq, seq});
  } else {
    r = conn->Exec(kEntriesFromCreate, {doctype, docname, seq});
  }
  if (!r.ok()) return r.status();
  for (int i = 0; i < r->rows(); ++i) {
    ReplayEntry(r->Get(i, "update_type"), ParseOrNull(r->Get(i, "data")), &doc);
  }
  return doc;
}

void DocumentVersions::Remember(const std::string& doctype,
                                const std::string& docname, int64_t seq,
                                const std::optional<Value>& doc) {
  if (cache_.size() >= kMaxDocuments) cache_.clear();
  cache_[DocumentKey(doctype, docname)] = Version{seq, doc};
}

absl::StatusOr<EntryDocument> ReadEntryDocument(pg::Connection* conn,
                                                const DocTypeRegistry& registry,
                                                DocumentVersions* versions,
                                                const WebhookLogEntry& entry) {
  // A Create is the whole document: what came before it does not matter
  // (no read).
  std::optional<Value> prior;
  if (entry.update_type != "Create") {
    ASSIGN_OR_RETURN(prior, versions->Before(conn, entry.doctype, entry.docname,
                                             entry.seq));
  }
  std::optional<Value> now = prior;
  ReplayEntry(entry.update_type, entry.data, &now);
  versions->Remember(entry.doctype, entry.docname, entry.seq, now);
  EntryDocument out;
  if (prior.has_value()) out.docstatus_before = DocstatusOf(prior->Find("docstatus"));
  if (now) {
    out.document = std::move(*now);
    return out;
  }
  if (entry.update_type == "Delete") {
    out.document = prior.has_value() ? std::move(*prior)
                                     : DocumentStub(entry.doctype, entry.docname);
    return out;
  }
  return CurrentDocument(conn, registry, entry, prior);
}

}  // namespace eventstream
