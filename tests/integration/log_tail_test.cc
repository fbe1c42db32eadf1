// LogTail (services/producer/log_tail.h) on a real database: windows answered
// from memory, entries logged since its last read never missed, a position
// below the tail left to the database, the read limits, and many threads
// reading the same new entries at once.
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libsync/base/migrate.h"
#include "libsync/base/pg.h"
#include "services/producer/log_tail.h"
#include "tests/support/pg_cluster.h"

namespace eventstream::testing {
namespace {

const std::set<std::string, std::less<>> kNotes{"Note"};
const WindowAsk kAsk{"branch", &kNotes, /*limit=*/100, /*max_bytes=*/1 << 20};

class LogTailTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = FreshDatabase("tail");
    conn_ = Open();
    ASSERT_TRUE(ApplyMigrations(conn_.get(), "es_producer", ProducerMigrations()).ok());
  }
  std::unique_ptr<pg::Connection> Open() {
    auto conn = pg::Connection::Open(SharedCluster().Url(db_));
    EXPECT_TRUE(conn.ok()) << conn.status();
    return conn.ok() ? std::move(*conn) : nullptr;
  }
  // Logs Notes with seq first..last (one committed statement).
  void Log(int first, int last) {
    auto r = conn_->Exec(
        "INSERT INTO es_producer.update_log (seq, doctype, docname, update_type, data, txid)"
        " SELECT i, 'Note', 'N' || i, 'Create', jsonb_build_object('name', 'N' || i),"
        "   pg_current_xact_id() FROM generate_series($1::int, $2::int) AS i",
        {first, last});
    ASSERT_TRUE(r.ok()) << r.status();
  }
  static std::vector<int64_t> Seqs(const LogTail::Window& w) {
    std::vector<int64_t> out;
    for (const auto& r : w.wanted) out.push_back(r->seq);
    return out;
  }

  std::string db_;
  std::unique_ptr<pg::Connection> conn_;
};

