#include "libsync/rules/sync_window.h"

#include "gtest/gtest.h"

namespace eventstream {
namespace {

TEST(SyncWindowTest, TwoInFlightWaitsForTheChunkBeforeTheLast) {
  SyncWindow w = AdvanceSyncWindow({}, 0, 500, 2);
  EXPECT_EQ(w.recent, (std::vector<int64_t>{500}));
  EXPECT_EQ(w.wait_for, 0);  // the second chunk goes at once
  w = AdvanceSyncWindow(w.recent, 500, 1000, 2);
  EXPECT_EQ(w.wait_for, 500);
  w = AdvanceSyncWindow(w.recent, 1000, 1500, 2);
  EXPECT_EQ(w.recent, (std::vector<int64_t>{1000, 1500}));
  EXPECT_EQ(w.wait_for, 1000);
}

TEST(SyncWindowTest, FourInFlightKeepsFourSeqs) {
  SyncWindow w;
  int64_t last = 0;
  for (int64_t end : {100, 200, 300}) {
    w = AdvanceSyncWindow(w.recent, last, end, 4);
    last = end;
    EXPECT_EQ(w.wait_for, 0) << end;
  }
  w = AdvanceSyncWindow(w.recent, last, 400, 4);
  EXPECT_EQ(w.wait_for, 100);
  w = AdvanceSyncWindow(w.recent, 400, 500, 4);
  EXPECT_EQ(w.recent, (std::vector<int64_t>{200, 300, 400, 500}));
  EXPECT_EQ(w.wait_for, 200);
}

TEST(SyncWindowTest, AnEmptyChunkLeavesTheWindowAsItWas) {
  SyncWindow w = AdvanceSyncWindow({100, 200}, 200, 0, 2);
  EXPECT_EQ(w.recent, (std::vector<int64_t>{100, 200}));
  EXPECT_EQ(w.wait_for, 100);
}

TEST(SyncWindowTest, ARestartedJobForgetsTheOldSeqs) {
  // last_seq 0: the job was restarted since those seqs were logged.
  SyncWindow w = AdvanceSyncWindow({100, 200}, 0, 900, 2);
  EXPECT_EQ(w.recent, (std::vector<int64_t>{900}));
  EXPECT_EQ(w.wait_for, 0);
}

TEST(SyncWindowTest, OneInFlightWaitsForTheLastChunk) {
  SyncWindow w = AdvanceSyncWindow({}, 0, 500, 1);
  EXPECT_EQ(w.wait_for, 500);
  w = AdvanceSyncWindow(w.recent, 500, 900, 0);  // clamped to 1
  EXPECT_EQ(w.wait_for, 900);
}

}  // namespace
}  // namespace eventstream
