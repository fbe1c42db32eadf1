#include "libsync/rules/queue_vacuum.h"

#include <string>

#include "spdlog/spdlog.h"

namespace eventstream {

bool VacuumQueueIfDue(QueueVacuumPlanner* planner, const std::function<absl::Time()>& now,
                      const std::function<absl::Status()>& vacuum, const QueueVacuumName& name) {
  const absl::Time start = now();
  if (!planner->Due(start)) return false;
  const int64_t dead = planner->dead();
  const int failed_before = planner->failures();
  const absl::Status s = vacuum();
  const absl::Time end = now();
  planner->Vacuumed(end, s.ok());
  if (!s.ok()) {
    if (failed_before == 0) {
      spdlog::warn("{}: VACUUM of {} failed: {}; autovacuum still runs (logged again once one "
                   "works)",
                   name.loop, name.table, std::string(s.message()));
    }
    return false;
  }
  if (failed_before > 0) {
    spdlog::info("{}: VACUUM of {} works again after {} failed", name.loop, name.table,
                 failed_before);
  }
  // A clock fixed for the step (a pass's `now`) measures nothing.
  const std::string took =
      end > start ? " in " + absl::FormatDuration(end - start) : std::string();
  spdlog::log(name.success_at_info ? spdlog::level::info : spdlog::level::debug,
              "{}: vacuumed {} after {} deleted rows{}", name.loop, name.table, dead, took);
  return true;
}

}  // namespace eventstream
