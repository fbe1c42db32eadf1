// End to end: the real eventstream-producer on an `hq` database and the real
// eventstream-consumer on a `branch` database (tests/support/two_sites.h),
// documents written on hq with plain SQL and waited for on branch. Notify
// drives the flow (the consumer advertises its address); a short
// poll_interval is the fallback.
//
// Scenarios (issue 4, "Tests"): insert with child rows and exact numerics;
// update; delete; several DocTypes in one pull; a child-row Link to an
// unsubscribed DocType and a Dynamic Link (dependencies fetched with
// GetDocument); use_same_name: false; a condition (expression and cmd:) that
// becomes true; the update log on hq and the sync log on branch; a mapping
// with create, update and delete; a `Document` inner mapping, and Frappe's
// own inner-mapping example (remote_value_filters {"title": "title"}); a failing entry
// that parks a later one until Resync; a consumer stopped during 1,000
// changes; and kill -9 of the consumer at random moments during 5,000
// changes (sites equal, nothing applied twice); what the consumer applies on
// a site that also captures keeps its origin.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "eventstream/v1/consumer.grpc.pb.h"
#include "eventstream/v1/producer.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "libsync/model/doctype.h"
#include "libsync/base/migrate.h"
#include "libsync/base/pg.h"
#include "services/producer/capture.h"
#include "tests/support/frappe_schema.h"
#include "tests/support/http_get.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/two_sites.h"
#include "tests/support/grpc/producer_calls.h"

namespace eventstream::testing {
namespace {

// One registry for both sites: hq's Sales Orders become branch's Purchase
// Orders through a mapping; User, Project and Customer are never subscribed
// (they only arrive as dependencies).
const std::vector<std::string> kNoteFields = {"public", "amount", "ref_type", "ref_name",
                                              "items"};

const std::string kDocTypes = NoteDocType(kNoteFields) + NoteItemDocType({"qty", "user"}) +
                              R"(  - name: User
    fields:
      - {fieldname: full_name, fieldtype: Data}
  - name: Project
    fields:
      - {fieldname: title, fieldtype: Data}
  - name: Task
    autoname: hash
    fields:
      - {fieldname: subject, fieldtype: Data}
)" + kMemoDocType + R"(  - name: Customer
    fields:
      - {fieldname: customer_name, fieldtype: Data}
)" + SalesOrderDocTypes() + PurchaseOrderDocTypes();

std::string Tables() {
  return absl::StrCat(
      NoteTable(kNoteFields),
      NoteItemTable({"qty", "user"}),
      FrappeTable("User", "full_name text"), FrappeTable("Project", "title text"),
      FrappeTable("Task", "subject text"), FrappeTable("Memo", "code text, text text"),
      FrappeTable("Customer", "customer_name text"), SalesOrderTables(),
      PurchaseOrderTables(),
      // A cmd: condition: the same test as "doc.public == 1".
      "CREATE FUNCTION public.e2e_visible(consumer text, doc jsonb, update_log jsonb)\n"
      "  RETURNS boolean LANGUAGE sql AS $$ SELECT (doc->>'public') = '1' $$;\n");
}

// The columns that replicate, per table (for comparing the two sites).
constexpr char kNoteColumns[] = "name, title, public, amount, docstatus, ref_type, ref_name";
constexpr char kNoteItemColumns[] = "name, parent, parenttype, parentfield, idx, item, qty, \"user\"";

// A spec with every table and the given subscriptions, each pre-approved at
// hq for its producer-side DocType (`approve`).
TwoSites::Spec BaseSpec(const std::string& subscriptions,
                        const std::vector<std::string>& approve) {
  TwoSites::Spec spec;
  spec.hq_doctypes = kDocTypes;
  spec.hq_sql = Tables();
  spec.subscriptions = subscriptions;
  spec.condition_functions = {"public.e2e_visible"};
  for (const auto& doctype : approve)
    absl::StrAppend(&spec.pre_approvals, "        - {doctype: ", doctype,
                    ", status: approved}\n");
  return spec;
}

constexpr char kNoteSameName[] = "        - {doctype: Note, use_same_name: true}\n";
constexpr char kNoteNoInitialSync[] =
    "        - {doctype: Note, use_same_name: true, initial_sync: false}\n";

class E2ETest : public ::testing::Test {
 protected:
  // Creates both sites, starts both services and waits until hq lists
  // branch's `subscriptions` all approved (`rpc_approve` are approved with
  // SetSubscriptionStatus, the rest must be pre-approved in the spec).
  void Start(TwoSites::Spec spec, const std::vector<std::string>& rpc_approve = {}) {
    const int expected = static_cast<int>(Occurrences(spec.subscriptions, "doctype:"));
    StartHq(std::move(spec));
    StartConsumer();
    ASSERT_TRUE(Eventually([&] { return HqConsumer().subscriptions_size() == expected; }))
        << sites_->Logs();
    for (const auto& doctype : rpc_approve) Approve(doctype);
    ASSERT_TRUE(Eventually([&] {
      v1::ConsumerInfo c = HqConsumer();
      for (const auto& sub : c.subscriptions())
        if (sub.status() != v1::SUBSCRIPTION_STATUS_APPROVED) return false;
      return c.subscriptions_size() == expected;
    })) << HqConsumer().DebugString();
  }

  // Creates both sites and starts the producer alone.
  void StartHq(TwoSites::Spec spec) {
    auto sites = TwoSites::Create(std::move(spec));
    ASSERT_TRUE(sites.ok()) << sites.status();
    sites_ = std::move(*sites);
    absl::Status s = sites_->StartProducer();
    ASSERT_TRUE(s.ok()) << s;
    hq_stub_ = v1::Producer::NewStub(
        grpc::CreateChannel(sites_->producer_address(), grpc::InsecureChannelCredentials()));
  }

  void StartConsumer() {
    absl::Status s = sites_->StartConsumer();
    ASSERT_TRUE(s.ok()) << s;
    stub_ = v1::Consumer::NewStub(
        grpc::CreateChannel(sites_->consumer_address(), grpc::InsecureChannelCredentials()));
  }

  pg::Connection* hq() { return sites_->hq(); }
  pg::Connection* branch() { return sites_->branch(); }

  void Hq(const std::string& sql) {
    absl::Status s = hq()->ExecScript(sql);
    ASSERT_TRUE(s.ok()) << s << "\n" << sql;
  }
  std::string OnBranch(const std::string& sql) { return QueryText(branch(), sql); }
  std::string OnHq(const std::string& sql) { return QueryText(hq(), sql); }

  // Waits until `sql` on branch answers `expected`.
  void AwaitBranch(const std::string& sql, const std::string& expected,
                   absl::Duration timeout = absl::Seconds(30)) {
    ASSERT_TRUE(Eventually([&] { return OnBranch(sql) == expected; }, timeout))
        << sql << "\n  is " << OnBranch(sql) << ", expected " << expected << "\n"
        << sites_->Logs();
  }

  // "count:md5" over `columns` of the rows of `table` matching `where`,
  // ordered by name.
  static std::string Digest(pg::Connection* conn, const std::string& table,
                            const std::string& columns, const std::string& where = "TRUE") {
    return QueryText(conn, absl::StrCat(
        "SELECT count(*) || ':' || coalesce(md5(string_agg(row_to_json(t)::text, ',' "
        "ORDER BY t.name)), '') FROM (SELECT ", columns, " FROM \"", table, "\" WHERE ",
        where, ") t"));
  }
  // Whether branch holds exactly hq's Notes matching `where` (and their rows).
  bool BranchHoldsNotesWhere(const std::string& where) {
    const std::string items = absl::StrCat(
        "parent IN (SELECT name FROM \"tabNote\" WHERE ", where, ")");
    return Digest(hq(), "tabNote", kNoteColumns, where) ==
               Digest(branch(), "tabNote", kNoteColumns) &&
           Digest(hq(), "tabNote Item", kNoteItemColumns, items) ==
               Digest(branch(), "tabNote Item", kNoteItemColumns);
  }
  void AwaitBranchHoldsNotesWhere(const std::string& where,
                                  absl::Duration timeout = absl::Seconds(60)) {
    ASSERT_TRUE(Eventually([&] { return BranchHoldsNotesWhere(where); }, timeout))
        << "hq " << Digest(hq(), "tabNote", kNoteColumns, where) << " branch "
        << Digest(branch(), "tabNote", kNoteColumns) << "\n" << sites_->Logs();
  }
  bool SameOnBothSites(const std::string& table, const std::string& columns) {
    return Digest(hq(), table, columns) == Digest(branch(), table, columns);
  }
  bool NotesEqual() {
    return SameOnBothSites("tabNote", kNoteColumns) &&
           SameOnBothSites("tabNote Item", kNoteItemColumns);
  }
  // After the kill tests' 5,000 changes (2,500 Notes stay): the sites
  // are equal and every entry was applied exactly once.
  void ExpectKilledWorkloadApplied();
  void AwaitNotesEqual(absl::Duration timeout = absl::Seconds(30)) {
    ASSERT_TRUE(Eventually([&] { return NotesEqual(); }, timeout))
        << "hq " << Digest(hq(), "tabNote", kNoteColumns) << " "
        << Digest(hq(), "tabNote Item", kNoteItemColumns) << " branch "
        << Digest(branch(), "tabNote", kNoteColumns) << " "
        << Digest(branch(), "tabNote Item", kNoteItemColumns) << "\n"
        << sites_->Logs();
  }

  // ---- RPCs ----

  v1::ConsumerInfo HqConsumer() {
    return ConsumerOf(hq_stub_.get(), TwoSites::kHqAdmin, "branch");
  }

