#include "libsync/rules/update_plan.h"

#include "gtest/gtest.h"
#include "libsync/model/document.h"

namespace eventstream {
namespace {

class UpdatePlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<DocTypeDef> defs(3);
    defs[0].name = "Note";
    defs[0].fields = {FieldDef{"title", "Data"}, FieldDef{"rows", "Table", "Note Row"},
                      FieldDef{"tags", "Table", "Note Tag"}};
    defs[1].name = "Note Row";
    defs[1].istable = true;
    defs[1].fields = {FieldDef{"item", "Data"}};
    defs[2].name = "Note Tag";
    defs[2].istable = true;
    defs[2].fields = {FieldDef{"tag", "Data"}};
    auto registry = DocTypeRegistry::Create(std::move(defs));
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = *std::move(registry);
    note_ = registry_.Find("Note");
  }

  DocDiff Parse(const std::string& json) {
    auto value = Value::ParseJson(json);
    EXPECT_TRUE(value.ok()) << value.status();
    auto diff = DocDiff::FromJson(*value);
    EXPECT_TRUE(diff.ok()) << diff.status();
    return *std::move(diff);
  }

  DocTypeRegistry registry_;
  const DocTypeDef* note_ = nullptr;
};

TEST_F(UpdatePlanTest, EmptyDiffWritesNothingButKeepsTablesOffTheParent) {
  DocDiff diff = Parse("{}");
  UpdatePlan plan = PlanUpdate(*note_, registry_, diff);
  EXPECT_TRUE(plan.deletes.empty());
  EXPECT_TRUE(plan.row_updates.empty());
  EXPECT_TRUE(plan.replaced.empty());
  EXPECT_TRUE(plan.added.empty());
  EXPECT_EQ(plan.docstatus, nullptr);
  EXPECT_EQ(plan.parent_skip,
            (std::set<std::string>{"doctype", "name", "remote_docname", "remote_site_name",
                                   "rows", "tags"}));
}

TEST_F(UpdatePlanTest, RemovedRowsAreDeletedByName) {
  DocDiff diff = Parse(R"({"removed":{"rows":["R1","R2"],"tags":["T1"]}})");
  UpdatePlan plan = PlanUpdate(*note_, registry_, diff);
  ASSERT_EQ(plan.deletes.size(), 3u);
  EXPECT_EQ(plan.deletes[0].child->name, "Note Row");
  EXPECT_EQ(plan.deletes[0].row, "R1");
  EXPECT_EQ(plan.deletes[1].row, "R2");
  EXPECT_EQ(plan.deletes[2].child->name, "Note Tag");
  EXPECT_EQ(plan.deletes[2].row, "T1");
}

TEST_F(UpdatePlanTest, TablesTheDocTypeDoesNotHaveAreLeftOut) {
  DocDiff diff = Parse(
      R"({"removed":{"title":["x"],"other":["y"]},
          "row_changed":{"other":[{"name":"R1","item":"a"}]},
          "added":{"title":[{"name":"R9"}]}})");
  UpdatePlan plan = PlanUpdate(*note_, registry_, diff);
  EXPECT_TRUE(plan.deletes.empty());
  EXPECT_TRUE(plan.row_updates.empty());
  EXPECT_TRUE(plan.added.empty());
}

TEST_F(UpdatePlanTest, RowChangesAndAddedRowsGoPerTable) {
  DocDiff diff = Parse(
      R"({"row_changed":{"rows":[{"name":"R1","item":"b"}]},
          "added":{"rows":[{"name":"R2","item":"c"}],"tags":[{"name":"T1","tag":"x"}]}})");
  UpdatePlan plan = PlanUpdate(*note_, registry_, diff);
  ASSERT_EQ(plan.row_updates.size(), 1u);
  EXPECT_EQ(plan.row_updates[0].field->fieldname, "rows");
  EXPECT_EQ(plan.row_updates[0].child->name, "Note Row");
  ASSERT_EQ(plan.row_updates[0].rows->size(), 1u);
  EXPECT_EQ(NameOf((*plan.row_updates[0].rows)[0]), "R1");
  ASSERT_EQ(plan.added.size(), 2u);
  EXPECT_EQ(plan.added[0].child->name, "Note Row");
  EXPECT_EQ(plan.added[1].child->name, "Note Tag");
  EXPECT_TRUE(plan.replaced.empty());
}

TEST_F(UpdatePlanTest, AWholeTableInChangedReplacesItsRows) {
  DocDiff diff = Parse(R"({"changed":{"title":"t","rows":[{"name":"R1"}],"tags":null}})");
  UpdatePlan plan = PlanUpdate(*note_, registry_, diff);
  ASSERT_EQ(plan.replaced.size(), 2u);  // in field order
  EXPECT_EQ(plan.replaced[0].field->fieldname, "rows");
  ASSERT_NE(plan.replaced[0].rows, nullptr);
  EXPECT_EQ(plan.replaced[0].rows->size(), 1u);
  EXPECT_EQ(plan.replaced[1].field->fieldname, "tags");
  EXPECT_EQ(plan.replaced[1].rows, nullptr);  // emptied
  EXPECT_TRUE(plan.parent_skip.count("rows"));
  EXPECT_FALSE(plan.parent_skip.count("title"));
}

TEST_F(UpdatePlanTest, ParentDocstatusGoesToEveryChildTable) {
  DocDiff diff = Parse(R"({"changed":{"docstatus":1}})");
  UpdatePlan plan = PlanUpdate(*note_, registry_, diff);
  ASSERT_NE(plan.docstatus, nullptr);
  EXPECT_EQ(plan.docstatus->ToJson(), "1");
  ASSERT_EQ(plan.docstatus_tables.size(), 2u);
  EXPECT_EQ(plan.docstatus_tables[0].child->name, "Note Row");
  EXPECT_EQ(plan.docstatus_tables[1].child->name, "Note Tag");
}

TEST_F(UpdatePlanTest, NullDocstatusIsNotCopied) {
  DocDiff diff = Parse(R"({"changed":{"docstatus":null}})");
  EXPECT_EQ(PlanUpdate(*note_, registry_, diff).docstatus, nullptr);
}

TEST_F(UpdatePlanTest, ChildTableOf) {
  EXPECT_EQ(ChildTableOf(*note_, registry_, "rows").child, registry_.Find("Note Row"));
  EXPECT_EQ(ChildTableOf(*note_, registry_, "title").field, nullptr);
  EXPECT_EQ(ChildTableOf(*note_, registry_, "nope").child, nullptr);
}

TEST(ChildRowKey, ByNameOrRemoteName) {
  EXPECT_STREQ(ChildRowKey(true), "name");
  EXPECT_STREQ(ChildRowKey(false), "remote_docname");
}

}  // namespace
}  // namespace eventstream
