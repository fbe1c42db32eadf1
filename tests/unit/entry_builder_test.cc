#include "libsync/rules/entry_builder.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/raw_rows.h"

namespace eventstream {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const char kN1[] = R"({"name":"N1","title":"a","docstatus":0,"idx":0,"modified":"t1"})";
const char kR1[] =
    R"({"name":"r1","parent":"N1","parenttype":"Note","parentfield":"items","idx":1,)"
    R"("item":"A","qty":1})";
const char kR2[] =
    R"({"name":"r2","parent":"N1","parenttype":"Note","parentfield":"items","idx":2,)"
    R"("item":"B","qty":2})";

class BuildEntriesTest : public ::testing::Test {
 protected:
  std::vector<LogEntry> Build(const Tx& tx) {
    absl::StatusOr<std::vector<LogEntry>> entries = BuildEntries(registry_, tx.rows);
    EXPECT_TRUE(entries.ok()) << entries.status();
    return entries.ok() ? *entries : std::vector<LogEntry>();
  }
  DocTypeRegistry registry_ = NoteRegistry();
};

TEST_F(BuildEntriesTest, NoRowsNoEntries) { EXPECT_TRUE(Build(Tx()).empty()); }

TEST_F(BuildEntriesTest, CreateIsTheWholeDocumentWithChildrenByIdx) {
  std::vector<LogEntry> entries =
      Build(Tx("42").Insert("Note", kN1).Insert("Note Item", kR2).Insert("Note Item", kR1));
  ASSERT_THAT(Kinds(entries), ElementsAre("Create:N1"));
  EXPECT_EQ(entries[0].doctype, "Note");
  EXPECT_EQ(entries[0].txid, "42");
  EXPECT_EQ(entries[0].origin, std::nullopt);
  EXPECT_EQ(entries[0].data,
            J(R"({"name":"N1","doctype":"Note","title":"a","docstatus":0,"idx":0,)"
              R"("modified":"t1","items":[)"
              R"({"doctype":"Note Item","name":"r1","parent":"N1","parenttype":"Note",)"
              R"("parentfield":"items","idx":1,"item":"A","qty":1},)"
              R"({"doctype":"Note Item","name":"r2","parent":"N1","parenttype":"Note",)"
              R"("parentfield":"items","idx":2,"item":"B","qty":2}]})"));
}

TEST_F(BuildEntriesTest, CreateWithoutChildrenHasEmptyTables) {
  std::vector<LogEntry> entries = Build(Tx().Insert("Note", kN1));
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].data, J(R"({"name":"N1","doctype":"Note","title":"a","docstatus":0,)"
                               R"("idx":0,"modified":"t1","items":[]})"));
}

TEST_F(BuildEntriesTest, CreateHoldsTheLastVersionOfEachRow) {
  std::vector<LogEntry> entries =
      Build(Tx().Insert("Note", kN1)
                .Update("Note", kN1, R"({"name":"N1","title":"b","docstatus":0,"idx":0})")
                .Insert("Note Item", kR1)
                .Delete("Note Item", kR1));
  ASSERT_THAT(Kinds(entries), ElementsAre("Create:N1"));
  EXPECT_EQ(entries[0].data,
            J(R"({"name":"N1","doctype":"Note","title":"b","docstatus":0,"idx":0,"items":[]})"));
}

TEST_F(BuildEntriesTest, UpdateIsTheDiffOfTheRowsTouched) {
  std::vector<LogEntry> entries = Build(
      Tx().Update("Note", kN1, R"({"name":"N1","title":"b","docstatus":0,"idx":0,"modified":"t2"})")
          .Update("Note Item", kR1, R"({"name":"r1","parent":"N1","parenttype":"Note",)"
                                    R"("parentfield":"items","idx":1,"item":"A","qty":5})")
          .Delete("Note Item", kR2)
          .Insert("Note Item", R"({"name":"r3","parent":"N1","parenttype":"Note",)"
                               R"("parentfield":"items","idx":3,"item":"C","qty":3})"));
  ASSERT_THAT(Kinds(entries), ElementsAre("Update:N1"));
  EXPECT_EQ(entries[0].data,
            J(R"({"changed":{"title":"b"},"removed":{"items":["r2"]},)"
              R"("row_changed":{"items":[{"name":"r1","qty":5}]},)"
              R"("added":{"items":[{"doctype":"Note Item","name":"r3","parent":"N1",)"
              R"("parenttype":"Note","parentfield":"items","idx":3,"item":"C","qty":3}]}})"));
}

TEST_F(BuildEntriesTest, ChildRowOnlyChangeIsAnUpdateOfItsParent) {
  std::vector<LogEntry> entries =
      Build(Tx().Update("Note Item", kR2, R"({"name":"r2","parent":"N1","parenttype":"Note",)"
                                          R"("parentfield":"items","idx":2,"item":"Z","qty":2})"));
  ASSERT_THAT(Kinds(entries), ElementsAre("Update:N1"));
  EXPECT_EQ(entries[0].doctype, "Note");
  EXPECT_EQ(entries[0].data, J(R"({"changed":{},"removed":{},"added":{},)"
                               R"("row_changed":{"items":[{"name":"r2","item":"Z"}]}})"));
}

