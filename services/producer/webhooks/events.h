// The document a log entry's webhooks see, read for the dispatcher: the
// document as of the entry (its latest Create replayed with the later
// diffs, DocumentVersions), for a Delete the version before it, and when
// the log does not follow it the current document (or a stub). Which doc
// events fire is DocEventsFor (libsync/rules/webhook_rules.h). Read-only; runs
// inside the dispatcher's planning transaction. docs/design.md "Webhooks".
#ifndef EVENTSTREAM_SERVICES_PRODUCER_WEBHOOKS_EVENTS_H_
#define EVENTSTREAM_SERVICES_PRODUCER_WEBHOOKS_EVENTS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "libsync/model/doctype.h"
#include "libsync/base/pg.h"
#include "libsync/base/value.h"

namespace eventstream {

// Versions of documents as of log entries, replayed from the update log
// (a document's latest Create, then its Update/Cancel diffs), remembered
// per document so that consecutive entries of one document read only the
// entries in between. Entries are immutable and seq order is commit order,
// so a remembered version stays exact. Dispatcher only (not thread-safe).
class DocumentVersions {
 public:
  // The document just before entry `seq`; nullopt when the log does not
  // follow it there (no Create of it: it predates capture; renamed;
  // deleted).
  absl::StatusOr<std::optional<Value>> Before(pg::Connection* conn,
                                              const std::string& doctype,
                                              const std::string& docname,
                                              int64_t seq);
  // `doc` is the document as of entry `seq`.
  void Remember(const std::string& doctype, const std::string& docname,
                int64_t seq, const std::optional<Value>& doc);

 private:
  static constexpr size_t kMaxDocuments = 4096;  // then forgotten at once
  struct Version {
    int64_t seq = 0;
    std::optional<Value> doc;
  };
  std::unordered_map<std::string, Version> cache_;
};

// One row of es_producer.update_log as the dispatcher reads it.
struct WebhookLogEntry {
  int64_t seq = 0;
  std::string doctype, docname, update_type;
  Value data;  // null when it does not parse
};

// What the webhooks of an entry see.
struct EntryDocument {
  Value document;            // as of the entry (see the file comment)
  int docstatus_before = 0;  // for DocEventsFor
};

// Works out the entry's EntryDocument, remembering the version in
// `versions`. A Create reads nothing.
absl::StatusOr<EntryDocument> ReadEntryDocument(pg::Connection* conn,
                                                const DocTypeRegistry& registry,
                                                DocumentVersions* versions,
                                                const WebhookLogEntry& entry);

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_WEBHOOKS_EVENTS_H_
