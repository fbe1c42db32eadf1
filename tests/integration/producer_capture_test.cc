// Capture triggers + assembler against a real PostgreSQL: every update type,
// transactions, origins, commit order, concurrency; a document that cannot
// become an entry fails alone; only registry columns travel; and capture
// under least-privilege roles (the real producer binary as a producer role,
// an application role with table grants only, a consumer role).
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libsync/model/diff.h"
#include "libsync/model/doctype.h"
#include "libsync/base/migrate.h"
#include "libsync/base/pg.h"
#include "libsync/base/value.h"
#include "services/producer/assembler.h"
#include "services/producer/capture.h"
#include "services/producer/document_reader.h"
#include "eventstream/v1/producer.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tests/support/http_get.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/service_runner.h"
#include "tests/support/two_sites.h"
#include "tests/support/frappe_schema.h"
#include "tests/support/grpc/producer_calls.h"

namespace eventstream::testing {
namespace {

constexpr char kNumeric[] = "12345678901234567.123456789";
constexpr char kBigint[] = "9223372036854775807";

FieldDef Field(std::string name, std::string type, std::string options = "") {
  FieldDef f;
  f.fieldname = std::move(name);
  f.fieldtype = std::move(type);
  f.options = std::move(options);
  return f;
}

DocTypeRegistry MakeRegistry() {
  std::vector<DocTypeDef> defs(4);
  defs[0].name = "Note";
  defs[0].is_submittable = true;
  defs[0].fields = {Field("title", "Data"), Field("amount", "Currency"),
                    Field("big", "Int"), Field("items", "Table", "Note Item"),
                    Field("data", "JSON")};  // a column only where a test adds it
  defs[1].name = "Note Item";
  defs[1].istable = true;
  defs[1].fields = {Field("item", "Data"), Field("qty", "Float"),
                    Field("big", "Int")};
  defs[2].name = "Other";  // shares the child DocType, never captured
  defs[2].fields = {Field("title", "Data"),
                    Field("items", "Table", "Note Item")};
  defs[3].name = "Missing";  // registered, but its table is never created
  auto registry = DocTypeRegistry::Create(std::move(defs));
  EXPECT_TRUE(registry.ok()) << registry.status();
  return registry.ok() ? std::move(*registry) : DocTypeRegistry();
}

struct Entry {
  int64_t seq = 0;
  std::string doctype, docname, type;
  Value data;
  std::optional<std::string> origin;
};

class CaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = FreshDatabase("capture");
    conn_ = Connect();
    ASSERT_NE(conn_, nullptr);
    const char* standard =
        "name text PRIMARY KEY, creation timestamp(6) DEFAULT now(),"
        " modified timestamp(6) DEFAULT now(), modified_by text DEFAULT "
        "'Administrator',"
        " owner text DEFAULT 'Administrator', docstatus int NOT NULL DEFAULT 0,"
        " idx int NOT NULL DEFAULT 0";
    Exec(absl::StrCat("CREATE TABLE \"tabNote\" (", standard,
                      ", title text, amount numeric(30,9), big bigint)"));
    Exec(absl::StrCat("CREATE TABLE \"tabNote Item\" (", standard,
                      ", parent text, parenttype text, parentfield text,"
                      " item text, qty numeric(30,9), big bigint)"));
    Exec(
        absl::StrCat("CREATE TABLE \"tabOther\" (", standard, ", title text)"));
    ASSERT_TRUE(
        ApplyMigrations(conn_.get(), "es_producer", ProducerMigrations()).ok());
    registry_ = MakeRegistry();
    absl::Status s = installer_.SyncTriggers(conn_.get(), registry_, {"Note"});
    ASSERT_TRUE(s.ok()) << s;
  }

  std::unique_ptr<pg::Connection> Connect() {
    auto conn = pg::Connection::Open(SharedCluster().Url(db_));
    EXPECT_TRUE(conn.ok()) << conn.status();
    return conn.ok() ? std::move(*conn) : nullptr;
  }

  void Exec(const std::string& sql, const pg::Params& params = {},
            pg::Connection* conn = nullptr) {
    auto r = (conn ? conn : conn_.get())->Exec(sql, params);
    ASSERT_TRUE(r.ok()) << sql << ": " << r.status();
  }

  int Assemble(Assembler* assembler = nullptr) {
    Assembler local(registry_);
    auto n = (assembler ? assembler : &local)->AssembleOnce(conn_.get());
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? *n : -1;
  }

  std::vector<Entry> Entries(int64_t after = 0) {
    auto r = conn_->Exec(
        "SELECT seq, doctype, docname, update_type, data::text, origin"
        " FROM es_producer.update_log WHERE seq > $1 ORDER BY seq",
        {after});
    EXPECT_TRUE(r.ok()) << r.status();
    std::vector<Entry> out;
    if (!r.ok()) return out;
    for (int i = 0; i < r->rows(); ++i) {
      Entry e;
      e.seq = r->GetInt64(i, 0);
      e.doctype = std::string(r->Get(i, 1));
      e.docname = std::string(r->Get(i, 2));
      e.type = std::string(r->Get(i, 3));
      if (!r->IsNull(i, 4)) {
        absl::string_view text = r->Get(i, 4);
        auto v = Value::ParseJson(std::string_view(text.data(), text.size()));
        EXPECT_TRUE(v.ok()) << v.status();
        if (v.ok()) e.data = *v;
      }
      e.origin = r->GetOptional(i, 5);
      out.push_back(std::move(e));
    }
    return out;
  }

  int64_t Count(const std::string& sql) {
    auto r = conn_->Exec(sql);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->GetInt64(0, 0) : -1;
  }

  // A Note with two items, inserted in one transaction (items out of idx
  // order on purpose).
  void InsertNote(const std::string& name, pg::Connection* conn = nullptr) {
    auto c = conn ? conn : conn_.get();
    auto tx = pg::Transaction::Begin(c);
    ASSERT_TRUE(tx.ok());
    Exec(
        "INSERT INTO \"tabNote\" (name, title, amount, big) VALUES ($1, "
        "'hello', $2, $3)",
        {name, kNumeric, kBigint}, c);
    Exec(
        "INSERT INTO \"tabNote Item\" (name, parent, parenttype, parentfield, "
        "idx, item, qty,"
        " big) VALUES ($1, $2, 'Note', 'items', 2, 'second', '2.5', 2)",
        {name + "-i2", name}, c);
    Exec(
        "INSERT INTO \"tabNote Item\" (name, parent, parenttype, parentfield, "
        "idx, item, qty,"
        " big) VALUES ($1, $2, 'Note', 'items', 1, 'first', $3, $4)",
        {name + "-i1", name, kNumeric, kBigint}, c);
    ASSERT_TRUE((*tx)->Commit().ok());
  }

  std::string db_;
  std::unique_ptr<pg::Connection> conn_;
  DocTypeRegistry registry_;
  CaptureInstaller installer_;
};

const Value& At(const Value& v, std::string_view key) {
  static const Value kNull;
  const Value* f = v.Find(key);
  return f ? *f : kNull;
}

TEST_F(CaptureTest, CreateIsWholeDocumentWithChildrenAndExactNumbers) {
  InsertNote("N1");
  EXPECT_EQ(Assemble(), 1);
  auto entries = Entries();
  ASSERT_EQ(entries.size(), 1u);
  const Entry& e = entries[0];
  EXPECT_EQ(e.doctype, "Note");
  EXPECT_EQ(e.docname, "N1");
  EXPECT_EQ(e.type, "Create");
  EXPECT_FALSE(e.origin.has_value());
  EXPECT_EQ(At(e.data, "doctype"), Value::String("Note"));
  EXPECT_EQ(At(e.data, "name"), Value::String("N1"));
  EXPECT_EQ(At(e.data, "title"), Value::String("hello"));
  EXPECT_EQ(At(e.data, "amount"), Value::Number(kNumeric));
  EXPECT_EQ(At(e.data, "big"), Value::Number(kBigint));
  EXPECT_EQ(At(e.data, "docstatus"), Value::Int(0));
  ASSERT_TRUE(At(e.data, "items").is_array());
  const auto& items = At(e.data, "items").as_array();
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(At(items[0], "name"), Value::String("N1-i1"));  // ordered by idx
  EXPECT_EQ(At(items[0], "doctype"), Value::String("Note Item"));
  EXPECT_EQ(At(items[0], "qty"), Value::Number(kNumeric));
  EXPECT_EQ(At(items[0], "big"), Value::Number(kBigint));
  EXPECT_EQ(At(items[0], "parent"), Value::String("N1"));
  EXPECT_EQ(At(items[1], "name"), Value::String("N1-i2"));
  EXPECT_EQ(At(items[1], "qty"),
            Value::Number("2.500000000"));  // the column's scale
  // Consumed: nothing left, a second pass writes nothing.
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.raw_change"), 0);
  EXPECT_EQ(Assemble(), 0);
}

