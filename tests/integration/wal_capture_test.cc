// WAL capture (producer.capture: wal; services/producer/wal_capture.h)
// against a real cluster with wal_level=logical: the same writes give the
// same entries as trigger capture; commit order; the consumer's apply
// marker as origin; a table without REPLICA IDENTITY FULL fails visibly;
// and the real producer binary killed -9 at several moments loses nothing
// and logs nothing twice, without echoing a consumer's applied change.
#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <signal.h>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "eventstream/v1/producer.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "libsync/base/migrate.h"
#include "libsync/base/pg.h"
#include "libsync/base/value.h"
#include "libsync/model/doctype.h"
#include "services/producer/assembler.h"
#include "services/producer/capture.h"
#include "services/producer/wal_capture.h"
#include "services/producer/wal_capture_store.h"
#include "tests/support/doctype_fixtures.h"
#include "tests/support/eventually.h"
#include "tests/support/grpc/producer_calls.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/service_runner.h"
#include "tests/support/two_sites.h"

namespace eventstream::testing {
namespace {

[[maybe_unused]] const bool kLogical = SetSharedClusterOptions(
    "-c wal_level=logical -c max_wal_senders=20 -c max_replication_slots=40");

using fixtures::Field;

DocTypeRegistry MakeRegistry() {
  std::vector<DocTypeDef> defs(3);
  defs[0].name = "Note";
  defs[0].is_submittable = true;
  defs[0].fields = {Field("title", "Data"), Field("amount", "Currency"),
                    Field("items", "Table", "Note Item")};
  defs[1].name = "Note Item";
  defs[1].istable = true;
  defs[1].fields = {Field("item", "Data"), Field("qty", "Float")};
  defs[2].name = "Other";  // shares the child DocType, never captured
  defs[2].fields = {Field("title", "Data"), Field("items", "Table", "Note Item")};
  auto registry = DocTypeRegistry::Create(std::move(defs));
  EXPECT_TRUE(registry.ok()) << registry.status();
  return registry.ok() ? std::move(*registry) : DocTypeRegistry();
}

// Explicit timestamps everywhere: two databases must write the same rows.
constexpr char kSchema[] = R"sql(
  CREATE TABLE "tabNote" (name text PRIMARY KEY, creation timestamp(6), modified timestamp(6),
    modified_by text, owner text, docstatus int NOT NULL DEFAULT 0, idx int NOT NULL DEFAULT 0,
    title text, amount numeric(30,9), site_only text);
  CREATE TABLE "tabNote Item" (name text PRIMARY KEY, creation timestamp(6),
    modified timestamp(6), modified_by text, owner text, docstatus int NOT NULL DEFAULT 0,
    idx int NOT NULL DEFAULT 0, parent text, parenttype text, parentfield text, item text,
    qty numeric(30,9));
  CREATE TABLE "tabOther" (name text PRIMARY KEY, creation timestamp(6), modified timestamp(6),
    modified_by text, owner text, docstatus int NOT NULL DEFAULT 0, idx int NOT NULL DEFAULT 0,
    title text);
  CREATE SCHEMA es_consumer;
  CREATE TABLE es_consumer.last_update (producer text PRIMARY KEY,
    last_seq bigint NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL DEFAULT now());
)sql";

#define ES_NOTE(name, title) \
  "INSERT INTO \"tabNote\" (name, creation, modified, title, amount, site_only) VALUES ('" name \
  "', '2026-01-01 10:00', '2026-01-01 10:00', '" title "', 1.5, 'x');"
#define ES_ITEM(name, parent, idx, item) \
  "INSERT INTO \"tabNote Item\" (name, creation, modified, parent, parenttype, parentfield," \
  " idx, item, qty) VALUES ('" name "', '2026-01-01 10:00', '2026-01-01 10:00', '" parent \
  "', 'Note', 'items', " idx ", '" item "', 2.25);"

// Each element one transaction: Create, Update diff, submit, Cancel, Rename,
// Delete, several changes in one transaction, an uncaptured parent's child
// row, a change of a site column only, a no-op update, a consumer's apply.
const std::vector<std::string>& Scenario() {
  static const auto* s = new std::vector<std::string>{
      ES_NOTE("N1", "one") ES_ITEM("N1-a", "N1", "1", "apple") ES_ITEM("N1-b", "N1", "2", "pear"),
      "UPDATE \"tabNote\" SET title = 'one!', modified = '2026-01-02 10:00' WHERE name = 'N1';"
      "UPDATE \"tabNote Item\" SET qty = 3 WHERE name = 'N1-a';"
      "DELETE FROM \"tabNote Item\" WHERE name = 'N1-b';" ES_ITEM("N1-c", "N1", "3", "plum"),
      "UPDATE \"tabNote\" SET docstatus = 1, modified = '2026-01-03 10:00' WHERE name = 'N1';",
      "UPDATE \"tabNote\" SET docstatus = 2, modified = '2026-01-04 10:00' WHERE name = 'N1';",
      ES_NOTE("N2", "two") ES_ITEM("N2-a", "N2", "1", "fig"),
      "UPDATE \"tabNote\" SET name = 'N2r' WHERE name = 'N2';"
      "UPDATE \"tabNote Item\" SET parent = 'N2r' WHERE parent = 'N2';",
      "DELETE FROM \"tabNote Item\" WHERE parent = 'N1'; DELETE FROM \"tabNote\" WHERE name = 'N1';",
      ES_NOTE("N3", "three") "UPDATE \"tabNote\" SET title = 'three!' WHERE name = 'N3';"
          ES_ITEM("N3-a", "N3", "1", "kiwi"),
      "INSERT INTO \"tabOther\" (name, title) VALUES ('O1', 'other');"
      "INSERT INTO \"tabNote Item\" (name, parent, parenttype, parentfield, item)"
      " VALUES ('O1-a', 'O1', 'Other', 'items', 'stray');",
      "UPDATE \"tabNote\" SET site_only = 'y' WHERE name = 'N3';",
      "UPDATE \"tabNote\" SET title = title WHERE name = 'N3';",
      "SELECT set_config('eventstream.origin', 'branch1', true);"
      "INSERT INTO es_consumer.last_update (producer, last_seq) VALUES ('branch1', 7)"
      " ON CONFLICT (producer) DO UPDATE SET last_seq = excluded.last_seq;"
      ES_NOTE("N4", "from branch1"),
  };
  return *s;
}

struct Entry {
  std::string doctype, docname, type, data;
  std::optional<std::string> origin;
  bool operator==(const Entry& o) const {
    return doctype == o.doctype && docname == o.docname && type == o.type && data == o.data &&
           origin == o.origin;
  }
};
std::ostream& operator<<(std::ostream& os, const Entry& e) {
  return os << e.type << ":" << e.doctype << "/" << e.docname << " " << e.data << " origin "
            << e.origin.value_or("-");
}

class Site {
 public:
  explicit Site(const std::string& prefix) : db_(FreshDatabase(prefix)) {
    conn_ = Connect();
    EXPECT_TRUE(conn_->ExecScript(kSchema).ok());
    EXPECT_TRUE(ApplyMigrations(conn_.get(), "es_producer", ProducerMigrations()).ok());
  }
  std::unique_ptr<pg::Connection> Connect() {
    auto conn = pg::Connection::Open(SharedCluster().Url(db_));
    EXPECT_TRUE(conn.ok()) << conn.status();
    return conn.ok() ? std::move(*conn) : nullptr;
  }
  void Write(const std::string& sql, pg::Connection* conn = nullptr) {
    absl::Status s = (conn ? conn : conn_.get())->ExecScript(absl::StrCat("BEGIN;", sql, ";COMMIT;"));
    ASSERT_TRUE(s.ok()) << s << "\n" << sql;
  }
  int64_t Int(const std::string& sql) { return QueryInt(conn_.get(), sql); }
  std::vector<Entry> Entries(const std::string& where = "TRUE") {
    auto r = conn_->Exec(absl::StrCat(
        "SELECT doctype, docname, update_type, data::text AS data, origin FROM"
        " es_producer.update_log WHERE ", where, " ORDER BY seq"));
    EXPECT_TRUE(r.ok()) << r.status();
    std::vector<Entry> out;
    for (int i = 0; r.ok() && i < r->rows(); ++i) {
      out.push_back({std::string(r->Get(i, "doctype")), std::string(r->Get(i, "docname")),
                     std::string(r->Get(i, "update_type")),
                     r->IsNull(i, r->ColumnIndex("data")) ? "" : std::string(r->Get(i, "data")),
                     r->GetOptional(i, r->ColumnIndex("origin"))});
    }
    return out;
  }
  const std::string& db() const { return db_; }
  std::string url() const { return SharedCluster().Url(db_); }
  std::string slot() const { return SlotNameFor(db_); }
  pg::Connection* conn() { return conn_.get(); }

