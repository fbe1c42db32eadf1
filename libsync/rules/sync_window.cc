#include "libsync/rules/sync_window.h"

#include <algorithm>
#include <utility>

namespace eventstream {

SyncWindow AdvanceSyncWindow(std::vector<int64_t> recent, int64_t last_seq, int64_t logged_end,
                             int in_flight) {
  in_flight = std::max(in_flight, 1);
  SyncWindow w;
  w.recent = std::move(recent);
  if (last_seq == 0) w.recent.clear();
  if (logged_end > 0) w.recent.push_back(logged_end);
  if (w.recent.size() > static_cast<size_t>(in_flight)) {
    w.recent.erase(w.recent.begin(), w.recent.end() - in_flight);
  }
  w.wait_for = w.recent.size() < static_cast<size_t>(in_flight) ? 0 : w.recent.front();
  return w;
}

}  // namespace eventstream