  void Approve(const std::string& doctype) {
    SetStatus(doctype, v1::SUBSCRIPTION_STATUS_APPROVED);
  }
  void SetStatus(const std::string& doctype, v1::SubscriptionStatus status) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", TwoSites::kHqAdmin);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::SetSubscriptionStatusRequest req;
    req.set_consumer_site("branch");
    req.set_doctype(doctype);
    req.set_status(status);
    v1::SetSubscriptionStatusResponse resp;
    grpc::Status s = hq_stub_->SetSubscriptionStatus(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  v1::PullNowResponse PullNow() {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", TwoSites::kBranchAdmin);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::PullNowRequest req;
    req.set_producer("hq");
    v1::PullNowResponse resp;
    grpc::Status s = stub_->PullNow(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  std::vector<v1::SyncLogEntry> SyncLog(const std::string& doctype = "",
                                        v1::SyncStatus status = v1::SYNC_STATUS_UNSPECIFIED) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", TwoSites::kBranchAdmin);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ListSyncLogRequest req;
    req.set_producer("hq");
    req.set_doctype(doctype);
    req.set_status(status);
    req.set_limit(1000);
    v1::ListSyncLogResponse resp;
    grpc::Status s = stub_->ListSyncLog(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    // Oldest first reads better in tests; by seq, which ids follow only per
    // document when batches are applied in lanes (ES_TEST_APPLY_WORKERS).
    std::vector<v1::SyncLogEntry> log(resp.entries().rbegin(), resp.entries().rend());
    std::stable_sort(log.begin(), log.end(),
                     [](const v1::SyncLogEntry& a, const v1::SyncLogEntry& b) {
                       return a.seq() < b.seq();
                     });
    return log;
  }

  // "Create:N1:Synced Update:N1:Synced ..." of the sync log, oldest first.
  std::string SyncSummary(const std::string& doctype = "") {
    std::vector<std::string> parts;
    for (const auto& e : SyncLog(doctype)) {
      parts.push_back(absl::StrCat(Word(v1::UpdateType_Name(e.update_type()).substr(12)), ":",
                                   e.docname(), ":",
                                   Word(v1::SyncStatus_Name(e.status()).substr(12))));
    }
    return absl::StrJoin(parts, " ");
  }

  // "CREATE" -> "Create".
  static std::string Word(std::string upper) {
    for (size_t i = 1; i < upper.size(); ++i) upper[i] = absl::ascii_tolower(upper[i]);
    return upper;
  }

  grpc::Status Resync(int64_t id, v1::ResyncResponse* resp) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", TwoSites::kBranchAdmin);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::ResyncRequest req;
    req.set_id(id);
    return stub_->Resync(&ctx, req, resp);
  }

  int64_t HqLogCount() { return QueryInt(hq(), "SELECT count(*) FROM es_producer.update_log"); }
  void AwaitHqLog(int64_t n) {
    ASSERT_TRUE(Eventually([&] { return HqLogCount() == n; }))
        << HqLogCount() << " entries, expected " << n << "\n" << sites_->Logs();
  }

  std::unique_ptr<TwoSites> sites_;
  std::unique_ptr<v1::Producer::Stub> hq_stub_;
  std::unique_ptr<v1::Consumer::Stub> stub_;
};

constexpr char kNumeric[] = "12345678901234567.123456789";

TEST_F(E2ETest, InsertWithChildRowsAndExactNumerics) {
  Start(BaseSpec(kNoteSameName, {"Note"}));
  Hq(absl::StrCat(R"(BEGIN;
    INSERT INTO "tabNote" (name, title, public, amount) VALUES ('N1', 'First', 1, ')",
                  kNumeric, R"(');
    INSERT INTO "tabNote Item" (name, idx, parent, parenttype, parentfield, item, qty) VALUES
      ('N1-a', 1, 'N1', 'Note', 'items', 'apple', 0.000000001),
      ('N1-b', 2, 'N1', 'Note', 'items', 'pear', 98765432109876543.5);
    COMMIT;)"));
  AwaitBranch("SELECT count(*) FROM \"tabNote\" WHERE name = 'N1'", "1");
  EXPECT_EQ(OnBranch("SELECT amount::text FROM \"tabNote\" WHERE name = 'N1'"), kNumeric);
  EXPECT_EQ(OnBranch("SELECT string_agg(name || '|' || item || '|' || qty::text || '|' || "
                     "parent || '|' || parentfield, ';' ORDER BY idx) FROM \"tabNote Item\""),
            "N1-a|apple|0.000000001|N1|items;N1-b|pear|98765432109876543.500000000|N1|items");
  EXPECT_TRUE(NotesEqual()) << sites_->Logs();
  EXPECT_EQ(SyncSummary(), "Create:N1:Synced");
}

TEST_F(E2ETest, Update) {
  Start(BaseSpec(kNoteSameName, {"Note"}));
  Hq(R"(BEGIN;
    INSERT INTO "tabNote" (name, title, amount) VALUES ('N1', 'First', 1.5);
    INSERT INTO "tabNote Item" (name, idx, parent, parenttype, parentfield, item, qty) VALUES
      ('N1-a', 1, 'N1', 'Note', 'items', 'apple', 1),
      ('N1-b', 2, 'N1', 'Note', 'items', 'pear', 2);
    COMMIT;)");
  AwaitBranch("SELECT count(*) FROM \"tabNote Item\"", "2");
  // Changed fields, a changed row, a removed row and an added row at once.
  Hq(absl::StrCat(R"(BEGIN;
    UPDATE "tabNote" SET title = 'Second', amount = ')", kNumeric, R"(' WHERE name = 'N1';
    UPDATE "tabNote Item" SET qty = 3.25 WHERE name = 'N1-a';
    DELETE FROM "tabNote Item" WHERE name = 'N1-b';
    INSERT INTO "tabNote Item" (name, idx, parent, parenttype, parentfield, item, qty) VALUES
      ('N1-c', 2, 'N1', 'Note', 'items', 'plum', 7);
    COMMIT;)"));
  AwaitNotesEqual();
  EXPECT_EQ(OnBranch("SELECT title || '|' || amount::text FROM \"tabNote\""),
            absl::StrCat("Second|", kNumeric));
  EXPECT_EQ(OnBranch("SELECT string_agg(name || '|' || qty::text, ';' ORDER BY idx) "
                     "FROM \"tabNote Item\""),
            "N1-a|3.250000000;N1-c|7.000000000");
  EXPECT_EQ(SyncSummary(), "Create:N1:Synced Update:N1:Synced");
}

TEST_F(E2ETest, Delete) {
  Start(BaseSpec(kNoteSameName, {"Note"}));
  Hq(R"(BEGIN;
    INSERT INTO "tabNote" (name, title) VALUES ('N1', 'First'), ('N2', 'Second');
    INSERT INTO "tabNote Item" (name, idx, parent, parenttype, parentfield, item) VALUES
      ('N1-a', 1, 'N1', 'Note', 'items', 'apple'), ('N1-b', 2, 'N1', 'Note', 'items', 'pear');
    COMMIT;)");
  AwaitBranch("SELECT count(*) FROM \"tabNote Item\"", "2");
  AwaitBranch("SELECT count(*) FROM \"tabNote\"", "2");
  Hq(R"(BEGIN;
    DELETE FROM "tabNote Item" WHERE parent = 'N1';
    DELETE FROM "tabNote" WHERE name = 'N1';
    COMMIT;)");
  AwaitBranch("SELECT string_agg(name, ',') FROM \"tabNote\"", "N2");
  EXPECT_EQ(OnBranch("SELECT count(*) FROM \"tabNote Item\""), "0");
  EXPECT_TRUE(NotesEqual());
  EXPECT_EQ(SyncSummary(), "Create:N1:Synced Create:N2:Synced Delete:N1:Synced");
}

// Issue 13 item 11 (a guard, not a regression test): on a site that also
// runs a producer, what the consumer applies still carries its producer as
// origin through the SECURITY DEFINER capture trigger, so that site's
// producer does not echo it back; the site's own writes stay local.
TEST_F(E2ETest, AppliedChangesCarryTheirOriginThroughCapture) {
  Start(BaseSpec(kNoteSameName, {"Note"}));
  // Capture on branch, as a producer of branch's own would install it.
  ASSERT_TRUE(ApplyMigrations(branch(), "es_producer", ProducerMigrations()).ok());
  std::vector<DocTypeDef> defs(2);
  defs[0].name = "Note";
  defs[0].fields = {FieldDef{"items", "Table", "Note Item"}};
  defs[1].name = "Note Item";
  defs[1].istable = true;
  auto registry = DocTypeRegistry::Create(std::move(defs));
  ASSERT_TRUE(registry.ok()) << registry.status();
  absl::Status synced = CaptureInstaller().SyncTriggers(branch(), *registry, {"Note"});
  ASSERT_TRUE(synced.ok()) << synced;

  Hq(R"(BEGIN;
    INSERT INTO "tabNote" (name, title) VALUES ('N1', 'from hq');
    INSERT INTO "tabNote Item" (name, idx, parent, parenttype, parentfield, item)
      VALUES ('N1-a', 1, 'N1', 'Note', 'items', 'apple');
    COMMIT;)");
  AwaitBranch("SELECT count(*) FROM \"tabNote Item\"", "1");
  ASSERT_TRUE(branch()->ExecScript(
      R"(INSERT INTO "tabNote" (name, title) VALUES ('L1', 'branch''s own'))").ok());
  EXPECT_EQ(OnBranch("SELECT string_agg(table_name || ':' || coalesce(origin, 'local'), ' '"
                     " ORDER BY table_name, origin) FROM es_producer.raw_change"),
            "tabNote:hq tabNote:local tabNote Item:hq");
}

TEST_F(E2ETest, SeveralDocTypesInOnePull) {
  Start(BaseSpec(absl::StrCat(kNoteSameName,
                              "        - {doctype: Memo, use_same_name: true}\n"
                              "        - {doctype: Task, use_same_name: true}\n"),
                 {"Note", "Memo", "Task"}));
  // With the consumer down, all three pile up; its pull at start takes them.
  auto log = sites_->StopConsumer();
  ASSERT_TRUE(log.ok()) << log.status();
  Hq(R"(INSERT INTO "tabNote" (name, title) VALUES ('N1', 'note');
        INSERT INTO "tabMemo" (name, code, text) VALUES ('M1', 'c1', 'memo');
        INSERT INTO "tabTask" (name, subject) VALUES ('T1', 'task');)");
  AwaitHqLog(3);
  StartConsumer();
  AwaitBranch("SELECT (SELECT title FROM \"tabNote\" WHERE name = 'N1') || '|' || "
              "(SELECT text FROM \"tabMemo\" WHERE name = 'M1') || '|' || "
              "(SELECT subject FROM \"tabTask\" WHERE name = 'T1')",
              "note|memo|task");
  // The log line follows the commit that made the rows visible: wait for it.
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(sites_->ConsumerLog(),
                             "pulled 3 entries (3 synced, 0 failed, 0 parked)");
  }, absl::Seconds(10))) << sites_->ConsumerLog();
  EXPECT_EQ(SyncSummary(), "Create:N1:Synced Create:M1:Synced Create:T1:Synced");
}

TEST_F(E2ETest, ChildRowLinkToUnsubscribedDocTypeIsFetched) {
  Start(BaseSpec(kNoteSameName, {"Note"}));
  Hq(R"(INSERT INTO "tabUser" (name, full_name) VALUES ('U1', 'Ann'), ('U2', 'Bob');
    BEGIN;
    INSERT INTO "tabNote" (name, title) VALUES ('N1', 'seen');
    INSERT INTO "tabNote Item" (name, idx, parent, parenttype, parentfield, item, "user")
      VALUES ('N1-a', 1, 'N1', 'Note', 'items', 'x', 'U1');
    COMMIT;)");
  AwaitBranch("SELECT count(*) FROM \"tabNote\" WHERE name = 'N1'", "1");
  EXPECT_EQ(OnBranch("SELECT string_agg(name || '|' || full_name, ';') FROM \"tabUser\""),
            "U1|Ann");
  EXPECT_EQ(OnBranch("SELECT \"user\" FROM \"tabNote Item\""), "U1");
  // User is not subscribed: no entries of its own.
  EXPECT_EQ(SyncSummary(), "Create:N1:Synced");
  EXPECT_EQ(OnHq("SELECT count(*) FROM es_producer.update_log WHERE doctype = 'User'"), "0");
}

TEST_F(E2ETest, DynamicLinkDependencyIsFetched) {
  Start(BaseSpec(kNoteSameName, {"Note"}));
  Hq(R"(INSERT INTO "tabProject" (name, title) VALUES ('PR1', 'Alpha'), ('PR2', 'Beta');
    INSERT INTO "tabNote" (name, title, ref_type, ref_name)
      VALUES ('N1', 'about alpha', 'Project', 'PR1');)");
  AwaitBranch("SELECT count(*) FROM \"tabNote\" WHERE name = 'N1'", "1");
  EXPECT_EQ(OnBranch("SELECT string_agg(name || '|' || title, ';') FROM \"tabProject\""),
            "PR1|Alpha");
  EXPECT_EQ(OnBranch("SELECT ref_type || '|' || ref_name FROM \"tabNote\""), "Project|PR1");
  EXPECT_TRUE(NotesEqual());
}

TEST_F(E2ETest, LocalNamesFindTheRowByRemoteName) {
  Start(BaseSpec("        - {doctype: Task, use_same_name: false}\n", {"Task"}));
  Hq(R"(INSERT INTO "tabTask" (name, subject) VALUES ('T-remote', 'first'))");
  AwaitBranch("SELECT count(*) FROM \"tabTask\"", "1");
  const std::string local = OnBranch(
      "SELECT name FROM \"tabTask\" WHERE remote_docname = 'T-remote' AND "
      "remote_site_name = 'hq'");
  EXPECT_NE(local, "T-remote");
  EXPECT_FALSE(absl::StartsWith(local, "<")) << local;
  EXPECT_EQ(OnBranch("SELECT subject FROM \"tabTask\""), "first");
  std::vector<v1::SyncLogEntry> log = SyncLog("Task");
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].docname(), "T-remote");
  EXPECT_EQ(log[0].local_docname(), local);

