// LinkStore: the SQL side of the link graph (libsync/model/link_graph.h) on the
// producer's site tables: which documents hold a link to given documents.
//
// Reads only. Identifiers come from the registry and are quoted, values
// are parameters. A registry DocType whose table does not exist here holds
// no links (the producer's registry may describe DocTypes only consumers
// have). Link columns are compared in their text form; indexing the link
// columns of large tables keeps these lookups off sequential scans.
#ifndef EVENTSTREAM_SERVICES_PRODUCER_LINK_STORE_H_
#define EVENTSTREAM_SERVICES_PRODUCER_LINK_STORE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libsync/model/doctype.h"
#include "libsync/model/link_graph.h"
#include "libsync/base/pg.h"

namespace eventstream {

// The parent documents that link to one of `names` (all of parent DocType
// `doctype`): through their own Link / Dynamic Link fields, or through
// those of their child rows (the child row's parent, when its parenttype is
// a parent DocType of the registry with that child table). At most `limit`
// per linking field; each document once.
absl::StatusOr<std::vector<DocRef>> FindLinkers(pg::Connection* conn,
                                                const DocTypeRegistry& registry,
                                                const std::string& doctype,
                                                const std::vector<std::string>& names,
                                                int limit);

// The same, as links: each linking document with the name it links to
// (a document linking to several of `names` comes once per name).
absl::StatusOr<std::vector<LinkEdge>> FindLinkEdges(pg::Connection* conn,
                                                    const DocTypeRegistry& registry,
                                                    const std::string& doctype,
                                                    const std::vector<std::string>& names,
                                                    int limit);

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_LINK_STORE_H_