TEST_F(BuildEntriesTest, UpdateWithoutARealChangeIsNoEntry) {
  EXPECT_TRUE(Build(Tx().Update("Note", kN1, kN1)).empty());
  EXPECT_TRUE(Build(Tx().Update(
                        "Note", kN1,
                        R"({"name":"N1","title":"a","docstatus":0,"idx":0,"modified":"t9"})"))
                  .empty());
  // Changed and changed back within the transaction.
  const char kB[] = R"({"name":"N1","title":"b","docstatus":0,"idx":0,"modified":"t1"})";
  EXPECT_TRUE(Build(Tx().Update("Note", kN1, kB).Update("Note", kB, kN1)).empty());
}

TEST_F(BuildEntriesTest, SubmitIsAnUpdateAndCancelIsACancel) {
  const char kSubmitted[] = R"({"name":"N1","title":"a","docstatus":1,"idx":0})";
  const char kCancelled[] = R"({"name":"N1","title":"a","docstatus":2,"idx":0})";
  std::vector<LogEntry> submit = Build(Tx().Update("Note", kN1, kSubmitted));
  ASSERT_THAT(Kinds(submit), ElementsAre("Update:N1"));
  EXPECT_EQ(*submit[0].data.Find("changed"), J(R"({"docstatus":1})"));
  std::vector<LogEntry> cancel = Build(Tx().Update("Note", kSubmitted, kCancelled));
  ASSERT_THAT(Kinds(cancel), ElementsAre("Cancel:N1"));
  EXPECT_EQ(*cancel[0].data.Find("changed"), J(R"({"docstatus":2})"));
  // 0 -> 2 in one transaction is no cancel of a submitted document.
  EXPECT_THAT(Kinds(Build(Tx().Update("Note", kN1, kSubmitted).Update("Note", kSubmitted,
                                                                        kCancelled))),
              ElementsAre("Update:N1"));
}

TEST_F(BuildEntriesTest, RenameMovesChildrenWithoutADiff) {
  std::vector<LogEntry> entries =
      Build(Tx().Update("Note", kN1, R"({"name":"N9","title":"a","docstatus":0,"idx":0,)"
                                     R"("modified":"t1"})")
                .Update("Note Item", kR1, R"({"name":"r1","parent":"N9","parenttype":"Note",)"
                                          R"("parentfield":"items","idx":1,"item":"A","qty":1})"));
  ASSERT_THAT(Kinds(entries), ElementsAre("Rename:N9"));
  EXPECT_EQ(entries[0].data, J(R"({"old_name":"N1","new_name":"N9"})"));
}

TEST_F(BuildEntriesTest, RenamePlusEditIsARenameThenAnUpdateUnderTheNewName) {
  std::vector<LogEntry> entries =
      Build(Tx().Update("Note", kN1, R"({"name":"N9","title":"b","docstatus":0,"idx":0})")
                .Update("Note Item", kR1, R"({"name":"r1","parent":"N9","parenttype":"Note",)"
                                          R"("parentfield":"items","idx":1,"item":"A","qty":7})"));
  ASSERT_THAT(Kinds(entries), ElementsAre("Rename:N9", "Update:N9"));
  EXPECT_EQ(entries[1].data, J(R"({"changed":{"title":"b"},"added":{},"removed":{},)"
                               R"("row_changed":{"items":[{"name":"r1","qty":7}]}})"));
}

TEST_F(BuildEntriesTest, DeleteWithChildrenIsOneDelete) {
  std::vector<LogEntry> entries =
      Build(Tx().Delete("Note Item", kR1).Delete("Note Item", kR2).Delete("Note", kN1));
  ASSERT_THAT(Kinds(entries), ElementsAre("Delete:N1"));
  EXPECT_TRUE(entries[0].data.is_null());
}

TEST_F(BuildEntriesTest, InsertedAndDeletedInOneTransactionIsNothing) {
  EXPECT_TRUE(
      Build(Tx().Insert("Note", kN1).Insert("Note Item", kR1).Delete("Note Item", kR1).Delete(
                "Note", kN1))
          .empty());
}

TEST_F(BuildEntriesTest, SeveralDocumentsInTheOrderTheyWereFirstTouched) {
  std::vector<LogEntry> entries =
      Build(Tx().Insert("Memo", R"({"name":"M1","body":"x"})")
                .Update("Note Item", kR1, R"({"name":"r1","parent":"N1","parenttype":"Note",)"
                                          R"("parentfield":"items","idx":1,"item":"A","qty":2})")
                .Delete("Note", R"({"name":"N2","title":"gone"})")
                .Update("Memo", R"({"name":"M1","body":"x"})", R"({"name":"M1","body":"y"})")
                .Insert("Note", R"({"name":"N1","title":"n"})"));
  // The Note N1 insert joins the document its child row (touched earlier)
  // belongs to: one Create, second.
  EXPECT_THAT(Kinds(entries), ElementsAre("Create:M1", "Create:N1", "Delete:N2"));
  EXPECT_EQ(*entries[0].data.Find("body"), Value::String("y"));
}