 private:
  std::string db_;
  std::unique_ptr<pg::Connection> conn_;
};

WalCaptureLoop::Options LoopOptions(const std::string& url, absl::Duration status_interval) {
  WalCaptureLoop::Options o;
  o.database_url = url;
  o.status_interval = status_interval;
  return o;
}

// A site captured in wal mode by an in-process WalCaptureLoop.
// `url_options` is appended to the loop's database URL ("&options=...").
class WalSite : public Site {
 public:
  explicit WalSite(const std::string& url_options = "",
                   absl::Duration status_interval = absl::Seconds(10))
      : Site("walcap"), registry_(MakeRegistry()),
        capture_(&registry_, WalCaptureStore(slot(), "es_pub")),
        loop_(&capture_, LoopOptions(url() + url_options, status_interval)) {
    absl::Status s = capture_.store().SyncPublication(conn(), registry_, {"Note"});
    EXPECT_TRUE(s.ok()) << s;
    loop_.Start();
  }
  ~WalSite() {
    loop_.Stop();
    (void)conn()->Exec("SELECT pg_drop_replication_slot($1)", {slot()});
  }
  // Waits until everything committed so far is logged: a marker document's
  // Create is, and so is everything before it (commit order).
  void Drain() {
    const std::string name = absl::StrCat("zz-marker-", ++markers_);
    Write(absl::StrCat("INSERT INTO \"tabNote\" (name, title) VALUES ('", name, "', 'm')"));
    ASSERT_TRUE(Eventually([&] {
      return Int(absl::StrCat("SELECT count(*) FROM es_producer.update_log WHERE docname = '",
                              name, "'")) == 1;
    }));
  }
  DocTypeRegistry registry_;
  WalCapture capture_;
  WalCaptureLoop loop_;
  int markers_ = 0;
};

constexpr char kNotMarker[] = "docname NOT LIKE 'zz-marker-%'";

TEST(WalCaptureTest, SameEntriesAsTriggerCapture) {
  Site trigger("trigcap");
  DocTypeRegistry registry = MakeRegistry();
  ASSERT_TRUE(CaptureInstaller().SyncTriggers(trigger.conn(), registry, {"Note"}).ok());
  WalSite wal;
  Assembler assembler(registry);
  for (const std::string& tx : Scenario()) {
    trigger.Write(tx);
    wal.Write(tx);
    // One assembler pass per transaction (its order within a pass is by
    // last row id, the WAL's by commit: the same here, one writer).
    ASSERT_TRUE(assembler.AssembleOnce(trigger.conn()).ok());
  }
  wal.Drain();
  const std::vector<Entry> want = trigger.Entries();
  ASSERT_EQ(want.size(), 9u);  // Create Update Update Cancel Create Rename Delete Create Create
  EXPECT_EQ(wal.Entries(kNotMarker), want);
  EXPECT_EQ(want.back().origin, "branch1");
  // Wal mode installed no trigger and published the Note tables.
  EXPECT_EQ(wal.Int("SELECT count(*) FROM pg_trigger WHERE tgname = 'es_capture'"), 0);
  EXPECT_EQ(wal.Int("SELECT count(*) FROM pg_publication_tables WHERE pubname = 'es_pub'"), 2);
  EXPECT_EQ(wal.Int("SELECT count(*) FROM pg_class WHERE relname IN ('tabNote', 'tabNote Item')"
                    " AND relreplident = 'f'"),
            2);
}

TEST(WalCaptureTest, CommitOrderAcrossConcurrentTransactions) {
  WalSite wal;
  auto a = wal.Connect(), b = wal.Connect();
  ASSERT_TRUE(a->ExecScript("BEGIN;" ES_NOTE("A", "first to write")).ok());
  ASSERT_TRUE(b->ExecScript("BEGIN;" ES_NOTE("B", "first to commit") "COMMIT;").ok());
  ASSERT_TRUE(a->ExecScript("UPDATE \"tabNote\" SET title = 'a2' WHERE name = 'A'; COMMIT;").ok());
  wal.Drain();
  std::vector<Entry> got = wal.Entries(kNotMarker);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].docname, "B");  // commit order, not write order
  EXPECT_EQ(got[1].docname, "A");
  EXPECT_EQ(got[1].type, "Create");  // one entry per document per transaction
}