TEST_F(CaptureTest, CreateWithoutChildrenHasEmptyTable) {
  Exec("INSERT INTO \"tabNote\" (name, title) VALUES ('N0', 'x')");
  EXPECT_EQ(Assemble(), 1);
  auto entries = Entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(At(entries[0].data, "items"), Value::EmptyArray());
}

TEST_F(CaptureTest, UpdateReportsChangedAddedRemovedRowChanged) {
  InsertNote("N1");
  ASSERT_EQ(Assemble(), 1);
  {
    auto tx = pg::Transaction::Begin(conn_.get());
    Exec(
        "UPDATE \"tabNote\" SET title = 'changed', amount = '0.000000001',"
        " modified = now() + interval '1 second' WHERE name = 'N1'");
    Exec(
        "UPDATE \"tabNote Item\" SET qty = '99999999999999999.999999999' WHERE "
        "name = 'N1-i1'");
    Exec("DELETE FROM \"tabNote Item\" WHERE name = 'N1-i2'");
    Exec(
        "INSERT INTO \"tabNote Item\" (name, parent, parenttype, parentfield, "
        "idx, item)"
        " VALUES ('N1-i3', 'N1', 'Note', 'items', 3, 'third')");
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  EXPECT_EQ(Assemble(), 1);
  auto entries = Entries(1);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].type, "Update");
  EXPECT_EQ(entries[0].docname, "N1");
  auto diff = DocDiff::FromJson(entries[0].data);
  ASSERT_TRUE(diff.ok()) << diff.status();
  Value changed = Value::EmptyObject();
  changed["title"] = Value::String("changed");
  changed["amount"] = Value::Number("0.000000001");
  EXPECT_EQ(diff->changed, changed);  // modified is bookkeeping, not reported
  ASSERT_EQ(At(diff->added, "items").as_array().size(), 1u);
  EXPECT_EQ(At(At(diff->added, "items").as_array()[0], "name"),
            Value::String("N1-i3"));
  EXPECT_EQ(At(diff->removed, "items"),
            Value::FromArray({Value::String("N1-i2")}));
  ASSERT_EQ(At(diff->row_changed, "items").as_array().size(), 1u);
  const Value& rc = At(diff->row_changed, "items").as_array()[0];
  EXPECT_EQ(At(rc, "name"), Value::String("N1-i1"));
  EXPECT_EQ(At(rc, "qty"), Value::Number("99999999999999999.999999999"));
}

TEST_F(CaptureTest, ChildOnlyChangeIsUpdateOfParent) {
  InsertNote("N1");
  ASSERT_EQ(Assemble(), 1);
  Exec(
      "INSERT INTO \"tabNote Item\" (name, parent, parenttype, parentfield, "
      "idx, item)"
      " VALUES ('N1-i3', 'N1', 'Note', 'items', 3, 'third')");
  EXPECT_EQ(Assemble(), 1);
  auto entries = Entries(1);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].type, "Update");
  EXPECT_EQ(entries[0].doctype, "Note");
  EXPECT_EQ(entries[0].docname, "N1");
  EXPECT_EQ(At(entries[0].data, "changed"), Value::EmptyObject());
  EXPECT_EQ(At(At(entries[0].data, "added"), "items").as_array().size(), 1u);
}

TEST_F(CaptureTest, BookkeepingOnlyOrNoopUpdateIsNoEntry) {
  InsertNote("N1");
  ASSERT_EQ(Assemble(), 1);
  Exec(
      "UPDATE \"tabNote\" SET modified = now() + interval '1 hour',"
      " modified_by = 'someone' WHERE name = 'N1'");
  Exec("UPDATE \"tabNote\" SET title = title WHERE name = 'N1'");  // not even
                                                                   // captured
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.raw_change"), 1);
  EXPECT_EQ(Assemble(), 0);
  EXPECT_EQ(Entries(1).size(), 0u);
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.raw_change"), 0);
}

TEST_F(CaptureTest, SubmitIsUpdateAndCancelIsCancel) {
  InsertNote("N1");
  ASSERT_EQ(Assemble(), 1);
  {
    auto tx = pg::Transaction::Begin(conn_.get());
    Exec("UPDATE \"tabNote\" SET docstatus = 1 WHERE name = 'N1'");
    Exec("UPDATE \"tabNote Item\" SET docstatus = 1 WHERE parent = 'N1'");
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  ASSERT_EQ(Assemble(), 1);
  {
    auto tx = pg::Transaction::Begin(conn_.get());
    Exec("UPDATE \"tabNote\" SET docstatus = 2 WHERE name = 'N1'");
    Exec("UPDATE \"tabNote Item\" SET docstatus = 2 WHERE parent = 'N1'");
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  ASSERT_EQ(Assemble(), 1);
  auto entries = Entries(1);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].type, "Update");
  EXPECT_EQ(At(At(entries[0].data, "changed"), "docstatus"), Value::Int(1));
  EXPECT_EQ(entries[1].type, "Cancel");
  EXPECT_EQ(At(At(entries[1].data, "changed"), "docstatus"), Value::Int(2));
  // Child docstatus follows the parent's: not reported per row.
  EXPECT_EQ(At(entries[1].data, "row_changed"), Value::EmptyObject());
}

TEST_F(CaptureTest, RenameMovesChildrenWithoutDiff) {
  InsertNote("N1");
  ASSERT_EQ(Assemble(), 1);
  {
    auto tx = pg::Transaction::Begin(conn_.get());
    Exec("UPDATE \"tabNote\" SET name = 'N1-renamed' WHERE name = 'N1'");
    Exec(
        "UPDATE \"tabNote Item\" SET parent = 'N1-renamed' WHERE parent = "
        "'N1'");
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  ASSERT_EQ(Assemble(), 1);
  auto entries = Entries(1);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].type, "Rename");
  EXPECT_EQ(entries[0].docname, "N1-renamed");
  Value data = Value::EmptyObject();
  data["old_name"] = Value::String("N1");
  data["new_name"] = Value::String("N1-renamed");
  EXPECT_EQ(entries[0].data, data);
}

TEST_F(CaptureTest, RenamePlusEditIsRenameThenUpdate) {
  InsertNote("N1");
  ASSERT_EQ(Assemble(), 1);
  {
    auto tx = pg::Transaction::Begin(conn_.get());
    Exec(
        "UPDATE \"tabNote\" SET name = 'N2', title = 'moved' WHERE name = "
        "'N1'");
    Exec("UPDATE \"tabNote Item\" SET parent = 'N2' WHERE parent = 'N1'");
    Exec("UPDATE \"tabNote Item\" SET item = 'edited' WHERE name = 'N1-i2'");
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  ASSERT_EQ(Assemble(), 2);
  auto entries = Entries(1);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].type, "Rename");
  EXPECT_EQ(entries[1].type, "Update");
  EXPECT_EQ(entries[1].docname, "N2");
  Value changed = Value::EmptyObject();
  changed["title"] = Value::String("moved");
  EXPECT_EQ(At(entries[1].data, "changed"), changed);
  const auto& rows = At(At(entries[1].data, "row_changed"), "items").as_array();
  ASSERT_EQ(rows.size(), 1u);  // the other row's parent move is the rename's
  Value row = Value::EmptyObject();
  row["name"] = Value::String("N1-i2");
  row["item"] = Value::String("edited");
  EXPECT_EQ(rows[0], row);
}

