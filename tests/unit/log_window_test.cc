// libsync/rules/log_window: which log entries one consumer's pull examines and
// wants, without a database (the rule pull.cc's kWindow states in SQL).
#include "libsync/rules/log_window.h"

#include "gtest/gtest.h"

namespace eventstream {
namespace {

std::shared_ptr<const LogRecord> R(int64_t seq, std::string doctype, size_t data_bytes = 10,
                                   std::string origin = "", std::string for_site = "",
                                   std::string type = "Update") {
  auto r = std::make_shared<LogRecord>();
  r->seq = seq;
  r->doctype = std::move(doctype);
  r->docname = "N" + std::to_string(seq);
  r->update_type = std::move(type);
  r->data = std::string(data_bytes, 'x');
  r->origin = std::move(origin);
  r->for_site = std::move(for_site);
  return r;
}

const std::set<std::string, std::less<>> kNotes{"Note"};

WindowAsk Ask(int limit = 100, int64_t max_bytes = 1000) {
  return WindowAsk{"branch", &kNotes, limit, max_bytes};
}

TEST(LogWindow, WantsServedDocTypesNotEchoesAndOnlyEntriesForEveryoneOrThisSite) {
  EXPECT_TRUE(Wanted(*R(1, "Note"), Ask()));
  EXPECT_FALSE(Wanted(*R(1, "Item"), Ask()));
  EXPECT_FALSE(Wanted(*R(1, "Note", 10, "branch"), Ask()));      // its own change
  EXPECT_TRUE(Wanted(*R(1, "Note", 10, "other"), Ask()));        // another site's
  EXPECT_TRUE(Wanted(*R(1, "Note", 10, "", "branch"), Ask()));   // its initial sync
  EXPECT_FALSE(Wanted(*R(1, "Note", 10, "", "other"), Ask()));   // another's
  // A Revoke for the site goes even for a DocType it is no longer served.
  EXPECT_TRUE(Wanted(*R(1, "Item", 10, "", "branch", "Revoke"), Ask()));
  EXPECT_FALSE(Wanted(*R(1, "Item", 10, "", "other", "Revoke"), Ask()));
}

TEST(LogWindow, ExaminesUpToTheLimitAndSaysWhenEntriesFollow) {
  std::vector<std::shared_ptr<const LogRecord>> log{R(5, "Note"), R(6, "Item"), R(7, "Note")};
  WindowPick all = PickWindow(log, Ask(3));
  EXPECT_EQ(all.examined, (std::vector<int64_t>{5, 6, 7}));
  EXPECT_EQ(all.wanted, (std::vector<size_t>{0, 2}));
  EXPECT_FALSE(all.cut);  // the records ran out: what follows is the caller's to know

  WindowPick two = PickWindow(log, Ask(2));
  EXPECT_EQ(two.examined, (std::vector<int64_t>{5, 6}));
  EXPECT_EQ(two.wanted, (std::vector<size_t>{0}));
  EXPECT_TRUE(two.cut);
}

TEST(LogWindow, StopsBeforeAWantedEntryOnceTheBytesAreSpentButAlwaysTakesTheFirst) {
  std::vector<std::shared_ptr<const LogRecord>> log{R(1, "Note", 5000), R(2, "Item", 5000),
                                                    R(3, "Note", 10)};
  WindowPick pick = PickWindow(log, Ask(100, 1000));
  EXPECT_EQ(pick.examined, (std::vector<int64_t>{1, 2}));  // the unwanted one is passed
  EXPECT_EQ(pick.wanted, (std::vector<size_t>{0}));
  EXPECT_TRUE(pick.cut);

  // Under the budget every wanted entry comes.
  WindowPick small = PickWindow(log, Ask(100, 6000));
  EXPECT_EQ(small.wanted, (std::vector<size_t>{0, 2}));
  EXPECT_FALSE(small.cut);
}

TEST(LogWindow, AnEmptyRunIsNotCut) {
  WindowPick pick = PickWindow({}, Ask());
  EXPECT_TRUE(pick.examined.empty());
  EXPECT_FALSE(pick.cut);
}

}  // namespace
}  // namespace eventstream