TEST(WalCaptureTest, OnlyTheConsumersMarkerSetsTheOrigin) {
  WalSite wal;
  // The setting alone (any role can set it) marks nothing in wal mode.
  wal.Write("SELECT set_config('eventstream.origin', 'branch1', true);" ES_NOTE("App", "a"));
  wal.Write("INSERT INTO es_consumer.last_update (producer) VALUES ('branch2');" ES_NOTE("Applied", "b"));
  wal.Drain();
  std::vector<Entry> got = wal.Entries(kNotMarker);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].origin, std::nullopt);
  EXPECT_EQ(got[1].origin, "branch2");
}

TEST(WalCaptureTest, AnUpdateWithoutTheOldRowIsAVisibleErrorNotAWrongDiff) {
  WalSite wal;
  wal.Write(ES_NOTE("N1", "one") ES_NOTE("N2", "two"));
  wal.Drain();
  // An operator resets the identity: an update carries no old row.
  wal.Write("ALTER TABLE \"tabNote\" REPLICA IDENTITY DEFAULT");
  wal.Write("UPDATE \"tabNote\" SET title = 'changed' WHERE name = 'N1'");
  wal.Write("DELETE FROM \"tabNote\" WHERE name = 'N2'");
  wal.Drain();
  EXPECT_EQ(wal.Int("SELECT count(*) FROM es_producer.capture_error WHERE docname = 'N1'"
                    " AND error LIKE '%REPLICA IDENTITY FULL%'"),
            1);
  std::vector<Entry> got = wal.Entries(kNotMarker);
  ASSERT_EQ(got.size(), 3u);  // Create N1, Create N2, Delete N2 (a delete needs only the key)
  EXPECT_EQ(got[2].type, "Delete");
}

