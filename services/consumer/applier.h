// Applier: replays a producer's Event Update Log entries into this site.
//
// Lifecycle of one entry (docs/design.md "Consumer"): mapping -> dependencies ->
// validation -> apply (insert / update / cancel / rename / delete), tagged
// with the producer as origin (`SET LOCAL eventstream.origin`) so this
// site's own producer never sends the change back.
//
// Exactly once: ApplyBatch runs one transaction per batch; each entry is
// isolated (see below), and the same transaction writes each entry's Event
// Sync Log row and advances the producer's watermark (es_consumer.last_update)
// to `next_after_seq`. If the process dies anywhere before COMMIT, nothing of the
// batch is visible and the next pull fetches the same entries again; after
// COMMIT, the watermark says they are done. A failing entry rolls back to its
// savepoint, is logged Failed, and later entries of the same document are
// logged Parked behind it (not applied) until Resync succeeds.
//
// Speed (tools/bench): a batch first runs without savepoints, its writes
// pipelined (pg::Connection deferred statements, one round trip per read
// instead of per statement). Only when an entry fails is that attempt
// rolled back and the batch run again with a savepoint per entry. Both
// attempts are whole transactions, so the guarantees above hold for either.
//
// Parallel apply (the producer's apply_workers > 1; docs/design.md "Batch
// apply"): the batch's entries are split into lanes (libsync/rules/
// apply_lanes.h; a document's entries share one), each applied as above in
// its own transaction on its own connection, concurrently; the watermark
// moves only after every lane committed. Each lane's transaction also
// records its seqs (es_consumer.lane_commit), so a batch that comes again
// after a crash between lane commits skips exactly those.
//
// The decisions (skip, park, apply; a Resync's course; lanes) are pure, in
// libsync/rules/batch_plan.h and apply_lanes.h; applier.cc is their store
// and loop.
//
// Thread-compatible: one Applier per pulling thread, or guard it (its lane
// threads live only inside ApplyBatch).
#ifndef EVENTSTREAM_SERVICES_CONSUMER_APPLIER_H_
#define EVENTSTREAM_SERVICES_CONSUMER_APPLIER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "eventstream/v1/common.pb.h"
#include "libsync/config/config.h"
#include "libsync/base/pg.h"
#include "libsync/base/value.h"
#include "libsync/rules/batch_plan.h"
#include "services/consumer/dependency_source.h"

namespace eventstream {

struct ApplyResult {
  int64_t synced = 0;
  int64_t failed = 0;
  int64_t parked = 0;
  int64_t last_seq = 0;  // the watermark after the batch
  // The batch ran with a savepoint per entry (an entry failed on the fast
  // path, or the batch had one entry).
  bool isolated = false;
};

// One Event Sync Log row as Resync / ListSyncLog report it.
struct SyncLogRow {
  int64_t id = 0;
  std::string producer;
  int64_t seq = 0;
  std::string doctype;
  std::string docname;
  std::string update_type;  // Create | Update | Cancel | Rename | Delete
  std::string status;       // Synced | Failed | Parked
  std::string error;        // why it Failed ("" otherwise)
  std::string note;         // what a Synced row did besides a plain write
  std::string data;
  std::string created_at;
  int64_t parked_behind = 0;
  std::string local_doctype;
  std::string local_docname;
};

// Row `i` of a sync_log query that selects (by these names) id, producer,
// seq, doctype, docname, update_type, status, error, note, data,
// created_at (RFC 3339 UTC text), parked_behind, local_doctype and
// local_docname.
SyncLogRow ReadSyncLogRow(const pg::Result& r, int i);

// Resnapshot's comparison (Applier::CompareSnapshot).
inline constexpr int kMaxSnapshotExamples = 20;  // examples a comparison reports
struct SnapshotCompare {
  int64_t equal = 0, missing = 0, differing = 0, failed = 0;
  std::vector<std::string> examples;  // at most kMaxSnapshotExamples, "missing: NAME", ...
};

namespace apply {
class TableCache;
}

class Applier {
 public:
  // `config` must have a consumer section; it outlives the Applier.
  // `database_url`: where lanes open their connections; "" = every batch
  // in one transaction whatever apply_workers says.
  explicit Applier(const Config& config, std::string database_url = "");
  ~Applier();

  // Applies `entries` (ascending seq) pulled from `producer` (a name from
  // consumer.producers), then sets its watermark to `next_after_seq`.
  absl::StatusOr<ApplyResult> ApplyBatch(pg::Connection* conn, const std::string& producer,
                                         const std::vector<v1::UpdateLogEntry>& entries,
                                         int64_t next_after_seq, DependencySource* deps);