TEST_F(LogTailTest, AnswersFromMemoryAndNeverMissesWhatWasLoggedSince) {
  LogTail tail;
  Log(1, 3);
  auto w = tail.Read(conn_.get(), 0, kAsk);
  ASSERT_TRUE(w.ok() && w->has_value()) << w.status();
  EXPECT_EQ(Seqs(**w), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ((*w)->wanted[0]->data.value_or(""), "{\"name\": \"N1\"}");
  EXPECT_FALSE((*w)->more);
  EXPECT_EQ(tail.stats().fills, 1);

  // A caller that knows the log ends at 3 is answered without a read.
  w = tail.Read(conn_.get(), 1, kAsk, /*known_end=*/3);
  ASSERT_TRUE(w.ok() && w->has_value());
  EXPECT_EQ(Seqs(**w), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(tail.stats().fills, 1);

  // One that does not know is never told "no more" from an old read.
  Log(4, 5);
  w = tail.Read(conn_.get(), 3, kAsk);
  ASSERT_TRUE(w.ok() && w->has_value());
  EXPECT_EQ(Seqs(**w), (std::vector<int64_t>{4, 5}));
  EXPECT_FALSE((*w)->more);
  EXPECT_EQ(tail.stats().fills, 2);
  EXPECT_EQ(tail.stats().hits, 3);
}

TEST_F(LogTailTest, APositionBelowTheTailIsLeftToTheDatabase) {
  LogTail::Options small;
  small.max_bytes = 1000;  // about three records
  LogTail tail(small);
  Log(1, 20);
  auto w = tail.Read(conn_.get(), 0, kAsk);
  ASSERT_TRUE(w.ok() && w->has_value()) << w.status();
  EXPECT_EQ((*w)->wanted.size(), 20u);  // the answer keeps what was read
  // The oldest records are gone from memory now.
  w = tail.Read(conn_.get(), 0, kAsk);
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(w->has_value());
  EXPECT_EQ(tail.stats().misses, 1);
  // The newest are still there.
  w = tail.Read(conn_.get(), 19, kAsk, /*known_end=*/20);
  ASSERT_TRUE(w.ok() && w->has_value());
  EXPECT_EQ(Seqs(**w), (std::vector<int64_t>{20}));
}

TEST_F(LogTailTest, APositionPastTheTailRestartsIt) {
  LogTail tail;
  Log(1, 10);
  ASSERT_TRUE(tail.Read(conn_.get(), 0, kAsk).ok());
  Log(11, 12);
  auto w = tail.Read(conn_.get(), 11, kAsk);  // e.g. read from the database before
  ASSERT_TRUE(w.ok() && w->has_value());
  EXPECT_EQ(Seqs(**w), (std::vector<int64_t>{12}));
  w = tail.Read(conn_.get(), 2, kAsk);
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(w->has_value());
}

TEST_F(LogTailTest, AReadOfTheLogStopsAtItsLimitsAndTheAnswerSaysMore) {
  LogTail::Options two;
  two.fill_entries = 2;
  LogTail tail(two);
  Log(1, 5);
  auto w = tail.Read(conn_.get(), 0, kAsk);
  ASSERT_TRUE(w.ok() && w->has_value());
  EXPECT_EQ(Seqs(**w), (std::vector<int64_t>{1, 2, 3, 4}));  // two reads at most
  EXPECT_TRUE((*w)->more);
  w = tail.Read(conn_.get(), 4, kAsk);
  ASSERT_TRUE(w.ok() && w->has_value());
  EXPECT_EQ(Seqs(**w), (std::vector<int64_t>{5}));
  EXPECT_FALSE((*w)->more);

  // Data: the read stops before an entry once the entries before it hold
  // fill_bytes; the first comes whatever its size.
  LogTail::Options tiny;
  tiny.fill_bytes = 1;
  LogTail bytes(tiny);
  w = bytes.Read(conn_.get(), 0, kAsk);
  ASSERT_TRUE(w.ok() && w->has_value());
  EXPECT_EQ(Seqs(**w), (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE((*w)->more);
}

std::vector<std::shared_ptr<const LogRecord>> Captured(int first, int last) {
  std::vector<std::shared_ptr<const LogRecord>> out;
  for (int i = first; i <= last; ++i) {
    auto r = std::make_shared<LogRecord>();
    r->seq = i;
    r->doctype = "Note";
    r->docname = absl::StrCat("C", i);
    r->update_type = "Create";
    r->data = absl::StrCat("{\"name\":\"C", i, "\"}");
    out.push_back(std::move(r));
  }
  return out;
}

TEST_F(LogTailTest, CapturedEntriesJoinTheTailOnlyWhereItEnds) {
  LogTail tail;
  Log(1, 3);
  ASSERT_TRUE(tail.Read(conn_.get(), 0, kAsk).ok());
  // Continues the tail: served from memory (these are not in the database).
  tail.Append(3, Captured(4, 5));
  auto w = tail.Read(conn_.get(), 3, kAsk, /*known_end=*/5);
  ASSERT_TRUE(w.ok() && w->has_value());
  EXPECT_EQ(Seqs(**w), (std::vector<int64_t>{4, 5}));
  EXPECT_EQ((*w)->wanted[0]->data.value_or(""), "{\"name\":\"C4\"}");
  EXPECT_EQ(tail.stats().fills, 1);
  EXPECT_EQ(tail.stats().appended, 2);
  // Something was logged between (the tail ends at 5, these follow 7), or
  // they are old: ignored, a read of the log brings what there is.
  tail.Append(7, Captured(8, 8));
  tail.Append(4, Captured(5, 5));
  EXPECT_EQ(tail.stats().appended, 2);
  // Before any read there is no tail to continue.
  LogTail fresh;
  fresh.Append(0, Captured(1, 1));
  EXPECT_EQ(fresh.stats().appended, 0);
}

TEST_F(LogTailTest, ThreadsReadingTheSameNewEntriesAllGetThem) {
  LogTail tail;
  Log(1, 1);
  ASSERT_TRUE(tail.Read(conn_.get(), 0, kAsk).ok());
  for (int round = 0; round < 20; ++round) {
    const int first = 2 + round * 5;
    Log(first, first + 4);
    std::vector<std::thread> threads;
    std::vector<int> got(8, 0);
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        auto conn = Open();
        int64_t after = first - 1;
        for (int i = 0; i < 10 && after < first + 4; ++i) {
          auto w = tail.Read(conn.get(), after, kAsk);
          if (!w.ok() || !w->has_value()) return;
          got[t] += static_cast<int>((*w)->wanted.size());
          if (!(*w)->examined.empty()) after = (*w)->examined.back();
        }
      });
    }
    for (auto& th : threads) th.join();
    for (int t = 0; t < 8; ++t) EXPECT_EQ(got[t], 5) << "round " << round << " thread " << t;
  }
}

}  // namespace
}  // namespace eventstream::testing