// While set, commits of sessions that ask for synchronous_commit = on wait
// for a synchronous standby that never comes (everyone else commits
// locally): their commit records are flushed, so the slot sends them, and
// other sessions see them running until the wait is cancelled.
class SyncStandbyNobodyHas {
 public:
  explicit SyncStandbyNobodyHas(pg::Connection* conn) : conn_(conn) {
    Set("ALTER SYSTEM SET synchronous_commit = 'local';"
        "ALTER SYSTEM SET synchronous_standby_names = 'es_nobody'");
  }
  ~SyncStandbyNobodyHas() {
    Set("ALTER SYSTEM RESET synchronous_standby_names; ALTER SYSTEM RESET synchronous_commit");
  }

 private:
  void Set(const std::string& sql) {
    for (absl::string_view statement : absl::StrSplit(sql, ';')) {
      absl::Status s = conn_->Exec(std::string(statement)).status();  // ALTER SYSTEM: no transaction
      EXPECT_TRUE(s.ok()) << s;
    }
    EXPECT_TRUE(conn_->Exec("SELECT pg_reload_conf()").ok());
  }
  pg::Connection* conn_;
};

// N1's title set to 'after' by a transaction that commits with
// synchronous_commit = on while SyncStandbyNobodyHas: its commit record is
// flushed and sent, and it stays invisible to everyone else until Release().
class InvisibleCommit {
 public:
  explicit InvisibleCommit(WalSite* wal) : wal_(wal), standby_(wal->conn()) {
    writer_ = wal->Connect();
    EXPECT_TRUE(writer_->Exec("SET synchronous_commit = on").ok());
    EXPECT_TRUE(Eventually([&] {
      return QueryText(writer_.get(), "SHOW synchronous_standby_names") == "es_nobody";
    }));
    pid_ = QueryInt(writer_.get(), "SELECT pg_backend_pid()");
    commit_ = std::thread([this] {
      absl::Status s = writer_->ExecScript(
          "BEGIN; UPDATE \"tabNote\" SET title = 'after' WHERE name = 'N1'; COMMIT;");
      EXPECT_TRUE(s.ok()) << s;  // committed locally once the wait is cancelled
    });
    const std::string waiting = absl::StrCat(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ", pid_, " AND wait_event = 'SyncRep'");
    EXPECT_TRUE(Eventually([&] { return wal->Int(waiting) == 1; }));
    flushed_ = static_cast<wal::Lsn>(
        wal->Int("SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::bigint"));
  }
  ~InvisibleCommit() { Release(); }
  // Cancels the wait: the transaction is committed and visible.
  void Release() {
    if (!commit_.joinable()) return;
    EXPECT_EQ(wal_->Int(absl::StrCat("SELECT count(*) FROM pg_cancel_backend(", pid_, ")")), 1);
    commit_.join();
  }
  wal::Lsn flushed() const { return flushed_; }  // its commit record is at or below

 private:
  WalSite* wal_;
  SyncStandbyNobodyHas standby_;
  std::unique_ptr<pg::Connection> writer_;
  int64_t pid_ = 0;
  std::thread commit_;
  wal::Lsn flushed_ = 0;
};

// A decoded commit can still be running for every other session; its entry
// must wait until it is not (a pull judges conditions on the current
// document: issue 14's move-in was lost under load this way).
TEST(WalCaptureTest, AnEntryIsLoggedOnlyOnceItsChangeIsVisible) {
  WalSite wal;
  wal.Write(ES_NOTE("N1", "before"));
  wal.Drain();
  InvisibleCommit held(&wal);
  // Flushed and sent, not visible: nothing is logged for it meanwhile.
  EXPECT_FALSE(wal.loop_.WaitCaptured(held.flushed(), absl::Seconds(1)));
  EXPECT_EQ(wal.Int("SELECT count(*) FROM es_producer.update_log WHERE docname = 'N1'"), 1);
  EXPECT_EQ(QueryText(wal.conn(), "SELECT title FROM \"tabNote\" WHERE name = 'N1'"), "before");
  held.Release();
  EXPECT_TRUE(wal.loop_.WaitCaptured(held.flushed(), absl::Seconds(30)));
  std::vector<Entry> got = wal.Entries("docname = 'N1'");
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].type, "Update");
  EXPECT_NE(got[1].data.find("\"after\""), std::string::npos) << got[1].data;
}

