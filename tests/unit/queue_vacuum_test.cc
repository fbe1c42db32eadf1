#include "libsync/rules/queue_vacuum.h"

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

TEST(QueueVacuumPlanner, CountsAFailureStreak) {
  QueueVacuumPlanner plan({100, absl::Seconds(2)});
  plan.Vacuumed(kT0, false);
  plan.Vacuumed(kT0, false);
  EXPECT_EQ(plan.failures(), 2);
  plan.Vacuumed(kT0, true);
  EXPECT_EQ(plan.failures(), 0);
}

// VacuumQueueIfDue on a fake VACUUM and a fake clock: a VACUUM that takes
// 3 s of virtual time, recorded at its end.
class VacuumQueueIfDueTest : public ::testing::Test {
 protected:
  bool Step() {
    return VacuumQueueIfDue(
        &plan_, [this] { return now_; },
        [this] {
          ++runs_;
          now_ += absl::Seconds(3);
          return fail_ ? absl::UnavailableError("connection lost") : absl::OkStatus();
        },
        {"test", "queue"});
  }
  QueueVacuumPlanner plan_{{100, absl::Seconds(10)}};
  absl::Time now_ = kT0;
  int runs_ = 0;
  bool fail_ = false;
};

TEST_F(VacuumQueueIfDueTest, RunsOnlyWhenDue) {
  EXPECT_FALSE(Step());
  EXPECT_EQ(runs_, 0);
  plan_.Consumed(100);
  EXPECT_TRUE(Step());
  EXPECT_EQ(runs_, 1);
  EXPECT_EQ(plan_.dead(), 0);
  plan_.Consumed(100);
  now_ += absl::Seconds(9);  // 9 s after the VACUUM ended: not yet
  EXPECT_FALSE(Step());
  now_ += absl::Seconds(1);
  EXPECT_TRUE(Step());
  EXPECT_EQ(runs_, 2);
}

TEST_F(VacuumQueueIfDueTest, AFailureKeepsTheCountAndWaitsTheInterval) {
  plan_.Consumed(150);
  fail_ = true;
  EXPECT_FALSE(Step());
  EXPECT_FALSE(Step());  // not again within the interval
  EXPECT_EQ(runs_, 1);
  EXPECT_EQ(plan_.dead(), 150);
  EXPECT_EQ(plan_.failures(), 1);
  now_ += absl::Seconds(10);
  EXPECT_FALSE(Step());
  EXPECT_EQ(plan_.failures(), 2);
  fail_ = false;
  now_ += absl::Seconds(10);
  EXPECT_TRUE(Step());
  EXPECT_EQ(plan_.failures(), 0);
  EXPECT_EQ(plan_.dead(), 0);
  EXPECT_EQ(runs_, 3);
}

}  // namespace
}  // namespace eventstream
