#include "libsync/rules/assembly_plan.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/raw_rows.h"

namespace eventstream {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::string kDeep = std::string(1000, '[') + std::string(1000, ']');

std::vector<int64_t> Ids(const TxRows& t) {
  std::vector<int64_t> ids;
  for (const RawChange& c : t.rows) ids.push_back(c.id);
  return ids;
}

// Rows of transactions given as (txid, id) pairs, in id order.
std::vector<RawChange> Rows(const std::vector<std::pair<std::string, int64_t>>& ids) {
  std::vector<RawChange> rows;
  for (const auto& [txid, id] : ids) {
    rows.push_back(Tx(txid, id).Insert("Memo", R"({"name":"M)" + std::to_string(id) + "\"}")
                       .rows.front());
  }
  return rows;
}

TEST(ParseRawChange, ParsesAndCutsToTheRegistryColumns) {
  RawChange c = ParseRawChange(
      NoteRegistry(), RawChangeText{7, "100", "Note", "U",
                                    R"({"name":"N1","title":"a","secret":"s"})",
                                    R"({"name":"N1","title":"b","secret":"t"})", "branch1"});
  EXPECT_EQ(c.id, 7);
  EXPECT_EQ(c.txid, "100");
  EXPECT_EQ(c.op, 'U');
  EXPECT_EQ(c.old_row, J(R"({"name":"N1","title":"a"})"));
  EXPECT_EQ(c.new_row, J(R"({"name":"N1","title":"b"})"));
  EXPECT_EQ(c.origin, "branch1");
  EXPECT_EQ(c.unreadable, "");
}

TEST(ParseRawChange, NullSidesAreAbsentAndEmptyOpIsAnUpdate) {
  RawChange c = ParseRawChange(NoteRegistry(), RawChangeText{1, "1", "Memo", "", std::nullopt,
                                                             R"({"name":"M1"})", std::nullopt});
  EXPECT_EQ(c.op, 'U');
  EXPECT_FALSE(c.old_row.has_value());
  EXPECT_TRUE(c.new_row.has_value());
  EXPECT_FALSE(c.origin.has_value());
}

TEST(ParseRawChange, DeepJsonIsUnreadableNotAnError) {
  const std::string row = R"({"name":"N1","title":)" + kDeep + "}";
  RawChange c =
      ParseRawChange(NoteRegistry(), RawChangeText{5, "1", "Note", "I", std::nullopt, row, {}});
  EXPECT_FALSE(c.new_row.has_value());
  EXPECT_THAT(c.unreadable, HasSubstr("new_row of raw change 5 does not parse"));
  EXPECT_THAT(c.unreadable, HasSubstr("nesting deeper than 512"));
}

TEST(GroupByTransaction, ByTxidOrderedByLastId) {
  std::vector<TxRows> txs = GroupByTransaction(Rows({{"9", 1}, {"3", 2}, {"9", 3}, {"5", 4}}));
  ASSERT_EQ(txs.size(), 3u);
  EXPECT_EQ(txs[0].txid, "3");
  EXPECT_EQ(txs[1].txid, "9");
  EXPECT_THAT(Ids(txs[1]), ElementsAre(1, 3));
  EXPECT_EQ(txs[1].last_id, 3);
  EXPECT_EQ(txs[2].txid, "5");
}

TEST(PlanWindow, FewerRowsThanTheLimitTakesAll) {
  WindowPlan plan = PlanWindow(Rows({{"1", 1}, {"2", 2}, {"1", 3}}), 10);
  EXPECT_FALSE(plan.more);
  EXPECT_FALSE(plan.take_first_whole);
  ASSERT_EQ(plan.picked.size(), 2u);
  EXPECT_EQ(plan.picked[0].txid, "2");
  EXPECT_EQ(plan.picked[1].txid, "1");
}

TEST(PlanWindow, NeverSplitsATransaction) {
  // Limit 3: the first three ids are 1..3; transaction "1" ends at 5.
  WindowPlan plan = PlanWindow(Rows({{"1", 1}, {"2", 2}, {"3", 3}, {"1", 5}}), 3);
  EXPECT_TRUE(plan.more);
  EXPECT_FALSE(plan.take_first_whole);
  ASSERT_EQ(plan.picked.size(), 2u);
  EXPECT_EQ(plan.picked[0].txid, "2");
  EXPECT_EQ(plan.picked[1].txid, "3");
}

TEST(PlanWindow, OneTransactionLargerThanTheWindowIsTakenWholeByTheCaller) {
  WindowPlan plan = PlanWindow(Rows({{"1", 1}, {"1", 2}, {"1", 3}}), 2);
  EXPECT_TRUE(plan.picked.empty());
  EXPECT_TRUE(plan.more);
  EXPECT_TRUE(plan.take_first_whole);
}