// While a batch waits to become visible the loop reads nothing from the
// slot, but it still answers the server: a wait longer than
// wal_sender_timeout keeps the stream (it used to end it, and the batch was
// read again on a new connection, for as long as the wait lasted).
TEST(WalCaptureTest, AVisibilityWaitLongerThanTheSenderTimeoutKeepsTheStream) {
  WalSite wal("&options=-c%20wal_sender_timeout%3D1000", absl::Milliseconds(200));
  wal.Write(ES_NOTE("N1", "before"));
  wal.Drain();
  const std::string sender = absl::StrCat(
      "SELECT coalesce(max(active_pid), 0) FROM pg_replication_slots WHERE slot_name = '",
      wal.slot(), "'");
  const int64_t walsender = wal.Int(sender);
  ASSERT_NE(walsender, 0);
  InvisibleCommit held(&wal);
  // Three sender timeouts, not a backoff being checked.
  EXPECT_FALSE(wal.loop_.WaitCaptured(held.flushed(), absl::Seconds(3)));
  EXPECT_EQ(wal.Int(sender), walsender);
  held.Release();
  EXPECT_TRUE(wal.loop_.WaitCaptured(held.flushed(), absl::Seconds(30)));
  EXPECT_EQ(wal.Int(sender), walsender);
  EXPECT_EQ(wal.Entries("docname = 'N1'").size(), 2u);
}

