// The consumer's replay lifecycle (services/consumer/applier.h) against a
// real PostgreSQL: every update type, naming, dependencies, mapping,
// validation, failures / parking / Resync, watermark and origin. Update log
// entries are built by hand and dependencies come from an in-test fake of
// the producer (the end-to-end tests use the real one).
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libsync/config/config.h"
#include "libsync/model/document.h"
#include "libsync/base/migrate.h"
#include "libsync/base/pg.h"
#include "libsync/base/value.h"
#include "services/consumer/applier.h"
#include "services/consumer/sync_log_trimmer.h"
#include "tests/support/frappe_schema.h"
#include "tests/support/pg_cluster.h"

namespace eventstream::testing {
namespace {

constexpr char kNumeric[] = "12345678901234567.123456789";

const std::string kConfig = R"yaml(
site: {name: branch}
database: {url: "postgresql:///unused"}
doctypes:
  - name: Note
    is_submittable: true
    fields:
      - {fieldname: title, fieldtype: Data, reqd: true}
      - {fieldname: amount, fieldtype: Currency}
      - {fieldname: body, fieldtype: Text, default: "(empty)"}
      - {fieldname: customer, fieldtype: Link, options: Customer}
      - {fieldname: ref_type, fieldtype: Data}
      - {fieldname: ref_name, fieldtype: Dynamic Link, options: ref_type}
      - {fieldname: items, fieldtype: Table, options: Note Item}
)yaml" + NoteItemDocType({"qty", "customer"}) + R"yaml(  - name: Customer
    fields:
      - {fieldname: customer_name, fieldtype: Data}
      - {fieldname: parent_customer, fieldtype: Link, options: Customer}
  - name: Supplier
    fields:
      - {fieldname: supplier_name, fieldtype: Data}
  - name: Task
    autoname: "series:TASK-.#####"
    fields:
      - {fieldname: subject, fieldtype: Data}
      - {fieldname: items, fieldtype: Table, options: Task Item}
  - name: Task Item
    istable: true
    fields:
      - {fieldname: item, fieldtype: Data}
)yaml" + std::string(kMemoDocType) + PurchaseOrderDocTypes() + R"yaml(consumer:
  producers:
    - name: hq
      url: "hq:50051"
      api_key: branch
      api_secret_env: ES_TEST_SECRET
      doctypes:
        - {doctype: Note, use_same_name: true}
        - {doctype: Task, use_same_name: false}
        - {doctype: Memo, use_same_name: true, on_move_out: keep}
        - {doctype: Purchase Order, use_same_name: true, mapping: so-to-po}
  mappings:
)yaml" + kSoToPoMapping + R"yaml(        - remote_fieldname: customer
          local_fieldname: customer_link
          mapping_type: Document
          mapping: cust
          remote_value_filters: {name: doc.customer}
)yaml" + kSoiToPoiMapping + kCustomerMapping;

Value Json(const std::string& text) {
  auto v = Value::ParseJson(text);
  EXPECT_TRUE(v.ok()) << v.status() << ": " << text;
  return v.ok() ? *v : Value();
}

// The producer, as far as dependencies go.
class FakeProducer : public DependencySource {
 public:
  void Put(const std::string& json) {
    Value doc = Json(json);
    docs_[{DocTypeOf(doc), NameOf(doc)}] = doc;
  }
  absl::StatusOr<std::optional<FetchedDocument>> GetDocument(const std::string& doctype,
                                                             const std::string& name) override {
    ++get_calls;
    auto it = docs_.find({doctype, name});
    if (it == docs_.end()) return std::optional<FetchedDocument>();
    return std::optional<FetchedDocument>(FetchedDocument{it->second, {}});
  }
  absl::StatusOr<std::vector<Value>> FindDocuments(
      const std::string& doctype, const std::map<std::string, std::string>& filters,
      int limit) override {
    ++find_calls;
    std::vector<Value> out;
    for (const auto& [key, doc] : docs_) {
      if (key.first != doctype) continue;
      bool match = true;
      for (const auto& [f, v] : filters) {
        const Value* dv = doc.Find(f);
        if (dv == nullptr || dv->ToText() != v) match = false;
      }
      if (match) out.push_back(doc);
      if (static_cast<int>(out.size()) >= limit) break;
    }
    return out;
  }
  int get_calls = 0;
  int find_calls = 0;

 private:
  std::map<std::pair<std::string, std::string>, Value> docs_;
};

v1::UpdateLogEntry Entry(int64_t seq, const std::string& doctype, const std::string& name,
                         v1::UpdateType type, const std::string& json = "") {
  v1::UpdateLogEntry e;
  e.set_seq(seq);
  e.set_doctype(doctype);
  e.set_docname(name);
  e.set_update_type(type);
  e.set_data_json(json);
  return e;
}

class ApplyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto config = ParseConfig(kConfig, "test.yaml");
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = std::make_unique<Config>(*std::move(config));
    db_ = FreshDatabase("apply");
    auto conn = pg::Connection::Open(SharedCluster().Url(db_));
    ASSERT_TRUE(conn.ok()) << conn.status();
    conn_ = *std::move(conn);
    absl::Status s = ApplyMigrations(conn_.get(), "es_consumer", ConsumerMigrations());
    ASSERT_TRUE(s.ok()) << s;
    Exec(
        "CREATE TABLE IF NOT EXISTS es_consumer.last_update (producer text PRIMARY KEY,"
        " last_seq bigint NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL DEFAULT now())");
    const std::string standard =
        "name text PRIMARY KEY, creation timestamptz, modified timestamptz, modified_by text,"
        " owner text, docstatus int NOT NULL DEFAULT 0, idx int NOT NULL DEFAULT 0";
    const std::string child = ", parent text, parenttype text, parentfield text";
    Exec(absl::StrCat("CREATE TABLE \"tabNote\" (", standard,
                      ", title text, amount numeric(30,9), body text, customer text,"
                      " ref_type text, ref_name text)"));
    Exec(absl::StrCat("CREATE TABLE \"tabNote Item\" (", standard, child,
                      ", item text, qty numeric(30,9), customer text)"));
    Exec(absl::StrCat("CREATE TABLE \"tabCustomer\" (", standard,
                      ", customer_name text, parent_customer text)"));
    Exec(absl::StrCat("CREATE TABLE \"tabSupplier\" (", standard, ", supplier_name text)"));
    Exec(absl::StrCat("CREATE TABLE \"tabTask\" (", standard, ", subject text)"));
    Exec(absl::StrCat("CREATE TABLE \"tabTask Item\" (", standard, child, ", item text)"));
    Exec(absl::StrCat("CREATE TABLE \"tabMemo\" (", standard, ", code text NOT NULL, text text)"));
    Exec(absl::StrCat("CREATE TABLE \"tabPurchase Order\" (", standard,
                      ", supplier_ref text, customer_link text)"));
    Exec(absl::StrCat("CREATE TABLE \"tabPurchase Order Item\" (", standard, child,
                      ", item text, qty numeric(30,9))"));
    // The origin every write to tabNote saw.
    Exec("CREATE TABLE origin_seen (doc text, origin text)");
    Exec(
        "CREATE FUNCTION see_origin() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " INSERT INTO origin_seen VALUES (NEW.name,"
        " current_setting('eventstream.origin', true)); RETURN NEW; END $$");
    Exec(
        "CREATE TRIGGER see_origin AFTER INSERT OR UPDATE ON \"tabNote\""
        " FOR EACH ROW EXECUTE FUNCTION see_origin()");
    applier_ = std::make_unique<Applier>(*config_);
  }

  void Exec(const std::string& sql, const pg::Params& params = {}) {
    auto r = conn_->Exec(sql, params);
    ASSERT_TRUE(r.ok()) << sql << ": " << r.status();
  }
  // The first column of the first row ("<none>" when no row, "<null>").
  std::string One(const std::string& sql, const pg::Params& params = {}) {
    auto r = conn_->Exec(sql, params);
    EXPECT_TRUE(r.ok()) << sql << ": " << r.status();
    if (!r.ok() || r->rows() == 0) return "<none>";
    if (r->IsNull(0, 0)) return "<null>";
    return std::string(r->Get(0, 0));
  }
  // Every row, columns joined with '|', rows with ';'.
  std::string All(const std::string& sql) {
    auto r = conn_->Exec(sql);
    EXPECT_TRUE(r.ok()) << sql << ": " << r.status();
    std::string out;
    if (!r.ok()) return out;
    for (int i = 0; i < r->rows(); ++i) {
      if (i > 0) out += ";";
      for (int c = 0; c < r->columns(); ++c) {
        if (c > 0) out += "|";
        out += r->IsNull(i, c) ? "<null>" : std::string(r->Get(i, c));
      }
    }
    return out;
  }

