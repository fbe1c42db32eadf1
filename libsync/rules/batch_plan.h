// The decisions of one consumer batch of Event Update Log entries, apart
// from SQL (services/consumer/applier.cc is the store that runs them;
// docs/design.md "Consumer"). Pure (tests/unit/batch_plan_test.cc).
//
// Per entry, in seq order, BatchPlanner::Next says:
//  * kSkip: at or below the watermark. The watermark moves in the
//    transaction that applies (or logs Failed / Parked) the entries it
//    passes, and a producer sends only entries after the position asked
//    for (membership replaced history re-sends with new SYNC entries), so
//    such an entry came from an overlapping pull and is already handled.
//    The sync log is not consulted: old rows may be deleted (retention).
//    Also skipped: a seq given to AddDone, i.e. one a lane of parallel apply
//    committed before the watermark could move past it (apply_lanes.h;
//    es_consumer.lane_commit).
//  * kPark: an earlier entry of the same document (its docname, or for a
//    Rename its old name too) is Failed or Parked; it parks behind that
//    Failed row's id, and so do the document's later entries.
//  * kApply: apply it. If it fails, Failed(entry, id) blocks the document
//    behind its new Failed row.
// A batch of more than one entry first runs pipelined without savepoints;
// one failure re-runs it with a savepoint per entry (PipelinedFirst).
#ifndef EVENTSTREAM_LIBSYNC_RULES_BATCH_PLAN_H_
#define EVENTSTREAM_LIBSYNC_RULES_BATCH_PLAN_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace eventstream {

// What the planner needs of one entry.
struct BatchEntry {
  int64_t seq = 0;
  std::string doctype;             // the producer's DocType
  std::vector<std::string> names;  // EntryNames
};

// The producer's names an entry concerns: its docname, and for a Rename
// (logged under the new name) the old name from its data when that is a
// different string.
std::vector<std::string> EntryNames(absl::string_view docname, bool rename,
                                    absl::string_view data_json);

// Whether a batch of `entries` entries runs pipelined, without savepoints,
// first (and prefetches the documents it concerns).
inline bool PipelinedFirst(size_t entries) { return entries > 1; }

// How many of a run of `available` rows (> 0) one multi-row INSERT takes: the
// largest of 200, 100, 50, 20, 10, 5, 2, 1 that fits, so that a connection
// prepares only a few statements per table (document rows, sync log rows).
size_t RowsPerInsert(size_t available);
constexpr size_t kMaxRowsPerInsert = 200;

// Every name of every entry: whose Failed / Parked rows to look up.
std::vector<std::string> BlockedLookupNames(const std::vector<BatchEntry>& entries);

class BatchPlanner {
 public:
  explicit BatchPlanner(int64_t watermark) : watermark_(watermark) {}

  // A Failed or Parked row of the sync log for (doctype, docname), whose
  // Failed root is `root` (a Parked row's parked_behind, a Failed row's id).
  // Give them in id order: the first one of a document counts.
  void AddBlocked(const std::string& doctype, const std::string& docname, int64_t root);
  // `seq` is already applied (or logged) although above the watermark.
  void AddDone(int64_t seq) { done_.insert(seq); }
  // Whether Next answers kSkip for an entry with `seq`.
  bool Skips(int64_t seq) const { return seq <= watermark_ || done_.count(seq) > 0; }

  struct Step {
    enum Kind { kSkip, kPark, kApply };
    Kind kind = kApply;
    int64_t parked_behind = 0;  // kPark: the Failed row's id
  };
  // The next entry's fate (entries in seq order). kPark also blocks the
  // entry's names behind the same root.
  Step Next(const BatchEntry& entry);
  // `entry` (a kApply) failed and was logged as row `failed_id`.
  void Failed(const BatchEntry& entry, int64_t failed_id);

 private:
  int64_t watermark_;
  std::set<int64_t> done_;
  // (doctype, docname) -> the Failed row its entries park behind.
  std::map<std::pair<std::string, std::string>, int64_t> blocked_;
};

// The course of one Resync over its rows: row 0 is the Failed row asked
// for, then the rows parked behind it, in order. Each row is replayed until
// one fails again; after that the rest are re-parked behind it (kRepark),
// unless it was row 0: then the rows behind it stay as they are (kStop).
enum class ResyncStep { kReplay, kRepark, kStop };
class ResyncPlan {
 public:
  ResyncStep Next() const;
  // Row `index`, which Next last answered kReplay for, failed again; it is
  // sync log row `id`.
  void Failed(size_t index, int64_t id);
  // What the later rows park behind (0: nothing failed yet).
  int64_t root() const { return root_; }
  // How many of `rows` the Resync reports: just row 0 when it failed again.
  size_t Reported(size_t rows) const;

 private:
  int64_t root_ = 0;
  size_t root_index_ = 0;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_BATCH_PLAN_H_
