// The byte budget of the producer's answers (libsync/rules/batch_budget.h; issue 13
// item 2): whole units up to max_bytes, the first always, nothing past
// max_message_bytes.
#include "libsync/rules/batch_budget.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace eventstream {
namespace {

std::vector<EntrySize> Entries(const std::vector<int64_t>& data, int64_t fixed = 100) {
  std::vector<EntrySize> out;
  for (int64_t d : data) out.push_back({fixed, d});
  return out;
}

// Cuts `entries` (one unit each) into answers as the producer does; returns
// the entry counts per answer and fills `omitted` with the omitted ones.
std::vector<int> Answers(const ByteBudget& budget, const std::vector<int64_t>& data,
                         std::vector<int>* omitted = nullptr) {
  std::vector<int> answers;
  size_t next = 0;
  while (next < data.size()) {
    int64_t used = 0;
    int count = 0;
    while (next < data.size()) {
      UnitFit fit = FitUnit(budget, used, count == 0, Entries({data[next]}));
      if (!fit.take) break;
      if (omitted != nullptr && fit.omit_data[0]) omitted->push_back(static_cast<int>(next));
      used += fit.bytes;
      EXPECT_LE(used, budget.capacity());
      ++count;
      ++next;
    }
    answers.push_back(count);
  }
  return answers;
}

TEST(BatchBudget, DefaultsFitAConsumerThatSaysNothing) {
  auto budget = ResolveBudget(0, 0);
  ASSERT_TRUE(budget.ok());
  EXPECT_EQ(budget->max_message_bytes, 4 * kMiB);  // gRPC's default receive limit
  EXPECT_EQ(budget->max_bytes, 2 * kMiB);
  EXPECT_LT(budget->max_bytes, budget->capacity());
}

TEST(BatchBudget, SoftBudgetNeverAboveWhatFits) {
  auto budget = ResolveBudget(100 * kMiB, 8 * kMiB);
  ASSERT_TRUE(budget.ok());
  EXPECT_EQ(budget->max_bytes, budget->capacity());
  EXPECT_EQ(budget->capacity(), 8 * kMiB - kEnvelopeBytes);
}

TEST(BatchBudget, BadSizesAreRefusedByName) {
  auto negative = ResolveBudget(-1, 0);
  ASSERT_FALSE(negative.ok());
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(negative.status().message(), "max_bytes: must be >= 0 (0 = 2097152), got -1");
  auto tiny = ResolveBudget(0, 1000);
  ASSERT_FALSE(tiny.ok());
  EXPECT_EQ(tiny.status().message(),
            "max_message_bytes: must be 0 (= 4194304, gRPC's default) or at least 65536, got "
            "1000");
}

// The case: 500 documents of 9 KB made one 4.5 MB answer, over
// gRPC's default 4 MB, so every pull failed. Now they come in answers that
// each fit, and all of them come.
TEST(BatchBudget, FiveHundredNineKilobyteDocumentsFitTheDefaultLimit) {
  ByteBudget budget;  // what a consumer that says nothing gets
  std::vector<int64_t> data(500, 9 * 1024);
  std::vector<int> omitted;
  std::vector<int> answers = Answers(budget, data, &omitted);
  int total = 0;
  for (int n : answers) total += n;
  EXPECT_EQ(total, 500);
  EXPECT_EQ(answers, (std::vector<int>{225, 225, 50}));  // about 2 MiB each
  EXPECT_TRUE(omitted.empty());
}

TEST(BatchBudget, FiveHundredTwentyKilobyteDocumentsWithTheConsumersBudget) {
  auto budget = ResolveBudget(4 * kMiB, 64 * kMiB);
  ASSERT_TRUE(budget.ok());
  std::vector<int> answers = Answers(*budget, std::vector<int64_t>(500, 20 * 1024));
  EXPECT_EQ(answers, (std::vector<int>{203, 203, 94}));
}

TEST(BatchBudget, TheFirstUnitAlwaysGoesEvenAboveTheSoftBudget) {
  ByteBudget budget{1 * kMiB, 64 * kMiB};
  // 50 MB alone; the small one after it waits for the next answer.
  UnitFit first = FitUnit(budget, 0, true, Entries({50'000'000}));
  EXPECT_TRUE(first.take);
  EXPECT_EQ(first.omit_data, std::vector<bool>{false});
  EXPECT_FALSE(FitUnit(budget, first.bytes, false, Entries({10})).take);
  // A large document after small ones ends the answer before it ...
  EXPECT_FALSE(FitUnit(budget, 1000, false, Entries({50'000'000})).take);
  // ... and starts the next one.
  EXPECT_EQ(Answers(budget, {1000, 50'000'000, 1000}), (std::vector<int>{1, 1, 1}));
}

TEST(BatchBudget, AnEntryLargerThanTheReceiveLimitGoesWithoutItsData) {
  ByteBudget budget{2 * kMiB, 4 * kMiB};
  std::vector<int> omitted;
  std::vector<int> answers = Answers(budget, {1000, 5'000'000, 1000}, &omitted);
  // Never stuck: every entry goes; the one left without data takes little
  // room, so the next joins it.
  EXPECT_EQ(answers, (std::vector<int>{1, 2}));
  EXPECT_EQ(omitted, std::vector<int>{1});
  UnitFit fit = FitUnit(budget, 0, true, Entries({5'000'000}));
  EXPECT_EQ(fit.bytes, 100);  // only its fixed part
}

// An access flip's history travels with its entry; within the first unit,
// only what would pass the hard limit loses its data.
TEST(BatchBudget, UnitsTravelWholeAndOmitOnlyWhatDoesNotFit) {
  ByteBudget budget{1 * kMiB, 4 * kMiB};
  std::vector<EntrySize> unit = Entries({3 * kMiB, 2 * kMiB, 1000});
  EXPECT_FALSE(FitUnit(budget, 10, false, unit).take);  // not after others
  UnitFit fit = FitUnit(budget, 0, true, unit);
  ASSERT_TRUE(fit.take);
  EXPECT_EQ(fit.omit_data, (std::vector<bool>{false, true, false}));
  EXPECT_EQ(fit.bytes, 300 + 3 * kMiB + 1000);
  EXPECT_LE(fit.bytes, budget.capacity());
}

TEST(BatchBudget, EntryBytesBoundTheWireSizeFromAbove) {
  EntrySize e = EntryBytes("Sales Invoice", "SINV-0001", "", "2026-01-01T00:00:00.000000Z",
                           20000);
  EXPECT_GE(e.data, 20000 + 3);  // tag + 3-byte length
  // seq, type, the four strings, and the entry's own framing.
  EXPECT_GE(e.fixed, 13 + 9 + 27 + 11 + 2 + 4);
  EXPECT_LT(e.fixed, 200);
}

TEST(BatchBudget, FitPrefix) {
  EXPECT_EQ(FitPrefix(100, 0, {40, 40, 40}), 2u);
  EXPECT_EQ(FitPrefix(100, 30, {40, 40}), 1u);
  EXPECT_EQ(FitPrefix(100, 0, {150, 10}), 0u);  // in order: nothing skips ahead
  EXPECT_EQ(FitPrefix(100, 0, {}), 0u);
}

}  // namespace
}  // namespace eventstream
