#include "libsync/wal/wal_capture_plan.h"

#include "gtest/gtest.h"
#include "tests/unit/raw_rows.h"

namespace eventstream::wal {
namespace {

using testing_raw_rows::J;
using testing_raw_rows::NoteRegistry;

WalRowChange Change(std::string table, char op, std::optional<std::string> old_row,
                    std::optional<std::string> new_row, std::string schema = "public") {
  WalRowChange c;
  c.schema = std::move(schema);
  c.table = std::move(table);
  c.op = op;
  c.old_row = std::move(old_row);
  c.new_row = std::move(new_row);
  return c;
}

WalTransaction Tx(std::vector<WalRowChange> changes) {
  WalTransaction tx;
  tx.xid = 42;
  tx.txid = "42";
  tx.end_lsn = 1000;
  tx.changes = std::move(changes);
  return tx;
}

TEST(CapturedFrom, ParentsAndTheirChildTablesOnly) {
  CapturedTables c = CapturedFrom(NoteRegistry(), {"tabNote", "tabNote Item", "tabElse"});
  EXPECT_EQ(c.doctype_of_table,
            (std::map<std::string, std::string>{{"tabNote", "Note"}, {"tabNote Item", "Note Item"}}));
  EXPECT_EQ(c.parents_of_child["Note Item"], std::set<std::string>{"Note"});
  // A child table without its parent is not captured.
  EXPECT_TRUE(CapturedFrom(NoteRegistry(), {"tabNote Item"}).doctype_of_table.empty());
}

TEST(OriginOf, TheConsumersWatermarkRowNamesIt) {
  WalTransaction tx = Tx({Change("tabNote", 'I', {}, R"({"name":"N1"})"),
                          Change(kOriginTable, 'U', R"({"producer":"hq","last_seq":1})",
                                 R"({"producer":"hq","last_seq":2})", kOriginSchema)});
  EXPECT_EQ(OriginOf(tx), "hq");
  // The same table name in another schema is anyone's: no origin.
  tx.changes[1].schema = "public";
  EXPECT_EQ(OriginOf(tx), std::nullopt);
  tx.origin = "pg_16400";  // a replication origin
  EXPECT_EQ(OriginOf(tx), "pg_16400");
}

TEST(ToTxRows, CapturedRowsInWalOrderWithTheOrigin) {
  CapturedTables captured = CapturedFrom(NoteRegistry(), {"tabNote", "tabNote Item"});
  WalTransaction tx = Tx({
      Change("tabNote", 'I', {}, R"({"name":"N1","title":"a","site_col":1})"),
      Change("tabMemo", 'I', {}, R"({"name":"M1"})"),  // not published
      Change("tabNote Item", 'I', {},
             R"({"name":"I1","parent":"N1","parenttype":"Note","parentfield":"items"})"),
      Change("tabNote Item", 'I', {},
             R"({"name":"I2","parent":"X","parenttype":"Other","parentfield":"items"})"),
      Change("tabNote", 'U', R"({"name":"N0","title":"b"})", R"({"name":"N0","title":"b"})"),
      Change(kOriginTable, 'I', {}, R"({"producer":"hq"})", kOriginSchema),
  });
  TxRows rows = ToTxRows(NoteRegistry(), captured, tx, 10);
  EXPECT_EQ(rows.txid, "42");
  ASSERT_EQ(rows.rows.size(), 2u);  // N1 and I1; I2 (uncaptured parent), the no-op update gone
  EXPECT_EQ(rows.rows[0].id, 10);
  EXPECT_EQ(rows.rows[0].doctype, "Note");
  EXPECT_EQ(*rows.rows[0].new_row, J(R"({"name":"N1","title":"a"})"));  // registry columns
  EXPECT_EQ(rows.rows[1].id, 11);
  EXPECT_EQ(rows.rows[1].doctype, "Note Item");
  EXPECT_EQ(rows.last_id, 11);
  EXPECT_EQ(rows.rows[0].origin, "hq");
  EXPECT_EQ(rows.rows[1].origin, "hq");
}

TEST(ToTxRows, AnUpdateWithoutItsOldRowIsUnreadableNotAWrongDiff) {
  CapturedTables captured = CapturedFrom(NoteRegistry(), {"tabNote"});
  WalRowChange no_old = Change("tabNote", 'U', {}, R"({"name":"N1","title":"a"})");
  WalRowChange toast = Change("tabNote", 'U', R"({"name":"N2"})", R"({"name":"N2"})");
  toast.missing_columns = {"title"};
  TxRows rows = ToTxRows(NoteRegistry(), captured, Tx({no_old, toast}));
  ASSERT_EQ(rows.rows.size(), 2u);
  EXPECT_NE(rows.rows[0].unreadable.find("REPLICA IDENTITY FULL"), std::string::npos);
  EXPECT_NE(rows.rows[1].unreadable.find("[title]"), std::string::npos);
}

TEST(Confirm, SkipsWhatWasLoggedAndConfirmsTheServerOnlyWhenIdle) {
  WalTransaction tx = Tx({});
  EXPECT_TRUE(AlreadyLogged(tx, 1000));
  EXPECT_FALSE(AlreadyLogged(tx, 999));
  EXPECT_EQ(IdleConfirm(false, 0, 5000), 5000u);
  EXPECT_EQ(IdleConfirm(true, 0, 5000), 0u);
  EXPECT_EQ(IdleConfirm(false, 1, 5000), 0u);
}

}  // namespace
}  // namespace eventstream::wal
