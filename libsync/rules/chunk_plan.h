// How an initial sync chunk read under WAL capture is mended before it is
// logged (docs/design.md "Initial sync under WAL capture"; issue 17).
//
// Under WAL capture a chunk cannot be read under the assembler's lock as it
// is with triggers: a transaction committed just before the read may not be
// logged yet, so its Create would follow the chunk's Sync of the same
// document. So the chunk is read in a snapshot S, the WAL loop is let past
// a marker written after S (every transaction visible in S is then logged),
// and, under the lock, the entries logged since S for the chunk's documents
// decide:
//  * a Create logged after the sync started: the document leaves the chunk
//    (its Create, already in the log, brings it whole);
//  * any other entry whose transaction S does not see: the document changed
//    after the read; it is read again now (under the lock, so every later
//    change is logged after the chunk and applies on top). A Rename away
//    from a chunk document also re-reads the new name when it falls in the
//    chunk's range (up to its last name), which no other chunk would read.
// Pure (tests/unit/chunk_plan_test.cc).
#ifndef EVENTSTREAM_LIBSYNC_RULES_CHUNK_PLAN_H_
#define EVENTSTREAM_LIBSYNC_RULES_CHUNK_PLAN_H_

#include <cstdint>
#include <set>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"

namespace eventstream {

// pg_current_snapshot() as text: "xmin:xmax:xip1,xip2,...".
struct XidSnapshot {
  uint64_t xmin = 0;
  uint64_t xmax = 0;
  std::vector<uint64_t> xip;  // in progress at the snapshot
};
absl::StatusOr<XidSnapshot> ParseXidSnapshot(absl::string_view text);

// Whether a transaction committed before the snapshot was taken (the caller
// knows it committed: it was logged). `txid` may be a full xid8 or a 32-bit
// xid (WAL capture's entries carry the xid without its epoch): a 32-bit one
// is read in the epoch that puts it nearest below xmax.
bool VisibleInSnapshot(const XidSnapshot& snapshot, uint64_t txid);

// An entry logged after the snapshot's read for one of the chunk's names.
struct LaterEntry {
  int64_t seq = 0;
  std::string docname;   // the entry's document (a Rename's new name)
  std::string old_name;  // a Rename's old name, else ""
  std::string update_type;
  uint64_t txid = 0;
};

struct ChunkFixups {
  std::set<std::string> drop;    // leave out of the chunk
  std::set<std::string> reread;  // read again under the lock (may no longer exist)
};

// `chunk`: the names read for the chunk; `last_name`: the page's last name
// (its range's end); `start_seq`: the sync job's start.
ChunkFixups PlanChunkFixups(const std::set<std::string>& chunk, const std::string& last_name,
                            int64_t start_seq, const XidSnapshot& snapshot,
                            const std::vector<LaterEntry>& later);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_CHUNK_PLAN_H_
