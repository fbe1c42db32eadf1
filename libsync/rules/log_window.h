// Which entries of the Event Update Log one consumer's pull examines and
// wants (docs/design.md "Delivery", "The log tail"). Pure rules, no I/O: the
// producer's LogTail (services/producer/log_tail.h) applies them to the
// entries it keeps in memory; the same rule in SQL is pull.cc's kWindow.
//
//  * An entry is **wanted** by site S when its DocType is one S is served,
//    it did not come from S (no echoes), and it was logged for every site or
//    for S alone -- or it is a Revoke logged for S (an ended subscription's
//    move-outs).
//  * A pull examines at most `limit` entries after its position, in seq
//    order. It stops before a wanted entry once the data of the wanted
//    entries before it reached `max_bytes` (the first wanted entry always
//    goes), so a run of large documents goes one answer at a time.
#ifndef EVENTSTREAM_LIBSYNC_RULES_LOG_WINDOW_H_
#define EVENTSTREAM_LIBSYNC_RULES_LOG_WINDOW_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace eventstream {

// One update_log entry as kept in memory.
struct LogRecord {
  int64_t seq = 0;
  std::string doctype;
  std::string docname;
  std::string update_type;
  std::optional<std::string> data;  // JSON text; absent for Delete
  std::string origin;               // "" = local
  std::string for_site;             // "" = logged for every site
  std::string created_at;           // RFC 3339 UTC
  // What the record costs to keep (LogTail's memory bound).
  int64_t bytes() const;
};

struct WindowAsk {
  absl::string_view site;
  const std::set<std::string, std::less<>>* doctypes = nullptr;  // served to the site
  int limit = 0;
  int64_t max_bytes = 0;
};

bool Wanted(const LogRecord& r, const WindowAsk& ask);

struct WindowPick {
  std::vector<size_t> wanted;     // indexes into the records given
  std::vector<int64_t> examined;  // ascending
  // The window ended before the records did (limit or bytes): entries
  // follow it. False: the records ran out first.
  bool cut = false;
};

// Applies the rules to `records` (ascending, all after the pull's position).
WindowPick PickWindow(absl::Span<const std::shared_ptr<const LogRecord>> records,
                      const WindowAsk& ask);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_LOG_WINDOW_H_
