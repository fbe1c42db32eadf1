// Parallel apply (consumer.producers[].apply_workers > 1; docs/design.md
// "Batch apply"): how a batch's entries split into lanes that apply
// concurrently, each in its own transaction. Pure (tests/unit/apply_lanes_test.cc).
//
// Only per-document order must hold, so entries are joined into one lane
// when they share a key (LaneKeys): a document's name (a Rename's old and
// new name both), a value of one of its Link / Dynamic Link fields (so an
// entry that links a document of the batch follows it, and two entries
// that may fetch the same missing dependency never insert it concurrently),
// or kSerialLaneKey for entries whose order matters beyond their document
// (mapped DocTypes, local names from a naming series, DocTypes outside the
// registry): those all share one lane. Keys ignore the DocType (a name
// equal across DocTypes only joins more than needed).
#ifndef EVENTSTREAM_LIBSYNC_RULES_APPLY_LANES_H_
#define EVENTSTREAM_LIBSYNC_RULES_APPLY_LANES_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "libsync/model/doctype.h"

namespace eventstream {

inline constexpr int kMaxApplyWorkers = 8;
inline constexpr char kSerialLaneKey[] = "\x01serial";

// The keys of one entry of the producer's DocType `def` with `names`
// (EntryNames) and its data (a document or an Update diff: Link fields are
// found by fieldname at any depth, so `changed`, `added` rows and
// `row_changed` rows count): its names, its link values, and
// kSerialLaneKey when `serial` (the subscription maps this DocType or
// names it here: use_same_name: false), `def` is null (not in the
// registry) or the data is not JSON.
std::vector<std::string> LaneKeys(const DocTypeRegistry& registry, const DocTypeDef* def,
                                  const std::vector<std::string>& names,
                                  absl::string_view data_json, bool serial);

// Splits entries 0..keys.size()-1 (seq order) into at most `workers` lanes:
// entries sharing a key (transitively) land in the same lane; groups go
// to the lane with the fewest entries so far, largest group first. Each
// lane lists its entries' indices ascending; empty lanes are left out, so
// a result of one lane means "apply serially".
std::vector<std::vector<size_t>> PlanLanes(const std::vector<std::vector<std::string>>& keys,
                                           int workers);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_APPLY_LANES_H_
