#include "libsync/rules/chunk_plan.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace eventstream {
namespace {

constexpr uint64_t kEpoch = uint64_t{1} << 32;

// A 32-bit xid placed in the epoch that keeps it within 2^31 of `xmax`.
uint64_t Widen(uint64_t xid, uint64_t xmax) {
  if (xid >= kEpoch) return xid;
  uint64_t full = (xmax & ~(kEpoch - 1)) | xid;
  if (full > xmax + kEpoch / 2) {
    if (full >= kEpoch) full -= kEpoch;
  } else if (full + kEpoch / 2 < xmax) {
    full += kEpoch;
  }
  return full;
}

}  // namespace

absl::StatusOr<XidSnapshot> ParseXidSnapshot(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  XidSnapshot s;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &s.xmin) ||
      !absl::SimpleAtoi(parts[1], &s.xmax) || s.xmin > s.xmax) {
    return absl::InvalidArgumentError(absl::StrCat("not a snapshot: \"", text, "\""));
  }
  if (parts[2].empty()) return s;
  for (absl::string_view x : absl::StrSplit(parts[2], ',')) {
    uint64_t xid = 0;
    if (!absl::SimpleAtoi(x, &xid)) {
      return absl::InvalidArgumentError(absl::StrCat("not a snapshot: \"", text, "\""));
    }
    s.xip.push_back(xid);
  }
  return s;
}

bool VisibleInSnapshot(const XidSnapshot& snapshot, uint64_t txid) {
  const uint64_t full = Widen(txid, snapshot.xmax);
  if (full < snapshot.xmin) return true;
  if (full >= snapshot.xmax) return false;
  return std::find(snapshot.xip.begin(), snapshot.xip.end(), full) == snapshot.xip.end();
}

ChunkFixups PlanChunkFixups(const std::set<std::string>& chunk, const std::string& last_name,
                            int64_t start_seq, const XidSnapshot& snapshot,
                            const std::vector<LaterEntry>& later) {
  ChunkFixups out;
  for (const LaterEntry& e : later) {
    const bool ours = chunk.count(e.docname) > 0;
    const bool renamed_away = !e.old_name.empty() && chunk.count(e.old_name) > 0;
    if (!ours && !renamed_away) continue;
    if (ours && e.update_type == "Create" && e.seq > start_seq) {
      out.drop.insert(e.docname);
      continue;
    }
    if (VisibleInSnapshot(snapshot, e.txid)) continue;  // the read saw it
    if (ours) out.reread.insert(e.docname);
    if (renamed_away) {
      out.reread.insert(e.old_name);
      if (e.docname <= last_name) out.reread.insert(e.docname);
    }
  }
  for (const std::string& name : out.drop) out.reread.erase(name);
  return out;
}

}  // namespace eventstream