  Hq(R"(UPDATE "tabTask" SET subject = 'second' WHERE name = 'T-remote')");
  AwaitBranch("SELECT name || '|' || subject FROM \"tabTask\"", local + "|second");
  Hq(R"(DELETE FROM "tabTask" WHERE name = 'T-remote')");
  AwaitBranch("SELECT count(*) FROM \"tabTask\"", "0");
  EXPECT_EQ(SyncSummary("Task"),
            "Create:T-remote:Synced Update:T-remote:Synced Delete:T-remote:Synced");
}

class ConditionTest : public E2ETest,
                      public ::testing::WithParamInterface<const char*> {};

// Membership (issue 14): a document not visible at first (and updated
// meanwhile) arrives as it is now once an update makes the condition true
// (a Sync); one that stops passing is deleted here (on_move_out: delete,
// the default) and comes back whole when it passes again.
TEST_P(ConditionTest, MoveInBringsTheCurrentDocumentAndMoveOutDeletesIt) {
  Start(BaseSpec(absl::StrCat("        - {doctype: Note, use_same_name: true, condition: \"",
                              GetParam(), "\"}\n"),
                 {"Note"}));
  // Four transactions (one ExecScript is one transaction).
  Hq(R"(INSERT INTO "tabNote" (name, title, public) VALUES ('N1', 'draft', 0))");
  Hq(R"(INSERT INTO "tabNote" (name, title, public) VALUES ('P1', 'open', 1))");
  Hq(R"(UPDATE "tabNote" SET title = 'second' WHERE name = 'N1')");
  Hq(R"(INSERT INTO "tabNote Item" (name, idx, parent, parenttype, parentfield, item)
          VALUES ('N1-a', 1, 'N1', 'Note', 'items', 'row'))");
  ASSERT_NO_FATAL_FAILURE(AwaitHqLog(4));
  AwaitBranch("SELECT count(*) FROM \"tabNote\" WHERE name = 'P1'", "1");
  PullNow();
  EXPECT_EQ(OnBranch("SELECT count(*) FROM \"tabNote\" WHERE name = 'N1'"), "0");

  Hq(R"(UPDATE "tabNote" SET public = 1 WHERE name = 'N1')");
  AwaitBranch("SELECT title || '|' || public FROM \"tabNote\" WHERE name = 'N1'", "second|1");
  AwaitNotesEqual();
  EXPECT_EQ(SyncSummary(), "Sync:P1:Synced Sync:N1:Synced");

  // Visible, then hidden (deleted here), changed while hidden, visible
  // again: it comes back as it is now (a pull between each step).
  Hq(R"(INSERT INTO "tabNote" (name, title, public) VALUES ('V1', 'a', 1))");
  AwaitBranch("SELECT title FROM \"tabNote\" WHERE name = 'V1'", "a");
  Hq(R"(UPDATE "tabNote" SET public = 0 WHERE name = 'V1')");
  ASSERT_NO_FATAL_FAILURE(AwaitHqLog(7));
  PullNow();
  Hq(R"(UPDATE "tabNote" SET title = 'b' WHERE name = 'V1')");
  ASSERT_NO_FATAL_FAILURE(AwaitHqLog(8));
  PullNow();
  EXPECT_EQ(OnBranch("SELECT count(*) FROM \"tabNote\" WHERE name = 'V1'"), "0");
  Hq(R"(UPDATE "tabNote" SET public = 1 WHERE name = 'V1')");
  AwaitBranch("SELECT title || '|' || public FROM \"tabNote\" WHERE name = 'V1'", "b|1");
  AwaitNotesEqual();
}

INSTANTIATE_TEST_SUITE_P(ExpressionAndCmd, ConditionTest,
                         ::testing::Values("doc.public == 1", "cmd:public.e2e_visible"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.index == 0 ? "Expression" : "Cmd");
                         });

TEST_F(E2ETest, UpdateLogEntryExistsOnProducer) {
  Start(BaseSpec(kNoteSameName, {"Note"}));
  Hq(absl::StrCat("INSERT INTO \"tabNote\" (name, title, amount) VALUES ('N1', 'logged', '",
                  kNumeric, "')"));
  AwaitHqLog(1);
  EXPECT_EQ(OnHq("SELECT doctype || '|' || docname || '|' || update_type || '|' || "
                 "(data->>'title') || '|' || (data->'amount')::text || '|' || "
                 "coalesce(origin, '-') FROM es_producer.update_log"),
            absl::StrCat("Note|N1|Create|logged|", kNumeric, "|-"));
  const int64_t seq = QueryInt(hq(), "SELECT seq FROM es_producer.update_log");
  AwaitBranch("SELECT count(*) FROM \"tabNote\"", "1");
  // The consumer's pull acknowledged it.
  EXPECT_TRUE(Eventually([&] { return HqConsumer().acknowledged_seq() >= seq; }))
      << HqConsumer().DebugString();
}

TEST_F(E2ETest, SyncLogEntryExistsOnConsumer) {
  Start(BaseSpec(kNoteSameName, {"Note"}));
  Hq(R"(INSERT INTO "tabNote" (name, title) VALUES ('N1', 'synced'))");
  AwaitBranch("SELECT count(*) FROM \"tabNote\"", "1");
  const int64_t seq = QueryInt(hq(), "SELECT seq FROM es_producer.update_log");
  std::vector<v1::SyncLogEntry> log;
  ASSERT_TRUE(Eventually([&] {
    log = SyncLog("Note", v1::SYNC_STATUS_SYNCED);
    return log.size() == 1;
  }));
  EXPECT_EQ(log[0].producer(), "hq");
  EXPECT_EQ(log[0].seq(), seq);
  EXPECT_EQ(log[0].doctype(), "Note");
  EXPECT_EQ(log[0].docname(), "N1");
  EXPECT_EQ(log[0].local_docname(), "N1");
  EXPECT_EQ(log[0].update_type(), v1::UPDATE_TYPE_CREATE);
  EXPECT_TRUE(log[0].error().empty());
  EXPECT_TRUE(absl::StrContains(log[0].data_json(), "\"synced\"")) << log[0].data_json();
  EXPECT_FALSE(log[0].created_at().empty());
  EXPECT_TRUE(SyncLog("Note", v1::SYNC_STATUS_FAILED).empty());
  // The watermark moved past it.
  EXPECT_EQ(QueryInt(branch(), "SELECT last_seq FROM es_consumer.last_update WHERE "
                               "producer = 'hq'"),
            seq);
}

const std::string kSoToPo = std::string(kSoToPoMapping) + kSoiToPoiMapping;