  ApplyResult Apply(const std::vector<v1::UpdateLogEntry>& entries, int64_t next = -1) {
    if (next < 0) next = entries.empty() ? 0 : entries.back().seq();
    auto r = applier_->ApplyBatch(conn_.get(), "hq", entries, next, &producer_);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ApplyResult{};
  }
  std::string Status(int64_t seq) {
    return One("SELECT status FROM es_consumer.sync_log WHERE seq = $1", {seq});
  }
  std::string Error(int64_t seq) {
    return One("SELECT error FROM es_consumer.sync_log WHERE seq = $1", {seq});
  }
  int64_t Id(int64_t seq) {
    return std::stoll(One("SELECT id FROM es_consumer.sync_log WHERE seq = $1", {seq}));
  }

  std::unique_ptr<Config> config_;
  std::string db_;
  std::unique_ptr<pg::Connection> conn_;
  std::unique_ptr<Applier> applier_;
  FakeProducer producer_;
};

const char kNote1[] = R"({"doctype":"Note","name":"N1","title":"First","amount":%s,
  "creation":"2024-01-02T03:04:05.5","modified":"2024-01-02T03:04:05.5","docstatus":0,"idx":0,
  "unknown_field":"ignored",
  "items":[
    {"doctype":"Note Item","name":"r1","parent":"N1","parenttype":"Note","parentfield":"items",
     "idx":1,"item":"a","qty":%s},
    {"doctype":"Note Item","name":"r2","parent":"N1","parenttype":"Note","parentfield":"items",
     "idx":2,"item":"b","qty":2}]})";

std::string Note1() {
  std::string s = kNote1;
  s.replace(s.find("%s"), 2, kNumeric);
  s.replace(s.find("%s"), 2, kNumeric);
  return s;
}

TEST_F(ApplyTest, CreateWithChildrenExactNumbersOriginAndWatermark) {
  ApplyResult r = Apply({Entry(5, "Note", "N1", v1::UPDATE_TYPE_CREATE, Note1())}, 7);
  EXPECT_EQ(r.synced, 1);
  EXPECT_EQ(r.last_seq, 7);
  EXPECT_EQ(All("SELECT name, title, amount::text, body, creation = '2024-01-02T03:04:05.5'"
                " FROM \"tabNote\""),
            absl::StrCat("N1|First|", kNumeric, "|(empty)|t"));
  EXPECT_EQ(All("SELECT name, parent, parenttype, parentfield, idx, item, qty::text"
                " FROM \"tabNote Item\" ORDER BY idx"),
            absl::StrCat("r1|N1|Note|items|1|a|", kNumeric, ";r2|N1|Note|items|2|b|2.000000000"));
  EXPECT_EQ(All("SELECT producer, seq, doctype, docname, update_type, status, local_docname"
                " FROM es_consumer.sync_log"),
            "hq|5|Note|N1|Create|Synced|N1");
  EXPECT_EQ(One("SELECT data FROM es_consumer.sync_log"), Note1());
  EXPECT_EQ(One("SELECT last_seq FROM es_consumer.last_update WHERE producer = 'hq'"), "7");
  EXPECT_EQ(All("SELECT doc, origin FROM origin_seen"), "N1|hq");
  // The same batch again (an overlapping pull): nothing applied twice.
  r = Apply({Entry(5, "Note", "N1", v1::UPDATE_TYPE_CREATE, Note1())}, 7);
  EXPECT_EQ(r.synced, 0);
  EXPECT_EQ(One("SELECT count(*) FROM es_consumer.sync_log"), "1");
}

TEST_F(ApplyTest, UpdateChangedAddedRemovedRowChanged) {
  Apply({Entry(1, "Note", "N1", v1::UPDATE_TYPE_CREATE, Note1())});
  ApplyResult r = Apply({Entry(2, "Note", "N1", v1::UPDATE_TYPE_UPDATE, R"({
    "changed": {"title": "Second", "amount": 1.5},
    "removed": {"items": ["r1"]},
    "row_changed": {"items": [{"name": "r2", "qty": 7, "idx": 1}]},
    "added": {"items": [{"doctype":"Note Item","name":"r3","parent":"N1","parenttype":"Note",
              "parentfield":"items","idx":2,"item":"c","qty":3}]}})")});
  EXPECT_EQ(r.synced, 1);
  EXPECT_EQ(All("SELECT title, amount::text FROM \"tabNote\""), "Second|1.500000000");
  EXPECT_EQ(All("SELECT name, idx, item, qty::text FROM \"tabNote Item\" ORDER BY idx"),
            "r2|1|b|7.000000000;r3|2|c|3.000000000");
  EXPECT_EQ(All("SELECT doc, origin FROM origin_seen ORDER BY 1"), "N1|hq;N1|hq");
}

TEST_F(ApplyTest, CancelRenameDelete) {
  std::string doc = Note1();
  doc.replace(doc.find("\"docstatus\":0"), 13, "\"docstatus\":1");
  Apply({Entry(1, "Note", "N1", v1::UPDATE_TYPE_CREATE, doc),
         Entry(2, "Note", "N1", v1::UPDATE_TYPE_CANCEL, R"({"changed":{"docstatus":2}})")});
  EXPECT_EQ(One("SELECT docstatus FROM \"tabNote\""), "2");
  EXPECT_EQ(One("SELECT string_agg(DISTINCT docstatus::text, ',') FROM \"tabNote Item\""), "2");

  Apply({Entry(3, "Note", "N2", v1::UPDATE_TYPE_RENAME, R"({"old_name":"N1","new_name":"N2"})")});
  EXPECT_EQ(One("SELECT name FROM \"tabNote\""), "N2");
  EXPECT_EQ(One("SELECT string_agg(DISTINCT parent, ',') FROM \"tabNote Item\""), "N2");

  ApplyResult r = Apply({Entry(4, "Note", "N2", v1::UPDATE_TYPE_DELETE),
                         Entry(5, "Note", "N-never", v1::UPDATE_TYPE_DELETE)});
  EXPECT_EQ(r.synced, 2);
  EXPECT_EQ(One("SELECT count(*) FROM \"tabNote\""), "0");
  EXPECT_EQ(One("SELECT count(*) FROM \"tabNote Item\""), "0");
  EXPECT_EQ(Status(5), "Synced");
  EXPECT_EQ(One("SELECT note FROM es_consumer.sync_log WHERE seq = 5"),
            "not present here; nothing to delete");
}

// Issue 15: same-name copies keep their provenance beyond the sync log
// (es_consumer.same_name_copy): held while here, released when deleted or
// renamed away, held again when a Sync brings the name back.
TEST_F(ApplyTest, SameNameCopiesKeepTheirProvenance) {
  constexpr char kCopies[] =
      "SELECT docname || ':' || (released_at IS NULL) FROM es_consumer.same_name_copy"
      " WHERE producer = 'hq' AND doctype = 'Note' ORDER BY docname";
  // Written once per batch, the last mark of each name winning.
  Apply({Entry(1, "Note", "N1", v1::UPDATE_TYPE_CREATE, Note1()),
         Entry(2, "Note", "N3", v1::UPDATE_TYPE_SYNC, R"({"doctype":"Note","name":"N3","title":"t"})"),
         Entry(3, "Note", "N4", v1::UPDATE_TYPE_SYNC, R"({"doctype":"Note","name":"N4","title":"t"})"),
         Entry(4, "Note", "N4", v1::UPDATE_TYPE_DELETE)});
  EXPECT_EQ(All(kCopies), "N1:true;N3:true");  // N4 never was a copy at a commit
  Apply({Entry(5, "Note", "N2", v1::UPDATE_TYPE_RENAME, R"({"old_name":"N1","new_name":"N2"})"),
         Entry(6, "Note", "N3", v1::UPDATE_TYPE_DELETE)});
  EXPECT_EQ(All(kCopies), "N1:false;N2:true;N3:false");
  Apply({Entry(7, "Note", "N3", v1::UPDATE_TYPE_SYNC, R"({"doctype":"Note","name":"N3","title":"u"})")});
  EXPECT_EQ(All(kCopies), "N1:false;N2:true;N3:true");
  // Copies with remote columns carry it on the row: nothing recorded.
  EXPECT_EQ(One("SELECT count(*) FROM es_consumer.same_name_copy WHERE doctype <> 'Note'"), "0");
  // Released ones are forgotten with the sync log's rows, held ones stay.
  auto pool = std::make_shared<pg::ConnectionPool>(SharedCluster().Url(db_), "test");
  SyncLogTrimmer trimmer(pool, SyncLogTrimmer::Options{absl::Hours(1)});
  ASSERT_TRUE(trimmer.TrimOnce(absl::Now() + absl::Hours(2)).ok());
  EXPECT_EQ(All(kCopies), "N2:true;N3:true");
}

TEST_F(ApplyTest, UpdateOfMissingDocumentFetchesIt) {
  producer_.Put(R"({"doctype":"Note","name":"N9","title":"Fetched","amount":2,
    "items":[{"doctype":"Note Item","name":"x1","idx":1,"item":"z","qty":1}]})");
  ApplyResult r =
      Apply({Entry(1, "Note", "N9", v1::UPDATE_TYPE_UPDATE, R"({"changed":{"title":"Fetched"}})"),
             Entry(2, "Note", "N404", v1::UPDATE_TYPE_UPDATE, R"({"changed":{"title":"x"}})")});
  // N404: absent here and at the producer: nothing to apply, and nothing
  // for its later entries to park behind.
  EXPECT_EQ(r.synced, 2);
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(All("SELECT name, title FROM \"tabNote\""), "N9|Fetched");
  EXPECT_EQ(All("SELECT name, parent FROM \"tabNote Item\""), "x1|N9");
  EXPECT_NE(One("SELECT note FROM es_consumer.sync_log WHERE seq = 1").find("GetDocument"),
            std::string::npos);
  EXPECT_NE(One("SELECT note FROM es_consumer.sync_log WHERE seq = 2")
                .find("the producer no longer has it"),
            std::string::npos);
  // A Cancel of it likewise; then the name created again arrives at once.
  producer_.Put(R"({"doctype":"Note","name":"N404","title":"again"})");
  r = Apply({Entry(3, "Note", "N405", v1::UPDATE_TYPE_CANCEL, R"({"changed":{}})"),
             Entry(4, "Note", "N404", v1::UPDATE_TYPE_CREATE,
                   R"({"doctype":"Note","name":"N404","title":"again"})")});
  EXPECT_EQ(r.synced, 2);
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(All("SELECT name, title, docstatus FROM \"tabNote\" ORDER BY name"),
            "N404|again|0;N9|Fetched|0");
}