TEST(PlanWindow, NothingWaitingIsNothing) {
  WindowPlan plan = PlanWindow({}, 5);
  EXPECT_TRUE(plan.picked.empty());
  EXPECT_FALSE(plan.more);
  EXPECT_FALSE(plan.take_first_whole);
}

TxRows TxOf(Tx tx) { return GroupByTransaction(std::move(tx.rows)).front(); }

TEST(BuildWhole, AssemblesAReadableTransaction) {
  std::optional<std::vector<LogEntry>> whole =
      BuildWhole(NoteRegistry(), TxOf(Tx().Insert("Memo", R"({"name":"M1"})")));
  ASSERT_TRUE(whole.has_value());
  EXPECT_THAT(Kinds(*whole), ElementsAre("Create:M1"));
}

TEST(BuildWhole, RefusesAnUnreadableRowOrOneBuildEntriesRefuses) {
  TxRows unreadable = TxOf(Tx().Insert("Memo", R"({"name":"M1"})"));
  unreadable.rows[0].unreadable = "too deep";
  EXPECT_FALSE(BuildWhole(NoteRegistry(), unreadable).has_value());
  EXPECT_FALSE(
      BuildWhole(NoteRegistry(), TxOf(Tx().Insert("Memo", R"({"name":1})"))).has_value());
}

// The deep-JSON document of a transaction becomes a failure record; the
// other documents of the transaction are assembled.
TEST(BuildByDocument, AnUnreadableDocumentFailsAloneAndIsNamed) {
  Tx tx("77", 10);
  tx.Insert("Memo", R"({"name":"M1"})");
  tx.Add("Note", 'I', std::nullopt, std::nullopt);  // DEEP: did not read
  tx.Insert("Note Item", R"({"name":"r1","parent":"DEEP","parenttype":"Note",)"
                         R"("parentfield":"items","idx":1})");
  tx.Insert("Note", R"({"name":"N1","title":"ok"})");
  TxRows t = TxOf(tx);
  t.rows[1].unreadable = "new_row of raw change 11 does not parse: nesting deeper than 512";
  RowKeys deep;  // as PostgreSQL read them (RawChangeStore::Reread)
  deep.doctype = "Note";
  deep.new_name = "DEEP";
  TxOutcome out = BuildByDocument(NoteRegistry(), t, {{11, deep}});
  EXPECT_THAT(Kinds(out.entries), ElementsAre("Create:M1", "Create:N1"));
  ASSERT_EQ(out.failures.size(), 1u);
  const CaptureFailure& f = out.failures[0];
  EXPECT_EQ(f.doctype, "Note");
  EXPECT_EQ(f.docname, "DEEP");
  EXPECT_EQ(f.txid, "77");
  EXPECT_THAT(f.error, HasSubstr("nesting deeper than 512"));
  EXPECT_THAT(f.raw_ids, ElementsAre(11, 12));  // with its child row
}

TEST(BuildByDocument, ADocumentBuildEntriesRefusesFailsAloneNamedByItsChildsParent) {
  Tx tx("5", 1);
  tx.Insert("Note Item", R"({"name":7,"parent":"N2","parenttype":"Note","parentfield":"items"})");
  tx.Insert("Memo", R"({"name":"M1"})");
  TxOutcome out = BuildByDocument(NoteRegistry(), TxOf(tx), {});
  EXPECT_THAT(Kinds(out.entries), ElementsAre("Create:M1"));
  ASSERT_EQ(out.failures.size(), 1u);
  EXPECT_EQ(out.failures[0].doctype, "Note");
  EXPECT_EQ(out.failures[0].docname, "N2");
  EXPECT_THAT(out.failures[0].error, HasSubstr("raw change 1 of DocType \"Note Item\""));
  EXPECT_THAT(out.failures[0].raw_ids, ElementsAre(1));
}

TEST(KeysOf, ParentAndChildRows) {
  DocTypeRegistry registry = NoteRegistry();
  RowKeys parent = KeysOf(
      registry, Tx().Update("Note", R"({"name":"N1"})", R"({"name":"N2"})").rows.front());
  EXPECT_FALSE(parent.child);
  EXPECT_EQ(parent.old_name, "N1");
  EXPECT_EQ(parent.new_name, "N2");
  RowKeys child = KeysOf(
      registry, Tx().Delete("Note Item", R"({"name":"r1","parent":"N1","parenttype":"Note"})")
                    .rows.front());
  EXPECT_TRUE(child.child);
  EXPECT_EQ(child.old_parent, (std::pair<std::string, std::string>{"Note", "N1"}));
  EXPECT_FALSE(child.new_parent.has_value());
  RowKeys unknown =
      KeysOf(registry, Tx().Insert("Other", R"({"name":5,"parentfield":"x"})").rows.front());
  EXPECT_TRUE(unknown.child);
  EXPECT_FALSE(unknown.new_name.has_value());  // not a string
}