constexpr char kPoSubscription[] =
    "        - {doctype: Purchase Order, use_same_name: true, mapping: so-to-po}\n";

TEST_F(E2ETest, MappingCreatesUpdatesAndDeletes) {
  TwoSites::Spec spec = BaseSpec(kPoSubscription, {"Sales Order"});
  spec.mappings = kSoToPo;
  Start(spec);
  Hq(R"(BEGIN;
    INSERT INTO "tabSales Order" (name, customer) VALUES ('SO1', 'Cust A');
    INSERT INTO "tabSales Order Item" (name, idx, parent, parenttype, parentfield, item_code, qty)
      VALUES ('SO1-a', 1, 'SO1', 'Sales Order', 'items', 'I1', 2),
             ('SO1-b', 2, 'SO1', 'Sales Order', 'items', 'I2', 0.5);
    COMMIT;)");
  AwaitBranch("SELECT name || '|' || supplier_ref FROM \"tabPurchase Order\"", "SO1|Cust A");
  EXPECT_EQ(OnBranch("SELECT string_agg(parent || '|' || parenttype || '|' || parentfield || "
                     "'|' || item || '|' || qty::text, ';' ORDER BY idx) FROM "
                     "\"tabPurchase Order Item\""),
            "SO1|Purchase Order|items|I1|2.000000000;SO1|Purchase Order|items|I2|0.500000000");
  EXPECT_EQ(OnBranch("SELECT count(*) FROM \"tabSales Order\""), "0");

  Hq(R"(BEGIN;
    UPDATE "tabSales Order" SET customer = 'Cust B' WHERE name = 'SO1';
    UPDATE "tabSales Order Item" SET qty = 3 WHERE name = 'SO1-a';
    DELETE FROM "tabSales Order Item" WHERE name = 'SO1-b';
    COMMIT;)");
  AwaitBranch("SELECT supplier_ref FROM \"tabPurchase Order\"", "Cust B");
  AwaitBranch("SELECT string_agg(item || '|' || qty::text, ';') FROM \"tabPurchase Order Item\"",
              "I1|3.000000000");

  Hq(R"(BEGIN;
    DELETE FROM "tabSales Order Item" WHERE parent = 'SO1';
    DELETE FROM "tabSales Order" WHERE name = 'SO1';
    COMMIT;)");
  AwaitBranch("SELECT count(*) FROM \"tabPurchase Order\"", "0");
  EXPECT_EQ(OnBranch("SELECT count(*) FROM \"tabPurchase Order Item\""), "0");
  EXPECT_EQ(SyncSummary(), "Create:SO1:Synced Update:SO1:Synced Delete:SO1:Synced");
}

TEST_F(E2ETest, DocumentInnerMappingCreatesTheDependency) {
  TwoSites::Spec spec = BaseSpec(kPoSubscription, {"Sales Order"});
  // so-to-po plus a Document rule for customer -> customer_link, whose inner
  // mapping `cust` makes the local Customer from hq's.
  spec.mappings = absl::StrReplaceAll(
      kSoToPo, {{"    - name: soi-to-poi\n",
                 "        - remote_fieldname: customer\n"
                 "          local_fieldname: customer_link\n"
                 "          mapping_type: Document\n"
                 "          mapping: cust\n"
                 "          remote_value_filters: {name: doc.customer}\n"
                 "    - name: soi-to-poi\n"}});
  absl::StrAppend(&spec.mappings, kCustomerMapping);
  Start(spec);
  Hq(R"(INSERT INTO "tabCustomer" (name, customer_name) VALUES ('C1', 'Acme'), ('C2', 'Other');
    INSERT INTO "tabSales Order" (name, customer) VALUES ('SO1', 'C1');)");
  AwaitBranch("SELECT count(*) FROM \"tabPurchase Order\"", "1");
  EXPECT_EQ(OnBranch("SELECT string_agg(name || '|' || customer_name, ';') FROM \"tabCustomer\""),
            "C1|Acme");
  EXPECT_EQ(OnBranch("SELECT name || '|' || supplier_ref || '|' || customer_link FROM "
                     "\"tabPurchase Order\""),
            "SO1|C1|C1");
  EXPECT_EQ(SyncSummary(), "Create:SO1:Synced");
}

// Frappe's own inner-mapping example (test_event_producer.py,
// test_inner_mapping), with a mapping written as on a Frappe site: a ToDo
// made from hq's Note; its `role` is the local Role made (through the inner
// mapping Role <- Note, role_name <- title) from the Note that
// remote_value_filters {"title": "title"} selects: the one whose title is
// this Note's title. As in Frappe's test the rule is on remote field
// `title`; hq names Notes by their title, as Frappe's Note does.
constexpr char kFrappeHqDocTypes[] = R"(  - name: Note
    fields:
      - {fieldname: title, fieldtype: Data}
      - {fieldname: content, fieldtype: Text}
)";
constexpr char kFrappeBranchDocTypes[] = R"(  - name: Role
    fields:
      - {fieldname: role_name, fieldtype: Data}
  - name: ToDo
    fields:
      - {fieldname: description, fieldtype: Text}
      - {fieldname: role, fieldtype: Link, options: Role}
)";
constexpr char kFrappeMappings[] = R"(    - name: ToDo to Note Mapping
      local_doctype: ToDo
      remote_doctype: Note
      field_mapping:
        - {local_fieldname: description, remote_fieldname: content}
        - {local_fieldname: role, remote_fieldname: title, mapping_type: Document,
           mapping: Role to Note Dependency Creation,
           remote_value_filters: {"title": "title"}}
    - name: Role to Note Dependency Creation
      local_doctype: Role
      remote_doctype: Note
      field_mapping:
        - {local_fieldname: role_name, remote_fieldname: title}
)";

TEST_F(E2ETest, FrappeInnerMappingFindsTheRoleByTitle) {
  TwoSites::Spec spec;
  spec.hq_doctypes = kFrappeHqDocTypes;
  spec.branch_doctypes = kFrappeBranchDocTypes;
  spec.hq_sql = FrappeTable("Note", "title text, content text");
  spec.branch_sql =
      FrappeTable("Role", "role_name text") + FrappeTable("ToDo", "description text, role text");
  spec.subscriptions =
      "        - {doctype: ToDo, use_same_name: true, mapping: ToDo to Note Mapping}\n";
  spec.pre_approvals = "        - {doctype: Note, status: approved}\n";
  spec.mappings = kFrappeMappings;
  Start(spec);

  // Another Note first, so that "the first Note" is not the answer; then
  // Frappe's Note.
  Hq(R"(INSERT INTO "tabNote" (name, title, content) VALUES ('Other', 'Other', 'other');)");
  AwaitBranch("SELECT count(*) FROM \"tabToDo\"", "1");
  Hq(R"(INSERT INTO "tabNote" (name, title, content)
          VALUES ('Inner Mapping Tester', 'Inner Mapping Tester', 'Test Inner Mapping');)");
  AwaitBranch("SELECT count(*) FROM \"tabToDo\"", "2");
  // Frappe's two checks: the Role exists with role_name = the Note's title,
  // and a ToDo with description = the Note's content; ours also that the
  // ToDo's role is that Role.
  EXPECT_EQ(OnBranch("SELECT name FROM \"tabRole\" WHERE role_name = 'Inner Mapping Tester'"),
            "Inner Mapping Tester");
  EXPECT_EQ(OnBranch("SELECT name || '|' || role FROM \"tabToDo\" WHERE description = "
                     "'Test Inner Mapping'"),
            "Inner Mapping Tester|Inner Mapping Tester");
  EXPECT_EQ(OnBranch("SELECT string_agg(name || '|' || role_name, ';' ORDER BY name) FROM "
                     "\"tabRole\""),
            "Inner Mapping Tester|Inner Mapping Tester;Other|Other");

  // A Note without a title: the Document rule does not apply (as in
  // Frappe), so the ToDo arrives without a role and no Role is fetched.
  Hq(R"(INSERT INTO "tabNote" (name, content) VALUES ('untitled', 'no title');)");
  AwaitBranch("SELECT count(*) FROM \"tabToDo\"", "3");
  EXPECT_EQ(OnBranch("SELECT coalesce(role, '-') FROM \"tabToDo\" WHERE name = 'untitled'"),
            "-");
  EXPECT_EQ(OnBranch("SELECT count(*) FROM \"tabRole\""), "2");

  // An update of the content alone maps without a fetch; the role stays.
  Hq(R"(UPDATE "tabNote" SET content = 'edited' WHERE name = 'Inner Mapping Tester';)");
  AwaitBranch("SELECT description || '|' || role FROM \"tabToDo\" WHERE name = "
              "'Inner Mapping Tester'",
              "edited|Inner Mapping Tester");
  EXPECT_EQ(SyncSummary(),
            "Create:Other:Synced Create:Inner Mapping Tester:Synced Create:untitled:Synced "
            "Update:Inner Mapping Tester:Synced");
}