TEST_F(BuildEntriesTest, SeveralChangesOfOneDocumentAreOneEntry) {
  const char kB[] = R"({"name":"N1","title":"b","docstatus":0,"idx":0,"modified":"t2"})";
  const char kC[] = R"({"name":"N1","title":"c","docstatus":0,"idx":0,"modified":"t3"})";
  std::vector<LogEntry> entries = Build(Tx().Update("Note", kN1, kB)
                                            .Update("Note Item", kR1,
                                                    R"({"name":"r1","parent":"N1",)"
                                                    R"("parenttype":"Note","parentfield":)"
                                                    R"("items","idx":1,"item":"A","qty":4})")
                                            .Update("Note", kB, kC));
  ASSERT_THAT(Kinds(entries), ElementsAre("Update:N1"));
  EXPECT_EQ(entries[0].data, J(R"({"changed":{"title":"c"},"added":{},"removed":{},)"
                               R"("row_changed":{"items":[{"name":"r1","qty":4}]}})"));
}

TEST_F(BuildEntriesTest, DeletedAndInsertedAgainIsAnUpdate) {
  std::vector<LogEntry> entries = Build(
      Tx().Delete("Note", kN1).Insert("Note", R"({"name":"N1","title":"new","docstatus":0,"idx":0})"));
  ASSERT_THAT(Kinds(entries), ElementsAre("Update:N1"));
  // "modified", gone from the new row, is bookkeeping: not reported.
  EXPECT_EQ(*entries[0].data.Find("changed"), J(R"({"title":"new"})"));
}

TEST_F(BuildEntriesTest, OriginIsTheOneSharedByAllRowsOfTheDocument) {
  Tx tx;
  tx.Origin("branch1").Insert("Note", kN1).Insert("Note Item", kR1);
  tx.Origin("branch1").Insert("Memo", R"({"name":"M1"})");
  tx.Origin(std::nullopt).Update("Memo", R"({"name":"M1"})", R"({"name":"M1","body":"local"})");
  std::vector<LogEntry> entries = Build(tx);
  ASSERT_THAT(Kinds(entries), ElementsAre("Create:N1", "Create:M1"));
  EXPECT_EQ(entries[0].origin, "branch1");
  EXPECT_EQ(entries[1].origin, std::nullopt);  // mixed: treated as local
}

TEST_F(BuildEntriesTest, UnknownDocTypeWithParentfieldIsAChildRow) {
  std::vector<LogEntry> entries = Build(Tx().Insert(
      "Note Tag", R"({"name":"t1","parent":"N1","parenttype":"Note","parentfield":"tags"})"));
  ASSERT_THAT(Kinds(entries), ElementsAre("Update:N1"));
  EXPECT_EQ(*entries[0].data.Find("added"),
            J(R"({"tags":[{"doctype":"Note Tag","name":"t1","parent":"N1",)"
              R"("parenttype":"Note","parentfield":"tags"}]})"));
}

TEST_F(BuildEntriesTest, ChildRowMovedToAnotherParentIsAnUpdateOfItsNewParent) {
  std::vector<LogEntry> entries =
      Build(Tx().Update("Note Item", kR1, R"({"name":"r1","parent":"N2","parenttype":"Note",)"
                                          R"("parentfield":"items","idx":1,"item":"A","qty":1})"));
  ASSERT_THAT(Kinds(entries), ElementsAre("Update:N2"));
  EXPECT_EQ(*entries[0].data.Find("row_changed"),
            J(R"({"items":[{"name":"r1","parent":"N2"}]})"));
}

TEST_F(BuildEntriesTest, RowWithoutAStringNameCannotBeAssembled) {
  absl::StatusOr<std::vector<LogEntry>> built =
      BuildEntries(registry_, Tx("7", 30).Insert("Note", kN1).Insert("Note", R"({"name":5})").rows);
  EXPECT_EQ(built.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(built.status().message(), HasSubstr("raw change 31 of DocType \"Note\""));
  EXPECT_THAT(built.status().message(), HasSubstr("string \"name\""));
}

TEST_F(BuildEntriesTest, OpWithoutItsRowVersionsCannotBeAssembled) {
  Tx tx;
  tx.Add("Note", 'U', std::nullopt, J(kN1));
  absl::StatusOr<std::vector<LogEntry>> built = BuildEntries(registry_, tx.rows);
  EXPECT_EQ(built.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(built.status().message(), HasSubstr("op 'U' without the rows it needs"));
}

}  // namespace
}  // namespace eventstream