// Upgrading: a Failed row left by a build that failed such an Update
// (absent here and at the producer) clears with Resync, and what parked
// behind it follows.
TEST_F(ApplyTest, OldFailedUpdateOfADocumentAbsentOnBothSitesClearsWithResync) {
  const int64_t failed = std::stoll(One(
      "INSERT INTO es_consumer.sync_log (producer, seq, doctype, docname, update_type, status,"
      " error, data) VALUES ('hq', 1, 'Note', 'N404', 'Update', 'Failed', 'Update of a document"
      " missing here: Note \"N404\" is missing here and the producer does not have it (any"
      " more)', '{\"changed\":{\"title\":\"x\"}}') RETURNING id"));
  Exec(absl::StrCat("INSERT INTO es_consumer.sync_log (producer, seq, doctype, docname,"
                    " update_type, status, parked_behind) VALUES ('hq', 2, 'Note', 'N404',"
                    " 'Delete', 'Parked', ", failed, ")"));
  auto deps = [&](const std::string&) -> DependencySource* { return &producer_; };
  auto done = applier_->Resync(conn_.get(), failed, deps);
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_EQ(done->size(), 2u);
  EXPECT_EQ((*done)[0].status, "Synced");
  EXPECT_EQ((*done)[1].status, "Synced");
  EXPECT_NE(One("SELECT note FROM es_consumer.sync_log WHERE seq = 1")
                .find("the producer no longer has it"),
            std::string::npos);
  EXPECT_EQ(One("SELECT count(*) FROM \"tabNote\""), "0");
}

TEST_F(ApplyTest, CreateOfExistingDocumentLeavesItAlone) {
  Exec("INSERT INTO \"tabNote\" (name, title) VALUES ('N1', 'local')");
  ApplyResult r = Apply({Entry(1, "Note", "N1", v1::UPDATE_TYPE_CREATE, Note1())});
  EXPECT_EQ(r.synced, 1);
  EXPECT_EQ(One("SELECT title FROM \"tabNote\""), "local");
  EXPECT_EQ(One("SELECT count(*) FROM \"tabNote Item\""), "0");
  EXPECT_NE(One("SELECT note FROM es_consumer.sync_log").find("left alone"), std::string::npos);
}

TEST_F(ApplyTest, LocalNamesWithRemoteDocnameAndSeries) {
  const char* task = R"({"doctype":"Task","name":"%s","subject":"s",
    "items":[{"doctype":"Task Item","name":"%s-i1","idx":1,"item":"one"},
             {"doctype":"Task Item","name":"%s-i2","idx":2,"item":"two"}]})";
  auto make = [&](const std::string& n) {
    std::string s = task;
    for (int i = 0; i < 3; ++i) s.replace(s.find("%s"), 2, n);
    return s;
  };
  ApplyResult r = Apply({Entry(1, "Task", "hq-1", v1::UPDATE_TYPE_CREATE, make("hq-1")),
                         Entry(2, "Task", "hq-2", v1::UPDATE_TYPE_CREATE, make("hq-2"))});
  EXPECT_EQ(r.synced, 2);
  EXPECT_EQ(All("SELECT name, remote_docname, remote_site_name FROM \"tabTask\" ORDER BY name"),
            "TASK-00001|hq-1|hq;TASK-00002|hq-2|hq");
  EXPECT_EQ(One("SELECT count(*) FROM \"tabTask Item\" WHERE name NOT LIKE 'hq-%'"
                " AND remote_site_name = 'hq'"),
            "4");
  EXPECT_EQ(One("SELECT local_docname FROM es_consumer.sync_log WHERE seq = 2"), "TASK-00002");
  EXPECT_EQ(One("SELECT count(*) FROM pg_indexes WHERE tablename = 'tabTask'"
                " AND indexdef LIKE '%remote_site_name, remote_docname%'"),
            "1");

  r = Apply({Entry(3, "Task", "hq-1", v1::UPDATE_TYPE_UPDATE, R"({
      "changed":{"subject":"changed"},"removed":{"items":["hq-1-i1"]},
      "row_changed":{"items":[{"name":"hq-1-i2","item":"TWO"}]},
      "added":{"items":[{"doctype":"Task Item","name":"hq-1-i3","idx":3,"item":"three"}]}})"),
             Entry(4, "Task", "hq-1b", v1::UPDATE_TYPE_RENAME,
                   R"({"old_name":"hq-1","new_name":"hq-1b"})"),
             Entry(5, "Task", "hq-2", v1::UPDATE_TYPE_DELETE)});
  EXPECT_EQ(r.synced, 3);
  EXPECT_EQ(All("SELECT name, subject, remote_docname FROM \"tabTask\""),
            "TASK-00001|changed|hq-1b");
  EXPECT_EQ(All("SELECT parent, remote_docname, item FROM \"tabTask Item\" ORDER BY idx"),
            "TASK-00001|hq-1-i2|TWO;TASK-00001|hq-1-i3|three");
}