TEST_F(E2ETest, FailedEntryParksLaterOnesUntilResync) {
  TwoSites::Spec spec = BaseSpec("        - {doctype: Memo, use_same_name: true}\n", {"Memo"});
  spec.branch_sql = Tables() + "ALTER TABLE \"tabMemo\" ALTER COLUMN code SET NOT NULL;";
  Start(spec);
  Hq(R"(INSERT INTO "tabMemo" (name, text) VALUES ('M1', 'no code'))");
  Hq(R"(INSERT INTO "tabMemo" (name, code, text) VALUES ('M2', 'c', 'fine'))");
  Hq(R"(UPDATE "tabMemo" SET text = 'v2' WHERE name = 'M1')");
  // M1 fails, M2 is not blocked by it, M1's update waits behind it.
  AwaitBranch("SELECT text FROM \"tabMemo\" WHERE name = 'M2'", "fine");
  ASSERT_TRUE(Eventually([&] { return SyncLog("Memo").size() == 3; })) << SyncSummary();
  EXPECT_EQ(SyncSummary(), "Create:M1:Failed Create:M2:Synced Update:M1:Parked");
  std::vector<v1::SyncLogEntry> log = SyncLog("Memo");
  ASSERT_EQ(log.size(), 3u);
  const v1::SyncLogEntry failed = log[0];
  EXPECT_TRUE(absl::StrContains(failed.error(), "23502") ||
              absl::StrContains(failed.error(), "null value"))
      << failed.error();
  EXPECT_EQ(log[2].parked_behind(), failed.id());
  EXPECT_EQ(OnBranch("SELECT count(*) FROM \"tabMemo\" WHERE name = 'M1'"), "0");
  ASSERT_EQ(SyncLog("", v1::SYNC_STATUS_FAILED).size(), 1u);

  // Nothing changes by itself; after relaxing the column, Resync.
  ASSERT_TRUE(branch()->ExecScript("ALTER TABLE \"tabMemo\" ALTER COLUMN code DROP NOT NULL").ok());
  v1::ResyncResponse resp;
  grpc::Status s = Resync(failed.id(), &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.results_size(), 2) << resp.DebugString();
  EXPECT_EQ(resp.results(0).id(), failed.id());
  EXPECT_EQ(resp.results(0).status(), v1::SYNC_STATUS_SYNCED) << resp.DebugString();
  EXPECT_EQ(resp.results(1).id(), log[2].id());
  EXPECT_EQ(resp.results(1).status(), v1::SYNC_STATUS_SYNCED) << resp.DebugString();
  EXPECT_EQ(OnBranch("SELECT coalesce(code, '-') || '|' || text FROM \"tabMemo\" WHERE "
                     "name = 'M1'"),
            "-|v2");
  EXPECT_EQ(SyncSummary(), "Create:M1:Synced Create:M2:Synced Update:M1:Synced");
  EXPECT_TRUE(SameOnBothSites("tabMemo", "name, code, text"));
  // A later change of M1 flows normally.
  Hq(R"(UPDATE "tabMemo" SET text = 'v3' WHERE name = 'M1')");
  AwaitBranch("SELECT text FROM \"tabMemo\" WHERE name = 'M1'", "v3");
}

// A batch of changes on hq as few large transactions (per_tx documents
// each): inserts (a child row each) of <prefix>0.., then updates of the
// first `updates` (parent and child), then deletes of the last `deletes`.
// One update log entry per document per transaction.
struct Workload {
  int inserts, updates, deletes, per_tx;
};

std::vector<std::string> WorkloadScripts(const Workload& w, const std::string& prefix) {
  std::vector<std::string> out;
  for (int start = 0; start < w.inserts; start += w.per_tx) {
    const int end = std::min(w.inserts, start + w.per_tx);
    out.push_back(absl::StrCat(
        "BEGIN;\nINSERT INTO \"tabNote\" (name, title, public, amount) SELECT '", prefix,
        "' || i, 'title ' || i, i % 2, (i || '.000000001')::numeric FROM generate_series(", start, ", ",
        end - 1, ") i;\nINSERT INTO \"tabNote Item\" (name, idx, parent, parenttype, "
        "parentfield, item, qty) SELECT '", prefix, "' || i || '-a', 1, '", prefix,
        "' || i, 'Note', 'items', 'item ' || i, i * 0.5 FROM generate_series(", start, ", ",
        end - 1, ") i;\nCOMMIT;"));
  }
  for (int start = 0; start < w.updates; start += w.per_tx) {
    const int end = std::min(w.updates, start + w.per_tx);
    out.push_back(absl::StrCat(
        "BEGIN;\nUPDATE \"tabNote\" SET title = title || ' v2', amount = amount + 1 "
        "WHERE name IN (SELECT '", prefix, "' || i FROM generate_series(", start, ", ",
        end - 1, ") i);\nUPDATE \"tabNote Item\" SET qty = qty + 1 WHERE parent IN "
        "(SELECT '", prefix, "' || i FROM generate_series(", start, ", ", end - 1,
        ") i);\nCOMMIT;"));
  }
  // Deletes take the last documents (some of them updated).
  for (int start = w.inserts - w.deletes; start < w.inserts; start += w.per_tx) {
    const int end = std::min(w.inserts, start + w.per_tx);
    out.push_back(absl::StrCat(
        "BEGIN;\nDELETE FROM \"tabNote Item\" WHERE parent IN (SELECT '", prefix,
        "' || i FROM generate_series(", start, ", ", end - 1,
        ") i);\nDELETE FROM \"tabNote\" WHERE name IN (SELECT '", prefix,
        "' || i FROM generate_series(", start, ", ", end - 1, ") i);\nCOMMIT;"));
  }
  return out;
}

// Every entry hq logged is Synced exactly once on branch.
void ExpectEachEntrySyncedOnce(pg::Connection* hq, pg::Connection* branch) {
  const int64_t entries = QueryInt(hq, "SELECT count(*) FROM es_producer.update_log");
  EXPECT_EQ(QueryInt(branch, "SELECT count(*) FROM es_consumer.sync_log WHERE status = "
                             "'Synced' AND producer = 'hq'"),
            entries);
  EXPECT_EQ(QueryInt(branch, "SELECT count(DISTINCT seq) FROM es_consumer.sync_log"), entries);
  EXPECT_EQ(QueryInt(branch, "SELECT count(*) FROM (SELECT producer, seq FROM "
                             "es_consumer.sync_log GROUP BY producer, seq HAVING count(*) > "
                             "1) twice"),
            0);
  EXPECT_EQ(QueryInt(branch, "SELECT count(*) FROM es_consumer.sync_log WHERE status <> "
                             "'Synced'"),
            0);
  EXPECT_EQ(QueryInt(branch, "SELECT last_seq FROM es_consumer.last_update WHERE producer = 'hq'"),
            QueryInt(hq, "SELECT max(seq) FROM es_producer.update_log"));
}

void E2ETest::ExpectKilledWorkloadApplied() {
  AwaitNotesEqual(absl::Seconds(60));
  EXPECT_EQ(OnBranch("SELECT count(*) FROM \"tabNote\""), "2500");
  ASSERT_TRUE(Eventually([&] {
    return QueryInt(branch(), "SELECT last_seq FROM es_consumer.last_update") ==
           QueryInt(hq(), "SELECT max(seq) FROM es_producer.update_log");
  }));
  ExpectEachEntrySyncedOnce(hq(), branch());
  EXPECT_EQ(OnBranch("SELECT count(*) - count(DISTINCT parent) FROM \"tabNote Item\""), "0");
}

TEST_F(E2ETest, StoppedConsumerCatchesUpOnThousandChanges) {
  Start(BaseSpec(kNoteSameName, {"Note"}));
  Hq(R"(INSERT INTO "tabNote" (name, title) VALUES ('before', 'seen'))");
  AwaitBranch("SELECT count(*) FROM \"tabNote\"", "1");
  auto log = sites_->StopConsumer();
  ASSERT_TRUE(log.ok()) << log.status();

  // 1,000 changes while it is down: 600 inserts, 250 updates, 150 deletes.
  for (const auto& script : WorkloadScripts({600, 250, 150, 100}, "D"))
    Hq(script);
  AwaitHqLog(1001);
  EXPECT_EQ(OnBranch("SELECT count(*) FROM \"tabNote\""), "1");

  StartConsumer();
  AwaitNotesEqual();
  EXPECT_EQ(OnBranch("SELECT count(*) FROM \"tabNote\""), "451");
  ASSERT_TRUE(Eventually([&] {
    return QueryInt(branch(), "SELECT last_seq FROM es_consumer.last_update") ==
           QueryInt(hq(), "SELECT max(seq) FROM es_producer.update_log");
  }));
  ExpectEachEntrySyncedOnce(hq(), branch());
}

TEST_F(E2ETest, KilledConsumerEndsEqualWithNothingAppliedTwice) {
  TwoSites::Spec spec = BaseSpec(kNoteSameName, {"Note"});
  spec.poll_interval = "1s";
  Start(spec);
  const char* seed_env = std::getenv("ES_E2E_SEED");
  const unsigned seed = seed_env != nullptr ? std::strtoul(seed_env, nullptr, 10) : 20240613u;
  SCOPED_TRACE(absl::StrCat("ES_E2E_SEED=", seed));
  std::mt19937 rng(seed);

  // 5,000 changes: 3,000 inserts, 1,500 updates, 500 deletes, 100 per
  // transaction, written by a thread with a short pause between transactions.
  const std::vector<std::string> scripts = WorkloadScripts({3000, 1500, 500, 100}, "K");
  auto writer_conn = pg::Connection::Open(SharedCluster().Url(sites_->hq_db()));
  ASSERT_TRUE(writer_conn.ok()) << writer_conn.status();
  std::atomic<bool> writing{true};
  std::atomic<bool> write_failed{false};
  std::thread writer([&] {
    for (const auto& script : scripts) {
      absl::Status s = (*writer_conn)->ExecScript(script);
      if (!s.ok()) {
        ADD_FAILURE() << s << "\n" << script;
        write_failed = true;
      }
      absl::SleepFor(absl::Milliseconds(40));
    }
    writing = false;
  });

  // Kill -9 at random moments, while hq writes and while branch catches up.
  std::uniform_int_distribution<int> delay_ms(100, 900);
  int kills = 0, kills_while_writing = 0;
  std::string where;  // "applied/logged" at each kill
  while ((kills < 6 || writing) && kills < 15) {
    absl::SleepFor(absl::Milliseconds(delay_ms(rng)));
    sites_->KillConsumer();
    ++kills;
    // Where it was: its watermark against hq's log (for the record).
    const int64_t applied = QueryInt(branch(), "SELECT last_seq FROM es_consumer.last_update");
    const int64_t logged = HqLogCount();
    if (writing) ++kills_while_writing;
    absl::StrAppend(&where, " ", applied, "/", logged);
    absl::SleepFor(absl::Milliseconds(delay_ms(rng) / 4));
    StartConsumer();
    if (HasFatalFailure()) break;
  }
  writer.join();
  ASSERT_FALSE(write_failed);
  std::cout << "[          ] " << kills << " kills (" << kills_while_writing
            << " while hq was writing); watermark/hq entries at each:" << where << "\n";
  EXPECT_GE(kills_while_writing, 1);
  AwaitHqLog(5000);

  ExpectKilledWorkloadApplied();
}

