// libsync/rules/stream_flow: the producer's window of unacknowledged
// answers, its next step, and the consumer's stream session length.
#include "libsync/rules/stream_flow.h"

#include "gtest/gtest.h"

namespace eventstream {
namespace {

TEST(AckWindow, FullAtWindowAndAnAckCoversEveryAnswerItReaches) {
  AckWindow w(2, 10);
  EXPECT_FALSE(w.full());
  w.Sent(15);
  EXPECT_FALSE(w.full());
  w.Sent(20);
  EXPECT_TRUE(w.full());
  EXPECT_EQ(w.in_flight(), 2);
  w.Acknowledged(14);  // commits part of nothing sent whole: both stay
  EXPECT_EQ(w.in_flight(), 2);
  EXPECT_EQ(w.acknowledged(), 14);
  w.Acknowledged(20);  // one ack for both answers
  EXPECT_EQ(w.in_flight(), 0);
  EXPECT_EQ(w.acknowledged(), 20);
}

TEST(AckWindow, OlderOrRepeatedAcksChangeNothing) {
  AckWindow w(1, 30);
  w.Sent(35);
  w.Acknowledged(12);
  EXPECT_EQ(w.acknowledged(), 30);
  EXPECT_TRUE(w.full());
  w.Acknowledged(35);
  w.Acknowledged(35);
  EXPECT_EQ(w.acknowledged(), 35);
  EXPECT_FALSE(w.full());
}

TEST(NextStreamStep, AFullWindowWaitsForAnAckWhateverIsReady) {
  EXPECT_EQ(NextStreamStep({true, 2, true, true, true}), StreamStep::kReadAck);
}

TEST(NextStreamStep, NewsIsPulledWhileTheWindowHasRoom) {
  EXPECT_EQ(NextStreamStep({false, 1, true, false, false}), StreamStep::kPull);
  EXPECT_EQ(NextStreamStep({false, 1, false, true, false}), StreamStep::kPull);
  EXPECT_EQ(NextStreamStep({false, 0, true, false, false}), StreamStep::kPull);
}

TEST(NextStreamStep, CaughtUpItCollectsTheAckThenRecordsItThenWaits) {
  // An answer in flight: the log first (news go out while the consumer
  // applies), its acknowledgment once the log stayed quiet.
  EXPECT_EQ(NextStreamStep({false, 1, false, false, false, false}), StreamStep::kWaitForLog);
  EXPECT_EQ(NextStreamStep({false, 1, false, false, false, true}), StreamStep::kReadAck);
  EXPECT_EQ(NextStreamStep({false, 1, true, false, false, true}), StreamStep::kPull);
  EXPECT_EQ(NextStreamStep({false, 0, false, false, true}), StreamStep::kPull);
  EXPECT_EQ(NextStreamStep({false, 0, false, false, false}), StreamStep::kWaitForLog);
}

TEST(MaySkipAckRecord, NeverBeforeTheFirstRecordingNorOnceOneIsDue) {
  EXPECT_FALSE(MaySkipAckRecord(false, absl::ZeroDuration()));  // drops an old session's
  EXPECT_TRUE(MaySkipAckRecord(true, absl::Milliseconds(10)));
  EXPECT_FALSE(MaySkipAckRecord(true, kStreamAckRecordEvery));
  EXPECT_FALSE(MaySkipAckRecord(true, absl::InfiniteDuration()));
}

TEST(StreamSessionLength, FollowsTheStatusRefreshRules) {
  const absl::Duration poll = absl::Seconds(30), refresh = absl::Minutes(10),
                       progress = absl::Seconds(2);
  EXPECT_EQ(StreamSessionLength(true, true, poll, refresh, progress), progress);
  EXPECT_EQ(StreamSessionLength(true, false, poll, refresh, progress), progress);
  EXPECT_EQ(StreamSessionLength(false, false, poll, refresh, progress), poll);
  EXPECT_EQ(StreamSessionLength(false, true, poll, refresh, progress), refresh);
}

}  // namespace
}  // namespace eventstream
