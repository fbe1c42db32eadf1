#include "libsync/queue_vacuum.h"

#include "gtest/gtest.h"

namespace eventstream {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1000);

TEST(QueueVacuumPlanner, DueOnceEnoughRowsAreDead) {
  QueueVacuumPlanner plan({/*min_dead_rows=*/100, absl::Seconds(2)});
  EXPECT_FALSE(plan.Due(kT0));
  plan.Consumed(99);
  EXPECT_FALSE(plan.Due(kT0));
  plan.Consumed(1);
  EXPECT_TRUE(plan.Due(kT0));
  plan.Vacuumed(kT0, true);
  EXPECT_EQ(plan.dead(), 0);
  EXPECT_FALSE(plan.Due(kT0));
}

TEST(QueueVacuumPlanner, NotMoreOftenThanTheInterval) {
  QueueVacuumPlanner plan({100, absl::Seconds(2)});
  plan.Consumed(500);
  plan.Vacuumed(kT0, true);
  plan.Consumed(500);
  EXPECT_FALSE(plan.Due(kT0 + absl::Seconds(1)));
  EXPECT_TRUE(plan.Due(kT0 + absl::Seconds(2)));
}

TEST(QueueVacuumPlanner, AFailedVacuumKeepsTheCountAndWaits) {
  QueueVacuumPlanner plan({100, absl::Seconds(2)});
  plan.Consumed(150);
  plan.Vacuumed(kT0, false);
  EXPECT_EQ(plan.dead(), 150);
  EXPECT_FALSE(plan.Due(kT0 + absl::Seconds(1)));
  EXPECT_TRUE(plan.Due(kT0 + absl::Seconds(3)));
}

TEST(QueueVacuumPlanner, ZeroNeverVacuums) {
  QueueVacuumPlanner plan({0, absl::Seconds(2)});
  plan.Consumed(1000000);
  EXPECT_FALSE(plan.Due(kT0));
}

}  // namespace
}  // namespace eventstream