// Issue 17: a consumer with apply_workers: 4 killed -9 again and again while
// it drains a backlog of 5,000 changes (its batches split into lanes that
// commit one by one before the watermark moves) still applies every seq
// exactly once.
TEST_F(E2ETest, KilledMidDrainWithFourApplyWorkersAppliesEachSeqOnce) {
  TwoSites::Spec spec = BaseSpec(kNoteSameName, {"Note"});
  spec.poll_interval = "1s";
  spec.apply_workers = 4;
  Start(spec);
  const char* seed_env = std::getenv("ES_E2E_SEED");
  const unsigned seed = seed_env != nullptr ? std::strtoul(seed_env, nullptr, 10) : 20261202u;
  SCOPED_TRACE(absl::StrCat("ES_E2E_SEED=", seed));
  std::mt19937 rng(seed);
  auto log = sites_->StopConsumer();
  ASSERT_TRUE(log.ok()) << log.status();
  for (const auto& script : WorkloadScripts({3000, 1500, 500, 100}, "W")) Hq(script);
  AwaitHqLog(5000);
  const int64_t last = QueryInt(hq(), "SELECT max(seq) FROM es_producer.update_log");

  // Short: the drain of 5,000 changes takes well under a second.
  std::uniform_int_distribution<int> delay_ms(30, 250);
  int kills = 0, kills_mid_drain = 0;
  std::string where;  // "applied/logged" at each kill
  StartConsumer();
  while (kills < 12 && !HasFatalFailure()) {
    absl::SleepFor(absl::Milliseconds(delay_ms(rng)));
    sites_->KillConsumer();
    ++kills;
    const int64_t applied = QueryInt(branch(), "SELECT last_seq FROM es_consumer.last_update");
    const int64_t lanes = QueryInt(branch(), "SELECT count(*) FROM es_consumer.lane_commit");
    absl::StrAppend(&where, " ", applied, "/", last, lanes > 0 ? " (lanes pending)" : "");
    StartConsumer();
    if (applied >= last) break;
    ++kills_mid_drain;
  }
  std::cout << "[          ] " << kills << " kills (" << kills_mid_drain
            << " mid-drain); watermark/hq entries at each:" << where << "\n";
  EXPECT_GE(kills_mid_drain, 1);

  ExpectKilledWorkloadApplied();
  EXPECT_EQ(OnBranch("SELECT count(*) FROM es_consumer.lane_commit"), "0");
}


// ---- Membership (issue 14): initial sync, move-in and move-out ----

constexpr char kNotePublic[] =
    "        - {doctype: Note, use_same_name: true, condition: \"doc.public == 1\"}\n";

// `n` Notes S00001.. (public = g % 2 when `alternate`, else 1) with two rows
// each, as SQL for a Spec's hq_sql.
std::string SeedNotes(int n, bool alternate, int rows = 2, int digits = 5) {
  const std::string name = absl::StrCat("'S' || lpad(g::text, ", digits, ", '0')");
  return absl::StrCat(
      "INSERT INTO \"tabNote\" (name, title, public) SELECT ", name, ","
      " 'seed ' || g, ", alternate ? "g % 2" : "1", " FROM generate_series(1, ", n, ") g;\n",
      "INSERT INTO \"tabNote Item\" (name, parent, parenttype, parentfield, idx, item, qty)"
      " SELECT ", name, " || '-' || i, ", name, ","
      " 'Note', 'items', i, 'item ' || i, i FROM generate_series(1, ", n,
      ") g, generate_series(1, ", rows, ") i;\n");
}

// The tables of the measurements, indexed as Frappe indexes them (every
// child table's parent column).
std::string IndexedTables() { return Tables() + "CREATE INDEX ON \"tabNote Item\" (parent);\n"; }

// `docs` Notes with 3 rows each (names S0000001...), analyzed as a live
// site's tables are.
std::string MeasuredNotes(int docs) {
  return SeedNotes(docs, /*alternate=*/false, /*rows=*/3, /*digits=*/7) + "ANALYZE;\n";
}

v1::InitialSync NoteSync(const v1::ConsumerInfo& c) {
  for (const auto& sub : c.subscriptions())
    if (sub.doctype() == "Note") return sub.initial_sync();
  return {};
}

// A branch subscribing to Notes hq already has gets every one it may see,
// as it is now, while hq goes on writing: no gap, no stale overwrite.
TEST_F(E2ETest, InitialSyncSendsEveryVisibleDocumentWhileWritesGoOn) {
  TwoSites::Spec spec = BaseSpec(kNotePublic, {"Note"});
  spec.branch_sql = Tables();
  spec.hq_sql = Tables() + SeedNotes(10000, /*alternate=*/true);
  Start(spec);
  // While it runs: edits of visible and hidden Notes, flips both ways,
  // deletes, inserts.
  Hq(R"(UPDATE "tabNote" SET title = title || ' edited' WHERE name <= 'S00100')");
  Hq(R"(UPDATE "tabNote" SET public = 1 - public WHERE name BETWEEN 'S05001' AND 'S05100')");
  Hq(R"(DELETE FROM "tabNote Item" WHERE parent BETWEEN 'S09901' AND 'S09950';
        DELETE FROM "tabNote" WHERE name BETWEEN 'S09901' AND 'S09950')");
  Hq(R"(INSERT INTO "tabNote" (name, title, public) SELECT 'A' || g, 'new', g % 2
        FROM generate_series(1, 50) g)");
  Hq(R"(UPDATE "tabNote Item" SET qty = qty + 10 WHERE parent BETWEEN 'S00050' AND 'S00150')");
  AwaitBranchHoldsNotesWhere("public = 1");
  ASSERT_TRUE(Eventually([&] { return NoteSync(HqConsumer()).state() == "done"; }))
      << HqConsumer().DebugString();
  const v1::InitialSync sync = NoteSync(HqConsumer());
  EXPECT_GE(sync.documents_total(), 9950);
  EXPECT_GE(sync.documents_done(), sync.documents_total() - 50);
  // The consumer shows it too (ListProducers; a PullNow refreshes it).
  v1::InitialSync seen;
  ASSERT_TRUE(Eventually([&] {
    grpc::ClientContext pull_ctx;
    pull_ctx.AddMetadata("authorization", TwoSites::kBranchAdmin);
    v1::PullNowRequest pull;
    pull.set_producer("hq");
    v1::PullNowResponse pulled;
    (void)stub_->PullNow(&pull_ctx, pull, &pulled);
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", TwoSites::kBranchAdmin);
    v1::ListProducersResponse listed;
    if (!stub_->ListProducers(&ctx, v1::ListProducersRequest(), &listed).ok()) return false;
    for (const auto& d : listed.producers(0).doctypes()) {
      if (d.doctype() == "Note") seen = d.initial_sync();
    }
    return seen.state() == "done";
  })) << seen.DebugString();
  EXPECT_EQ(seen.documents_total(), sync.documents_total());
  EXPECT_EQ(seen.documents_done(), sync.documents_done());
  EXPECT_EQ(QueryInt(branch(), "SELECT count(*) FROM (SELECT seq FROM es_consumer.sync_log"
                               " GROUP BY seq HAVING count(*) > 1) twice"),
            0);
  EXPECT_EQ(QueryInt(branch(), "SELECT count(*) FROM es_consumer.sync_log WHERE status <> 'Synced'"),
            0);
  EXPECT_NE(sites_->ProducerLog().find("initial sync of Note for consumer branch"),
            std::string::npos);
}

// kill -9 of either service in the middle of an initial sync: it goes on
// from where it was and ends equal, each entry applied once.
TEST_F(E2ETest, InitialSyncSurvivesKilledServices) {
  TwoSites::Spec spec = BaseSpec(kNoteSameName, {"Note"});
  spec.branch_sql = Tables();
  spec.hq_sql = Tables() + SeedNotes(3000, /*alternate=*/false);
  spec.poll_interval = "1s";
  Start(spec);
  std::mt19937 rng(20261202u);
  std::uniform_int_distribution<int> delay_ms(50, 400);
  std::string where;
  for (int round = 0; round < 4; ++round) {
    absl::SleepFor(absl::Milliseconds(delay_ms(rng)));
    absl::StrAppend(&where, " ", QueryInt(branch(), "SELECT count(*) FROM \"tabNote\""));
    if (round % 2 == 0) {
      sites_->KillProducer();
      ASSERT_TRUE(sites_->StartProducer().ok());
    } else {
      sites_->KillConsumer();
      StartConsumer();
    }
  }
  std::cout << "[          ] branch Notes at each kill:" << where << "\n";
  AwaitNotesEqual(absl::Seconds(90));
  ASSERT_TRUE(Eventually([&] {
    return QueryInt(branch(), "SELECT last_seq FROM es_consumer.last_update") ==
           QueryInt(hq(), "SELECT max(seq) FROM es_producer.update_log");
  }));
  ExpectEachEntrySyncedOnce(hq(), branch());
}

// A consumer killed after hq committed its registration but before it
// stored hq's answer registers again at its next start. hq answers the
// position it recorded for it, not the log's end, so what was logged in
// between (the initial sync's first chunks, a new Note) still reaches it.
TEST_F(E2ETest, ConsumerKilledBeforeStoringItsRegistrationMissesNothing) {
  TwoSites::Spec spec = BaseSpec(kNoteSameName, {"Note"});
  spec.branch_sql = Tables();
  spec.hq_sql = Tables() + SeedNotes(3000, /*alternate=*/false);
  StartHq(std::move(spec));
  ASSERT_TRUE(sites_->MigrateConsumer().ok());
  // The consumer's first watermark insert waits for this lock: it has
  // registered at hq and stored nothing.
  ASSERT_TRUE(branch()->Exec("BEGIN").ok());
  ASSERT_TRUE(branch()->Exec("LOCK TABLE es_consumer.last_update IN EXCLUSIVE MODE").ok());
  StartConsumer();
  ASSERT_TRUE(Eventually([&] {
    return QueryInt(hq(), "SELECT count(*) FROM es_producer.update_log"
                          " WHERE for_site = 'branch'") >= 1000;
  })) << sites_->Logs();
  Hq(R"(INSERT INTO "tabNote" (name, title) VALUES ('N-between', 'logged meanwhile'))");
  ASSERT_TRUE(Eventually([&] {
    return QueryInt(hq(), "SELECT count(*) FROM es_producer.update_log"
                          " WHERE docname = 'N-between'") == 1;
  }));
  sites_->KillConsumer();
  ASSERT_TRUE(branch()->Exec("ROLLBACK").ok());
  EXPECT_EQ(QueryInt(branch(), "SELECT count(*) FROM es_consumer.last_update"), 0);
  StartConsumer();
  AwaitNotesEqual(absl::Seconds(60));
  ExpectEachEntrySyncedOnce(hq(), branch());
  EXPECT_NE(sites_->ProducerLog().find("registered again"), std::string::npos);
}