// ---- the producer binary in wal mode, killed -9 ----------------------------

constexpr char kBranch1[] = "token branch1:wal-b1";

class WalProducerTest : public ::testing::Test {
 protected:
  void SetUp() override { site_ = std::make_unique<Site>("walprod"); }
  void TearDown() override {
    service_ = RunningService();
    (void)site_->conn()->Exec("SELECT pg_drop_replication_slot($1)", {site_->slot()});
  }
  std::string Config() {
    return absl::StrCat(R"(site: {name: hq}
database: {url: ")", site_->url(), R"("}
doctypes:
  - name: Note
    fields:
      - {fieldname: title, fieldtype: Data}
      - {fieldname: amount, fieldtype: Currency}
      - {fieldname: data, fieldtype: JSON}
      - {fieldname: items, fieldtype: Table, options: Note Item}
  - name: Note Item
    istable: true
    fields:
      - {fieldname: item, fieldtype: Data}
      - {fieldname: qty, fieldtype: Float}
producer:
  listen: "127.0.0.1:0"
  capture: wal
  wal_slot: )", site_->slot(), R"(
  api_keys: [{key: branch1, secret_env: ES_T_WAL_B1, role: consumer}]
  consumers: [{site: branch1, doctypes: [{doctype: Note, status: approved}]}]
)");
  }
  void StartProducer() {
    auto svc = StartService("eventstream-producer", Config(), {{"ES_T_WAL_B1", "wal-b1"}});
    ASSERT_TRUE(svc.ok()) << svc.status();
    service_ = std::move(*svc);
    stub_ = v1::Producer::NewStub(
        grpc::CreateChannel(service_.address(), grpc::InsecureChannelCredentials()));
  }
  // Registers branch1 for Note, with or without its initial sync.
  void Register(bool initial_sync = false) {
    v1::RegisterConsumerResponse resp;
    grpc::Status s = eventstream::testing::Register(
        stub_.get(), kBranch1, "branch1",
        {Sub("Note", "", /*unsubscribe=*/false, /*skip_initial_sync=*/!initial_sync)}, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << service_.process->Log();
  }
  // One pull after `*after_seq` (which it acknowledges): its entries as
  // "docname type", and *after_seq moved on.
  std::vector<std::string> PullOnce(int64_t* after_seq) {
    std::vector<std::string> out;
    v1::PullUpdatesResponse resp;
    grpc::Status s = Pull(stub_.get(), kBranch1, *after_seq, &resp, 5000);
    EXPECT_TRUE(s.ok()) << s.error_message();
    for (const auto& e : resp.entries()) {
      out.push_back(absl::StrCat(e.docname(), " ", v1::UpdateType_Name(e.update_type())));
    }
    *after_seq = resp.next_after_seq();
    return out;
  }

  std::unique_ptr<Site> site_;
  RunningService service_;
  std::unique_ptr<v1::Producer::Stub> stub_;
};

TEST_F(WalProducerTest, KillNineAnywhereLosesNothingAndLogsNothingTwice) {
  StartProducer();
  Register();
  ASSERT_EQ(site_->Int("SELECT count(*) FROM pg_publication_tables WHERE pubname = 'eventstream'"),
            2);
  ASSERT_EQ(site_->Int("SELECT count(*) FROM pg_trigger WHERE tgname = 'es_capture'"), 0);
  // Two writers commit a document with a child row each, as fast as they can,
  // while the producer is killed -9 three times at different moments.
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 2; ++w) {
    writers.emplace_back([&, w] {
      auto conn = site_->Connect();
      for (int i = 0; !stop; ++i) {
        const std::string n = absl::StrCat("W", w, "-", i);
        absl::Status s = conn->ExecScript(absl::StrCat(
            "BEGIN; INSERT INTO \"tabNote\" (name, title) VALUES ('", n, "', 't');"
            "INSERT INTO \"tabNote Item\" (name, parent, parenttype, parentfield, item)"
            " VALUES ('", n, "-a', '", n, "', 'Note', 'items', 'i'); COMMIT;"));
        if (s.ok()) ++written;
      }
    });
  }
  for (int delay_ms : {150, 400, 900}) {
    absl::SleepFor(absl::Milliseconds(delay_ms));
    service_.process->Signal(SIGKILL);
    (void)service_.process->Wait(absl::Seconds(10));
    StartProducer();
  }
  absl::SleepFor(absl::Milliseconds(300));
  stop = true;
  for (std::thread& t : writers) t.join();
  // A consumer's applied change: not sent back to it, but to others.
  site_->Write("INSERT INTO es_consumer.last_update (producer) VALUES ('branch1');"
               ES_NOTE("Echo", "applied from branch1"));
  site_->Write(ES_NOTE("Last", "local"));
  ASSERT_TRUE(Eventually([&] {
    return site_->Int("SELECT count(*) FROM es_producer.update_log WHERE docname = 'Last'") == 1;
  })) << service_.process->Log();
  EXPECT_GT(written.load(), 10);
  EXPECT_EQ(site_->Int("SELECT count(*) FROM es_producer.update_log WHERE docname LIKE 'W%'"),
            written.load());
  EXPECT_EQ(site_->Int("SELECT count(DISTINCT docname) FROM es_producer.update_log"
                       " WHERE docname LIKE 'W%' AND update_type = 'Create'"
                       " AND json_array_length(data -> 'items') = 1"),
            written.load());
  EXPECT_EQ(site_->Int("SELECT count(*) FROM es_producer.update_log WHERE docname = 'Echo'"
                       " AND origin = 'branch1'"),
            1);
  int64_t after = site_->Int("SELECT max(seq) FROM es_producer.update_log WHERE docname LIKE 'W%'");
  std::vector<std::string> pulled = PullOnce(&after);
  EXPECT_EQ(std::count(pulled.begin(), pulled.end(), "Echo UPDATE_TYPE_CREATE"), 0);
  EXPECT_EQ(std::count(pulled.begin(), pulled.end(), "Last UPDATE_TYPE_CREATE"), 1);
}