TEST_F(ApplyTest, LinkChildLinkAndDynamicLinkDependencies) {
  producer_.Put(R"({"doctype":"Customer","name":"C1","customer_name":"One"})");
  producer_.Put(R"({"doctype":"Customer","name":"C2","customer_name":"Two"})");
  producer_.Put(R"({"doctype":"Supplier","name":"S1","supplier_name":"Sup"})");
  ApplyResult r = Apply({Entry(1, "Note", "N1", v1::UPDATE_TYPE_CREATE, R"({
    "doctype":"Note","name":"N1","title":"t","customer":"C1","ref_type":"Supplier",
    "ref_name":"S1","items":[{"doctype":"Note Item","name":"r1","idx":1,"customer":"C2"}]})")});
  EXPECT_EQ(r.synced, 1);
  EXPECT_EQ(All("SELECT name, customer_name FROM \"tabCustomer\" ORDER BY name"), "C1|One;C2|Two");
  EXPECT_EQ(All("SELECT name FROM \"tabSupplier\""), "S1");
  // A dependency in an Update (Dynamic Link whose DocType is in the row).
  producer_.Put(R"({"doctype":"Customer","name":"C3","customer_name":"Three"})");
  r = Apply({Entry(2, "Note", "N1", v1::UPDATE_TYPE_UPDATE,
                   R"({"changed":{"ref_type":"Customer","ref_name":"C3"}})")});
  EXPECT_EQ(r.synced, 1);
  EXPECT_EQ(One("SELECT count(*) FROM \"tabCustomer\" WHERE name = 'C3'"), "1");
  // A missing dependency fails the entry, naming the field.
  r = Apply({Entry(3, "Note", "N2", v1::UPDATE_TYPE_CREATE,
                   R"({"doctype":"Note","name":"N2","title":"t","customer":"nobody"})")});
  EXPECT_EQ(r.failed, 1);
  EXPECT_NE(Error(3).find("field \"customer\""), std::string::npos) << Error(3);
  EXPECT_NE(Error(3).find("Customer \"nobody\""), std::string::npos) << Error(3);
  EXPECT_EQ(One("SELECT count(*) FROM \"tabNote\" WHERE name = 'N2'"), "0");
}

TEST_F(ApplyTest, DependencyChainAndCycle) {
  producer_.Put(R"({"doctype":"Customer","name":"A","parent_customer":"B"})");
  producer_.Put(R"({"doctype":"Customer","name":"B","parent_customer":"C"})");
  producer_.Put(R"({"doctype":"Customer","name":"C"})");
  producer_.Put(R"({"doctype":"Customer","name":"X","parent_customer":"Y"})");
  producer_.Put(R"({"doctype":"Customer","name":"Y","parent_customer":"X"})");
  ApplyResult r = Apply({Entry(1, "Note", "N1", v1::UPDATE_TYPE_CREATE,
                               R"({"doctype":"Note","name":"N1","title":"t","customer":"A"})"),
                         Entry(2, "Note", "N2", v1::UPDATE_TYPE_CREATE,
                               R"({"doctype":"Note","name":"N2","title":"t","customer":"X"})")});
  EXPECT_EQ(r.synced, 2) << Error(1) << Error(2);
  EXPECT_EQ(All("SELECT name, coalesce(parent_customer, '-') FROM \"tabCustomer\" ORDER BY name"),
            "A|B;B|C;C|-;X|Y;Y|X");
}

TEST_F(ApplyTest, ValidationNamesDocTypeDocumentAndField) {
  ApplyResult r =
      Apply({Entry(1, "Note", "N1", v1::UPDATE_TYPE_CREATE, R"({"doctype":"Note","name":"N1"})"),
             Entry(2, "Note", "N2", v1::UPDATE_TYPE_CREATE,
                   R"({"doctype":"Note","name":"N2","title":"t","amount":"lots"})"),
             Entry(3, "Note", "N3", v1::UPDATE_TYPE_CREATE,
                   R"({"doctype":"Note","name":"N3","title":"t","items":[
                 {"doctype":"Note Item","name":"r","qty":"x"}]})"),
             Entry(4, "Unknown", "U", v1::UPDATE_TYPE_CREATE, "{}")});
  EXPECT_EQ(r.failed, 4);
  EXPECT_EQ(Error(1), "Note \"N1\": field \"title\" is required (reqd) but empty");
  EXPECT_EQ(Error(2), "Note \"N2\": field \"amount\" (Currency) must be a number, got \"lots\"");
  EXPECT_EQ(Error(3),
            "Note \"N3\" row Note Item \"r\": field \"qty\" (Float) must be a number, got \"x\"");
  EXPECT_NE(Error(4).find("not subscribed"), std::string::npos);
  // An update emptying a required field fails too; the document is unchanged.
  Apply({Entry(5, "Note", "N5", v1::UPDATE_TYPE_CREATE,
               R"({"doctype":"Note","name":"N5","title":"t"})"),
         Entry(6, "Note", "N5", v1::UPDATE_TYPE_UPDATE, R"({"changed":{"title":""}})")});
  EXPECT_EQ(Status(6), "Failed");
  EXPECT_EQ(One("SELECT title FROM \"tabNote\" WHERE name = 'N5'"), "t");
}

TEST_F(ApplyTest, MappingWithChildTableAndDocumentRule) {
  producer_.Put(R"({"doctype":"Customer","name":"CUST-1","customer_name":"Acme"})");
  ApplyResult r = Apply({Entry(1, "Sales Order", "SO-1", v1::UPDATE_TYPE_CREATE, R"({
    "doctype":"Sales Order","name":"SO-1","customer":"CUST-1","docstatus":0,
    "items":[{"doctype":"Sales Order Item","name":"soi-1","parent":"SO-1","idx":1,
              "item_code":"W","qty":3}]})")});
  EXPECT_EQ(r.synced, 1) << Error(1);
  EXPECT_EQ(All("SELECT name, supplier_ref, customer_link FROM \"tabPurchase Order\""),
            "SO-1|CUST-1|CUST-1");
  EXPECT_EQ(All("SELECT name, parent, parenttype, item, qty::text FROM"
                " \"tabPurchase Order Item\""),
            "soi-1|SO-1|Purchase Order|W|3.000000000");
  EXPECT_EQ(All("SELECT name, customer_name FROM \"tabCustomer\""), "CUST-1|Acme");
  EXPECT_EQ(producer_.find_calls, 1);
  r = Apply({Entry(2, "Sales Order", "SO-1", v1::UPDATE_TYPE_UPDATE, R"({
      "row_changed":{"items":[{"name":"soi-1","qty":4}]},
      "added":{"items":[{"doctype":"Sales Order Item","name":"soi-2","idx":2,
                         "item_code":"V","qty":1}]}})"),
             Entry(3, "Sales Order", "SO-1", v1::UPDATE_TYPE_DELETE)});
  EXPECT_EQ(r.synced, 2) << Error(2) << Error(3);
  EXPECT_EQ(One("SELECT count(*) FROM \"tabPurchase Order\""), "0");
  EXPECT_EQ(One("SELECT count(*) FROM \"tabPurchase Order Item\""), "0");
}

TEST_F(ApplyTest, MappedUpdateChangesRows) {
  producer_.Put(R"({"doctype":"Customer","name":"CUST-1","customer_name":"Acme"})");
  Apply({Entry(1, "Sales Order", "SO-1", v1::UPDATE_TYPE_CREATE, R"({
    "doctype":"Sales Order","name":"SO-1","customer":"CUST-1",
    "items":[{"doctype":"Sales Order Item","name":"soi-1","idx":1,"item_code":"W","qty":3}]})"),
         Entry(2, "Sales Order", "SO-1", v1::UPDATE_TYPE_UPDATE, R"({
      "row_changed":{"items":[{"name":"soi-1","qty":4}]},
      "added":{"items":[{"doctype":"Sales Order Item","name":"soi-2","idx":2,
                         "item_code":"V","qty":1}]}})")});
  EXPECT_EQ(Status(2), "Synced") << Error(2);
  EXPECT_EQ(All("SELECT name, item, qty::text FROM \"tabPurchase Order Item\" ORDER BY idx"),
            "soi-1|W|4.000000000;soi-2|V|1.000000000");
}

