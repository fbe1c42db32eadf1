#include "libsync/model/row_groups.h"

#include "gtest/gtest.h"

namespace eventstream {
namespace {

using Groups = std::vector<std::vector<size_t>>;
using Parent = std::pair<std::string, std::string>;

RowKeys ParentRow(std::string doctype, std::optional<std::string> old_name,
                  std::optional<std::string> new_name) {
  RowKeys k;
  k.doctype = std::move(doctype);
  k.old_name = std::move(old_name);
  k.new_name = std::move(new_name);
  return k;
}

RowKeys ChildRow(std::string name, std::optional<Parent> old_parent,
                 std::optional<Parent> new_parent) {
  RowKeys k;
  k.doctype = "Note Item";
  k.child = true;
  if (old_parent) k.old_name = name;
  if (new_parent) k.new_name = name;
  k.old_parent = std::move(old_parent);
  k.new_parent = std::move(new_parent);
  return k;
}

TEST(GroupRowsByDocument, EachDocumentWithItsChildRows) {
  std::vector<RowKeys> rows = {
      ParentRow("Note", std::nullopt, "N1"),
      ParentRow("Note", std::nullopt, "N2"),
      ChildRow("N2-1", std::nullopt, Parent{"Note", "N2"}),
      ChildRow("N1-1", std::nullopt, Parent{"Note", "N1"}),
      ParentRow("Task", std::nullopt, "N1"),  // same name, other DocType
  };
  EXPECT_EQ(GroupRowsByDocument(rows), (Groups{{0, 3}, {1, 2}, {4}}));
}

TEST(GroupRowsByDocument, ChildRowsWithoutTheirParentRowAreOneDocument) {
  std::vector<RowKeys> rows = {
      ChildRow("a", Parent{"Note", "N1"}, Parent{"Note", "N1"}),
      ChildRow("b", Parent{"Note", "N1"}, std::nullopt),
      ChildRow("c", Parent{"Note", "N2"}, Parent{"Note", "N2"}),
  };
  EXPECT_EQ(GroupRowsByDocument(rows), (Groups{{0, 1}, {2}}));
}

TEST(GroupRowsByDocument, RenameJoinsOldAndNewName) {
  std::vector<RowKeys> rows = {
      ParentRow("Note", "N1", "N9"),
      ChildRow("a", Parent{"Note", "N1"}, Parent{"Note", "N9"}),
      ParentRow("Note", "N9", "N9"),  // edited after the rename
      ParentRow("Note", "N2", "N2"),
  };
  EXPECT_EQ(GroupRowsByDocument(rows), (Groups{{0, 1, 2}, {3}}));
}

TEST(GroupRowsByDocument, ChildRowMovedBetweenParentsJoinsBoth) {
  std::vector<RowKeys> rows = {
      ParentRow("Note", "N1", "N1"),
      ParentRow("Note", "N2", "N2"),
      ChildRow("a", Parent{"Note", "N1"}, Parent{"Note", "N2"}),
      ParentRow("Note", "N3", std::nullopt),
  };
  EXPECT_EQ(GroupRowsByDocument(rows), (Groups{{0, 1, 2}, {3}}));
}

TEST(GroupRowsByDocument, SameChildRowTwiceIsOneGroupAndChildNamesDoNotMeetDocuments) {
  std::vector<RowKeys> rows = {
      ChildRow("x", Parent{"Note", "N1"}, std::nullopt),
      ChildRow("x", std::nullopt, Parent{"Note", "N2"}),  // deleted, re-inserted
      ParentRow("Note Item", std::nullopt, "x"),          // a parent named like the row
  };
  EXPECT_EQ(GroupRowsByDocument(rows), (Groups{{0, 1}, {2}}));
  EXPECT_TRUE(GroupRowsByDocument({}).empty());
}

}  // namespace
}  // namespace eventstream
