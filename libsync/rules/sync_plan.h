// What a Sync entry (UPDATE_TYPE_SYNC: the producer's whole current
// document, sent on move-in and initial sync) writes to the copy this site
// already has, apart from SQL. The answer is an Update's diff (diff.h), so
// the consumer runs it with PlanUpdate (update_plan.h) and the same writer
// as an Update: fields set to the given values, each child table made equal
// to the given rows (matched by the producer's row name: changed rows
// updated in place, new ones inserted, missing ones deleted), the parent's
// docstatus copied to its rows. An empty diff means "already equal".
// Rules:
//  * Only keys both sides carry are compared: a key of the incoming
//    document that the local row lacks is not a column here (never
//    written); a local column the incoming document does not carry is left
//    as it is, and so is a child table it does not carry.
//  * Values compare as the database stores them: null and "" are equal
//    (a "" goes into a non-text column as NULL), numbers by value (1 ==
//    1.0 == "1"), a bool as 0/1.
//  * Bookkeeping columns and "doctype" are never compared (diff.h).
// Pure (tests/unit/sync_plan_test.cc).
#ifndef EVENTSTREAM_LIBSYNC_RULES_SYNC_PLAN_H_
#define EVENTSTREAM_LIBSYNC_RULES_SYNC_PLAN_H_

#include <string>

#include "libsync/model/diff.h"
#include "libsync/model/doctype.h"
#include "libsync/base/value.h"

namespace eventstream {

// The local copy (its parent row and child rows as read, one array per
// Table field of `def`) in the producer's terms: "name" set to
// `remote_name`; child rows named by their remote_docname unless
// `same_name`; remote_docname, remote_site_name, parent, parenttype and
// parentfield dropped.
Value LocalAsRemote(const DocTypeDef& def, Value local, const std::string& remote_name,
                    bool same_name);

struct SyncChange {
  DocDiff diff;    // what to write (incoming values)
  int fields = 0;  // parent fields it sets
  int rows = 0;    // child rows it inserts, updates or deletes
  bool empty() const { return diff.empty(); }
};

// `local`: LocalAsRemote of the copy here; `incoming`: the given document
// (mapped to the local DocType when a mapping applies).
SyncChange PlanSync(const Value& local, const Value& incoming);

// Whether two field values are the same once stored (rules above).
bool SameStoredValue(const Value& a, const Value& b);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_SYNC_PLAN_H_