TEST_F(CaptureTest, DeleteWithChildrenIsOneDelete) {
  InsertNote("N1");
  ASSERT_EQ(Assemble(), 1);
  {
    auto tx = pg::Transaction::Begin(conn_.get());
    Exec("DELETE FROM \"tabNote Item\" WHERE parent = 'N1'");
    Exec("DELETE FROM \"tabNote\" WHERE name = 'N1'");
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  ASSERT_EQ(Assemble(), 1);
  auto entries = Entries(1);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].type, "Delete");
  EXPECT_EQ(entries[0].docname, "N1");
  EXPECT_TRUE(entries[0].data.is_null());
  EXPECT_EQ(
      Count("SELECT count(*) FROM es_producer.update_log WHERE data IS NULL"),
      1);
}

TEST_F(CaptureTest, SeveralChangesInOneTransactionAreOneEntry) {
  {
    auto tx = pg::Transaction::Begin(conn_.get());
    Exec("INSERT INTO \"tabNote\" (name, title) VALUES ('N1', 'a')");
    Exec("UPDATE \"tabNote\" SET title = 'b' WHERE name = 'N1'");
    Exec(
        "INSERT INTO \"tabNote Item\" (name, parent, parenttype, parentfield, "
        "idx, item)"
        " VALUES ('c1', 'N1', 'Note', 'items', 1, 'x')");
    Exec("UPDATE \"tabNote Item\" SET item = 'y' WHERE name = 'c1'");
    Exec("UPDATE \"tabNote\" SET title = 'c' WHERE name = 'N1'");
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  EXPECT_EQ(Assemble(), 1);
  {
    auto tx = pg::Transaction::Begin(conn_.get());
    Exec("UPDATE \"tabNote\" SET title = 'd' WHERE name = 'N1'");
    Exec("UPDATE \"tabNote\" SET title = 'e' WHERE name = 'N1'");
    Exec("UPDATE \"tabNote Item\" SET item = 'z' WHERE name = 'c1'");
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  EXPECT_EQ(Assemble(), 1);
  auto entries = Entries();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].type, "Create");
  EXPECT_EQ(At(entries[0].data, "title"), Value::String("c"));
  EXPECT_EQ(At(At(entries[0].data, "items").as_array()[0], "item"),
            Value::String("y"));
  EXPECT_EQ(entries[1].type, "Update");
  EXPECT_EQ(At(At(entries[1].data, "changed"), "title"), Value::String("e"));
}

TEST_F(CaptureTest, InsertAndDeleteInOneTransactionIsNothing) {
  {
    auto tx = pg::Transaction::Begin(conn_.get());
    Exec("INSERT INTO \"tabNote\" (name, title) VALUES ('N1', 'a')");
    Exec(
        "INSERT INTO \"tabNote Item\" (name, parent, parenttype, parentfield, "
        "idx, item)"
        " VALUES ('c1', 'N1', 'Note', 'items', 1, 'x')");
    Exec("DELETE FROM \"tabNote Item\" WHERE parent = 'N1'");
    Exec("DELETE FROM \"tabNote\" WHERE name = 'N1'");
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  EXPECT_EQ(Assemble(), 0);
  EXPECT_EQ(Entries().size(), 0u);
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.raw_change"), 0);
}

TEST_F(CaptureTest, RollbackLeavesNothing) {
  {
    auto tx = pg::Transaction::Begin(conn_.get());
    Exec("INSERT INTO \"tabNote\" (name, title) VALUES ('N1', 'a')");
  }  // rolled back
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.raw_change"), 0);
  EXPECT_EQ(Assemble(), 0);
  EXPECT_EQ(Entries().size(), 0u);
}

TEST_F(CaptureTest, OriginIsRecorded) {
  {
    auto tx = pg::Transaction::Begin(conn_.get());
    Exec("SET LOCAL eventstream.origin = 'hq'");
    Exec("INSERT INTO \"tabNote\" (name, title) VALUES ('N1', 'from hq')");
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  Exec(
      "INSERT INTO \"tabNote\" (name, title) VALUES ('N2', 'local')");  // after
                                                                        // SET
                                                                        // LOCAL
                                                                        // ended
  EXPECT_EQ(Assemble(), 2);
  auto entries = Entries();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].origin, std::optional<std::string>("hq"));
  EXPECT_EQ(entries[1].origin, std::nullopt);
}

// Issue 13 item 1: a document nested deeper than the services read (1,000
// levels; PostgreSQL takes them) fails alone, visibly, and capture goes on:
// for the other document of its transaction, for later transactions, and
// for deep JSON in a column outside the registry.
TEST_F(CaptureTest, DeepJsonFailsOnlyItsDocumentAndIsRecorded) {
  Exec("ALTER TABLE \"tabNote\" ADD COLUMN data jsonb, ADD COLUMN site_data jsonb");
  const std::string deep = std::string(1000, '[') + std::string(1000, ']');
  std::string deep_txid;
  {
    auto tx = pg::Transaction::Begin(conn_.get());
    ASSERT_TRUE(tx.ok());
    Exec("INSERT INTO \"tabNote\" (name, title, data) VALUES ('DEEP', 'd', $1::jsonb)",
         {deep});
    Exec("INSERT INTO \"tabNote\" (name, title) VALUES ('N1', 'same transaction')");
    auto txid = conn_->Exec("SELECT pg_current_xact_id()::text");
    ASSERT_TRUE(txid.ok());
    deep_txid = std::string(txid->Get(0, 0));
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  InsertNote("N2");
  Exec("INSERT INTO \"tabNote\" (name, title, site_data) VALUES ('SITE', 's', $1::jsonb)",
       {deep});
  Exec("UPDATE \"tabNote\" SET title = 'd2' WHERE name = 'DEEP'");  // deep before and after
  InsertNote("N3");

  std::vector<CaptureFailure> failed;
  Assembler::Options options;
  options.on_failed = [&](const CaptureFailure& f) { failed.push_back(f); };
  Assembler assembler(registry_, options);
  auto n = assembler.AssembleOnce(conn_.get());
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 4);
  std::vector<std::string> got;
  for (const Entry& e : Entries()) got.push_back(e.type + ":" + e.docname);
  EXPECT_EQ(got, (std::vector<std::string>{"Create:N1", "Create:N2", "Create:SITE",
                                           "Create:N3"}));
  for (const Entry& e : Entries()) EXPECT_EQ(e.data.Find("site_data"), nullptr);

  ASSERT_EQ(failed.size(), 2u);
  EXPECT_EQ(failed[0].doctype, "Note");
  EXPECT_EQ(failed[0].docname, "DEEP");
  EXPECT_EQ(failed[0].txid, deep_txid);
  EXPECT_NE(failed[0].error.find("nesting deeper than 512"), std::string::npos)
      << failed[0].error;
  EXPECT_EQ(failed[1].docname, "DEEP");
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.raw_change"), 0);
  EXPECT_EQ(Count(absl::StrCat("SELECT count(*) FROM es_producer.capture_error"
                               " WHERE doctype = 'Note' AND docname = 'DEEP'"
                               " AND txid = '", deep_txid, "'::xid8 AND error LIKE '%nesting%'"
                               " AND jsonb_array_length(raw_rows) = 1"
                               " AND raw_rows->0->'new_row'->>'title' = 'd'")),
            1);
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.capture_error"), 2);

  // Reading documents: the deep one reads as absent (it fails no pull and no
  // GetDocument of another); deep JSON outside the registry is cut out.
  const DocTypeDef& note = *registry_.Find("Note");
  auto deep_doc = ReadDocument(conn_.get(), registry_, note, "DEEP");
  ASSERT_TRUE(deep_doc.ok()) << deep_doc.status();
  EXPECT_FALSE(deep_doc->has_value());
  auto site_doc = ReadDocument(conn_.get(), registry_, note, "SITE");
  ASSERT_TRUE(site_doc.ok()) << site_doc.status();
  ASSERT_TRUE(site_doc->has_value());
  EXPECT_EQ(At(**site_doc, "title"), Value::String("s"));
  EXPECT_EQ((*site_doc)->Find("site_data"), nullptr);

  // A later change that no longer carries the deep value is captured.
  Exec("UPDATE \"tabNote\" SET data = '[1]' WHERE name = 'DEEP'");  // old row deep: fails
  Exec("UPDATE \"tabNote\" SET title = 'd3' WHERE name = 'DEEP'");
  EXPECT_EQ(Assemble(&assembler), 1);
  EXPECT_EQ(failed.size(), 3u);
}

