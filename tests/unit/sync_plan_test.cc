#include "libsync/rules/sync_plan.h"

#include "gtest/gtest.h"

namespace eventstream {
namespace {

Value Json(const std::string& text) {
  auto v = Value::ParseJson(text);
  EXPECT_TRUE(v.ok()) << v.status() << " in " << text;
  return v.ok() ? *std::move(v) : Value();
}

DocTypeDef NoteDef() {
  DocTypeDef def;
  def.name = "Note";
  def.fields = {FieldDef{"title", "Data"}, FieldDef{"rows", "Table", "Note Row"}};
  return def;
}

// A local copy as the consumer reads it (remote columns, parent columns).
constexpr char kLocal[] = R"({
  "name": "NOTE-0001", "remote_docname": "N1", "remote_site_name": "hq",
  "title": "a", "qty": 2, "docstatus": 0, "local_only": "x",
  "rows": [
    {"name": "ROW-1", "remote_docname": "r1", "remote_site_name": "hq", "parent": "NOTE-0001",
     "parenttype": "Note", "parentfield": "rows", "item": "apple", "idx": 1, "docstatus": 0},
    {"name": "ROW-2", "remote_docname": "r2", "remote_site_name": "hq", "parent": "NOTE-0001",
     "parenttype": "Note", "parentfield": "rows", "item": "pear", "idx": 2, "docstatus": 0}]})";

TEST(LocalAsRemote, UsesTheProducersNamesAndDropsLocalBookkeeping) {
  Value v = LocalAsRemote(NoteDef(), Json(kLocal), "N1", /*same_name=*/false);
  EXPECT_EQ(v.Find("name")->as_string(), "N1");
  EXPECT_EQ(v.Find("remote_docname"), nullptr);
  EXPECT_EQ(v.Find("remote_site_name"), nullptr);
  const Value::Array& rows = v.Find("rows")->as_array();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].Find("name")->as_string(), "r1");
  for (const char* k : {"parent", "parenttype", "parentfield", "remote_docname"}) {
    EXPECT_EQ(rows[0].Find(k), nullptr) << k;
  }
}

TEST(LocalAsRemote, SameNameKeepsRowNames) {
  Value v = LocalAsRemote(NoteDef(), Json(kLocal), "N1", /*same_name=*/true);
  EXPECT_EQ(v.Find("rows")->as_array()[0].Find("name")->as_string(), "ROW-1");
}

class PlanSyncTest : public ::testing::Test {
 protected:
  Value local_ = LocalAsRemote(NoteDef(), Json(kLocal), "N1", false);
};

TEST_F(PlanSyncTest, EqualDocumentIsAlreadyEqual) {
  SyncChange c = PlanSync(local_, Json(R"({"name": "N1", "doctype": "Note", "title": "a",
      "qty": 2.0, "docstatus": 0, "modified": "2026-01-01 00:00:00", "not_a_column": 5,
      "rows": [{"name": "r1", "item": "apple", "idx": 1, "docstatus": 0},
               {"name": "r2", "item": "pear", "idx": 2, "owner": "someone"}]})"));
  EXPECT_TRUE(c.empty()) << c.diff.ToJson().ToJson();
  EXPECT_EQ(c.fields, 0);
  EXPECT_EQ(c.rows, 0);
}

TEST_F(PlanSyncTest, FieldsAndRowsChangedAddedAndRemoved) {
  SyncChange c = PlanSync(local_, Json(R"({"name": "N1", "title": "b", "qty": 2,
      "docstatus": 1,
      "rows": [{"name": "r1", "item": "apricot", "idx": 1},
               {"name": "r3", "item": "plum", "idx": 2}]})"));
  EXPECT_EQ(c.diff.changed.ToJson(), R"({"docstatus":1,"title":"b"})");
  EXPECT_EQ(c.diff.row_changed.ToJson(), R"({"rows":[{"item":"apricot","name":"r1"}]})");
  EXPECT_EQ(c.diff.added.ToJson(), R"({"rows":[{"idx":2,"item":"plum","name":"r3"}]})");
  EXPECT_EQ(c.diff.removed.ToJson(), R"({"rows":["r2"]})");
  EXPECT_EQ(c.fields, 2);
  EXPECT_EQ(c.rows, 3);
}

TEST_F(PlanSyncTest, LocalColumnsAndTablesTheDocumentLacksAreLeftAlone) {
  // No "local_only", no "rows": neither is touched.
  SyncChange c = PlanSync(local_, Json(R"({"name": "N1", "title": "a"})"));
  EXPECT_TRUE(c.empty()) << c.diff.ToJson().ToJson();
}

TEST_F(PlanSyncTest, AnEmptyTableRemovesEveryRow) {
  SyncChange c = PlanSync(local_, Json(R"({"name": "N1", "rows": []})"));
  EXPECT_EQ(c.diff.removed.ToJson(), R"({"rows":["r1","r2"]})");
  EXPECT_EQ(c.rows, 2);
}

TEST_F(PlanSyncTest, RowsWithoutDistinctNamesReplaceTheTable) {
  SyncChange c = PlanSync(local_, Json(R"({"name": "N1",
      "rows": [{"name": "r1", "item": "a"}, {"name": "r1", "item": "b"}]})"));
  ASSERT_NE(c.diff.changed.Find("rows"), nullptr);
  EXPECT_EQ(c.rows, 2);
  EXPECT_EQ(c.fields, 0);
}

TEST(SameStoredValue, AsTheDatabaseStoresThem) {
  EXPECT_TRUE(SameStoredValue(Value::Null(), Value::String("")));
  EXPECT_TRUE(SameStoredValue(Value::Int(1), Json("1.0")));
  EXPECT_TRUE(SameStoredValue(Value::Int(1), Value::String("1")));
  EXPECT_TRUE(SameStoredValue(Value::Bool(true), Value::Int(1)));
  EXPECT_FALSE(SameStoredValue(Value::Int(0), Value::Null()));
  EXPECT_FALSE(SameStoredValue(Value::String("1e3"), Value::String("1000")));
  EXPECT_FALSE(SameStoredValue(Value::String("a"), Value::String("b")));
}

}  // namespace
}  // namespace eventstream