  // Replays the Failed sync log row `id`; on success also the rows parked
  // behind it, in order. Returns the rows written (the retried one first).
  // Everything happens in one transaction (a savepoint per entry): the row
  // is updated in place (Synced, or Failed with the new error; attempts + 1)
  // and so are the released ones; when a released row fails, it becomes
  // Failed and the rows after it are re-parked behind it. The watermark is
  // not touched (the batch that logged the rows already passed them).
  // NOT_FOUND for no such row, FAILED_PRECONDITION if it is not Failed.
  // `deps_for(producer)` gives the DependencySource of the row's producer.
  absl::StatusOr<std::vector<SyncLogRow>> Resync(
      pg::Connection* conn, int64_t id,
      const std::function<DependencySource*(const std::string& producer)>& deps_for);

  // Resnapshot (docs/design.md "Membership"). How this site's copies
  // compare with `docs` ({name, JSON}: the producer's current documents of
  // its DocType `doctype`): each is applied as a Sync entry in a savepoint
  // that is rolled back, in a transaction never committed, so nothing
  // changes here and the Sync's own rules decide. Runs beside batches.
  absl::StatusOr<SnapshotCompare> CompareSnapshot(
      pg::Connection* conn, const std::string& producer, const std::string& doctype,
      const std::vector<std::pair<std::string, std::string>>& docs, DependencySource* deps);
  // The producer's names of the copies here of its documents of `doctype`
  // (DocumentApplier::LocalCopies).
  absl::StatusOr<std::vector<std::string>> LocalCopies(pg::Connection* conn,
                                                       const std::string& producer,
                                                       const std::string& doctype);
  // Applies on_move_out to each of `names` that `deps` (the producer) still
  // does not show, as a Revoke entry with seq 0 logged like any entry, in
  // one transaction under the batches' per-producer lock (so a batch that
  // moved one back in is seen first). Dying before COMMIT changes nothing.
  // Returns how many were moved out (Synced or Failed rows written).
  absl::StatusOr<int64_t> MoveOutCopies(pg::Connection* conn, const std::string& producer,
                                        const std::string& doctype,
                                        const std::vector<std::string>& names,
                                        DependencySource* deps);

 private:
  // remote_docname / remote_site_name on the tables (and child tables) of
  // the producer's use_same_name: false DocTypes; DDL outside any batch
  // transaction, once per table. Failures are logged: the entries then
  // fail with a message naming the table.
  void PrepareTables(pg::Connection* conn, const EventProducerConfig& producer);

  // One attempt at a batch, in one transaction. isolate: a savepoint per
  // entry (a failing entry is logged Failed). Otherwise no savepoints and
  // the first failing entry sets *entry_failed and abandons the attempt.
  absl::StatusOr<ApplyResult> ApplyBatchOnce(pg::Connection* conn, const std::string& producer,
                                             const std::vector<v1::UpdateLogEntry>& entries,
                                             int64_t next_after_seq, DependencySource* deps,
                                             bool isolate, bool* entry_failed);

  // Parallel apply: nullopt when the batch's entries form a single lane
  // (nothing written; the caller applies it in one transaction).
  absl::StatusOr<std::optional<ApplyResult>> ApplyBatchInLanes(
      pg::Connection* conn, const EventProducerConfig& pc,
      const std::vector<v1::UpdateLogEntry>& entries, int64_t next_after_seq,
      DependencySource* deps);
  struct LaneSlot;  // one lane's connection and table cache, reused
  // Runs `lanes` concurrently, lane k on lane_slots_[k]; every lane commits
  // or the first error is returned.
  absl::StatusOr<ApplyResult> RunLanes(const std::string& producer,
                                       const std::vector<std::vector<v1::UpdateLogEntry>>& lanes,
                                       const BatchPlanner& plan, DependencySource* deps);
  absl::StatusOr<ApplyResult> ApplyLane(LaneSlot& slot, const std::string& producer,
                                        const std::vector<v1::UpdateLogEntry>& entries,
                                        const BatchPlanner& plan, DependencySource* deps);
  absl::StatusOr<ApplyResult> ApplyLaneOnce(LaneSlot& slot, const std::string& producer,
                                            const std::vector<v1::UpdateLogEntry>& entries,
                                            BatchPlanner plan, DependencySource* deps,
                                            bool isolate, bool* entry_failed);

  const Config& config_;
  const std::string database_url_;
  absl::StatusOr<MappingSet> mappings_;
  std::unique_ptr<apply::TableCache> tables_;
  // Lane k's connection and table cache; only lane k's thread touches it
  // while lanes run (the threads are joined before ApplyBatch returns).
  std::vector<std::unique_ptr<LaneSlot>> lane_slots_;
  // Producers whose es_consumer.lane_commit has no rows above the
  // watermark: their one-transaction batches need not look there.
  std::set<std::string> lane_commit_clear_;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_CONSUMER_APPLIER_H_