// A json column may hold a "\u0000" escape, which jsonb refuses: the site's
// write succeeds (the trigger built jsonb of the row until migration 0016
// and failed it), and the document is captured whole, its text as it was.
TEST_F(CaptureTest, JsonColumnWithWhatJsonbRefusesIsCapturedAndFailsNoWrite) {
  Exec("ALTER TABLE \"tabNote\" ADD COLUMN data json");
  Exec(R"(INSERT INTO "tabNote" (name, title, data) VALUES ('NUL', 'a', '{"x": "1\u0000"}'))");
  Exec(R"(UPDATE "tabNote" SET title = 'b' WHERE name = 'NUL')");
  Exec(R"(INSERT INTO "tabNote Item" (name, parent, parenttype, parentfield, idx, item)
          VALUES ('NUL-1', 'NUL', 'Note', 'items', 1, 'row'))");
  EXPECT_EQ(Assemble(), 3);
  std::vector<std::string> got;
  for (const Entry& e : Entries()) got.push_back(e.type + ":" + e.docname);
  EXPECT_EQ(got, (std::vector<std::string>{"Create:NUL", "Update:NUL", "Update:NUL"}));
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.update_log WHERE docname = 'NUL'"
                  " AND update_type = 'Create' AND data::text LIKE '%\\u0000%'"),
            1);
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.raw_change"), 0);

  // Too deep for the services and refused by PostgreSQL's JSON functions
  // as well: the document fails alone, its rows kept as text, named as the
  // trigger recorded it.
  const std::string deep = std::string(600, '[') + R"("\u0000")" + std::string(600, ']');
  Exec("INSERT INTO \"tabNote\" (name, title, data) VALUES ('DEEPNUL', 'd', $1::json)", {deep});
  Exec(R"(INSERT INTO "tabNote" (name, title) VALUES ('AFTER', 'a'))");
  EXPECT_EQ(Assemble(), 1);
  EXPECT_EQ(Entries().back().docname, "AFTER");
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.capture_error"
                  " WHERE raw_rows->0->>'new_row_text' LIKE '%DEEPNUL%\\u0000%'"
                  " AND doctype = 'Note' AND docname = 'DEEPNUL'"),
            1);
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.raw_change"), 0);
}

// Initial sync chunks read their documents' JSON as PostgreSQL builds it
// (ReadDocumentsJson): the same values ReadDocuments parses, children in
// order, columns outside the registry left out; a document too deep as a
// whole reads as ReadDocument has it (here: absent); missing names are left out.
TEST_F(CaptureTest, DocumentsJsonEqualsTheDocumentsRead) {
  Exec("ALTER TABLE \"tabNote\" ADD COLUMN data jsonb, ADD COLUMN secret text");
  Exec("ALTER TABLE \"tabNote Item\" ADD COLUMN secret text");
  InsertNote("N1");
  InsertNote("N2");
  Exec("UPDATE \"tabNote\" SET secret = 's3cret', data = '{\"a\": [1.50, \"x\"]}'"
       " WHERE name = 'N1'");
  Exec("UPDATE \"tabNote Item\" SET secret = 's3cret', idx = 10 - idx WHERE parent = 'N1'");
  Exec("INSERT INTO \"tabNote\" (name, title, data) VALUES ('DEEP', 'd', $1::jsonb)",
       {std::string(1000, '[') + std::string(1000, ']')});
  Exec("INSERT INTO \"tabNote\" (name, title) VALUES ('BARE', 'no rows')");
  const DocTypeDef& note = *registry_.Find("Note");
  const std::vector<std::string> names = {"N1", "N2", "DEEP", "BARE", "MISSING"};
  auto json = ReadDocumentsJson(conn_.get(), registry_, note, names);
  ASSERT_TRUE(json.ok()) << json.status();
  auto docs = ReadDocuments(conn_.get(), registry_, note, names);
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(json->size(), 3u);
  ASSERT_EQ(docs->size(), 3u);
  for (const auto& [name, doc] : *docs) {
    ASSERT_EQ(json->count(name), 1u) << name;
    auto parsed = Value::ParseJson(json->at(name));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, doc) << name;
    EXPECT_EQ(json->at(name).find("secret"), std::string::npos) << json->at(name);
  }
  const Value n1 = *Value::ParseJson(json->at("N1"));
  ASSERT_EQ(At(n1, "items").as_array().size(), 2u);
  EXPECT_EQ(At(At(n1, "items").as_array()[0], "name"), Value::String("N1-i2"));  // idx 8
  EXPECT_EQ(At(At(n1, "items").as_array()[0], "doctype"), Value::String("Note Item"));
  EXPECT_EQ(At(*Value::ParseJson(json->at("BARE")), "items"), Value::EmptyArray());
}

// Issue 13 item 5: columns the site added for itself (not in the registry)
// are in no entry, and a change of only such a column is no entry.
TEST_F(CaptureTest, SiteColumnsOutsideTheRegistryAreNotCaptured) {
  Exec("ALTER TABLE \"tabNote\" ADD COLUMN secret text");
  Exec("ALTER TABLE \"tabNote Item\" ADD COLUMN secret text");
  InsertNote("N1");
  Exec("UPDATE \"tabNote\" SET secret = 's3cret-parent' WHERE name = 'N1'");
  Exec("UPDATE \"tabNote Item\" SET secret = 's3cret-child' WHERE parent = 'N1'");
  EXPECT_EQ(Assemble(), 1);  // the Create; the secret-only updates are nothing
  {
    auto tx = pg::Transaction::Begin(conn_.get());
    Exec("UPDATE \"tabNote\" SET title = 'v2', secret = 's3cret-2' WHERE name = 'N1'");
    Exec("UPDATE \"tabNote Item\" SET qty = 7, secret = 's3cret-3' WHERE name = 'N1-i1'");
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  EXPECT_EQ(Assemble(), 1);
  auto entries = Entries();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].type, "Create");
  EXPECT_EQ(entries[1].type, "Update");
  for (const Entry& e : entries) {
    EXPECT_EQ(e.data.ToJson().find("s3cret"), std::string::npos) << e.data.ToJson();
    EXPECT_EQ(e.data.ToJson().find("secret"), std::string::npos) << e.data.ToJson();
  }
  EXPECT_EQ(At(At(entries[1].data, "changed"), "title"), Value::String("v2"));
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.update_log"
                  " WHERE data::text LIKE '%s3cret%'"),
            0);

  auto doc = ReadDocument(conn_.get(), registry_, *registry_.Find("Note"), "N1");
  ASSERT_TRUE(doc.ok()) << doc.status();
  ASSERT_TRUE(doc->has_value());
  EXPECT_EQ(At(**doc, "title"), Value::String("v2"));
  EXPECT_EQ(At(**doc, "items").as_array().size(), 2u);
  EXPECT_EQ((*doc)->ToJson().find("secret"), std::string::npos) << (*doc)->ToJson();
}

TEST_F(CaptureTest, UncapturedDocTypesAndParentsAreNotLogged) {
  Exec("INSERT INTO \"tabOther\" (name, title) VALUES ('O1', 'x')");
  // A row of the shared child DocType that belongs to the uncaptured parent.
  Exec(
      "INSERT INTO \"tabNote Item\" (name, parent, parenttype, parentfield, "
      "idx, item)"
      " VALUES ('o-c1', 'O1', 'Other', 'items', 1, 'x')");
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.raw_change"), 0);
  EXPECT_EQ(Assemble(), 0);
}