// Initial sync chunks and Creates the WAL loop has not logged yet (held
// back by the assembler's lock): N2200x commits before chunk 5 is read, so
// the chunk waits for the WAL loop to pass its marker and then leaves the
// document to its Create; N2300x commits while the chunk waits (a chunk read
// under the lock, as with triggers, would take it before its Create is
// logged). The consumer gets each document once.
TEST_F(WalProducerTest, InitialSyncChunkNeverRepeatsACreateNotYetLogged) {
  std::string seed = "BEGIN;";
  for (int i = 1; i <= 2500; ++i) {
    absl::StrAppend(&seed, "INSERT INTO \"tabNote\" (name, title) VALUES ('N",
                    absl::Dec(i, absl::kZeroPad4), "', 't');");
  }
  site_->Write(seed + "COMMIT;");
  StartProducer();
  Register(/*initial_sync=*/true);
  // Chunks 1 to 4 (N0001..N2000) go at once (four in flight); chunk 5
  // waits for an ack.
  ASSERT_TRUE(Eventually([&] {
    return site_->Int("SELECT count(*) FROM es_producer.update_log WHERE for_site = 'branch1'") ==
           2000;
  })) << service_.process->Log();
  auto blocker = site_->Connect();
  ASSERT_TRUE(blocker->Exec("SELECT pg_advisory_lock(hashtext('es_producer.assembler'))").ok());
  site_->Write("INSERT INTO \"tabNote\" (name, title) VALUES ('N2200x', 'new');");
  int64_t after = 0;
  std::vector<std::string> got = PullOnce(&after);  // acknowledges chunk 1's entries
  absl::SleepFor(absl::Milliseconds(500));  // chunk 5 is read and waits
  site_->Write("INSERT INTO \"tabNote\" (name, title) VALUES ('N2300x', 'new');");
  absl::SleepFor(absl::Milliseconds(500));
  ASSERT_TRUE(blocker->Exec("SELECT pg_advisory_unlock(hashtext('es_producer.assembler'))").ok());
  ASSERT_TRUE(Eventually([&] {
    for (const std::string& e : PullOnce(&after)) got.push_back(e);
    return site_->Int("SELECT count(*) FROM es_producer.sync_job WHERE state = 'done'") == 1 &&
           site_->Int(absl::StrCat("SELECT count(*) FROM es_producer.update_log WHERE seq > ",
                                   after)) == 0;
  })) << service_.process->Log();
  std::map<std::string, int> times;
  for (const std::string& e : got) ++times[e.substr(0, e.find(' '))];
  EXPECT_EQ(times.size(), 2502u);
  for (const auto& [name, n] : times) EXPECT_EQ(n, 1) << name;
  for (const char* create : {"N2200x UPDATE_TYPE_CREATE", "N2300x UPDATE_TYPE_CREATE"}) {
    EXPECT_NE(std::find(got.begin(), got.end(), create), got.end()) << create;
  }
}