// Not a check (run by hand with --gtest_also_run_disabled_tests): how fast
// an initial sync of ES_SYNC_DOCS Notes (default 20,000) with 3 rows each
// reaches a branch.
TEST_F(E2ETest, DISABLED_MeasureInitialSync) {
  const char* env = std::getenv("ES_SYNC_DOCS");
  const int docs = env != nullptr ? std::atoi(env) : 20000;
  TwoSites::Spec spec = BaseSpec(kNoteSameName, {"Note"});
  spec.branch_sql = IndexedTables();
  spec.hq_sql = IndexedTables() + MeasuredNotes(docs);
  const absl::Time start = absl::Now();
  Start(spec);
  AwaitNotesEqual(absl::Minutes(30));
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf("[          ] initial sync of %d Notes (3 rows each): %.1f s, %.0f docs/s\n", docs,
              seconds, docs / seconds);
  if (std::getenv("ES_SYNC_LOGS") != nullptr) std::printf("%s\n", sites_->Logs().c_str());
}

// Not a check (run by hand with --gtest_also_run_disabled_tests): what a
// Resnapshot dry run costs on ES_SYNC_DOCS Notes (default 100,000) with 3
// rows each, equal on both sites (written by SQL on both, no initial sync).
TEST_F(E2ETest, DISABLED_MeasureResnapshotDryRun) {
  const char* env = std::getenv("ES_SYNC_DOCS");
  const int docs = env != nullptr ? std::atoi(env) : 100000;
  TwoSites::Spec spec = BaseSpec(kNoteNoInitialSync, {"Note"});
  spec.branch_sql = IndexedTables() + MeasuredNotes(docs);
  spec.hq_sql = spec.branch_sql;
  Start(spec);
  ASSERT_TRUE(branch()->ExecScript(R"(UPDATE "tabNote" SET title = 'drifted'
                                      WHERE name LIKE '%00')").ok());
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", TwoSites::kBranchAdmin);
  v1::ResnapshotRequest req;
  req.set_producer("hq");
  req.set_doctype("Note");
  req.set_dry_run(true);
  v1::ResnapshotResponse resp;
  const absl::Time start = absl::Now();
  grpc::Status s = stub_->Resnapshot(&ctx, req, &resp);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.check().differing(), docs / 100);
  std::printf("[          ] Resnapshot dry run of %d Notes (3 rows each, %lld differing):"
              " %.1f s, %.0f docs/s\n",
              docs, static_cast<long long>(resp.check().differing()), seconds, docs / seconds);
}

// A subscription that ends (here: rejected at hq) revokes everything the
// branch holds of it: with a condition, what passed it; without, every
// document (on_move_out: delete, the default, removes them here).
TEST_F(E2ETest, SubscriptionEndRevokesWhatTheBranchHolds) {
  TwoSites::Spec spec = BaseSpec(
      std::string(kNotePublic) + "        - {doctype: Project, use_same_name: true}\n", {});
  spec.branch_sql = Tables();
  spec.hq_sql = Tables() + SeedNotes(40, /*alternate=*/true) +
                "INSERT INTO \"tabProject\" (name, title) SELECT 'P' || g, 'p'"
                " FROM generate_series(1, 30) g;\n";
  Start(spec, {"Note", "Project"});
  AwaitBranchHoldsNotesWhere("public = 1");
  AwaitBranch("SELECT count(*) FROM \"tabProject\"", "30");
  SetStatus("Note", v1::SUBSCRIPTION_STATUS_REJECTED);
  SetStatus("Project", v1::SUBSCRIPTION_STATUS_REJECTED);
  AwaitBranch("SELECT count(*) FROM \"tabNote\"", "0");
  AwaitBranch("SELECT count(*) FROM \"tabProject\"", "0");
  EXPECT_EQ(QueryInt(branch(), "SELECT count(*) FROM es_consumer.sync_log"
                               " WHERE update_type = 'Revoke' AND status = 'Synced'"),
            20 + 30);
  // Nothing more of them flows.
  Hq(R"(INSERT INTO "tabNote" (name, title, public) VALUES ('late', 'x', 1))");
  PullNow();
  EXPECT_EQ(OnBranch("SELECT count(*) FROM \"tabNote\""), "0");
}