// A transaction that starts first and commits last is not skipped by a
// consumer whose watermark already passed entries committed in between.
TEST_F(CaptureTest, LateCommitGetsHigherSeqThanEntriesCommittedMeanwhile) {
  auto a = Connect();
  auto b = Connect();
  auto tx_a = pg::Transaction::Begin(a.get());
  ASSERT_TRUE(tx_a.ok());
  Exec("INSERT INTO \"tabNote\" (name, title) VALUES ('A', 'first writer')", {},
       a.get());
  {
    auto tx_b = pg::Transaction::Begin(b.get());
    Exec("INSERT INTO \"tabNote\" (name, title) VALUES ('B', 'second writer')",
         {}, b.get());
    ASSERT_TRUE((*tx_b)->Commit().ok());
  }
  ASSERT_EQ(Assemble(), 1);  // B only: A's rows are invisible until it commits
  auto seen = Entries();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].docname, "B");
  int64_t watermark = seen.back().seq;  // a consumer pulled B

  ASSERT_TRUE((*tx_a)->Commit().ok());
  ASSERT_EQ(Assemble(), 1);
  auto next = Entries(watermark);  // the consumer's next pull: seq > watermark
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].docname, "A");
  EXPECT_GT(next[0].seq, watermark);
}

// The case that rules out a `txid < snapshot xmin` filter: S has the lower
// txid but writes row X after T committed its own write of X, while an
// unrelated transaction R stays open. X's entries must be T's, then S's.
TEST_F(CaptureTest, SameRowOrderHoldsWithLongRunningTransactionOpen) {
  InsertNote("X");
  InsertNote("Y");
  ASSERT_EQ(Assemble(), 2);
  auto s = Connect(), r = Connect(), t = Connect();
  auto tx_s = pg::Transaction::Begin(s.get());
  Exec("UPDATE \"tabNote\" SET title = 's-was-here' WHERE name = 'Y'", {},
       s.get());  // S: xid
  auto tx_r = pg::Transaction::Begin(r.get());
  Exec("SELECT pg_current_xact_id()", {},
       r.get());  // R: a later xid, stays open
  {
    auto tx_t = pg::Transaction::Begin(t.get());
    Exec("UPDATE \"tabNote\" SET title = 'by T' WHERE name = 'X'", {}, t.get());
    ASSERT_TRUE((*tx_t)->Commit().ok());
  }
  Exec("UPDATE \"tabNote\" SET title = 'by S' WHERE name = 'X'", {}, s.get());
  ASSERT_TRUE((*tx_s)->Commit().ok());
  ASSERT_EQ(Assemble(), 3);
  ASSERT_TRUE((*tx_r)->Commit().ok());
  auto entries = Entries(2);
  std::vector<std::string> x_titles;
  for (const Entry& e : entries) {
    if (e.docname == "X") {
      x_titles.push_back(At(At(e.data, "changed"), "title").as_string());
    }
  }
  EXPECT_EQ(x_titles, (std::vector<std::string>{"by T", "by S"}));
}

TEST_F(CaptureTest, BatchLimitNeverSplitsATransactionAndKeepsOrder) {
  // 3 transactions of 3 raw rows each (parent + 2 children), plus one of
  // 10 rows; limit 4 raw rows per call.
  for (const char* n : {"B1", "B2", "B3"}) InsertNote(n);
  {
    auto tx = pg::Transaction::Begin(conn_.get());
    for (int i = 0; i < 10; ++i) {
      Exec("INSERT INTO \"tabNote\" (name, title) VALUES ($1, 'big tx')",
           {absl::StrCat("L", i)});
    }
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  Assembler::Options four;
  four.max_raw_rows = 4;
  Assembler small(registry_, four);
  std::vector<int> per_call;
  while (true) {
    bool more = false;
    auto n = small.AssembleOnce(conn_.get(), nullptr, &more);
    ASSERT_TRUE(n.ok()) << n.status();
    if (*n == 0 && !more) break;
    per_call.push_back(*n);
    ASSERT_LT(per_call.size(), 10u);
  }
  // Each call takes whole transactions: 1, 1, 1 (3 rows each), then 10.
  EXPECT_EQ(per_call, (std::vector<int>{1, 1, 1, 10}));
  auto entries = Entries();
  ASSERT_EQ(entries.size(), 13u);
  EXPECT_EQ(entries[0].docname, "B1");
  EXPECT_EQ(entries[2].docname, "B3");
  EXPECT_EQ(entries[3].docname, "L0");
}

// Autovacuum analyses raw_change when it finds it drained (pages, no live
// rows: the planner then expects it to stay empty). The next burst must
// still be assembled with plans linear in its size: with the window as one
// `txid IN (SELECT ... LIMIT n)` statement, the planner chose a nested
// loop rescanning the window per row, and one call ran for minutes. Each
// statement here gets a 10 s statement_timeout, 20x what it needs.
TEST_F(CaptureTest, BurstAfterAnalyzeOfDrainedQueueIsAssembled) {
  Exec("INSERT INTO \"tabNote\" (name, title) SELECT 'A' || i, 'a'"
       " FROM generate_series(1, 20000) i");
  Assembler assembler(registry_);
  while (Count("SELECT count(*) FROM es_producer.raw_change") > 0) {
    ASSERT_GT(Assemble(&assembler), 0);
  }
  Exec("ANALYZE es_producer.raw_change");
  ASSERT_EQ(Count("SELECT reltuples::bigint FROM pg_class"
                  " WHERE oid = 'es_producer.raw_change'::regclass"), 0);
  // 60,000 raw rows from 15,000 transactions (a Note and 3 items each).
  Exec("SET synchronous_commit = off");
  Exec("DO $$ BEGIN FOR i IN 1..15000 LOOP"
       " INSERT INTO \"tabNote\" (name, title) VALUES ('B' || i, 'b');"
       " INSERT INTO \"tabNote Item\" (name, parent, parenttype, parentfield, item)"
       "  SELECT 'B' || i || '-' || k, 'B' || i, 'Note', 'items', 'x'"
       "  FROM generate_series(1, 3) k;"
       " COMMIT; END LOOP; END $$");
  // A long-running producer reuses generic plans of its prepared statements
  // (PostgreSQL switches after five executions); take them at once.
  Exec("SET plan_cache_mode = force_generic_plan");
  Exec("SET statement_timeout = '10s'");
  for (int guard = 0; guard < 100; ++guard) {
    if (Count("SELECT count(*) FROM es_producer.raw_change") == 0) break;
    auto n = assembler.AssembleOnce(conn_.get());
    ASSERT_TRUE(n.ok()) << n.status();
  }
  Exec("RESET statement_timeout");
  Exec("RESET plan_cache_mode");
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.raw_change"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.update_log WHERE docname LIKE 'B%'"),
            15000);
}

TEST_F(CaptureTest, TriggerRemovalStopsCaptureAndSyncIsIdempotent) {
  CaptureInstaller::Summary summary;
  ASSERT_TRUE(
      installer_.SyncTriggers(conn_.get(), registry_, {"Note"}, &summary).ok());
  EXPECT_EQ(summary.created, 0);
  EXPECT_EQ(summary.unchanged, 2);  // tabNote and tabNote Item
  EXPECT_EQ(
      Count("SELECT count(*) FROM pg_trigger WHERE tgname = 'es_capture'"), 2);

  // Capturing Other too changes the shared child table's arguments.
  ASSERT_TRUE(
      installer_
          .SyncTriggers(conn_.get(), registry_, {"Note", "Other"}, &summary)
          .ok());
  EXPECT_EQ(summary.created, 2);  // tabOther, tabNote Item (re-created)
  EXPECT_EQ(summary.unchanged, 1);
  Exec(
      "INSERT INTO \"tabNote Item\" (name, parent, parenttype, parentfield, "
      "idx, item)"
      " VALUES ('o-c1', 'O1', 'Other', 'items', 1, 'x')");
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.raw_change"), 1);
  ASSERT_EQ(Assemble(), 1);

  ASSERT_TRUE(
      installer_.SyncTriggers(conn_.get(), registry_, {}, &summary).ok());
  EXPECT_EQ(summary.dropped, 3);
  EXPECT_EQ(
      Count("SELECT count(*) FROM pg_trigger WHERE tgname = 'es_capture'"), 0);
  InsertNote("N9");
  Exec("UPDATE \"tabOther\" SET title = 'y'");
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.raw_change"), 0);
  EXPECT_EQ(Assemble(), 0);
}