TEST_F(ApplyTest, FailureParksLaterEntriesUntilResync) {
  ApplyResult r =
      Apply({Entry(1, "Memo", "M1", v1::UPDATE_TYPE_CREATE,
                   R"({"doctype":"Memo","name":"M1","text":"no code"})"),
             Entry(2, "Memo", "M2", v1::UPDATE_TYPE_CREATE,
                   R"({"doctype":"Memo","name":"M2","code":"c","text":"fine"})"),
             Entry(3, "Memo", "M1", v1::UPDATE_TYPE_UPDATE, R"({"changed":{"text":"v2"}})")});
  EXPECT_EQ(r.synced, 1);
  EXPECT_EQ(r.failed, 1);
  EXPECT_EQ(r.parked, 1);
  EXPECT_TRUE(r.isolated);  // the failure sent the batch down the savepoint path
  EXPECT_EQ(Status(1), "Failed");
  EXPECT_NE(Error(1).find("SQLSTATE 23502"), std::string::npos) << Error(1);
  EXPECT_NE(Error(1).find("Memo \"M1\""), std::string::npos) << Error(1);
  EXPECT_EQ(Status(2), "Synced");
  const int64_t failed = Id(1);
  EXPECT_EQ(One("SELECT parked_behind FROM es_consumer.sync_log WHERE seq = 3"),
            std::to_string(failed));
  EXPECT_EQ(One("SELECT data FROM es_consumer.sync_log WHERE seq = 1"),
            R"({"doctype":"Memo","name":"M1","text":"no code"})");
  // A later batch: parked behind the same Failed row.
  r = Apply({Entry(4, "Memo", "M1", v1::UPDATE_TYPE_UPDATE, R"({"changed":{"text":"v3"}})")});
  EXPECT_EQ(r.parked, 1);
  EXPECT_EQ(One("SELECT parked_behind FROM es_consumer.sync_log WHERE seq = 4"),
            std::to_string(failed));
  EXPECT_EQ(One("SELECT last_seq FROM es_consumer.last_update"), "4");

  auto deps = [&](const std::string&) -> DependencySource* { return &producer_; };
  // Still failing: the row stays Failed, the parked ones stay parked.
  auto again = applier_->Resync(conn_.get(), failed, deps);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ((*again)[0].status, "Failed");
  EXPECT_EQ(One("SELECT attempts FROM es_consumer.sync_log WHERE seq = 1"), "2");
  EXPECT_EQ(Status(3), "Parked");

  Exec("ALTER TABLE \"tabMemo\" ALTER COLUMN code DROP NOT NULL");
  auto done = applier_->Resync(conn_.get(), failed, deps);
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_EQ(done->size(), 3u);
  EXPECT_EQ((*done)[0].id, failed);
  EXPECT_EQ((*done)[0].status, "Synced");
  EXPECT_EQ((*done)[1].seq, 3);
  EXPECT_EQ((*done)[1].status, "Synced");
  EXPECT_EQ((*done)[2].seq, 4);
  EXPECT_EQ((*done)[2].status, "Synced");
  EXPECT_EQ(All("SELECT seq, status, error, coalesce(parked_behind, 0)"
                " FROM es_consumer.sync_log ORDER BY seq"),
            "1|Synced||0;2|Synced||0;3|Synced||0;4|Synced||0");
  EXPECT_EQ(One("SELECT text FROM \"tabMemo\" WHERE name = 'M1'"), "v3");
  // New entries of M1 apply normally now.
  r = Apply({Entry(5, "Memo", "M1", v1::UPDATE_TYPE_UPDATE, R"({"changed":{"text":"v4"}})")});
  EXPECT_EQ(r.synced, 1);

  auto not_failed = applier_->Resync(conn_.get(), failed, deps);
  EXPECT_EQ(not_failed.status().code(), absl::StatusCode::kFailedPrecondition);
  auto missing = applier_->Resync(conn_.get(), 999999, deps);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ApplyTest, ResyncReleasedEntryThatFailsBecomesTheNewBlocker) {
  Apply({Entry(1, "Memo", "M1", v1::UPDATE_TYPE_CREATE, R"({"doctype":"Memo","name":"M1"})"),
         Entry(2, "Memo", "M1", v1::UPDATE_TYPE_UPDATE, R"({"changed":{"code":null}})"),
         Entry(3, "Memo", "M1", v1::UPDATE_TYPE_UPDATE, R"({"changed":{"text":"t"}})")});
  // Now the Create gets a code via a trigger-free fix: give it a default.
  Exec("ALTER TABLE \"tabMemo\" ALTER COLUMN code SET DEFAULT 'd'");
  auto done = applier_->Resync(conn_.get(), Id(1), nullptr);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(Status(1), "Synced");
  EXPECT_EQ(Status(2), "Failed");  // code := null still violates NOT NULL
  EXPECT_EQ(Status(3), "Parked");
  EXPECT_EQ(One("SELECT parked_behind FROM es_consumer.sync_log WHERE seq = 3"),
            std::to_string(Id(2)));
}

TEST_F(ApplyTest, RenameOfFailedDocumentIsParkedUnderBothNames) {
  Apply({Entry(1, "Memo", "M1", v1::UPDATE_TYPE_CREATE, R"({"doctype":"Memo","name":"M1"})"),
         Entry(2, "Memo", "M2", v1::UPDATE_TYPE_RENAME, R"({"old_name":"M1","new_name":"M2"})"),
         Entry(3, "Memo", "M2", v1::UPDATE_TYPE_UPDATE, R"({"changed":{"text":"t"}})")});
  EXPECT_EQ(Status(2), "Parked");
  EXPECT_EQ(Status(3), "Parked");
}

TEST_F(ApplyTest, WatermarkIsNotAdvancedWhenTheBatchDoesNotCommit) {
  // Fails at COMMIT only: a deferred constraint trigger.
  Exec(
      "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
      " IF NEW.title = 'boom' THEN RAISE EXCEPTION 'boom at commit'; END IF;"
      " RETURN NEW; END $$");
  Exec(
      "CREATE CONSTRAINT TRIGGER boom AFTER INSERT ON \"tabNote\""
      " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION boom()");
  Exec("INSERT INTO es_consumer.last_update (producer, last_seq) VALUES ('hq', 10)");
  auto r = applier_->ApplyBatch(conn_.get(), "hq",
                                {Entry(11, "Note", "ok", v1::UPDATE_TYPE_CREATE,
                                       R"({"doctype":"Note","name":"ok","title":"fine"})"),
                                 Entry(12, "Note", "bad", v1::UPDATE_TYPE_CREATE,
                                       R"({"doctype":"Note","name":"bad","title":"boom"})")},
                                12, &producer_);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(One("SELECT last_seq FROM es_consumer.last_update"), "10");
  EXPECT_EQ(One("SELECT count(*) FROM es_consumer.sync_log"), "0");
  EXPECT_EQ(One("SELECT count(*) FROM \"tabNote\""), "0");
  // Entries at or below the watermark (an overlapping pull's) are skipped,
  // whatever the sync log holds (its old rows may have been deleted).
  ApplyResult ok = Apply({Entry(8, "Note", "history", v1::UPDATE_TYPE_CREATE,
                                R"({"doctype":"Note","name":"history","title":"t"})"),
                          Entry(9, "Note", "old", v1::UPDATE_TYPE_CREATE,
                                R"({"doctype":"Note","name":"old","title":"t"})"),
                          Entry(11, "Note", "ok", v1::UPDATE_TYPE_CREATE,
                                R"({"doctype":"Note","name":"ok","title":"fine"})")},
                         11);
  EXPECT_EQ(ok.synced, 1);
  EXPECT_EQ(ok.last_seq, 11);
  EXPECT_EQ(All("SELECT name FROM \"tabNote\" ORDER BY name"), "ok");
  EXPECT_EQ(One("SELECT count(*) FROM es_consumer.sync_log WHERE seq <= 10"), "0");
}

// One batch (the optimistic path: no savepoints, writes pipelined, which
// documents exist looked up once) sees its own inserts, deletes, renames
// and dependencies, exactly as entry-by-entry application would.
TEST_F(ApplyTest, OneBatchSeesItsOwnWrites) {
  Apply({Entry(1, "Memo", "M0", v1::UPDATE_TYPE_CREATE,
               R"({"doctype":"Memo","name":"M0","code":"c","text":"old"})")});
  producer_.Put(R"({"doctype":"Customer","name":"CUST-9","customer_name":"Nine"})");
  ApplyResult r = Apply({
      Entry(2, "Note", "N1", v1::UPDATE_TYPE_CREATE, R"({"doctype":"Note","name":"N1","title":"a"})"),
      Entry(3, "Note", "N1", v1::UPDATE_TYPE_DELETE),
      Entry(4, "Note", "N1", v1::UPDATE_TYPE_CREATE,
            R"({"doctype":"Note","name":"N1","title":"b","customer":"CUST-9"})"),
      Entry(5, "Note", "N1", v1::UPDATE_TYPE_UPDATE, R"({"changed":{"title":"c"}})"),
      Entry(6, "Note", "N2", v1::UPDATE_TYPE_RENAME, R"({"old_name":"N1","new_name":"N2"})"),
      Entry(7, "Note", "N2", v1::UPDATE_TYPE_UPDATE, R"({"changed":{"title":"d"}})"),
      // CUST-9 came in as N1's dependency: its own Create leaves it alone.
      Entry(8, "Task", "T1", v1::UPDATE_TYPE_CREATE,
            R"({"doctype":"Task","name":"T1","subject":"s"})"),
      Entry(9, "Task", "T9", v1::UPDATE_TYPE_RENAME, R"({"old_name":"T1","new_name":"T9"})"),
      Entry(10, "Task", "T9", v1::UPDATE_TYPE_UPDATE, R"({"changed":{"subject":"t"}})"),
      Entry(11, "Task", "T2", v1::UPDATE_TYPE_CREATE,
            R"({"doctype":"Task","name":"T2","subject":"two"})"),
      Entry(12, "Task", "T2", v1::UPDATE_TYPE_DELETE),
      Entry(13, "Memo", "M0", v1::UPDATE_TYPE_DELETE),
      Entry(14, "Memo", "M0", v1::UPDATE_TYPE_CREATE,
            R"({"doctype":"Memo","name":"M0","code":"c","text":"new"})"),
  });
  EXPECT_EQ(r.synced, 13);
  EXPECT_FALSE(r.isolated);  // no entry failed: the fast path held
  EXPECT_EQ(r.failed, 0) << All("SELECT seq, error FROM es_consumer.sync_log WHERE error <> ''");
  EXPECT_EQ(All("SELECT name, title, customer FROM \"tabNote\""), "N2|d|CUST-9");
  EXPECT_EQ(All("SELECT name FROM \"tabCustomer\""), "CUST-9");
  EXPECT_EQ(All("SELECT remote_docname, subject FROM \"tabTask\""), "T9|t");
  EXPECT_EQ(All("SELECT name, text FROM \"tabMemo\""), "M0|new");
  EXPECT_EQ(producer_.get_calls, 1);  // CUST-9, once
}