// A json column may hold what jsonb refuses ("\u0000"; the update log's
// data was jsonb until migration 0015 and refused it, which stopped the
// initial sync and WAL capture at that document for good). Both log it now,
// and the documents after it flow.
TEST_F(WalProducerTest, JsonColumnWithWhatJsonbRefusesStopsNothing) {
  site_->Write(R"(ALTER TABLE "tabNote" ADD COLUMN data json;
    INSERT INTO "tabNote" (name, title) VALUES ('N1', 't');
    INSERT INTO "tabNote" (name, title, data) VALUES ('N2', 't', '{"a": "x\u0000y"}');
    INSERT INTO "tabNote" (name, title) VALUES ('N3', 't'))");
  StartProducer();
  Register(/*initial_sync=*/true);
  site_->Write(R"(INSERT INTO "tabNote" (name, title, data) VALUES ('N4', 't', '["\u0000"]');
    INSERT INTO "tabNote" (name, title) VALUES ('N5', 't'))");
  int64_t after = 0;
  std::vector<std::string> got;
  ASSERT_TRUE(Eventually([&] {
    for (const std::string& e : PullOnce(&after)) got.push_back(e);
    return got.size() >= 5;
  })) << service_.process->Log();
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::string>{"N1 UPDATE_TYPE_SYNC", "N2 UPDATE_TYPE_SYNC",
                                           "N3 UPDATE_TYPE_SYNC", "N4 UPDATE_TYPE_CREATE",
                                           "N5 UPDATE_TYPE_CREATE"}));
  EXPECT_EQ(site_->Int("SELECT count(*) FROM es_producer.update_log"
                       " WHERE docname IN ('N2', 'N4') AND data::text LIKE '%\\u0000%'"),
            2);
}

}  // namespace
}  // namespace eventstream::testing