TEST_F(CaptureTest, SyncErrorsNameTheDocTypeOrTable) {
  absl::Status s =
      installer_.SyncTriggers(conn_.get(), registry_, {"Note", "Nope"});
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("Nope"), absl::string_view::npos) << s;
  s = installer_.SyncTriggers(conn_.get(), registry_, {"Missing"});
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("\"tabMissing\""), absl::string_view::npos) << s;
  s = installer_.SyncTriggers(conn_.get(), registry_, {"Note Item"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  // A table without a column the trigger reads gets no trigger (it would
  // fail the site's writes).
  Exec("DROP TABLE \"tabOther\"");
  Exec("CREATE TABLE \"tabOther\" (title text)");
  s = installer_.SyncTriggers(conn_.get(), registry_, {"Note", "Other"});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("\"tabOther\" of DocType \"Other\" has no column \"name\""),
            absl::string_view::npos)
      << s;
  Exec("ALTER TABLE \"tabNote Item\" DROP COLUMN parenttype");
  s = installer_.SyncTriggers(conn_.get(), registry_, {"Note"});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("has no column \"parenttype\""), absl::string_view::npos) << s;
  // Failed syncs changed nothing.
  EXPECT_EQ(
      Count("SELECT count(*) FROM pg_trigger WHERE tgname = 'es_capture'"), 2);
}

TEST_F(CaptureTest, TwoAssemblersDoNotDuplicate) {
  constexpr int kDocs = 300;
  for (int i = 0; i < kDocs; ++i) {
    Exec("INSERT INTO \"tabNote\" (name, title) VALUES ($1, 'x')",
         {absl::StrCat("D", i)});
  }
  Assembler::Options seven;
  seven.max_raw_rows = 7;
  Assembler small(registry_, seven);
  std::atomic<int> total{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      auto conn = Connect();
      auto deadline =
          std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (total.load() < kDocs &&
             std::chrono::steady_clock::now() < deadline) {
        auto n = small.AssembleOnce(conn.get());
        ASSERT_TRUE(n.ok()) << n.status();
        total += *n;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(total.load(), kDocs);
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.update_log"), kDocs);
  EXPECT_EQ(Count("SELECT count(DISTINCT docname) FROM es_producer.update_log"),
            kDocs);
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.raw_change"), 0);
}

// 8 writers, each creating documents (parent + child in one statement) and
// then updating them, some updates rolled back, while two assembler loops
// (two "replicas") run: exactly one entry per committed change, and each
// document's Create precedes its Update.
TEST_F(CaptureTest, ConcurrentWritersGetExactlyOneEntryPerCommittedChange) {
  constexpr int kThreads = 8;
  constexpr int kDocsPerThread = 2000;
  Assembler assembler(registry_);
  std::atomic<int64_t> notified{0};
  AssemblerLoop::Options loop_options;
  loop_options.database_url = SharedCluster().Url(db_);
  auto on_entries = [&](int64_t seq) {
    int64_t prev = notified.load();
    while (seq > prev && !notified.compare_exchange_weak(prev, seq)) {
    }
  };
  AssemblerLoop loop1(&assembler, loop_options, on_entries);
  AssemblerLoop loop2(&assembler, loop_options, on_entries);
  loop1.Start();
  loop2.Start();

  auto start = std::chrono::steady_clock::now();
  std::atomic<int> rolled_back{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      auto conn = Connect();
      ASSERT_NE(conn, nullptr);
      for (int i = 0; i < kDocsPerThread; ++i) {
        std::string name = absl::StrCat("W", t, "-", i);
        auto ins = conn->ExecPrepared(
            "ins",
            "WITH p AS (INSERT INTO \"tabNote\" (name, title, amount) VALUES "
            "($1, 'v1', $2)"
            "           RETURNING name)"
            " INSERT INTO \"tabNote Item\" (name, parent, parenttype, "
            "parentfield, idx, item)"
            " SELECT name || '-c', name, 'Note', 'items', 1, 'c' FROM p",
            {name, kNumeric});
        ASSERT_TRUE(ins.ok()) << ins.status();
        if (i % 10 == 0) {
          auto tx = pg::Transaction::Begin(conn.get());
          ASSERT_TRUE(conn->ExecPrepared("upd_rb",
                                         "UPDATE \"tabNote\" SET title = 'lost'"
                                         " WHERE name = $1",
                                         {name})
                          .ok());
          ++rolled_back;
        }  // rolled back
        auto upd = conn->ExecPrepared(
            "upd", "UPDATE \"tabNote\" SET title = 'v2' WHERE name = $1",
            {name});
        ASSERT_TRUE(upd.ok()) << upd.status();
      }
    });
  }
  for (auto& w : writers) w.join();
  auto wrote = std::chrono::steady_clock::now();

  const int64_t expected = 2LL * kThreads * kDocsPerThread;
  for (int i = 0;
       i < 1000 && Count("SELECT count(*) FROM es_producer.raw_change") > 0;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  loop1.Stop();
  loop2.Stop();
  auto done = std::chrono::steady_clock::now();
  auto ms = [](auto d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  };
  std::cout << "[ info ] " << kThreads << "x" << kDocsPerThread
            << " docs: writes " << ms(wrote - start) << " ms, drained "
            << ms(done - wrote) << " ms later\n";

  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.raw_change"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.update_log"), expected);
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.update_log WHERE "
                  "update_type = 'Create'"),
            expected / 2);
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.update_log WHERE "
                  "update_type = 'Update'"
                  " AND data->'changed'->>'title' = 'v2'"),
            expected / 2);
  EXPECT_EQ(Count("SELECT count(*) FROM es_producer.update_log WHERE "
                  "data::text LIKE '%lost%'"),
            0);
  // Per document: exactly Create then Update, in that seq order.
  EXPECT_EQ(Count("SELECT count(*) FROM (SELECT docname,"
                  "   array_agg(update_type ORDER BY seq) AS types"
                  "   FROM es_producer.update_log GROUP BY docname) d"
                  " WHERE types <> ARRAY['Create', 'Update']"),
            0);
  EXPECT_EQ(Count("SELECT count(DISTINCT seq) FROM es_producer.update_log"),
            expected);
  EXPECT_EQ(notified.load(),
            Count("SELECT max(seq) FROM es_producer.update_log"));
  EXPECT_GT(rolled_back.load(), 0);
}