TEST(KeysOfUnreadable, AParentRowByItsRecordedNameAChildNot) {
  DocTypeRegistry registry = NoteRegistry();
  RawChange insert = Tx().Insert("Note", R"({"name":"N1"})").rows.front();
  std::optional<RowKeys> k = KeysOfUnreadable(registry, insert, "N1");
  ASSERT_TRUE(k.has_value());
  EXPECT_FALSE(k->child);
  EXPECT_FALSE(k->old_name.has_value());
  EXPECT_EQ(k->new_name, "N1");
  RawChange del = Tx().Delete("Note", R"({"name":"N1"})").rows.front();
  k = KeysOfUnreadable(registry, del, "N1");
  ASSERT_TRUE(k.has_value());
  EXPECT_EQ(k->old_name, "N1");
  EXPECT_FALSE(k->new_name.has_value());
  RawChange child =
      Tx().Insert("Note Item", R"({"name":"r1","parent":"N1","parenttype":"Note"})").rows.front();
  EXPECT_FALSE(KeysOfUnreadable(registry, child, "r1").has_value());
  EXPECT_FALSE(KeysOfUnreadable(registry, insert, "").has_value());
  RawChange other = Tx().Insert("Other", R"({"name":"O1"})").rows.front();
  EXPECT_FALSE(KeysOfUnreadable(registry, other, "O1").has_value());
}

TEST(PassOutcome, CollectsEveryTransactionTaken) {
  PassOutcome pass;
  TxRows a = TxOf(Tx("1", 1).Insert("Memo", R"({"name":"M1"})"));
  TxRows b = TxOf(Tx("2", 2).Insert("Memo", R"({"name":"M2"})").Insert("Memo", R"({"name":"M3"})"));
  pass.Add(a, TxOutcome{*BuildWhole(NoteRegistry(), a), {}});
  pass.Add(b, TxOutcome{{}, {CaptureFailure{"Memo", "M2", "2", "x", {2, 3}}}});
  EXPECT_THAT(Kinds(pass.entries), ElementsAre("Create:M1"));
  EXPECT_EQ(pass.failures.size(), 1u);
  EXPECT_THAT(pass.txids, ElementsAre("1", "2"));
  EXPECT_EQ(pass.raw_rows, 3u);
}

TEST(TakeEntryColumns, OneElementPerEntryInOrderWithTheDataAsText) {
  std::vector<LogEntry> entries = {
      LogEntry{"Note", "N1", "Create", J(R"({"name":"N1","b":[1,2.50]})"), "branch1", "9"},
      LogEntry{"Memo", "M1", "Delete", Value(), std::nullopt, "10"}};
  EntryColumns c = TakeEntryColumns(&entries);
  EXPECT_THAT(c.doctypes, ElementsAre("Note", "Memo"));
  EXPECT_THAT(c.docnames, ElementsAre("N1", "M1"));
  EXPECT_THAT(c.update_types, ElementsAre("Create", "Delete"));
  EXPECT_THAT(c.txids, ElementsAre("9", "10"));
  ASSERT_EQ(c.data.size(), 2u);
  EXPECT_EQ(c.data[0], std::optional<std::string>(R"({"b":[1,2.50],"name":"N1"})"));
  EXPECT_EQ(c.data[1], std::nullopt);
  EXPECT_THAT(c.origins, ElementsAre(std::optional<std::string>("branch1"), std::nullopt));
  // The data was moved out; the rest of each entry stays.
  EXPECT_TRUE(entries[0].data.is_null());
  EXPECT_EQ(entries[0].docname, "N1");
}

TEST(CountByType, PerDocTypeAndUpdateType) {
  std::vector<LogEntry> entries = {LogEntry{"Note", "a", "Create"}, LogEntry{"Note", "b", "Create"},
                                   LogEntry{"Memo", "c", "Delete"}};
  std::map<std::pair<std::string, std::string>, int> want = {{{"Note", "Create"}, 2},
                                                              {{"Memo", "Delete"}, 1}};
  EXPECT_EQ(CountByType(entries), want);
}

TEST(ReplicatedColumnsJson, EachDocTypeAndTheUnknownChild) {
  Value columns = J(ReplicatedColumnsJson(NoteRegistry()));
  ASSERT_NE(columns.Find("Note"), nullptr);
  ASSERT_NE(columns.Find(""), nullptr);
  auto has = [](const Value& list, const std::string& c) {
    for (const Value& v : list.as_array()) {
      if (v.as_string() == c) return true;
    }
    return false;
  };
  EXPECT_TRUE(has(*columns.Find("Note"), "title"));
  EXPECT_FALSE(has(*columns.Find("Note"), "items"));  // a Table field has no column
  EXPECT_TRUE(has(*columns.Find("Note Item"), "parentfield"));
  EXPECT_TRUE(has(*columns.Find(""), "parent"));
}

}  // namespace
}  // namespace eventstream
