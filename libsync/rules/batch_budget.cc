#include "libsync/rules/batch_budget.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace eventstream {
namespace {

// A length-delimited field: tag (1 byte here) + length varint + bytes.
int64_t Field(int64_t bytes) {
  int64_t varint = 1;
  for (int64_t v = bytes; v >= 128; v >>= 7) ++varint;
  return 1 + varint + bytes;
}

}  // namespace

absl::StatusOr<ByteBudget> ResolveBudget(int64_t max_bytes, int64_t max_message_bytes) {
  if (max_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_bytes: must be >= 0 (0 = ", kDefaultPullMaxBytes, "), got ",
                     max_bytes));
  }
  if (max_message_bytes != 0 && max_message_bytes < kMinMessageBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_message_bytes: must be 0 (= ", kDefaultMaxMessageBytes,
                     ", gRPC's default) or at least ", kMinMessageBytes, ", got ",
                     max_message_bytes));
  }
  ByteBudget budget;
  if (max_message_bytes > 0) budget.max_message_bytes = max_message_bytes;
  if (max_bytes > 0) budget.max_bytes = max_bytes;
  budget.max_bytes = std::min(budget.max_bytes, budget.capacity());
  return budget;
}

EntrySize EntryBytes(absl::string_view doctype, absl::string_view docname,
                     absl::string_view origin, absl::string_view created_at,
                     int64_t data_bytes) {
  EntrySize size;
  size.data = Field(data_bytes);
  // seq and data_omitted_bytes (tag + 10-byte varint each), update_type,
  // the strings, and the entry's own tag and length in the answer.
  const int64_t inner = 11 + 11 + 2 + Field(static_cast<int64_t>(doctype.size())) +
                        Field(static_cast<int64_t>(docname.size())) +
                        Field(static_cast<int64_t>(origin.size())) +
                        Field(static_cast<int64_t>(created_at.size()));
  size.fixed = 1 + 5 + inner;  // 5: the largest length varint below 4 GiB
  return size;
}

UnitFit FitUnit(const ByteBudget& budget, int64_t used, bool first,
                const std::vector<EntrySize>& unit) {
  UnitFit fit;
  int64_t total = 0;
  for (const EntrySize& e : unit) total += e.fixed + e.data;
  if (!first && used + total > budget.max_bytes) return fit;
  fit.take = true;
  int64_t running = used;
  for (const EntrySize& e : unit) {
    const bool omit = running + e.fixed + e.data > budget.capacity();
    fit.omit_data.push_back(omit);
    running += e.fixed + (omit ? 0 : e.data);
  }
  fit.bytes = running - used;
  return fit;
}

size_t FitPrefix(int64_t capacity, int64_t used, const std::vector<int64_t>& sizes) {
  size_t n = 0;
  for (int64_t size : sizes) {
    if (used + size > capacity) break;
    used += size;
    ++n;
  }
  return n;
}

}  // namespace eventstream
