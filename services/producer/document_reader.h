// Reading whole documents from the site's DocType tables, in the shape the
// Event Update Log's Create entries have (assembler.h): the parent row,
// "doctype", and every Table field of the registry as an array of its child
// rows (ordered by idx, then name), each child row with its own "doctype".
// Numbers and timestamps are exactly what to_jsonb renders, so a document
// read here equals a Create built from the same rows.
//
// Only the registry's columns are read out (doctype.h IsReplicatedColumn):
// a column the site added for itself (an internal note, a secret) is in no
// document served by GetDocument / FindDocuments, judged by a condition or
// rendered by a webhook.
//
// A document the services cannot represent (a JSON value nested deeper than
// value.h's 512 levels, which PostgreSQL accepts) reads as absent, with one
// warning per document and process naming it: it is not served, and it
// fails no pull, GetDocument or FindDocuments of other documents (the
// assembler records its changes in es_producer.capture_error). Deep JSON
// in a column outside the registry is cut out by PostgreSQL first, so it
// does not make a document unreadable.
//
// Reads only; identifiers come from the registry and are quoted, values are
// parameters.
#ifndef EVENTSTREAM_SERVICES_PRODUCER_DOCUMENT_READER_H_
#define EVENTSTREAM_SERVICES_PRODUCER_DOCUMENT_READER_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libsync/model/doctype.h"
#include "libsync/base/pg.h"
#include "libsync/base/value.h"

namespace eventstream {

// The current version of document `name` of parent DocType `def`, or
// nullopt when there is no such row or it cannot be represented (see
// above). Errors are the database's (e.g. the table is missing), naming the
// DocType. With `same_work_when_missing`, a missing document takes the
// same statements as an existing one (its child tables are read for `name`
// all the same, the rows found ignored), so the time of a caller that must
// not reveal existence (update_feed.h, GetDocument) does not depend on it.
absl::StatusOr<std::optional<Value>> ReadDocument(
    pg::Connection* conn, const DocTypeRegistry& registry,
    const DocTypeDef& def, absl::string_view name,
    bool same_work_when_missing = false);

// Many documents of `def` at once: one statement for the parents and one
// per child table, whatever the number of names (initial sync chunks).
// Missing names are left out; a document that cannot be represented is read
// again alone by ReadDocument (and so left out with its warning).
absl::StatusOr<std::map<std::string, Value>> ReadDocuments(pg::Connection* conn,
                                                          const DocTypeRegistry& registry,
                                                          const DocTypeDef& def,
                                                          const std::vector<std::string>& names);

// The same documents as ReadDocuments, as JSON text built by PostgreSQL in
// one statement (parent, children, "doctype", the registry's columns only):
// the same JSON values, keys and spacing aside, without parsing them here
// (initial sync chunks log them as they come). A document nested deeper
// than value.h admits is read again by ReadDocument as above.
absl::StatusOr<std::map<std::string, std::string>> ReadDocumentsJson(
    pg::Connection* conn, const DocTypeRegistry& registry, const DocTypeDef& def,
    const std::vector<std::string>& names);

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_DOCUMENT_READER_H_
