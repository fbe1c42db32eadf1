// CaptureInstaller: keeps the capture triggers on the site's DocType tables
// in line with the set of DocTypes that have an approved subscription.
//
// Contract (docs/design.md "Producer / Capture"):
//  * For each captured DocType, its table and the tables of its child
//    DocTypes (its Table fields) carry one row trigger named kCaptureTrigger:
//      AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW
//      EXECUTE FUNCTION es_producer.capture_row(<DocType>[, <parent>...])
//    The first argument is the DocType the table belongs to; a child table's
//    trigger also lists the captured parent DocTypes, so rows of a shared
//    child DocType that belong to an uncaptured parent are not recorded.
//  * Every other table's kCaptureTrigger is dropped: DocTypes with no
//    approved subscription get no trigger and no log. Dropping a trigger
//    needs the table's owner, while installing one needs only the TRIGGER
//    privilege: on a table the role does not own, the trigger is instead
//    replaced by an inert one (no arguments; capture_row returns at once),
//    with a warning naming the table.
//  * SyncTriggers is idempotent (an existing trigger with the right
//    arguments is left alone, so a no-op sync takes no table locks; one
//    with other arguments is replaced with CREATE OR REPLACE TRIGGER) and
//    atomic: it runs in one transaction, so a crash midway leaves the
//    previous set of triggers in place, and a change is captured iff it
//    commits after the sync committed. Two replicas syncing at once are
//    serialized by a transaction-level advisory lock.
//  * CREATE/DROP TRIGGER wait for the table's running writes; the
//    transaction sets lock_timeout (Options) so the application's writers do
//    not queue up behind a stuck sync; on timeout nothing changes and the
//    error names the table.
//  * Requires migrations/producer/0002_capture.sql and 0008 (es_producer.
//    capture_row, SECURITY DEFINER with a fixed search_path, owned by the
//    role that migrated: the producer's). It writes raw_change with its
//    owner's rights, so the roles writing the site's tables need no right
//    on es_producer, and none is granted: they cannot forge raw rows. It
//    records whole rows; the assembler keeps only the registry's columns.
//    The origin (`SET LOCAL eventstream.origin`) is recorded only for a
//    session whose login role may EXECUTE es_producer.may_mark_origin()
//    (the consumer's role on a site that also runs a producer); anyone
//    else's writes are local, whatever they set.
//  * The role running SyncTriggers needs TRIGGER on every captured table
//    (docs/design.md "Database roles").
#ifndef EVENTSTREAM_SERVICES_PRODUCER_CAPTURE_H_
#define EVENTSTREAM_SERVICES_PRODUCER_CAPTURE_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libsync/model/doctype.h"
#include "libsync/base/pg.h"

namespace eventstream {

inline constexpr char kCaptureTrigger[] = "es_capture";

// What SyncTriggers should install: table -> trigger arguments. Exposed for
// tests and for logging.
struct CapturePlan {
  // Keyed by table name (unquoted, as in the registry).
  std::map<std::string, std::vector<std::string>> tables;
};

// Computes the plan for `doctypes`. NOT_FOUND naming an unknown DocType;
// INVALID_ARGUMENT for a child DocType (subscriptions are to parents).
absl::StatusOr<CapturePlan> PlanCapture(const DocTypeRegistry& registry,
                                        const std::set<std::string>& doctypes);

class CaptureInstaller {
 public:
  struct Options {
    // lock_timeout for the sync transaction, in PostgreSQL interval syntax.
    std::string lock_timeout = "10s";
  };
  struct Summary {
    int created = 0;    // triggers created (or re-created with new args)
    int dropped = 0;    // triggers dropped (or made inert)
    int unchanged = 0;  // triggers already right
  };

  CaptureInstaller() = default;
  explicit CaptureInstaller(Options options) : options_(std::move(options)) {}

  // Makes the installed triggers match `doctypes` (see file comment).
  // Errors: unknown DocType (NOT_FOUND, names it); a table that does not
  // exist (NOT_FOUND, names the table and its DocType); database errors.
  // On error nothing is changed.
  absl::Status SyncTriggers(pg::Connection* conn,
                            const DocTypeRegistry& registry,
                            const std::set<std::string>& doctypes,
                            Summary* summary = nullptr) const;

 private:
  Options options_;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_CAPTURE_H_
