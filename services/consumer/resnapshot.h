// Resnapshot (Consumer.Resnapshot; docs/design.md "Membership"): compares
// this site's copies of one producer DocType with the documents the
// producer's ListVisibleDocuments shows, page by page, and (unless a dry
// run) repairs them: the copies the producer no longer shows follow
// on_move_out at once, and the initial sync runs again through the ordinary
// stream (Producer.RestartSync), which rewrites missing and differing
// copies in order with every other change. Reads only, up to the repair;
// nothing of the comparison is ever committed (Applier::CompareSnapshot).
//
// MoveOutExtras is the part a consumer recovering from a trimmed log needs
// (puller.cc): the producer's skip already restarted the initial sync, so
// only the copies it no longer shows are looked for (names only, no
// comparison) and follow on_move_out. Fast, so the recovery does not let the
// new sync's entries age past the producer's valve.
#ifndef EVENTSTREAM_SERVICES_CONSUMER_RESNAPSHOT_H_
#define EVENTSTREAM_SERVICES_CONSUMER_RESNAPSHOT_H_

#include <string>

#include "absl/status/statusor.h"
#include "eventstream/v1/consumer.pb.h"
#include "libsync/config/config.h"
#include "libsync/base/pg.h"
#include "services/consumer/producer_link.h"

namespace eventstream {

// `conn` is the caller's own (not in a transaction); `link` the producer's.
absl::StatusOr<v1::ResnapshotResponse> RunResnapshot(const Config& config, pg::Connection* conn,
                                                     ProducerLink* link,
                                                     const std::string& doctype, bool dry_run);

// The copies of `doctype` here that the producer no longer shows, moved out
// (on_move_out); how many. NotFound when the DocType is not followed here.
absl::StatusOr<int64_t> MoveOutExtras(const Config& config, pg::Connection* conn,
                                      ProducerLink* link, const std::string& doctype);

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_CONSUMER_RESNAPSHOT_H_