// Resnapshot repairs a branch that drifted: a deleted copy comes back, an
// edited one is made equal again, an edited child row too.
TEST_F(E2ETest, ResnapshotRepairsDeletedAndEditedCopies) {
  TwoSites::Spec spec = BaseSpec(kNoteSameName, {"Note"});
  spec.branch_sql = Tables();
  spec.hq_sql = Tables() + SeedNotes(50, /*alternate=*/false);
  Start(spec);
  AwaitNotesEqual();
  ASSERT_TRUE(Eventually([&] { return NoteSync(HqConsumer()).state() == "done"; }));
  // S00003 deleted on hq (and so here), then restored here from a backup.
  Hq(R"(DELETE FROM "tabNote Item" WHERE parent = 'S00003';
        DELETE FROM "tabNote" WHERE name = 'S00003';)");
  AwaitBranch("SELECT count(*) FROM \"tabNote\" WHERE name = 'S00003'", "0");
  ASSERT_TRUE(branch()->ExecScript(R"(
    INSERT INTO "tabNote" (name, title) VALUES ('S00003', 'restored from a backup');
    DELETE FROM "tabNote Item" WHERE parent = 'S00007';
    DELETE FROM "tabNote" WHERE name = 'S00007';
    UPDATE "tabNote" SET title = 'edited here' WHERE name = 'S00011';
    UPDATE "tabNote Item" SET qty = 99 WHERE name = 'S00012-1';)").ok());
  ASSERT_FALSE(NotesEqual());
  auto resnapshot = [&](bool dry_run, v1::ResnapshotResponse* resp) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", TwoSites::kBranchAdmin);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::ResnapshotRequest req;
    req.set_producer("hq");
    req.set_doctype("Note");
    req.set_dry_run(dry_run);
    return stub_->Resnapshot(&ctx, req, resp);
  };
  // The dry run counts, and changes nothing.
  v1::ResnapshotResponse dry;
  grpc::Status s = resnapshot(true, &dry);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(dry.check().checked(), 49);
  EXPECT_EQ(dry.check().equal(), 46);
  EXPECT_EQ(dry.check().missing(), 1);
  EXPECT_EQ(dry.check().differing(), 2);
  EXPECT_EQ(dry.check().failed(), 0);
  EXPECT_EQ(dry.check().extra(), 1);
  const std::string examples = absl::StrJoin(dry.check().examples(), "; ");
  for (const char* want : {"missing: S00007", "differing: S00011", "differing: S00012",
                           "extra: S00003"}) {
    EXPECT_NE(examples.find(want), std::string::npos) << examples;
  }
  EXPECT_FALSE(dry.has_subscription());
  EXPECT_EQ(QueryText(branch(), "SELECT title FROM \"tabNote\" WHERE name = 'S00003'"),
            "restored from a backup");
  EXPECT_EQ(QueryInt(branch(), "SELECT count(*) FROM \"tabNote\" WHERE name = 'S00007'"), 0);
  // The repair: the extra copy follows on_move_out (delete), the rest
  // comes through the stream.
  v1::ResnapshotResponse resp;
  s = resnapshot(false, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.moved_out(), 1);
  EXPECT_EQ(resp.subscription().initial_sync().state(), "running");
  AwaitNotesEqual();
  v1::ResnapshotResponse after;
  ASSERT_TRUE(resnapshot(true, &after).ok());
  EXPECT_EQ(after.check().equal(), 49);
  EXPECT_EQ(after.check().extra(), 0);
  EXPECT_EQ(QueryInt(branch(), "SELECT count(*) FROM es_consumer.sync_log WHERE status <> 'Synced'"),
            0);
  // Unknown producer, unknown DocType: clear errors.
  grpc::ClientContext bad;
  bad.AddMetadata("authorization", TwoSites::kBranchAdmin);
  v1::ResnapshotRequest req;
  req.set_producer("hq");
  req.set_doctype("Nope");
  s = stub_->Resnapshot(&bad, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  EXPECT_NE(s.error_message().find("Nope"), std::string::npos) << s.error_message();
}

// Retention (issue 15): a branch stopped past hq's valve (max_age 3s) is
// refused "log trimmed:" when it comes back, logs it once, skips past the
// trimmed log and re-syncs every DocType by itself (documents deleted while
// it was away included), ending equal to hq.
TEST_F(E2ETest, ConsumerPastTheRetentionValveResyncsByItself) {
  TwoSites::Spec spec = BaseSpec(kNoteSameName, {"Note"});
  spec.branch_sql = Tables();
  spec.hq_sql = Tables() + SeedNotes(20, /*alternate=*/false);
  spec.producer_extra = "  retention: {min_age: 0, max_age: 3s, interval: 200ms}\n";
  spec.consumer_metrics = true;
  Start(spec);
  AwaitNotesEqual();
  ASSERT_TRUE(Eventually([&] { return NoteSync(HqConsumer()).state() == "done"; }));
  auto log = sites_->StopConsumer();
  ASSERT_TRUE(log.ok()) << log.status();
  const int64_t stopped_at = QueryInt(branch(), "SELECT last_seq FROM es_consumer.last_update");
  // Its sync log trimmed as consumer.sync_log_retention would: the copies
  // are still known as hq's (es_consumer.same_name_copy), so S00009, which
  // hq deletes below, is found extra and deleted.
  ASSERT_TRUE(branch()->ExecScript("DELETE FROM es_consumer.sync_log").ok());

  // While it is away: new Notes (5 of them deleted again), edits of seeded
  // ones and of their rows, a seeded one deleted.
  for (const auto& script : WorkloadScripts({30, 10, 5, 10}, "R")) Hq(script);
  Hq(R"(UPDATE "tabNote" SET title = title || ' later' WHERE name <= 'S00005';
        UPDATE "tabNote Item" SET qty = qty + 10 WHERE parent = 'S00002';
        DELETE FROM "tabNote Item" WHERE parent = 'S00009';
        DELETE FROM "tabNote" WHERE name = 'S00009')");
  // hq's valve passes it: the entries it needed are gone.
  ASSERT_TRUE(Eventually([&] {
    return QueryInt(hq(), "SELECT lost_through FROM es_producer.consumer WHERE site = 'branch'") >
               stopped_at &&
           QueryInt(hq(), "SELECT min(seq) FROM es_producer.update_log") > stopped_at + 1;
  })) << sites_->Logs();

  StartConsumer();
  AwaitNotesEqual(absl::Seconds(60));
  ASSERT_TRUE(Eventually([&] {
    return Scrape(sites_->consumer_metrics_port(),
                  "eventstream_consumer_trim_recoveries_total{producer=\"hq\"}") ==
           std::optional<double>(1);
  })) << sites_->Logs();
  const std::string consumer_log = sites_->ConsumerLog();
  EXPECT_EQ(Occurrences(consumer_log, "fell behind its retention valve"), 1u) << consumer_log;
  EXPECT_NE(consumer_log.find(absl::StrCat("at watermark ", stopped_at)), std::string::npos)
      << consumer_log;
  EXPECT_EQ(QueryInt(branch(), "SELECT count(*) FROM es_consumer.sync_log WHERE status <> 'Synced'"),
            0);
  EXPECT_EQ(OnBranch("SELECT count(*) FROM \"tabNote\""), "44");
}

// `initial_sync: false`: only what changes from now on.
TEST_F(E2ETest, InitialSyncOffSendsOnlyNewChanges) {
  TwoSites::Spec spec = BaseSpec(kNoteNoInitialSync, {"Note"});
  spec.branch_sql = Tables();
  spec.hq_sql = Tables() + SeedNotes(20, /*alternate=*/false);
  Start(spec);
  Hq(R"(INSERT INTO "tabNote" (name, title) VALUES ('N1', 'new'))");
  AwaitBranch("SELECT string_agg(name, ' ') FROM \"tabNote\"", "N1");
  EXPECT_EQ(NoteSync(HqConsumer()).state(), "off");
}

// A Note edited and then deleted at hq before the branch had it (its
// subscription started without an initial sync): the Update finds it
// missing on both sites and applies nothing, and nothing of that name parks
// behind it: the Delete is "not present here", the name created again
// arrives.
TEST_F(E2ETest, UpdateOfADocumentGoneOnBothSitesParksNothing) {
  TwoSites::Spec spec = BaseSpec(kNoteNoInitialSync, {"Note"});
  spec.branch_sql = Tables();
  spec.hq_sql = Tables() + SeedNotes(3, /*alternate=*/false);
  Start(spec);
  ASSERT_TRUE(sites_->StopConsumer().ok());  // it pulls the Update only once the Note is gone
  Hq(R"(UPDATE "tabNote" SET title = 'edited' WHERE name = 'S00001')");
  Hq(R"(DELETE FROM "tabNote Item" WHERE parent = 'S00001';
        DELETE FROM "tabNote" WHERE name = 'S00001')");
  StartConsumer();
  ASSERT_TRUE(Eventually([&] { return SyncLog("Note").size() == 2; })) << SyncSummary();
  Hq(R"(INSERT INTO "tabNote" (name, title) VALUES ('S00001', 'again'))");
  AwaitBranch("SELECT string_agg(name || ':' || title, ' ') FROM \"tabNote\"", "S00001:again");
  ASSERT_TRUE(Eventually([&] { return SyncLog("Note").size() == 3; })) << SyncSummary();
  EXPECT_EQ(SyncSummary("Note"),
            "Update:S00001:Synced Delete:S00001:Synced Create:S00001:Synced");
  // ListSyncLog says why nothing was applied.
  const std::vector<v1::SyncLogEntry> log = SyncLog("Note");
  EXPECT_TRUE(absl::StrContains(log[0].note(), "the producer no longer has it")) << log[0].note();
  EXPECT_TRUE(absl::StrContains(log[1].note(), "not present here")) << log[1].note();
  EXPECT_EQ(log[2].local_doctype(), "Note");
  EXPECT_EQ(log[2].local_docname(), "S00001");
}

// A condition changed in the consumer's config: documents that pass now
// move in, those that no longer pass move out (deleted here).
TEST_F(E2ETest, ConditionChangeMovesDocumentsInAndOut) {
  TwoSites::Spec spec = BaseSpec(kNotePublic, {"Note"});
  spec.branch_sql = Tables();
  spec.hq_sql = Tables() + SeedNotes(200, /*alternate=*/true);
  Start(spec);
  AwaitBranchHoldsNotesWhere("public = 1");
  ASSERT_TRUE(sites_->StopConsumer().ok());
  sites_->mutable_spec()->subscriptions =
      "        - {doctype: Note, use_same_name: true, condition: \"doc.title < 'seed 2'\"}\n";
  StartConsumer();
  AwaitBranchHoldsNotesWhere("title COLLATE \"C\" < 'seed 2'");
  EXPECT_GT(QueryInt(branch(), "SELECT count(*) FROM es_consumer.sync_log"
                               " WHERE update_type = 'Revoke'"),
            0);
}

// on_move_out: keep: a document that stops passing stays here, no longer
// followed; when it passes again it is made equal.
TEST_F(E2ETest, MoveOutWithKeepLeavesTheCopy) {
  Start(BaseSpec("        - {doctype: Note, use_same_name: true, condition: \"doc.public =="
                 " 1\", on_move_out: keep}\n",
                 {"Note"}));
  Hq(R"(INSERT INTO "tabNote" (name, title, public) VALUES ('K1', 'shown', 1))");
  AwaitBranch("SELECT title FROM \"tabNote\" WHERE name = 'K1'", "shown");
  Hq(R"(UPDATE "tabNote" SET public = 0 WHERE name = 'K1')");
  ASSERT_TRUE(Eventually([&] {
    return QueryInt(branch(), "SELECT count(*) FROM es_consumer.sync_log"
                              " WHERE update_type = 'Revoke' AND note LIKE 'kept%'") == 1;
  })) << SyncSummary() << sites_->Logs();
  Hq(R"(UPDATE "tabNote" SET title = 'hidden edit' WHERE name = 'K1')");
  PullNow();
  EXPECT_EQ(OnBranch("SELECT title || '|' || public FROM \"tabNote\" WHERE name = 'K1'"),
            "shown|1");
  Hq(R"(UPDATE "tabNote" SET public = 1 WHERE name = 'K1')");
  AwaitNotesEqual();
}

// A DocType added to a running subscription (the branch's config grows):
// its documents arrive by initial sync, those of the DocType it already
// had are not sent again.
TEST_F(E2ETest, DocTypeAddedToARunningSubscriptionIsSynced) {
  TwoSites::Spec spec = BaseSpec(kNoteSameName, {"Note", "Project"});
  spec.branch_sql = Tables();
  spec.hq_sql = Tables() + SeedNotes(20, /*alternate=*/false) +
                "INSERT INTO \"tabProject\" (name, title) SELECT 'P' || g, 'p'"
                " FROM generate_series(1, 30) g;\n";
  Start(spec);
  AwaitNotesEqual();
  const int64_t note_syncs = QueryInt(branch(), "SELECT count(*) FROM es_consumer.sync_log"
                                                " WHERE update_type = 'Sync' AND doctype = 'Note'");
  ASSERT_TRUE(sites_->StopConsumer().ok());
  sites_->mutable_spec()->subscriptions =
      std::string(kNoteSameName) + "        - {doctype: Project, use_same_name: true}\n";
  StartConsumer();
  AwaitBranch("SELECT count(*) FROM \"tabProject\"", "30");
  EXPECT_EQ(QueryInt(branch(), "SELECT count(*) FROM es_consumer.sync_log"
                               " WHERE update_type = 'Sync' AND doctype = 'Note'"),
            note_syncs);
}

// An edit moves a document out of the condition (deleted here, the
// default on_move_out) and another one back in: it arrives whole again,
// equal to hq, and later edits follow.
TEST_F(E2ETest, EditMovesADocumentOutAndBackIn) {
  Start(BaseSpec(kNotePublic, {"Note"}));
  Hq(R"(INSERT INTO "tabNote" (name, title, public) VALUES ('M1', 'shown', 1);
        INSERT INTO "tabNote Item" (name, parent, parenttype, parentfield, idx, item, qty)
          VALUES ('M1-1', 'M1', 'Note', 'items', 1, 'a', 1))");
  AwaitBranch("SELECT title FROM \"tabNote\" WHERE name = 'M1'", "shown");
  Hq(R"(UPDATE "tabNote" SET public = 0 WHERE name = 'M1')");
  AwaitBranch("SELECT count(*) FROM \"tabNote\" WHERE name = 'M1'", "0");
  EXPECT_EQ(OnBranch("SELECT count(*) FROM \"tabNote Item\" WHERE parent = 'M1'"), "0");
  Hq(R"(UPDATE "tabNote" SET title = 'edited while out' WHERE name = 'M1';
        UPDATE "tabNote Item" SET qty = 7 WHERE name = 'M1-1')");
  Hq(R"(UPDATE "tabNote" SET public = 1 WHERE name = 'M1')");
  AwaitBranch("SELECT title FROM \"tabNote\" WHERE name = 'M1'", "edited while out");
  AwaitNotesEqual();
  Hq(R"(UPDATE "tabNote" SET title = 'after' WHERE name = 'M1')");
  AwaitBranch("SELECT title FROM \"tabNote\" WHERE name = 'M1'", "after");
  EXPECT_EQ(QueryInt(branch(), "SELECT count(*) FROM es_consumer.sync_log WHERE status <> 'Synced'"),
            0);
}

}  // namespace
}  // namespace eventstream::testing
