// Byte budgets of the producer's answers (issue 13 item 2; docs/design.md
// "Notify / pull" and "Protocol / Message sizes"). Pure rules, no I/O.
//
// A consumer keeps a gRPC receive limit (`max_message_bytes`): an answer
// above it fails on arrival, and a pull that always fails stops the
// consumer for good. So every answer is cut to fit:
//
//  * PullUpdates fills an answer with whole **units** -- an entry together
//    with the earlier entries an access flip sends right before it (they
//    must travel together: the pull records them as sent at once). A unit
//    joins while the answer stays within the soft `max_bytes`; the next unit
//    that would go past it ends the answer (`more` = true, and the caller
//    pulls again from there). The first unit always goes, however large,
//    so the log never stops moving.
//  * Nothing goes past the hard `max_message_bytes`: an entry of the first
//    unit whose data would not fit travels without its data, with its size
//    (UpdateLogEntry.data_omitted_bytes); the consumer logs it Failed,
//    naming the size and its limit, and goes on. Only an entry larger than
//    the caller's whole receive limit can meet this (PostgreSQL caps a jsonb
//    value at 256 MB, so a consumer set to 256 MiB receives every entry).
//  * GetDocument and FindDocuments answers keep the documents that fit
//    (FitPrefix); a document that alone does not fit is RESOURCE_EXHAUSTED
//    naming its size and the limit.
//
// Sizes are the protobuf wire sizes, estimated from above (EntryBytes):
// what fits by these numbers fits on the wire.
#ifndef EVENTSTREAM_LIBSYNC_RULES_BATCH_BUDGET_H_
#define EVENTSTREAM_LIBSYNC_RULES_BATCH_BUDGET_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace eventstream {

constexpr int64_t kMiB = 1024 * 1024;
// gRPC's default receive limit: what a caller that says nothing accepts.
constexpr int64_t kDefaultMaxMessageBytes = 4 * kMiB;
// The soft budget of a pull whose caller says nothing.
constexpr int64_t kDefaultPullMaxBytes = 2 * kMiB;
// The smallest receive limit a caller may state.
constexpr int64_t kMinMessageBytes = 64 * 1024;
// Kept free in every answer for its own fields and framing.
constexpr int64_t kEnvelopeBytes = 4096;

struct ByteBudget {
  int64_t max_bytes = kDefaultPullMaxBytes;            // soft
  int64_t max_message_bytes = kDefaultMaxMessageBytes;  // hard
  // What the entries or documents of one answer may take in all.
  int64_t capacity() const { return max_message_bytes - kEnvelopeBytes; }
};

// The budget a request asks for: 0 = the defaults above; max_bytes is
// lowered to the capacity. INVALID_ARGUMENT naming the field for a
// negative value or a max_message_bytes below kMinMessageBytes.
absl::StatusOr<ByteBudget> ResolveBudget(int64_t max_bytes, int64_t max_message_bytes);

// One entry as an answer carries it: `fixed` is everything but the data
// (seq, names, type, origin, time, field tags), `data` the data_json text.
struct EntrySize {
  int64_t fixed = 0;
  int64_t data = 0;
};
EntrySize EntryBytes(absl::string_view doctype, absl::string_view docname,
                     absl::string_view origin, absl::string_view created_at,
                     int64_t data_bytes);

// Whether the next unit joins an answer that already holds `used` bytes
// (`first`: no unit yet), and which of its entries go without their data.
struct UnitFit {
  bool take = false;            // false: the answer ends before this unit
  std::vector<bool> omit_data;  // with take: per entry, data left out
  int64_t bytes = 0;            // with take: what the unit adds
};
UnitFit FitUnit(const ByteBudget& budget, int64_t used, bool first,
                const std::vector<EntrySize>& unit);

// How many of `sizes`, taken in order, fit into `capacity` bytes with
// `used` already taken.
size_t FitPrefix(int64_t capacity, int64_t used, const std::vector<int64_t>& sizes);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_BATCH_BUDGET_H_