// Issue 13 items 1, 5 and 11 with the real producer binary, connected as a
// producer role that has only what docs/design.md "Database roles" lists
// (CREATE on the database; SELECT and TRIGGER on the site's tables); the
// site's application writes as a role with SELECT/INSERT/UPDATE/DELETE on
// its tables and nothing else; a consumer role has the same table grants
// plus EXECUTE on es_producer.may_mark_origin(). The tables are owned by the
// test's superuser, as a site's DDL role would own them.
class SiteRolesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = FreshDatabase("roles");
    producer_role_ = db_ + "_producer";
    app_role_ = db_ + "_app";
    consumer_role_ = db_ + "_consumer";
    admin_ = Open("postgres");
    ASSERT_NE(admin_, nullptr);
    const std::string tables = R"("tabNote", "tabNote Item")";
    ASSERT_TRUE(admin_->ExecScript(absl::StrCat(R"(
      CREATE TABLE "tabNote" (name text PRIMARY KEY, creation timestamptz,
        modified timestamptz, modified_by text, owner text, docstatus int DEFAULT 0,
        idx int DEFAULT 0, title text, data jsonb, secret text);
      CREATE TABLE "tabNote Item" (name text PRIMARY KEY, creation timestamptz,
        modified timestamptz, modified_by text, owner text, docstatus int DEFAULT 0,
        idx int DEFAULT 0, parent text, parenttype text, parentfield text, item text,
        secret text);
      CREATE ROLE ")", producer_role_, R"(" LOGIN;
      CREATE ROLE ")", app_role_, R"(" LOGIN;
      CREATE ROLE ")", consumer_role_, R"(" LOGIN;
      GRANT CREATE ON DATABASE ")", db_, R"(" TO ")", producer_role_, R"(";
      GRANT SELECT, TRIGGER ON )", tables, R"( TO ")", producer_role_, R"(";
      GRANT SELECT, INSERT, UPDATE, DELETE ON )", tables, R"( TO ")", app_role_,
                                                   R"(", ")", consumer_role_, R"(";
    )")).ok());
    metrics_port_ = FreeTcpPort();
    auto svc = StartService("eventstream-producer", Config(), KeySecrets());
    ASSERT_TRUE(svc.ok()) << svc.status();
    service_ = std::move(*svc);
    stub_ = ProducerStub(service_.address());
    // branch1 registers (pre-approved): the producer installs the triggers.
    // Its condition makes pulls read current documents.
    v1::RegisterConsumerResponse resp;
    grpc::Status s = Register(stub_.get(), kB1, "branch1", {Sub("Note", "doc.title != 'hidden'")},
                              &resp);
    ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << service_.process->Log();
    ASSERT_EQ(QueryInt(admin_.get(), "SELECT count(*) FROM pg_trigger WHERE tgname = 'es_capture'"),
              2);
    // The grant an operator gives the consumer's role (the owner gives it).
    auto producer = Open(producer_role_);
    ASSERT_NE(producer, nullptr);
    ASSERT_TRUE(producer->Exec(absl::StrCat("GRANT EXECUTE ON FUNCTION es_producer.may_mark_origin() TO ",
                                            pg::QuoteIdentifier(consumer_role_))).ok());
    app_ = Open(app_role_);
    consumer_ = Open(consumer_role_);
    ASSERT_NE(app_, nullptr);
    ASSERT_NE(consumer_, nullptr);
  }

  std::unique_ptr<pg::Connection> Open(const std::string& user) {
    std::string url = SharedCluster().Url(db_);
    url.replace(url.find("user=postgres"), 13, "user=" + user);
    auto conn = pg::Connection::Open(url);
    EXPECT_TRUE(conn.ok()) << conn.status();
    return conn.ok() ? std::move(*conn) : nullptr;
  }

  std::string Config() {
    std::string url = SharedCluster().Url(db_);
    url.replace(url.find("user=postgres"), 13, "user=" + producer_role_);
    ProducerYaml yaml;
    yaml.url = url;
    yaml.doctypes = NoteDocType({"data", "items"}) + NoteItemDocType({});
    yaml.metrics_port = metrics_port_;
    yaml.extra = "  consumers: [{site: branch1, doctypes: [{doctype: Note, status: approved}]}]\n";
    return ProducerConfigYaml(yaml);
  }

  void Write(pg::Connection* conn, const std::string& sql) {
    absl::Status s = conn->ExecScript(sql);
    ASSERT_TRUE(s.ok()) << s << "\n" << sql;
  }

  // Waits until the assembler consumed every raw row.
  void Drained() {
    ASSERT_TRUE(Eventually([&] {
      return QueryInt(admin_.get(), "SELECT count(*) FROM es_producer.raw_change") == 0;
    })) << service_.process->Log();
  }

  v1::PullUpdatesResponse Pull() {
    v1::PullUpdatesResponse resp;
    grpc::Status s = eventstream::testing::Pull(stub_.get(), kB1, 0, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  // "CREATE:N1 UPDATE:N1 ..." of a pull from the start.
  std::string PulledSummary() { return Summary(Pull()); }

  // branch1 unsubscribes from Note, or subscribes again.
  void Subscribe(bool unsubscribe) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", kB1);
    v1::UpdateSubscriptionRequest req;
    req.set_consumer_site("branch1");
    auto* sub = req.add_doctypes();
    sub->set_doctype("Note");
    sub->set_unsubscribe(unsubscribe);
    v1::UpdateSubscriptionResponse resp;
    grpc::Status s = stub_->UpdateSubscription(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message() << "\n" << service_.process->Log();
  }

  std::string db_, producer_role_, app_role_, consumer_role_;
  int metrics_port_ = 0;
  std::unique_ptr<pg::Connection> admin_, app_, consumer_;
  RunningService service_;
  std::unique_ptr<v1::Producer::Stub> stub_;
};

// Issue 13 item 11: the application role's writes are captured with table
// grants only; it can neither forge queue rows nor hide its writes with the
// origin marker; the consumer role's marked writes are still not echoed.
TEST_F(SiteRolesTest, ApplicationRoleIsCapturedAndCannotForgeOrHide) {
  Write(app_.get(), R"(INSERT INTO "tabNote" (name, title) VALUES ('A1', 'by the app'))");
  Write(app_.get(), R"(BEGIN; SET LOCAL eventstream.origin = 'branch1';
    INSERT INTO "tabNote" (name, title) VALUES ('A2', 'trying to hide');
    SELECT set_config('eventstream.origin', 'branch1', true);
    UPDATE "tabNote" SET title = 'still trying' WHERE name = 'A1'; COMMIT;)");
  // The consumer's own statement (services/consumer/applier.cc).
  Write(consumer_.get(), R"(BEGIN; SELECT set_config('eventstream.origin', 'branch1', true);
    INSERT INTO "tabNote" (name, title) VALUES ('C1', 'applied from branch1'); COMMIT;)");

  for (const char* forged : {
           "INSERT INTO es_producer.raw_change (table_name, doctype, op, new_row)"
           " VALUES ('tabNote', 'Note', 'I', '{\"name\": \"FORGED\"}')",
           "INSERT INTO es_producer.update_log (seq, doctype, docname, update_type, txid)"
           " VALUES (999, 'Note', 'FORGED', 'Delete', pg_current_xact_id())",
           "DELETE FROM es_producer.raw_change",
       }) {
    auto r = app_->Exec(forged);
    ASSERT_FALSE(r.ok()) << forged;
    EXPECT_EQ(pg::SqlStateOf(r.status()), "42501") << r.status();  // insufficient_privilege
  }
  Drained();
  EXPECT_EQ(QueryText(admin_.get(),
                      "SELECT string_agg(docname || ':' || coalesce(origin, 'local'), ' '"
                      " ORDER BY seq) FROM es_producer.update_log"),
            "A1:local A2:local A1:local C1:branch1");
  // C1 is not echoed; the subscription has a condition, so its documents
  // move in as SYNCs (membership, issue 14).
  EXPECT_EQ(PulledSummary(), "SYNC:A1 SYNC:A2 UPDATE:A1");
}

// Issue 13 item 5: a site column outside the registry travels neither in
// entries nor through GetDocument / FindDocuments.
TEST_F(SiteRolesTest, SiteColumnsTravelNowhere) {
  Write(app_.get(), R"(BEGIN;
    INSERT INTO "tabNote" (name, title, secret) VALUES ('S1', 'note', 's3cret-1');
    INSERT INTO "tabNote Item" (name, parent, parenttype, parentfield, idx, item, secret)
      VALUES ('S1-1', 'S1', 'Note', 'items', 1, 'row', 's3cret-2');
    COMMIT;
    UPDATE "tabNote" SET title = 'note 2', secret = 's3cret-3' WHERE name = 'S1';)");
  Drained();
  v1::PullUpdatesResponse pulled = Pull();
  ASSERT_EQ(pulled.entries_size(), 2) << pulled.DebugString();
  for (const auto& e : pulled.entries()) {
    EXPECT_EQ(e.data_json().find("s3cret"), std::string::npos) << e.data_json();
    EXPECT_EQ(e.data_json().find("secret"), std::string::npos) << e.data_json();
  }

  grpc::ClientContext get_ctx;
  get_ctx.AddMetadata("authorization", kB1);
  v1::GetDocumentRequest get;
  get.set_doctype("Note");
  get.set_name("S1");
  v1::GetDocumentResponse got;
  grpc::Status s = stub_->GetDocument(&get_ctx, get, &got);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_NE(got.document_json().find("note 2"), std::string::npos) << got.document_json();
  EXPECT_NE(got.document_json().find("S1-1"), std::string::npos) << got.document_json();
  EXPECT_EQ(got.document_json().find("secret"), std::string::npos) << got.document_json();

  grpc::ClientContext find_ctx;
  find_ctx.AddMetadata("authorization", kB1);
  v1::FindDocumentsRequest find;
  find.set_doctype("Note");
  (*find.mutable_filters())["title"] = "note 2";
  v1::FindDocumentsResponse found;
  s = stub_->FindDocuments(&find_ctx, find, &found);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(found.documents_json_size(), 1);
  EXPECT_EQ(found.documents_json(0).find("secret"), std::string::npos)
      << found.documents_json(0);
}

// Issue 13 item 1 end to end: a deep document is logged (DocType, name,
// txid), counted and recorded; the other documents replicate, and the pull
// (whose condition reads current documents) is not held up by it.
TEST_F(SiteRolesTest, DeepDocumentIsAVisibleErrorAndReplicationGoesOn) {
  const std::string deep = std::string(1000, '[') + std::string(1000, ']');
  Write(app_.get(), R"(INSERT INTO "tabNote" (name, title) VALUES ('D1', 'shallow first'))");
  Drained();
  auto r = app_->Exec(R"(UPDATE "tabNote" SET data = $1::jsonb WHERE name = 'D1'
                         RETURNING pg_current_xact_id()::text)",
                      {deep});
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string txid(r->Get(0, 0));
  Write(app_.get(), R"(INSERT INTO "tabNote" (name, title) VALUES ('N1', 'after it'))");
  Drained();

  // D1 cannot be read as it is now (too deep), so it is treated as absent
  // and does not move in; N1 does.
  EXPECT_EQ(PulledSummary(), "SYNC:N1");
  EXPECT_EQ(QueryText(admin_.get(), "SELECT doctype || '/' || docname || '/' || txid"
                                    " FROM es_producer.capture_error"),
            "Note/D1/" + txid);
  EXPECT_EQ(Scrape(metrics_port_, "eventstream_producer_capture_errors_total{doctype=\"Note\"}"),
            std::optional<double>(1));
  EXPECT_EQ(Scrape(metrics_port_, "eventstream_producer_capture_error_records"),
            std::optional<double>(1));
  EXPECT_NE(service_.process->Log().find(absl::StrCat(
                "capture error: document \"D1\" of DocType \"Note\" in transaction ", txid)),
            std::string::npos)
      << service_.process->Log();
}

// Issue 13 item 11: the producer's role has TRIGGER on the site's tables,
// not their ownership, and DROP TRIGGER needs the owner: capture that is no
// longer wanted is left inert instead (it records nothing), and is armed
// again when wanted.
TEST_F(SiteRolesTest, CaptureIsRemovedWithoutOwningTheTables) {
  auto subscribe = [&](bool unsubscribe) { Subscribe(unsubscribe); };
  const std::string armed =
      "SELECT count(*) FROM pg_trigger WHERE tgname = 'es_capture' AND tgnargs > 0";
  subscribe(true);
  EXPECT_EQ(QueryInt(admin_.get(), armed), 0);
  Write(app_.get(), R"(INSERT INTO "tabNote" (name, title) VALUES ('U1', 'not captured'))");
  EXPECT_EQ(QueryInt(admin_.get(), "SELECT count(*) FROM es_producer.raw_change"), 0);
  subscribe(false);
  EXPECT_EQ(QueryInt(admin_.get(), armed), 2);
  Write(app_.get(), R"(INSERT INTO "tabNote" (name, title) VALUES ('U2', 'captured'))");
  Drained();
  EXPECT_EQ(QueryText(admin_.get(), "SELECT string_agg(docname, ' ') FROM es_producer.update_log"
                                    " WHERE for_site IS NULL"),
            "U2");
  // Re-subscribing starts an initial sync (issue 14): U1, written while
  // nothing was captured, reaches branch1 as a Sync of its own. (Before it,
  // unsubscribing may have logged a Revoke of U1, depending on when the
  // revoke job ran: harmless, branch1 never had it.)
  ASSERT_TRUE(Eventually([&] {
    return QueryText(admin_.get(), "SELECT string_agg(update_type, ' ' ORDER BY seq)"
                                   " FROM es_producer.update_log WHERE for_site = 'branch1'"
                                   " AND docname = 'U1' AND update_type = 'Sync'") == "Sync";
  }));
}

// Issue 14: unsubscribing starts a revoke job and subscribing again
// replaces it with a sync job. A writer that had read the revoke job before
// the replacement must not carry it out on the new job (it did: the new
// job was finished as a revoke and the consumer never got its Sync; seen
// in CI as a flaky CaptureIsRemovedWithoutOwningTheTables). The test holds
// the assembler's lock so that the writer waits between reading the job
// and locking it.
TEST_F(SiteRolesTest, ResubscribingWhileARevokeWaitsSyncsAgain) {
  Write(app_.get(), R"(INSERT INTO "tabNote" (name, title) VALUES ('U0', 'kept'))");
  Drained();
  ASSERT_TRUE(Eventually([&] {
    return QueryInt(admin_.get(), "SELECT count(*) FROM es_producer.sync_job"
                                  " WHERE state = 'running'") == 0;
  }));
  auto holder = Open("postgres");
  ASSERT_NE(holder, nullptr);
  Write(holder.get(), "SELECT pg_advisory_lock(hashtext('es_producer.assembler'))");
  Subscribe(true);
  ASSERT_TRUE(Eventually([&] {
    return QueryInt(admin_.get(), "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                  " AND NOT granted") > 0;
  })) << "the initial sync writer never waited for the assembler's lock";
  Subscribe(false);
  Write(holder.get(), "SELECT pg_advisory_unlock(hashtext('es_producer.assembler'))");
  ASSERT_TRUE(Eventually([&] {
    return QueryText(admin_.get(), "SELECT update_type FROM es_producer.update_log"
                                   " WHERE for_site = 'branch1' AND docname = 'U0'"
                                   " ORDER BY seq DESC LIMIT 1") == "Sync";
  })) << QueryText(admin_.get(), "SELECT string_agg(kind || ':' || state, ' ')"
                                 " FROM es_producer.sync_job")
      << "\n" << service_.process->Log();
}

// Not a check (run by hand with --gtest_also_run_disabled_tests): how large
// the raw_change queue grows while 4 writers insert Notes with 3 rows each
// as fast as they can for ES_BLOAT_SECONDS (default 30) and the producer's
// assembler drains it (issue 15 item 2). Samples every 500 ms.
TEST_F(SiteRolesTest, DISABLED_MeasureQueueBloatAtMaxRate) {
  const char* env = std::getenv("ES_BLOAT_SECONDS");
  const absl::Duration run = absl::Seconds(env != nullptr ? std::atoi(env) : 30);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> written{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      auto conn = Open(app_role_);
      for (int64_t i = 0; !stop.load() && conn != nullptr; ++i) {
        const std::string name = absl::StrCat("W", w, "-", i);
        absl::Status s = conn->ExecScript(absl::StrCat(
            "BEGIN; INSERT INTO \"tabNote\" (name, title) VALUES ('", name, "', 't');",
            "INSERT INTO \"tabNote Item\" (name, parent, parenttype, parentfield, idx, item)"
            " SELECT '", name, "-' || g, '", name, "', 'Note', 'items', g, 'x'"
            " FROM generate_series(1, 3) g; COMMIT;"));
        if (!s.ok()) break;
        written.fetch_add(1);
      }
    });
  }
  int64_t max_bytes = 0, max_dead = 0, max_live = 0;
  const absl::Time end = absl::Now() + run;
  while (absl::Now() < end) {
    absl::SleepFor(absl::Milliseconds(500));
    max_bytes = std::max<int64_t>(
        max_bytes, QueryInt(admin_.get(), "SELECT pg_total_relation_size('es_producer.raw_change')"));
    max_dead = std::max<int64_t>(max_dead, QueryInt(admin_.get(),
        "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'es_producer.raw_change'::regclass"));
    max_live = std::max<int64_t>(max_live, QueryInt(admin_.get(), "SELECT count(*) FROM es_producer.raw_change"));
  }
  stop = true;
  for (auto& t : writers) t.join();
  Drained();
  std::printf("[          ] %lld Notes in %.0f s (%.0f/s); raw_change at most %.1f MB, %lld dead"
              " rows (stats), %lld waiting rows; after draining %.1f MB\n",
              static_cast<long long>(written.load()), absl::ToDoubleSeconds(run),
              written.load() / absl::ToDoubleSeconds(run), max_bytes / 1e6,
              static_cast<long long>(max_dead), static_cast<long long>(max_live),
              QueryInt(admin_.get(), "SELECT pg_total_relation_size('es_producer.raw_change')") / 1e6);
}

}  // namespace
}  // namespace eventstream::testing