// New documents of a pipelined batch go many rows to a statement (held
// back, DocumentApplier::HoldRows); a row the database refuses still fails
// its own entry only, on the savepoint path.
TEST_F(ApplyTest, NewDocumentsOfABatchShareInsertStatements) {
  auto notes = [](int first, int count) {
    std::vector<v1::UpdateLogEntry> entries;
    for (int i = first; i < first + count; ++i) {
      const std::string name = absl::StrCat("B", i);
      entries.push_back(Entry(
          i, "Note", name, v1::UPDATE_TYPE_CREATE,
          absl::StrCat(R"({"doctype":"Note","name":")", name, R"(","title":"t)", i,
                       R"(","items":[{"doctype":"Note Item","name":")", name,
                       R"(-1","idx":1,"item":"a","qty":1},{"doctype":"Note Item","name":")",
                       name, R"(-2","idx":2,"item":"b","qty":2}]})")));
    }
    return entries;
  };
  ApplyResult r = Apply(notes(1, 30));
  EXPECT_EQ(r.synced, 30);
  EXPECT_FALSE(r.isolated);
  EXPECT_EQ(One("SELECT count(*) FROM \"tabNote Item\" WHERE parent LIKE 'B%'"), "60");
  // 60 rows of "tabNote Item" went as 50 + 10, not 30 statements of 2.
  EXPECT_EQ(One("SELECT max(array_length(parameter_types, 1)) / min(array_length("
                "parameter_types, 1)) FROM pg_prepared_statements"
                " WHERE statement LIKE 'INSERT INTO \"tabNote Item\" %'"),
            "5");

  Exec("ALTER TABLE \"tabNote\" ADD CONSTRAINT no_bad_title CHECK (title <> 't45')");
  r = Apply(notes(31, 30));
  EXPECT_EQ(r.synced, 29);
  EXPECT_EQ(r.failed, 1);
  EXPECT_TRUE(r.isolated);
  EXPECT_EQ(Status(45), "Failed");
  EXPECT_NE(Error(45).find("Note \"B45\""), std::string::npos) << Error(45);
  EXPECT_EQ(One("SELECT count(*) FROM \"tabNote\" WHERE name LIKE 'B%'"), "59");
  EXPECT_EQ(One("SELECT count(*) FROM \"tabNote Item\" WHERE parent = 'B45'"), "0");
}

// ---- membership: Sync, Revoke, replays (issue 14) ---------------------------

std::string Note(const std::string& title, int docstatus, const std::string& rows) {
  return absl::StrCat(R"({"doctype":"Note","name":"N1","title":")", title,
                      R"(","amount":1.5,"docstatus":)", docstatus, R"(,"items":[)", rows, "]}");
}
std::string Row(const std::string& name, int idx, const std::string& item, int qty) {
  return absl::StrCat(R"({"doctype":"Note Item","name":")", name, R"(","idx":)", idx,
                      R"(,"item":")", item, R"(","qty":)", qty, "}");
}

TEST_F(ApplyTest, SyncInsertsAMissingDocumentAsACreate) {
  ApplyResult r = Apply({Entry(1, "Note", "N1", v1::UPDATE_TYPE_SYNC,
                               Note("First", 0, Row("r1", 1, "a", 1)))});
  EXPECT_EQ(r.synced, 1) << Error(1);
  EXPECT_EQ(All("SELECT name, title, body FROM \"tabNote\""), "N1|First|(empty)");
  EXPECT_EQ(All("SELECT name, parent, item FROM \"tabNote Item\""), "r1|N1|a");
  EXPECT_EQ(All("SELECT update_type, status, note, local_docname FROM es_consumer.sync_log"),
            "Sync|Synced|inserted|N1");
  // The copy is the record of an applied Sync: its row keeps no data.
  EXPECT_EQ(One("SELECT data FROM es_consumer.sync_log"), "<null>");
}

TEST_F(ApplyTest, SyncReplacesFieldsAndChildRows) {
  Apply({Entry(1, "Note", "N1", v1::UPDATE_TYPE_CREATE,
               Note("First", 0, Row("r1", 1, "a", 1) + "," + Row("r2", 2, "b", 2)))});
  // r1 gone, r2 changed, r3 new; title and docstatus changed.
  ApplyResult r = Apply({Entry(2, "Note", "N1", v1::UPDATE_TYPE_SYNC,
                               Note("Second", 1, Row("r2", 1, "b", 5) + "," + Row("r3", 2, "c", 3)))});
  EXPECT_EQ(r.synced, 1) << Error(2);
  EXPECT_EQ(All("SELECT title, docstatus, amount::text, body FROM \"tabNote\""),
            "Second|1|1.500000000|(empty)");
  EXPECT_EQ(All("SELECT name, idx, item, qty::text, docstatus FROM \"tabNote Item\" ORDER BY idx"),
            "r2|1|b|5.000000000|1;r3|2|c|3.000000000|1");
  EXPECT_EQ(One("SELECT note FROM es_consumer.sync_log WHERE seq = 2"),
            "replaced 2 fields and 3 child rows");
}

TEST_F(ApplyTest, SameSyncTwiceLeavesTheSameRows) {
  const std::string doc = Note("First", 0, Row("r1", 1, "a", 1) + "," + Row("r2", 2, "b", 2));
  ApplyResult r = Apply({Entry(1, "Note", "N1", v1::UPDATE_TYPE_SYNC, doc),
                         Entry(2, "Note", "N1", v1::UPDATE_TYPE_SYNC, doc)});
  EXPECT_EQ(r.synced, 2) << Error(1) << Error(2);
  r = Apply({Entry(3, "Note", "N1", v1::UPDATE_TYPE_SYNC, doc)});
  EXPECT_EQ(r.synced, 1) << Error(3);
  EXPECT_EQ(All("SELECT name, title FROM \"tabNote\""), "N1|First");
  EXPECT_EQ(All("SELECT name, item, qty::text FROM \"tabNote Item\" ORDER BY idx"),
            "r1|a|1.000000000;r2|b|2.000000000");
  EXPECT_EQ(All("SELECT seq, note FROM es_consumer.sync_log ORDER BY seq"),
            "1|inserted;2|already equal;3|already equal");
}

TEST_F(ApplyTest, SyncWithLocalNamesMatchesRowsByRemoteName) {
  auto task = [](const std::string& subject, const std::string& rows) {
    return absl::StrCat(R"({"doctype":"Task","name":"hq-1","subject":")", subject,
                        R"(","items":[)", rows, "]}");
  };
  const std::string i1 = R"({"doctype":"Task Item","name":"i1","idx":1,"item":"one"})";
  const std::string i2 = R"({"doctype":"Task Item","name":"i2","idx":2,"item":"two"})";
  const std::string i2b = R"({"doctype":"Task Item","name":"i2","idx":1,"item":"TWO"})";
  Apply({Entry(1, "Task", "hq-1", v1::UPDATE_TYPE_SYNC, task("s", i1 + "," + i2)),
         Entry(2, "Task", "hq-1", v1::UPDATE_TYPE_SYNC, task("s2", i2b)),
         Entry(3, "Task", "hq-1", v1::UPDATE_TYPE_SYNC, task("s2", i2b))});
  EXPECT_EQ(All("SELECT seq, status, note FROM es_consumer.sync_log ORDER BY seq"),
            "1|Synced|inserted;2|Synced|replaced 1 fields and 2 child rows;"
            "3|Synced|already equal");
  EXPECT_EQ(All("SELECT name, subject, remote_docname FROM \"tabTask\""), "TASK-00001|s2|hq-1");
  EXPECT_EQ(All("SELECT parent, remote_docname, item, idx FROM \"tabTask Item\""),
            "TASK-00001|i2|TWO|1");
}

TEST_F(ApplyTest, MappedSyncComparesInTheLocalShape) {
  producer_.Put(R"({"doctype":"Customer","name":"CUST-1","customer_name":"Acme"})");
  auto so = [](int qty) {
    return absl::StrCat(R"({"doctype":"Sales Order","name":"SO-1","customer":"CUST-1",
      "items":[{"doctype":"Sales Order Item","name":"soi-1","idx":1,"item_code":"W","qty":)",
                        qty, "}]}");
  };
  Apply({Entry(1, "Sales Order", "SO-1", v1::UPDATE_TYPE_SYNC, so(3)),
         Entry(2, "Sales Order", "SO-1", v1::UPDATE_TYPE_SYNC, so(4)),
         Entry(3, "Sales Order", "SO-1", v1::UPDATE_TYPE_SYNC, so(4))});
  EXPECT_EQ(All("SELECT seq, status, note FROM es_consumer.sync_log ORDER BY seq"),
            "1|Synced|inserted;2|Synced|replaced 0 fields and 1 child rows;"
            "3|Synced|already equal");
  EXPECT_EQ(All("SELECT name, supplier_ref, customer_link FROM \"tabPurchase Order\""),
            "SO-1|CUST-1|CUST-1");
  EXPECT_EQ(All("SELECT name, item, qty::text FROM \"tabPurchase Order Item\""),
            "soi-1|W|4.000000000");
}

TEST_F(ApplyTest, RevokeDeletesByDefault) {
  Apply({Entry(1, "Note", "N1", v1::UPDATE_TYPE_CREATE, Note("First", 0, Row("r1", 1, "a", 1)))});
  ApplyResult r =
      Apply({Entry(2, "Note", "N1", v1::UPDATE_TYPE_REVOKE, R"({"reason":"condition"})"),
             Entry(3, "Note", "N-never", v1::UPDATE_TYPE_REVOKE, R"({"reason":"condition"})"),
             Entry(4, "Note", "N1", v1::UPDATE_TYPE_REVOKE, "")});
  EXPECT_EQ(r.synced, 3) << Error(2) << Error(3) << Error(4);
  EXPECT_EQ(One("SELECT count(*) FROM \"tabNote\""), "0");
  EXPECT_EQ(One("SELECT count(*) FROM \"tabNote Item\""), "0");
  EXPECT_EQ(All("SELECT seq, update_type, note FROM es_consumer.sync_log WHERE seq > 1"
                " ORDER BY seq"),
            "2|Revoke|deleted (on_move_out: delete); moved out: condition;"
            "3|Revoke|not here; moved out: condition;4|Revoke|not here");
}

TEST_F(ApplyTest, RevokeWithKeepLeavesTheCopy) {
  Apply({Entry(1, "Memo", "M1", v1::UPDATE_TYPE_CREATE,
               R"({"doctype":"Memo","name":"M1","code":"c","text":"t"})")});
  ApplyResult r = Apply({Entry(2, "Memo", "M1", v1::UPDATE_TYPE_REVOKE, R"({"reason":"x"})"),
                         Entry(3, "Memo", "M2", v1::UPDATE_TYPE_REVOKE, R"({"reason":"x"})")});
  EXPECT_EQ(r.synced, 2) << Error(2) << Error(3);
  EXPECT_EQ(All("SELECT name, code, text FROM \"tabMemo\""), "M1|c|t");
  EXPECT_EQ(All("SELECT seq, note, local_docname FROM es_consumer.sync_log WHERE seq > 1"
                " ORDER BY seq"),
            "2|kept, no longer followed (on_move_out: keep); moved out: x|M1;"
            "3|not here; moved out: x|");
}

TEST_F(ApplyTest, ReplayedUpdateAndRenameAfterASyncDoNotFail) {
  // The Sync brought the current state; older entries follow.
  Apply({Entry(1, "Note", "N2", v1::UPDATE_TYPE_SYNC,
               R"({"doctype":"Note","name":"N2","title":"t","items":[)" +
                   Row("r1", 1, "a", 1) + "," + Row("r2", 2, "b", 2) + "]}")});
  ApplyResult r = Apply({Entry(2, "Note", "N2", v1::UPDATE_TYPE_UPDATE, absl::StrCat(R"({
      "added": {"items": [)", Row("r2", 2, "b", 7), R"(]},
      "removed": {"items": ["r9"]},
      "row_changed": {"items": [{"name": "r8", "qty": 4}]}})")),
                         Entry(3, "Note", "N2", v1::UPDATE_TYPE_RENAME,
                               R"({"old_name":"N1","new_name":"N2"})"),
                         Entry(4, "Note", "N1", v1::UPDATE_TYPE_DELETE)});
  EXPECT_EQ(r.synced, 3) << Error(2) << Error(3) << Error(4);
  EXPECT_EQ(All("SELECT name, item, qty::text FROM \"tabNote Item\" ORDER BY idx"),
            "r1|a|1.000000000;r2|b|7.000000000");
  EXPECT_EQ(All("SELECT seq, note FROM es_consumer.sync_log WHERE seq > 2 ORDER BY seq"),
            "3|already renamed here;4|not present here; nothing to delete");
  EXPECT_EQ(One("SELECT name FROM \"tabNote\""), "N2");
}

TEST_F(ApplyTest, UnknownProducerIsAnError) {
  auto r = applier_->ApplyBatch(conn_.get(), "nobody", {}, 1, &producer_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
}

// Issue 15 item 3: Synced rows past consumer.sync_log_retention go, in
// batches; Failed and Parked rows stay however old; newer rows stay.
TEST_F(ApplyTest, SyncLogRetentionDeletesOldSyncedRowsOnly) {
  ASSERT_TRUE(conn_->ExecScript(R"(INSERT INTO es_consumer.sync_log (producer, seq, doctype, docname, update_type,
                                            status, created_at)
          SELECT 'hq', g, 'Note', 'N' || g, 'Create', 'Synced', now() - interval '40 days'
          FROM generate_series(1, 5) g;
          INSERT INTO es_consumer.sync_log (id, producer, seq, doctype, docname, update_type,
                                            status, created_at)
          VALUES (100, 'hq', 6, 'Note', 'F', 'Create', 'Failed', now() - interval '40 days');
          INSERT INTO es_consumer.sync_log (producer, seq, doctype, docname, update_type,
                                            status, parked_behind, created_at)
          VALUES ('hq', 7, 'Note', 'F', 'Update', 'Parked', 100, now() - interval '40 days'),
                 ('hq', 8, 'Note', 'N8', 'Create', 'Synced', NULL, now() - interval '2 days');)").ok());
  auto pool = std::make_shared<pg::ConnectionPool>(SharedCluster().Url(db_), "test");
  SyncLogTrimmer::Options options;
  options.retention = absl::Hours(24 * 30);
  options.batch = 2;  // three batches
  SyncLogTrimmer trimmer(pool, options);
  absl::StatusOr<int64_t> trimmed = trimmer.TrimOnce(absl::Now());
  ASSERT_TRUE(trimmed.ok()) << trimmed.status();
  EXPECT_EQ(*trimmed, 5);
  EXPECT_EQ(All("SELECT seq || ':' || status FROM es_consumer.sync_log ORDER BY seq"),
            "6:Failed;7:Parked;8:Synced");
  // Nothing more to do; zero retention never trims.
  EXPECT_EQ(*trimmer.TrimOnce(absl::Now()), 0);
  // A later pass takes the rows that aged since.
  EXPECT_EQ(*trimmer.TrimOnce(absl::Now() + absl::Hours(24 * 29)), 1);
  SyncLogTrimmer never(pool, SyncLogTrimmer::Options{absl::ZeroDuration()});
  EXPECT_EQ(*never.TrimOnce(absl::Now() + absl::Hours(24 * 365)), 0);
}

// The trimmer VACUUMs the sync log itself once its deletes left enough dead
// rows (so its bytes stay bounded even when a crash reset autovacuum's
// counts), and not again within min_interval.
TEST_F(ApplyTest, TrimmedSyncLogRowsAreVacuumedOnceEnoughAreDead) {
  auto vacuums = [&] {
    return std::stoll(One("SELECT vacuum_count FROM pg_stat_user_tables"
                          " WHERE relid = 'es_consumer.sync_log'::regclass"));
  };
  auto add_old_rows = [&](int from) {
    ASSERT_TRUE(conn_->Exec(
        "INSERT INTO es_consumer.sync_log (producer, seq, doctype, docname, update_type,"
        " status, created_at) SELECT 'hq', g, 'Note', 'N' || g, 'Create', 'Synced',"
        " now() - interval '40 days' FROM generate_series($1::bigint, $1::bigint + 11) g",
        {from}).ok());
  };
  const int64_t before = vacuums();
  auto pool = std::make_shared<pg::ConnectionPool>(SharedCluster().Url(db_), "test");
  SyncLogTrimmer::Options options;
  options.retention = absl::Hours(24 * 30);
  options.vacuum = QueueVacuumPolicy{10, absl::Minutes(1)};
  SyncLogTrimmer trimmer(pool, options);
  const absl::Time now = absl::Now();
  add_old_rows(1);
  EXPECT_EQ(*trimmer.TrimOnce(now), 12);
  // PostgreSQL 15 counts a VACUUM in the shared statistics at once.
  EXPECT_EQ(vacuums(), before + 1);
  add_old_rows(100);  // not again within min_interval
  EXPECT_EQ(*trimmer.TrimOnce(now + absl::Seconds(30)), 12);
  EXPECT_EQ(vacuums(), before + 1);
  EXPECT_EQ(*trimmer.TrimOnce(now + absl::Minutes(2)), 0);  // the 12 still count
  EXPECT_EQ(vacuums(), before + 2);
}

// ---- parallel apply: apply_workers (issue 17) -------------------------------

// Two batches over many documents: Creates with child rows, links to a
// document of the batch and to missing ones (fetched), Updates, a Rename,
// Deletes, a failing Memo with entries parked behind it, Tasks named by a
// series (one lane), a Sync.
std::vector<std::vector<v1::UpdateLogEntry>> MixedBatches() {
  std::vector<v1::UpdateLogEntry> first;
  int64_t seq = 0;
  for (int i = 0; i < 30; ++i) {
    const std::string n = absl::StrCat("N", i);
    const std::string link = i % 5 == 0 ? "C1" : (i % 7 == 0 ? "C2" : "");
    first.push_back(Entry(
        ++seq, "Note", n, v1::UPDATE_TYPE_CREATE,
        absl::StrCat(R"({"doctype":"Note","name":")", n, R"(","title":"t)", i,
                     R"(","customer":")", link, R"(","items":[)", Row(n + "-r1", 1, "a", i),
                     ",", Row(n + "-r2", 2, "b", 1), "]}")));
  }
  for (int i = 0; i < 30; i += 2) {
    first.push_back(Entry(++seq, "Note", absl::StrCat("N", i), v1::UPDATE_TYPE_UPDATE,
                          absl::StrCat(R"({"changed":{"title":"u)", i, R"("}})")));
  }
  first.push_back(Entry(++seq, "Note", "N3b", v1::UPDATE_TYPE_RENAME,
                        R"({"old_name":"N3","new_name":"N3b"})"));
  first.push_back(Entry(++seq, "Note", "N3b", v1::UPDATE_TYPE_UPDATE,
                        R"({"changed":{"title":"renamed","ref_type":"Note","ref_name":"N1"}})"));
  first.push_back(Entry(++seq, "Note", "N4", v1::UPDATE_TYPE_DELETE));
  first.push_back(Entry(++seq, "Memo", "M1", v1::UPDATE_TYPE_CREATE,
                        R"({"doctype":"Memo","name":"M1","text":"no code"})"));
  first.push_back(Entry(++seq, "Memo", "M2", v1::UPDATE_TYPE_CREATE,
                        R"({"doctype":"Memo","name":"M2","code":"c","text":"fine"})"));
  first.push_back(
      Entry(++seq, "Memo", "M1", v1::UPDATE_TYPE_UPDATE, R"({"changed":{"text":"v2"}})"));
  for (const char* t : {"T1", "T2", "T3"}) {
    first.push_back(Entry(++seq, "Task", t, v1::UPDATE_TYPE_CREATE,
                          absl::StrCat(R"({"doctype":"Task","name":")", t,
                                       R"(","subject":"s"})")));
  }
  first.push_back(Entry(++seq, "Task", "T9", v1::UPDATE_TYPE_RENAME,
                        R"({"old_name":"T1","new_name":"T9"})"));
  std::vector<v1::UpdateLogEntry> second;
  second.push_back(
      Entry(++seq, "Memo", "M1", v1::UPDATE_TYPE_UPDATE, R"({"changed":{"text":"v3"}})"));
  for (int i = 10; i < 20; ++i) {
    second.push_back(Entry(++seq, "Note", absl::StrCat("N", i), v1::UPDATE_TYPE_DELETE));
  }
  second.push_back(Entry(++seq, "Note", "N21", v1::UPDATE_TYPE_SYNC,
                         R"({"doctype":"Note","name":"N21","title":"synced","items":[]})"));
  return {first, second};
}

class ParallelApplyTest : public ApplyTest {
 protected:
  // Empties the site and applies with `workers`, lanes on their own
  // connections.
  void Restart(int workers) {
    Exec("TRUNCATE \"tabNote\", \"tabNote Item\", \"tabCustomer\", \"tabTask\","
         " \"tabTask Item\", \"tabMemo\", origin_seen, es_consumer.sync_log,"
         " es_consumer.last_update, es_consumer.same_name_copy, es_consumer.series,"
         " es_consumer.lane_commit RESTART IDENTITY");
    config_->consumer->producers[0].apply_workers = workers;
    applier_ = std::make_unique<Applier>(*config_, SharedCluster().Url(db_));
  }
  // What the batches left, independent of sync log ids (a Parked row names
  // the seq of its Failed row).
  std::string Site() {
    return absl::StrCat(
        All("SELECT name, title, customer, ref_name, docstatus FROM \"tabNote\" ORDER BY name"),
        "\n", All("SELECT name, parent, item, qty FROM \"tabNote Item\" ORDER BY name"), "\n",
        All("SELECT name, customer_name FROM \"tabCustomer\" ORDER BY name"), "\n",
        All("SELECT name, remote_docname, subject FROM \"tabTask\" ORDER BY name"), "\n",
        All("SELECT name, code, text FROM \"tabMemo\" ORDER BY name"), "\n",
        All("SELECT s.seq, s.doctype, s.docname, s.update_type, s.status, s.error, s.note,"
            " b.seq, s.local_doctype, s.local_docname FROM es_consumer.sync_log s"
            " LEFT JOIN es_consumer.sync_log b ON b.id = s.parked_behind ORDER BY s.seq"),
        "\n",
        All("SELECT doctype, docname, released_at IS NULL FROM es_consumer.same_name_copy"
            " ORDER BY doctype, docname"),
        "\n", All("SELECT DISTINCT origin FROM origin_seen"), "\n",
        All("SELECT last_seq FROM es_consumer.last_update"), "\n",
        All("SELECT count(*) FROM es_consumer.lane_commit"));
  }
};

TEST_F(ParallelApplyTest, TwoAndFourWorkersLeaveWhatOneTransactionLeaves) {
  producer_.Put(R"({"doctype":"Customer","name":"C1","customer_name":"One"})");
  producer_.Put(R"({"doctype":"Customer","name":"C2","customer_name":"Two"})");
  // Which sessions wrote the Notes: more than one when lanes ran.
  Exec("CREATE TABLE writer_pid (pid int)");
  Exec("CREATE FUNCTION see_pid() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
       " INSERT INTO writer_pid VALUES (pg_backend_pid()); RETURN NEW; END $$");
  Exec("CREATE TRIGGER see_pid AFTER INSERT ON \"tabNote\" FOR EACH ROW"
       " EXECUTE FUNCTION see_pid()");
  std::string expected;
  for (int workers : {1, 2, 4}) {
    SCOPED_TRACE(absl::StrCat("apply_workers: ", workers));
    Restart(workers);
    Exec("TRUNCATE writer_pid");
    int64_t synced = 0, failed = 0, parked = 0;
    for (const auto& batch : MixedBatches()) {
      ApplyResult r = Apply(batch);
      synced += r.synced;
      failed += r.failed;
      parked += r.parked;
    }
    EXPECT_EQ(failed, 1);  // M1
    EXPECT_EQ(parked, 2);  // M1's Updates
    const std::string site = Site();
    if (workers == 1) {
      expected = site;
      EXPECT_EQ(One("SELECT count(DISTINCT pid) FROM writer_pid"), "1");
    } else {
      EXPECT_EQ(site, expected);
      EXPECT_GT(std::stoi(One("SELECT count(DISTINCT pid) FROM writer_pid")), 1);
    }
  }
  EXPECT_NE(expected.find("hq"), std::string::npos);  // the lanes tagged their writes too
}

TEST_F(ParallelApplyTest, SeqsALaneCommittedBeforeACrashAreNotAppliedAgain) {
  auto batch = [] {
    std::vector<v1::UpdateLogEntry> out;
    for (int i = 1; i <= 6; ++i) {
      const std::string n = absl::StrCat("N", i);
      out.push_back(Entry(i, "Note", n, v1::UPDATE_TYPE_CREATE,
                          absl::StrCat(R"({"doctype":"Note","name":")", n, R"(","title":"t"})")));
    }
    return out;
  };
  for (int workers : {1, 4}) {
    SCOPED_TRACE(absl::StrCat("apply_workers: ", workers));
    Restart(workers);
    // A lane of the batch committed seqs 2 and 5 (and one beyond it, 9),
    // then the process died before the watermark moved.
    Exec("INSERT INTO es_consumer.lane_commit (producer, max_seq, seqs)"
         " VALUES ('hq', 5, '{2,5}'), ('hq', 9, '{9}')");
    ApplyResult r = Apply(batch());
    EXPECT_EQ(r.synced, 4);
    EXPECT_EQ(r.last_seq, 6);
    EXPECT_EQ(All("SELECT seq FROM es_consumer.sync_log ORDER BY seq"), "1;3;4;6");
    EXPECT_EQ(All("SELECT name FROM \"tabNote\" ORDER BY name"), "N1;N3;N4;N6");
    // The watermark passed the first row, not the second.
    EXPECT_EQ(All("SELECT max_seq FROM es_consumer.lane_commit"), "9");
  }
}

}  // namespace
}  // namespace eventstream::testing
