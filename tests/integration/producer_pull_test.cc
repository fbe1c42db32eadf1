// PullUpdates, GetDocument and FindDocuments end to end: the real
// eventstream-producer binary (with its assembler thread) on a fresh
// database, called over gRPC. Whole documents in Create entries, updates and
// deletes, no echoes of a consumer's own writes, conditions with access flip
// (earlier entries arrive in order), Delete only to consumers that were sent
// the document, conditions that error, the acknowledged position, and the
// dependency RPCs' visibility (Link, child-row Link, Dynamic Link).
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <atomic>
#include <mutex>
#include <thread>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "eventstream/v1/consumer.grpc.pb.h"
#include "eventstream/v1/producer.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "libsync/base/pg.h"
#include "libsync/base/value.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/frappe_schema.h"
#include "tests/support/http_get.h"
#include "tests/support/service_runner.h"
#include "tests/support/two_sites.h"
#include "tests/support/grpc/producer_calls.h"

namespace eventstream::testing {
namespace {

const std::vector<std::string> kNoteFields = {"public",   "amount",   "author",
                                              "ref_type", "ref_name", "seen_by"};

std::string Config(const std::string& url, int metrics_port) {
  ProducerYaml yaml;
  yaml.url = url;
  yaml.doctypes = NoteDocType(kNoteFields) + kLinkedDocTypes;
  yaml.consumers = 4;
  yaml.metrics_port = metrics_port;
  yaml.extra = R"(  condition_functions: [public.starts_with_a, public.no_such_function, public.writes]
  consumers:
    # branch4 may only ever see public Notes, also as dependencies.
    - site: branch4
      doctypes: [{doctype: Note, status: approved, condition: "doc.public == 1"}]
)";
  return ProducerConfigYaml(yaml);
}

const std::string kSiteTables = NoteTable(kNoteFields) + LinkedTables() + R"(
CREATE FUNCTION public.starts_with_a(consumer text, doc jsonb, entry jsonb)
  RETURNS boolean LANGUAGE sql AS $$ SELECT doc->>'title' LIKE 'a%' $$;
CREATE TABLE public.side_effects (consumer text, doc jsonb);
CREATE FUNCTION public.writes(consumer text, doc jsonb, entry jsonb)
  RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.side_effects VALUES (consumer, doc);
  RETURN true;
END $$;
)";

Value Json(const std::string& text) {
  auto v = Value::ParseJson(text);
  EXPECT_TRUE(v.ok()) << v.status() << ": " << text;
  return v.ok() ? *v : Value();
}

std::string Str(const Value& doc, const std::string& key) {
  const Value* v = doc.Find(key);
  return v != nullptr && v->is_string() ? v->as_string() : std::string("<none>");
}

class PullTest : public ProducerTest {
 protected:
  void SetUp() override {
    OpenSite("pull", kSiteTables);
    metrics_port_ = FreeTcpPort();
    StartProducer(Config(Url(), metrics_port_));
  }

  // Registers `site` for `subs` and approves each; returns the watermark.
  int64_t Subscribe(const std::string& auth, const std::string& site,
                    const std::vector<v1::SubscriptionRequest>& subs) {
    return SubscribeApproved(auth, site, subs);
  }

  int64_t LogPosition() {
    auto r = conn_->Exec("SELECT coalesce(max(seq), 0) FROM es_producer.update_log");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->GetInt64(0, 0) : -1;
  }

  // Pull that must succeed.
  v1::PullUpdatesResponse MustPull(const std::string& auth, int64_t after_seq,
                                   int limit = 0) {
    v1::PullUpdatesResponse resp;
    grpc::Status s = Pull(auth, after_seq, &resp, limit);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  grpc::Status Get(const std::string& auth, const std::string& doctype,
                   const std::string& name, std::string* json = nullptr) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", auth);
    v1::GetDocumentRequest req;
    req.set_doctype(doctype);
    req.set_name(name);
    v1::GetDocumentResponse resp;
    grpc::Status s = stub_->GetDocument(&ctx, req, &resp);
    if (json != nullptr) *json = resp.document_json();
    return s;
  }

  // The database statements GetDocument of `name` ran (producer /metrics),
  // checking it is not visible.
  double StatementsOfInvisible(const std::string& auth, const std::string& doctype,
                               const std::string& name) {
    const std::string series = "eventstream_producer_dependency_statements_total";
    const double before = Scrape(metrics_port_, series).value_or(0);
    EXPECT_EQ(Get(auth, doctype, name).error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << name;
    return Scrape(metrics_port_, series).value_or(0) - before;
  }

  // Statements one FindDocuments ran (the producer's own count).
  double StatementsOfFind(const std::string& auth, const std::string& doctype,
                          const std::map<std::string, std::string>& filters,
                          std::vector<std::string>* names) {
    const std::string series = "eventstream_producer_dependency_statements_total";
    const double before = Scrape(metrics_port_, series).value_or(0);
    EXPECT_TRUE(Find(auth, doctype, filters, names).ok());
    return Scrape(metrics_port_, series).value_or(0) - before;
  }

  grpc::Status Find(const std::string& auth, const std::string& doctype,
                    const std::map<std::string, std::string>& filters,
                    std::vector<std::string>* names) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", auth);
    v1::FindDocumentsRequest req;
    req.set_doctype(doctype);
    for (const auto& [k, v] : filters) (*req.mutable_filters())[k] = v;
    v1::FindDocumentsResponse resp;
    grpc::Status s = stub_->FindDocuments(&ctx, req, &resp);
    names->clear();
    for (const auto& d : resp.documents_json()) names->push_back(Str(Json(d), "name"));
    return s;
  }

  // Every page of ListVisibleDocuments (`limit` each): "V1 V2 | V3" (pages
  // apart), or the error.
  // Names page by page ("a b | c"); names_only: from `names`, and no
  // document may come along.
  std::string ListVisible(const std::string& auth, const std::string& doctype, int limit,
                          bool names_only = false) {
    std::string out, after;
    for (int pages = 0; pages < 100; ++pages) {
      grpc::ClientContext ctx;
      ctx.AddMetadata("authorization", auth);
      v1::ListVisibleDocumentsRequest req;
      req.set_doctype(doctype);
      req.set_after_name(after);
      req.set_limit(limit);
      req.set_names_only(names_only);
      v1::ListVisibleDocumentsResponse resp;
      grpc::Status s = stub_->ListVisibleDocuments(&ctx, req, &resp);
      if (!s.ok()) return absl::StrCat("error ", s.error_code(), ": ", s.error_message());
      std::vector<std::string> names(resp.names().begin(), resp.names().end());
      if (names_only && resp.documents_json_size() > 0) return "documents with names_only";
      for (const auto& d : resp.documents_json()) names.push_back(Str(Json(d), "name"));
      absl::StrAppend(&out, out.empty() ? "" : " | ", absl::StrJoin(names, " "));
      after = resp.next_after_name();
      if (after.empty()) return out;
    }
    return out + " ...";
  }

  v1::ConsumerInfo Consumer(const std::string& site) {
    v1::ConsumerInfo c = ConsumerOf(stub_.get(), kOps, site);
    if (c.site() != site) ADD_FAILURE() << "no consumer " << site;
    return c;
  }

  int metrics_port_ = 0;
};

TEST_F(PullTest, CreateCarriesWholeDocumentThenUpdatesAndDeletes) {
  int64_t wm = Subscribe(kB1, "branch1", {Sub("Note")});
  Write(R"(BEGIN;
    INSERT INTO "tabNote" (name, title, public, amount)
      VALUES ('N1', 'hello', 1, 12345678901234567890.123456789);
    INSERT INTO "tabNote Seen By" (name, idx, parent, parenttype, parentfield, "user")
      VALUES ('c2', 2, 'N1', 'Note', 'seen_by', 'U2'),
             ('c1', 1, 'N1', 'Note', 'seen_by', 'U1');
    COMMIT;)");
  v1::PullUpdatesResponse resp = MustPull(kB1, wm);
  ASSERT_EQ(Summary(resp), "CREATE:N1");
  const v1::UpdateLogEntry& create = resp.entries(0);
  EXPECT_EQ(create.doctype(), "Note");
  EXPECT_FALSE(create.created_at().empty());
  EXPECT_EQ(resp.next_after_seq(), create.seq());
  EXPECT_FALSE(resp.more());
  Value doc = Json(create.data_json());
  EXPECT_EQ(Str(doc, "doctype"), "Note");
  EXPECT_EQ(Str(doc, "title"), "hello");
  ASSERT_NE(doc.Find("amount"), nullptr);
  EXPECT_EQ(doc.Find("amount")->number_text(), "12345678901234567890.123456789");
  const Value* rows = doc.Find("seen_by");
  ASSERT_TRUE(rows != nullptr && rows->is_array());
  ASSERT_EQ(rows->as_array().size(), 2u);
  EXPECT_EQ(Str(rows->as_array()[0], "user"), "U1");
  EXPECT_EQ(Str(rows->as_array()[0], "doctype"), "Note Seen By");
  EXPECT_EQ(Str(rows->as_array()[1], "user"), "U2");

  // The pull recorded its after_seq as the acknowledged position.
  v1::ConsumerInfo info = Consumer("branch1");
  EXPECT_EQ(info.acknowledged_seq(), wm);
  EXPECT_FALSE(info.last_pull_at().empty());

  int64_t after = resp.next_after_seq();
  Write(R"(UPDATE "tabNote" SET title = 'hello again' WHERE name = 'N1';)");
  Write(R"(DELETE FROM "tabNote Seen By" WHERE parent = 'N1';
           DELETE FROM "tabNote" WHERE name = 'N1';)");
  resp = MustPull(kB1, after);
  ASSERT_EQ(Summary(resp), "UPDATE:N1 DELETE:N1");
  Value diff = Json(resp.entries(0).data_json());
  ASSERT_NE(diff.Find("changed"), nullptr) << resp.entries(0).data_json();
  EXPECT_EQ(resp.entries(1).data_json(), "");
  EXPECT_EQ(resp.next_after_seq(), LogPosition());
  EXPECT_EQ(Consumer("branch1").acknowledged_seq(), after);

  // Nothing new: empty answer, the position stays.
  after = resp.next_after_seq();
  resp = MustPull(kB1, after);
  EXPECT_EQ(resp.entries_size(), 0);
  EXPECT_EQ(resp.next_after_seq(), after);
  EXPECT_EQ(Consumer("branch1").acknowledged_seq(), after);

  // limit and more.
  Write(R"(INSERT INTO "tabNote" (name, title) VALUES ('L1', 'a');
           INSERT INTO "tabNote" (name, title) VALUES ('L2', 'b');
           INSERT INTO "tabNote" (name, title) VALUES ('L3', 'c');)");
  resp = MustPull(kB1, after, 2);
  EXPECT_EQ(Summary(resp), "CREATE:L1 CREATE:L2");
  EXPECT_TRUE(resp.more());
  resp = MustPull(kB1, resp.next_after_seq(), 2);
  EXPECT_EQ(Summary(resp), "CREATE:L3");
  EXPECT_FALSE(resp.more());

  // Errors: negative position, unregistered site, no key.
  v1::PullUpdatesResponse bad;
  EXPECT_EQ(Pull(kB1, -1, &bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::Status s = Pull(kB2, 0, &bad);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  EXPECT_NE(s.error_message().find("branch2"), std::string::npos);
  EXPECT_EQ(Pull("", 0, &bad).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(PullTest, PullWritesAConstantNumberOfStatements) {
  int64_t wm = Subscribe(kB1, "branch1", {Sub("Note", "doc.public == 1")});
  // Count the statements (not rows) that write the pull's bookkeeping.
  ASSERT_TRUE(conn_->ExecScript(R"(
    CREATE TABLE stmt_count (tbl text, n int);
    CREATE FUNCTION count_stmt() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO stmt_count VALUES (TG_TABLE_NAME, 1); RETURN NULL; END $$;
    CREATE TRIGGER c AFTER INSERT OR UPDATE OR DELETE ON es_producer.holding
      FOR EACH STATEMENT EXECUTE FUNCTION count_stmt();
    CREATE TRIGGER c AFTER INSERT OR UPDATE OR DELETE ON es_producer.holding_change
      FOR EACH STATEMENT EXECUTE FUNCTION count_stmt();
    CREATE TRIGGER c AFTER INSERT OR UPDATE OR DELETE ON es_producer.consumer
      FOR EACH STATEMENT EXECUTE FUNCTION count_stmt();)").ok());
  Write(R"(INSERT INTO "tabNote" (name, title, public)
           SELECT 'M' || g, 't', g % 2 FROM generate_series(1, 60) g;)");
  Write(R"(UPDATE "tabNote" SET public = 1 - public;)");
  Write(R"(DELETE FROM "tabNote" WHERE name <= 'M3';)");
  ASSERT_TRUE(conn_->Exec("DELETE FROM stmt_count").ok());
  v1::PullUpdatesResponse resp = MustPull(kB1, wm);
  // Conditions see the current document: the 19 remaining even-numbered
  // Notes (public now 1) move in with their Create (a SYNC of the current
  // document) and then get their Update; the 23 deleted ones were never
  // held, so nothing of them goes.
  EXPECT_EQ(resp.entries_size(), 19 * 2);
  auto r = conn_->Exec("SELECT tbl, count(*) AS n FROM stmt_count GROUP BY tbl ORDER BY tbl");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->rows(), 3);
  EXPECT_EQ(r->Get(0, "tbl"), "consumer");
  EXPECT_EQ(r->GetInt64(0, 1), 1);
  EXPECT_EQ(r->Get(1, "tbl"), "holding");
  EXPECT_LE(r->GetInt64(1, 1), 2);  // the fold: insert, delete
  EXPECT_EQ(r->Get(2, "tbl"), "holding_change");
  EXPECT_LE(r->GetInt64(2, 1), 3);  // drop re-asked, fold, add
  // The 19 move-ins are pending until the consumer acknowledges them.
  auto count = [&](const char* table) {
    auto c = conn_->Exec(absl::StrCat("SELECT count(*) FROM es_producer.", table,
                                      " WHERE site = 'branch1'"));
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? c->GetInt64(0, 0) : -1;
  };
  EXPECT_EQ(count("holding_change"), 19);
  EXPECT_EQ(count("holding"), 0);
  MustPull(kB1, resp.next_after_seq());
  EXPECT_EQ(count("holding_change"), 0);
  EXPECT_EQ(count("holding"), 19);
}

// A pull reads its window with the subscription rows the site's last pull
// read, and checks them again after the read (update_feed.h): rows changed
// between two pulls, in any way, count from the next pull.
TEST_F(PullTest, ASubscriptionChangedBetweenPullsCountsAtTheNextPull) {
  int64_t wm = Subscribe(kB1, "branch1", {Sub("Note")});
  Write(R"(INSERT INTO "tabNote" (name, title, public) VALUES ('P1', 't', 0);)");
  v1::PullUpdatesResponse resp = MustPull(kB1, wm);
  ASSERT_EQ(Summary(resp), "CREATE:P1");
  // A condition now (in SQL here; UpdateSubscription writes the same row).
  ASSERT_TRUE(conn_->Exec("UPDATE es_producer.consumer_doctype SET condition = "
                          "'doc.public == 1' WHERE site = 'branch1'").ok());
  Write(R"(INSERT INTO "tabNote" (name, title, public) VALUES ('P2', 't', 0), ('P3', 't', 1);)");
  resp = MustPull(kB1, resp.next_after_seq());
  EXPECT_FALSE(absl::StrContains(Summary(resp), ":P2")) << Summary(resp);
  EXPECT_TRUE(absl::StrContains(Summary(resp), ":P3")) << Summary(resp);
  // Approval revoked: nothing new of the DocType goes.
  ASSERT_TRUE(conn_->Exec("UPDATE es_producer.consumer_doctype SET status = 'rejected'"
                          " WHERE site = 'branch1'").ok());
  Write(R"(INSERT INTO "tabNote" (name, title, public) VALUES ('P4', 't', 1);)");
  resp = MustPull(kB1, resp.next_after_seq());
  EXPECT_FALSE(absl::StrContains(Summary(resp), ":P4")) << Summary(resp);
}

TEST_F(PullTest, OwnOriginEntriesAreNotReturned) {
  int64_t wm = Subscribe(kB1, "branch1", {Sub("Note")});
  Subscribe(kB3, "branch3", {Sub("Note")});
  Write(R"(BEGIN;
    SET LOCAL eventstream.origin = 'branch1';
    INSERT INTO "tabNote" (name, title) VALUES ('FromB1', 'echo?');
    COMMIT;
    INSERT INTO "tabNote" (name, title) VALUES ('Local', 'mine');)");
  v1::PullUpdatesResponse resp = MustPull(kB1, wm);
  EXPECT_EQ(Summary(resp), "CREATE:Local");
  EXPECT_EQ(resp.next_after_seq(), LogPosition());  // skipped past its own
  resp = MustPull(kB3, wm);
  EXPECT_EQ(Summary(resp), "CREATE:FromB1 CREATE:Local");
  EXPECT_EQ(resp.entries(0).origin(), "branch1");
}

// Membership (issue 14): a document that starts passing the conditions
// moves in with its current state (SYNC), one that stops moves out
// (REVOKE); a consumer that never held a document gets none of its entries.
TEST_F(PullTest, MoveInSendsTheCurrentDocumentAndMoveOutRevokes) {
  int64_t wm = Subscribe(kB1, "branch1", {Sub("Note", "doc.public == 1")});
  Subscribe(kB3, "branch3", {Sub("Note")});
  Write(R"(INSERT INTO "tabNote" (name, title, public) VALUES ('N1', 'draft', 0);)");
  Write(R"(UPDATE "tabNote" SET title = 'draft 2' WHERE name = 'N1';)");
  v1::PullUpdatesResponse b1 = MustPull(kB1, wm);
  EXPECT_EQ(Summary(b1), "");
  EXPECT_EQ(b1.next_after_seq(), LogPosition());  // the invisible ones skipped
  EXPECT_EQ(Summary(MustPull(kB3, wm)), "CREATE:N1 UPDATE:N1");

  // Move-in: the whole current document, at the entry that moved it in.
  int64_t after = b1.next_after_seq();
  Write(R"(UPDATE "tabNote" SET public = 1 WHERE name = 'N1';)");
  b1 = MustPull(kB1, after);
  ASSERT_EQ(Summary(b1), "SYNC:N1");
  EXPECT_EQ(b1.entries(0).seq(), LogPosition());
  EXPECT_EQ(Str(Json(b1.entries(0).data_json()), "title"), "draft 2");
  EXPECT_EQ(Json(b1.entries(0).data_json()).Find("public")->number_text(), "1");

  // Later entries come as they are, once; a repeated pull (the consumer
  // died before committing) gets the same.
  after = b1.next_after_seq();
  Write(R"(UPDATE "tabNote" SET title = 'final' WHERE name = 'N1';)");
  EXPECT_EQ(Summary(MustPull(kB1, after)), "UPDATE:N1");
  EXPECT_EQ(Summary(MustPull(kB1, after)), "UPDATE:N1");
  after = LogPosition();

  // Move-out: a REVOKE, then nothing while hidden, the same on a repeat.
  Write(R"(UPDATE "tabNote" SET public = 0 WHERE name = 'N1';)");
  Write(R"(UPDATE "tabNote" SET title = 'hidden edit' WHERE name = 'N1';)");
  b1 = MustPull(kB1, after);
  ASSERT_EQ(Summary(b1), "REVOKE:N1");
  EXPECT_EQ(Str(Json(b1.entries(0).data_json()), "reason"), "no longer passes the conditions");
  EXPECT_EQ(Summary(MustPull(kB1, after)), "REVOKE:N1");
  after = b1.next_after_seq();
  // ... and back in: the current state again.
  Write(R"(UPDATE "tabNote" SET public = 1 WHERE name = 'N1';)");
  b1 = MustPull(kB1, after);
  ASSERT_EQ(Summary(b1), "SYNC:N1");
  EXPECT_EQ(Str(Json(b1.entries(0).data_json()), "title"), "hidden edit");
  after = b1.next_after_seq();
  Write(R"(UPDATE "tabNote" SET title = 'visible edit' WHERE name = 'N1';)");
  EXPECT_EQ(Summary(MustPull(kB1, after)), "UPDATE:N1");
  after = LogPosition();

  // A document branch1 never held: its Delete goes to branch3 only.
  Write(R"(INSERT INTO "tabNote" (name, title, public) VALUES ('N2', 'secret', 0);)");
  Write(R"(DELETE FROM "tabNote" WHERE name = 'N2';)");
  Write(R"(DELETE FROM "tabNote" WHERE name = 'N1';)");
  EXPECT_EQ(Summary(MustPull(kB1, after)), "DELETE:N1");
  EXPECT_EQ(Summary(MustPull(kB3, after)), "CREATE:N2 DELETE:N2 DELETE:N1");

  // Visible from the start: its Create moves it in as its current state.
  after = LogPosition();
  Write(R"(INSERT INTO "tabNote" (name, title, public) VALUES ('N3', 'open', 1);)");
  EXPECT_EQ(Summary(MustPull(kB1, after)), "SYNC:N3");
}

TEST_F(PullTest, RenamesAreFollowed) {
  int64_t wm = Subscribe(kB1, "branch1", {Sub("Note", "doc.public == 1")});
  Subscribe(kB3, "branch3", {Sub("Note", "doc.public == 1")});
  // What branch1 holds, its pending changes included.
  auto sent = [&] {
    auto r = conn_->Exec(
        "SELECT coalesce(string_agg(docname, ' ' ORDER BY docname), '') FROM"
        " (SELECT docname FROM es_producer.holding WHERE site = 'branch1'"
        "  UNION SELECT docname FROM es_producer.holding_change WHERE site = 'branch1') d"
        " WHERE coalesce((SELECT c.held FROM es_producer.holding_change c"
        "                 WHERE c.site = 'branch1' AND c.docname = d.docname"
        "                 ORDER BY c.seq DESC LIMIT 1), true)");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? std::string(r->Get(0, 0)) : "";
  };
  // A document branch1 holds: the Rename reaches it, the holding follows.
  Write(R"(INSERT INTO "tabNote" (name, title, public) VALUES ('R1', 'x', 1);)");
  v1::PullUpdatesResponse first = MustPull(kB1, wm);
  EXPECT_EQ(Summary(first), "SYNC:R1");
  int64_t after = first.next_after_seq();
  EXPECT_EQ(sent(), "R1");
  Write(R"(UPDATE "tabNote" SET name = 'R2' WHERE name = 'R1';)");
  Write(R"(UPDATE "tabNote" SET name = 'R3' WHERE name = 'R2';)");
  v1::PullUpdatesResponse resp = MustPull(kB1, after);
  EXPECT_EQ(Summary(resp), "RENAME:R2 RENAME:R3");
  EXPECT_EQ(sent(), "R3");
  after = resp.next_after_seq();
  Write(R"(DELETE FROM "tabNote" WHERE name = 'R3';)");
  EXPECT_EQ(Summary(MustPull(kB1, after)), "DELETE:R3");
  EXPECT_EQ(sent(), "");
  // A consumer that died before committing the Delete asks again from its
  // old watermark: the Delete is still visible to it.
  EXPECT_EQ(Summary(MustPull(kB1, after)), "DELETE:R3");
  // A consumer fetching ahead (after_seq past the Delete) while the batch
  // with the Delete is not committed yet acknowledges only `after`: the
  // record stays, and after a crash the Delete comes again.
  {
    v1::PullUpdatesResponse ahead;
    ASSERT_TRUE(Pull(kB1, LogPosition(), &ahead, 0, after).ok());
    EXPECT_EQ(Summary(MustPull(kB1, after)), "DELETE:R3");
  }

  // A hidden document renamed, then made visible: it moves in under its
  // new name, as it is now.
  after = LogPosition();
  Write(R"(INSERT INTO "tabNote" (name, title, public) VALUES ('H1', 'x', 0);)");
  Write(R"(UPDATE "tabNote" SET title = 'y' WHERE name = 'H1';)");
  Write(R"(UPDATE "tabNote" SET name = 'H2' WHERE name = 'H1';)");
  EXPECT_EQ(Summary(MustPull(kB1, after)), "");
  int64_t hidden = LogPosition();
  Write(R"(UPDATE "tabNote" SET public = 1 WHERE name = 'H2';)");
  EXPECT_EQ(Summary(MustPull(kB1, hidden)), "SYNC:H2");
  EXPECT_EQ(sent(), "H2");
  // All in one pull (another consumer): the Rename moves it in (the
  // document is visible now), the Update after it comes as it is.
  EXPECT_EQ(Summary(MustPull(kB3, after)), "SYNC:H2 UPDATE:H2");
}

TEST_F(PullTest, ConditionsThatErrorHideEntriesWithoutFailingThePull) {
  int64_t wm = Subscribe(kB1, "branch1", {Sub("Note", "doc.title < 1")});
  Subscribe(kB2, "branch2", {Sub("Note", "cmd:public.no_such_function")});
  Subscribe(kB3, "branch3", {Sub("Note", "cmd:public.starts_with_a")});
  Write(R"(INSERT INTO "tabNote" (name, title) VALUES ('A', 'apple');
           INSERT INTO "tabNote" (name, title) VALUES ('B', 'banana');)");
  for (int i = 0; i < 2; ++i) {
    v1::PullUpdatesResponse b1 = MustPull(kB1, wm);
    EXPECT_EQ(Summary(b1), "");
    EXPECT_EQ(b1.next_after_seq(), LogPosition());
    EXPECT_EQ(Summary(MustPull(kB2, wm)), "");
  }
  EXPECT_EQ(Summary(MustPull(kB3, wm)), "SYNC:A");

  // Logged once per (consumer, DocType, condition), not per entry or pull.
  std::string log = service_.process->Log();
  auto count = [&](const std::string& needle) {
    int n = 0;
    for (size_t p = log.find(needle); p != std::string::npos; p = log.find(needle, p + 1))
      ++n;
    return n;
  };
  EXPECT_EQ(count("condition doc.title < 1 of site \"branch1\""), 1) << log;
  EXPECT_EQ(count("condition cmd:public.no_such_function of site \"branch2\""), 1) << log;
}

// A consumer's cmd: condition runs read-only and only when the producer's
// config allows its function (issue 13 item 6).
TEST_F(PullTest, CommandConditionsRunReadOnlyAndOnlyWhenAllowed) {
  int64_t wm = Subscribe(kB1, "branch1", {Sub("Note", "cmd:public.writes")});
  Subscribe(kB3, "branch3", {Sub("Note", "cmd:public.starts_with_a")});
  Write(R"(INSERT INTO "tabNote" (name, title) VALUES ('A', 'apple');)");
  EXPECT_EQ(Summary(MustPull(kB1, wm)), "");
  EXPECT_EQ(Get(kB1, "Note", "A").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  auto rows = conn_->Exec("SELECT count(*) FROM public.side_effects");
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->GetInt64(0, 0), 0);
  EXPECT_NE(service_.process->Log().find("read-only transaction"), std::string::npos)
      << service_.process->Log();

  // A condition stored before its function left the allow-list shows
  // nothing, and the function is never called.
  EXPECT_EQ(Summary(MustPull(kB3, wm)), "SYNC:A");
  ASSERT_TRUE(conn_->Exec("UPDATE es_producer.consumer_doctype"
                          " SET condition = 'cmd:public.pg_sleep_for'"
                          " WHERE site = 'branch3'").ok());
  EXPECT_EQ(Summary(MustPull(kB3, wm)), "");
  EXPECT_NE(service_.process->Log().find("function public.pg_sleep_for is not one the producer "
                                         "allows"),
            std::string::npos)
      << service_.process->Log();
}

TEST_F(PullTest, DependencyRpcsServeVisibleAndLinkedDocumentsOnly) {
  int64_t wm = Subscribe(kB1, "branch1", {Sub("Note", "doc.public == 1")});
  Subscribe(kB3, "branch3", {Sub("Project")});
  Write(R"(
    INSERT INTO "tabUser" (name, full_name) VALUES ('U1', 'Ann'), ('U2', 'Bob'),
      ('U3', 'Ann'), ('U4', 'Dan');
    INSERT INTO "tabProject" (name, title) VALUES ('PR1', 'one'), ('PR2', 'two');
    BEGIN;
    INSERT INTO "tabNote" (name, title, public, author, ref_type, ref_name)
      VALUES ('P1', 'open', 1, 'U1', 'Project', 'PR1');
    INSERT INTO "tabNote Seen By" (name, idx, parent, parenttype, parentfield, "user")
      VALUES ('s1', 1, 'P1', 'Note', 'seen_by', 'U2');
    COMMIT;
    INSERT INTO "tabNote" (name, title, public, author, ref_type, ref_name)
      VALUES ('Q1', 'closed', 0, 'U3', 'Project', 'PR2');
    INSERT INTO "tabNote" (name, title, public, author)
      VALUES ('P2', 'open but unsent', 1, 'U4');)");
  // branch1 is sent P1 (and P2), not Q1. Whether a document is held does
  // not matter for what it may read: P2 grants its links once forgotten.
  EXPECT_EQ(Summary(MustPull(kB1, wm)), "SYNC:P1 SYNC:P2");
  ASSERT_TRUE(conn_->Exec("DELETE FROM es_producer.holding_change"
                          " WHERE site = 'branch1' AND docname = 'P2'").ok());

  std::string json;
  grpc::Status s = Get(kB1, "Note", "P1", &json);
  ASSERT_TRUE(s.ok()) << s.error_message();
  Value p1 = Json(json);
  EXPECT_EQ(Str(p1, "title"), "open");
  ASSERT_NE(p1.Find("seen_by"), nullptr);
  EXPECT_EQ(p1.Find("seen_by")->as_array().size(), 1u);
  EXPECT_TRUE(Get(kB1, "Note", "P2").ok());  // visible though not sent

  // Invisible and nonexistent look the same.
  s = Get(kB1, "Note", "Q1");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s.error_message(),
            "document \"Q1\" of DocType \"Note\" is not visible to site \"branch1\"");
  s = Get(kB1, "Note", "Nope");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s.error_message(),
            "document \"Nope\" of DocType \"Note\" is not visible to site \"branch1\"");

  // Dependencies of what branch1 may see: Link, child-row Link, Dynamic Link.
  EXPECT_TRUE(Get(kB1, "User", "U1", &json).ok());
  EXPECT_EQ(Str(Json(json), "full_name"), "Ann");
  EXPECT_EQ(Str(Json(json), "doctype"), "User");
  EXPECT_TRUE(Get(kB1, "User", "U2").ok());
  EXPECT_TRUE(Get(kB1, "Project", "PR1").ok());
  EXPECT_EQ(Get(kB1, "User", "U3").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Get(kB1, "User", "U4").ok());  // P2 is visible
  EXPECT_EQ(Get(kB1, "Project", "PR2").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Get(kB1, "User", "U9").error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // Another site with no approval for Note sees none of it.
  EXPECT_EQ(Get(kB3, "Note", "P1").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Get(kB3, "Project", "PR2").ok());

  // Unknown or child DocTypes are the caller's mistake.
  s = Get(kB1, "Nope", "x");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("Nope"), std::string::npos);
  EXPECT_EQ(Get(kB1, "Note Seen By", "s1").error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // FindDocuments: equality filters, invisible matches dropped.
  std::vector<std::string> names;
  ASSERT_TRUE(Find(kB1, "Note", {}, &names).ok());
  EXPECT_EQ(names, (std::vector<std::string>{"P1", "P2"}));
  ASSERT_TRUE(Find(kB1, "Note", {{"title", "open"}}, &names).ok());
  EXPECT_EQ(names, (std::vector<std::string>{"P1"}));
  ASSERT_TRUE(Find(kB1, "Note", {{"public", "0"}}, &names).ok());
  EXPECT_TRUE(names.empty());
  ASSERT_TRUE(Find(kB1, "User", {{"full_name", "Ann"}}, &names).ok());
  EXPECT_EQ(names, (std::vector<std::string>{"U1"}));  // U3 is not linked
  ASSERT_TRUE(Find(kB1, "User", {{"name", "U2"}}, &names).ok());
  EXPECT_EQ(names, (std::vector<std::string>{"U2"}));
  s = Find(kB1, "User", {{"nickname", "x"}}, &names);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("nickname"), std::string::npos) << s.error_message();
  EXPECT_EQ(Find(kB1, "Nope", {}, &names).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// Dependencies of dependencies (issue 12): a visible Note's child row links
// a User, whose Has Role rows link a Role (and, by Dynamic Link, a
// Project), whose parent_role links another Role, and so on: readable at
// any depth, cycles included, and all of it in one GetDocument with
// with_dependencies. A document linked only from invisible ones is not.
TEST_F(PullTest, DependenciesAreReadableAtAnyDepthThroughVisibleDocumentsOnly) {
  Subscribe(kB1, "branch1", {Sub("Note", "doc.public == 1")});
  Write(R"(
    INSERT INTO "tabRole" (name, parent_role) VALUES ('R1', 'R2'), ('R2', 'R3'),
      ('R3', 'R2'), ('R9', NULL), ('CA', 'CB'), ('CB', 'CA');
    INSERT INTO "tabProject" (name, title) VALUES ('PR1', 'one'), ('PR9', 'nine');
    INSERT INTO "tabUser" (name, full_name) VALUES ('U1', 'Ann'), ('U9', 'Zed');
    INSERT INTO "tabHas Role" (name, idx, parent, parenttype, parentfield, role,
        ref_type, ref_name)
      VALUES ('h1', 1, 'U1', 'User', 'roles', 'R1', 'Project', 'PR1'),
             ('h9', 1, 'U9', 'User', 'roles', 'R9', 'Project', 'PR9');
    BEGIN;
    INSERT INTO "tabNote" (name, title, public) VALUES ('P1', 'open', 1);
    INSERT INTO "tabNote Seen By" (name, idx, parent, parenttype, parentfield, "user")
      VALUES ('s1', 1, 'P1', 'Note', 'seen_by', 'U1');
    COMMIT;
    INSERT INTO "tabNote" (name, title, public, author) VALUES ('Q1', 'closed', 0, 'U9');)");

  // Four levels below the visible P1: U1, R1, R2, R3 (R2 <-> R3 a cycle),
  // and PR1 through the Dynamic Link in U1's child row.
  for (auto [doctype, name] : std::vector<std::pair<std::string, std::string>>{
           {"User", "U1"}, {"Role", "R1"}, {"Role", "R2"}, {"Role", "R3"},
           {"Project", "PR1"}}) {
    grpc::Status s = Get(kB1, doctype, name);
    EXPECT_TRUE(s.ok()) << doctype << " " << name << ": " << s.error_message();
  }
  // Linked only from the invisible Q1, or from nothing (the cycle CA <-> CB).
  for (auto [doctype, name] : std::vector<std::pair<std::string, std::string>>{
           {"User", "U9"}, {"Role", "R9"}, {"Project", "PR9"}, {"Role", "CA"},
           {"Role", "CB"}}) {
    grpc::Status s = Get(kB1, doctype, name);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << doctype << " " << name;
    EXPECT_EQ(s.error_message(), absl::StrCat("document \"", name, "\" of DocType \"",
                                              doctype, "\" is not visible to site \"branch1\""));
  }
  std::vector<std::string> names;
  ASSERT_TRUE(Find(kB1, "Role", {}, &names).ok());
  EXPECT_EQ(names, (std::vector<std::string>{"R1", "R2", "R3"}));

  // One call brings the whole chain below U1, breadth first, each once.
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", kB1);
  v1::GetDocumentRequest req;
  req.set_doctype("User");
  req.set_name("U1");
  req.set_with_dependencies(true);
  v1::GetDocumentResponse resp;
  grpc::Status s = stub_->GetDocument(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(Str(Json(resp.document_json()), "full_name"), "Ann");
  std::vector<std::string> deps;
  for (const std::string& d : resp.dependencies_json()) {
    deps.push_back(Str(Json(d), "doctype") + ":" + Str(Json(d), "name"));
  }
  EXPECT_EQ(deps, (std::vector<std::string>{"Role:R1", "Project:PR1", "Role:R2", "Role:R3"}));
  EXPECT_FALSE(resp.dependencies_truncated());
}

// Only documents the consumer may see now grant access (issue 13 item 4):
// a Note sent and then hidden grants nothing, neither to what it linked
// then nor to what it links now.
TEST_F(PullTest, AHiddenDocumentGrantsNothing) {
  int64_t wm = Subscribe(kB1, "branch1", {Sub("Note", "doc.public == 1")});
  Write(R"(
    INSERT INTO "tabUser" (name, full_name) VALUES ('U1', 'Ann'), ('U2', 'Bob');
    INSERT INTO "tabNote" (name, title, public, author) VALUES ('P1', 'open', 1, 'U1');)");
  EXPECT_EQ(Summary(MustPull(kB1, wm)), "SYNC:P1");
  EXPECT_TRUE(Get(kB1, "User", "U1").ok());
  Write(R"(UPDATE "tabNote" SET public = 0 WHERE name = 'P1';)");
  EXPECT_EQ(Get(kB1, "User", "U1").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  Write(R"(UPDATE "tabNote" SET author = 'U2' WHERE name = 'P1';)");
  EXPECT_EQ(Get(kB1, "User", "U2").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  Write(R"(UPDATE "tabNote" SET public = 1 WHERE name = 'P1';)");
  EXPECT_TRUE(Get(kB1, "User", "U2").ok());
  EXPECT_EQ(Get(kB1, "User", "U1").error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

// The producer's condition for a consumer is a hard boundary (issue 13 item
// 7): branch4 follows User; a User's Has Role row links by Dynamic Link to
// a private Note, which the producer's config hides from branch4, and to a
// public one. The private Note is not readable, nor anything only it links.
TEST_F(PullTest, TheProducersConditionBoundsDependencyAccess) {
  Subscribe(kB4, "branch4", {Sub("User")});
  Write(R"(
    INSERT INTO "tabUser" (name, full_name) VALUES ('U7', 'Eve'), ('UA', 'Al'), ('UB', 'Bo');
    INSERT INTO "tabNote" (name, title, public, author) VALUES ('QP', 'private', 0, 'UA'),
      ('PP', 'public', 1, 'UB');
    INSERT INTO "tabHas Role" (name, idx, parent, parenttype, parentfield, ref_type, ref_name)
      VALUES ('h1', 1, 'U7', 'User', 'roles', 'Note', 'QP'),
             ('h2', 2, 'U7', 'User', 'roles', 'Note', 'PP');)");
  EXPECT_TRUE(Get(kB4, "User", "U7").ok());
  EXPECT_TRUE(Get(kB4, "Note", "PP").ok());
  EXPECT_EQ(Get(kB4, "Note", "QP").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // UA and UB are Users, which branch4 follows without a condition.
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", kB4);
  v1::GetDocumentRequest req;
  req.set_doctype("User");
  req.set_name("U7");
  req.set_with_dependencies(true);
  v1::GetDocumentResponse resp;
  ASSERT_TRUE(stub_->GetDocument(&ctx, req, &resp).ok());
  std::vector<std::string> deps;
  for (const std::string& d : resp.dependencies_json()) deps.push_back(Str(Json(d), "name"));
  EXPECT_EQ(deps, (std::vector<std::string>{"PP", "UB"}));
}

}  // namespace
}  // namespace eventstream::testing

namespace eventstream::testing {
namespace {

// Records Notify calls that carry the expected token.
class NotifyRecorder : public v1::Consumer::Service {
 public:
  grpc::Status Notify(grpc::ServerContext* context, const v1::NotifyRequest* request,
                      v1::NotifyResponse*) override {
    auto it = context->client_metadata().find("authorization");
    std::string auth = it == context->client_metadata().end()
                           ? "" : std::string(it->second.data(), it->second.size());
    std::lock_guard<std::mutex> lock(mu_);
    if (auth != "token hq:tok-123") {
      ++rejected_;
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "wrong notify token");
    }
    positions_.push_back(request->log_position());
    return grpc::Status::OK;
  }
  std::vector<int64_t> positions() {
    std::lock_guard<std::mutex> lock(mu_);
    return positions_;
  }
  int rejected() {
    std::lock_guard<std::mutex> lock(mu_);
    return rejected_;
  }

 private:
  std::mutex mu_;
  std::vector<int64_t> positions_;
  int rejected_ = 0;
};

// The producer binary notifies an approved consumer after new entries,
// with the token the consumer registered, coalescing a burst of writes.
TEST_F(PullTest, NewEntriesNotifyApprovedConsumersCoalesced) {
  NotifyRecorder recorder;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&recorder);
  auto server = builder.BuildAndStart();
  ASSERT_TRUE(server != nullptr && port != 0);

  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", kB1);
  v1::RegisterConsumerRequest req;
  req.set_consumer_site("branch1");
  req.set_notify_address(absl::StrCat("127.0.0.1:", port));
  req.set_notify_token("tok-123");
  *req.add_doctypes() = Sub("Note");
  v1::RegisterConsumerResponse resp;
  ASSERT_TRUE(stub_->RegisterConsumer(&ctx, req, &resp).ok());
  grpc::ClientContext actx;
  actx.AddMetadata("authorization", kOps);
  v1::SetSubscriptionStatusRequest areq;
  areq.set_consumer_site("branch1");
  areq.set_doctype("Note");
  areq.set_status(v1::SUBSCRIPTION_STATUS_APPROVED);
  v1::SetSubscriptionStatusResponse aresp;
  ASSERT_TRUE(stub_->SetSubscriptionStatus(&actx, areq, &aresp).ok());

  std::string burst = "BEGIN;";
  for (int i = 0; i < 200; ++i) {
    absl::StrAppend(&burst, "COMMIT; BEGIN; INSERT INTO \"tabNote\" (name, title) VALUES ('B",
                    i, "', 't');");
  }
  absl::StrAppend(&burst, "COMMIT;");
  Write(burst);
  int64_t position = LogPosition();
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline &&
         (recorder.positions().empty() || recorder.positions().back() < position)) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  auto positions = recorder.positions();
  ASSERT_FALSE(positions.empty()) << "no Notify arrived";
  EXPECT_EQ(positions.back(), position);
  EXPECT_LT(positions.size(), 50u) << "200 writes should coalesce into a few notifies";
  EXPECT_EQ(recorder.rejected(), 0);
  EXPECT_EQ(service_.process->Log().find("tok-123"), std::string::npos);
  server->Shutdown();
}

}  // namespace
}  // namespace eventstream::testing

namespace eventstream::testing {
namespace {

// kill -9 of the producer (its assembler mid-pass, at random moments) while
// writers keep committing: after a restart every committed change is in the
// log exactly once.
TEST_F(PullTest, KilledProducerLosesNothingCommitted) {
  Subscribe(kB1, "branch1", {Sub("Note")});
  constexpr int kDocs = 600;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    auto conn = pg::Connection::Open(SharedCluster().Url(db_));
    ASSERT_TRUE(conn.ok());
    for (int i = 0; i < kDocs; ++i) {
      ASSERT_TRUE((*conn)
                      ->Exec("INSERT INTO \"tabNote\" (name, title) VALUES ($1, 't')",
                             {absl::StrCat("K", i)})
                      .ok());
      if (i % 3 == 0) {
        ASSERT_TRUE((*conn)
                        ->Exec("UPDATE \"tabNote\" SET title = 'u' WHERE name = $1",
                               {absl::StrCat("K", i)})
                        .ok());
      }
    }
    done = true;
  });
  const std::string config = Config(Url(), FreeTcpPort());
  for (int round = 0; round < 4 && !done; ++round) {
    absl::SleepFor(absl::Milliseconds(30 + 40 * round));
    service_.process->Signal(SIGKILL);
    ASSERT_TRUE(service_.process->Wait(absl::Seconds(10)).ok());
    ASSERT_NO_FATAL_FAILURE(StartProducer(config));
  }
  writer.join();
  Write("SELECT 1");  // waits until the assembler has drained raw_change

  std::map<std::string, int> creates, updates;
  int64_t after = 0;
  for (;;) {
    v1::PullUpdatesResponse resp = MustPull(kB1, after, 5000);
    for (const auto& e : resp.entries()) {
      if (e.update_type() == v1::UPDATE_TYPE_CREATE) ++creates[e.docname()];
      if (e.update_type() == v1::UPDATE_TYPE_UPDATE) ++updates[e.docname()];
    }
    after = resp.next_after_seq();
    if (!resp.more()) break;
  }
  EXPECT_EQ(creates.size(), static_cast<size_t>(kDocs));
  EXPECT_EQ(updates.size(), static_cast<size_t>((kDocs + 2) / 3));
  for (const auto& [name, n] : creates) EXPECT_EQ(n, 1) << name;
  for (const auto& [name, n] : updates) EXPECT_EQ(n, 1) << name;
}

// Issue 13 item 9: GetDocument does the same work for an invisible
// document (one a condition hides, one the producer's condition blocks) as
// for a name no document has, so its time does not reveal existence.
TEST_F(PullTest, GetDocumentWorksAlikeForInvisibleAndMissingDocuments) {
  Subscribe(kB1, "branch1", {Sub("Note", "doc.public == 1")});
  Subscribe(kB2, "branch2", {Sub("Note", "doc.title != 'closed'")});
  Subscribe(kB4, "branch4", {Sub("User")});
  Write(R"(
    INSERT INTO "tabNote" (name, title, public) VALUES ('Q1', 'closed', 0);
    INSERT INTO "tabNote Seen By" (name, idx, parent, parenttype, parentfield, "user")
      VALUES ('s1', 1, 'Q1', 'Note', 'seen_by', 'U2');)");
  const double missing = StatementsOfInvisible(kB1, "Note", "Nope");
  EXPECT_GT(missing, 0);
  EXPECT_EQ(StatementsOfInvisible(kB1, "Note", "Q1"), missing);
  // A missing name passes branch2's condition (its title is None), an
  // existing one does not: the same work all the same.
  EXPECT_EQ(StatementsOfInvisible(kB2, "Note", "Q1"),
            StatementsOfInvisible(kB2, "Note", "Nope"));
  const double blocked_missing = StatementsOfInvisible(kB4, "Note", "Nope");
  EXPECT_EQ(StatementsOfInvisible(kB4, "Note", "Q1"), blocked_missing);
}

// Issue 13 item 9: FindDocuments decides visibility in its query
// (find_documents.cc), so matching 2,500 invisible documents runs the same
// statements as matching none; only PostgreSQL's own row work differs.
// Visible matches, grantors and documents readable through links, are
// still found.
TEST_F(PullTest, FindDocumentsWorksAlikeForInvisibleAndNoMatches) {
  Subscribe(kB1, "branch1", {Sub("Note", "doc.public == 1")});
  Write(R"(
    INSERT INTO "tabNote" (name, title, public) SELECT 'H' || g, 'hidden', 0
      FROM generate_series(1, 2500) g;
    INSERT INTO "tabUser" (name, full_name) VALUES ('U1', 'Ann'), ('U2', 'Ann');
    INSERT INTO "tabNote" (name, title, public, author, ref_type, ref_name) VALUES
      ('V1', 'shown', 1, 'U1', NULL, NULL), ('L1', 'linked', 0, 'U2', NULL, NULL),
      ('V2', 'shown', 1, NULL, 'Note', 'L1');)");
  std::vector<std::string> names;
  const double none = StatementsOfFind(kB1, "Note", {{"title", "nothing"}}, &names);
  EXPECT_TRUE(names.empty());
  EXPECT_GT(none, 0);
  EXPECT_EQ(StatementsOfFind(kB1, "Note", {{"title", "hidden"}}, &names), none);
  EXPECT_TRUE(names.empty());
  // Reading what is found is the only extra work (visible to the caller).
  EXPECT_GT(StatementsOfFind(kB1, "Note", {{"title", "shown"}}, &names), none);
  EXPECT_EQ(names, (std::vector<std::string>{"V1", "V2"}));
  // L1 fails the condition but V2 links to it (a Dynamic Link).
  ASSERT_TRUE(Find(kB1, "Note", {{"title", "linked"}}, &names).ok());
  EXPECT_EQ(names, (std::vector<std::string>{"L1"}));
  // Users: U1 through V1's author; U2 only through the hidden L1... which
  // V2 makes readable, so U2 is readable too.
  ASSERT_TRUE(Find(kB1, "User", {{"full_name", "Ann"}}, &names).ok());
  EXPECT_EQ(names, (std::vector<std::string>{"U1", "U2"}));
}

// Issue 14 (Resnapshot): ListVisibleDocuments pages through what the
// subscription selects, not the documents readable only through links nor
// the invisible ones; the same when the condition has no SQL form.
TEST_F(PullTest, ListVisibleDocumentsPagesWhatTheSubscriptionSelects) {
  Subscribe(kB1, "branch1", {Sub("Note", "doc.public == 1")});
  Write(R"(
    INSERT INTO "tabNote" (name, title, public) SELECT 'H' || g, 'hidden', 0
      FROM generate_series(1, 20) g;
    INSERT INTO "tabNote" (name, title, public) SELECT 'V' || g, 'V' || g, 1
      FROM generate_series(1, 5) g;
    INSERT INTO "tabNote" (name, title, public) VALUES ('L1', 'linked', 0);
    UPDATE "tabNote" SET ref_type = 'Note', ref_name = 'L1' WHERE name = 'V1';)");
  EXPECT_EQ(ListVisible(kB1, "Note", 2), "V1 V2 | V3 V4 | V5");
  EXPECT_EQ(ListVisible(kB1, "Note", 0), "V1 V2 V3 V4 V5");
  EXPECT_EQ(ListVisible(kB1, "Note", 2, /*names_only=*/true), "V1 V2 | V3 V4 | V5");
  // Two fields compared: no SQL form, judged one by one.
  Subscribe(kB1, "branch1", {Sub("Note", "doc.title == doc.name")});
  EXPECT_EQ(ListVisible(kB1, "Note", 2), "V1 V2 | V3 V4 | V5");
  EXPECT_EQ(ListVisible(kB1, "Note", 2, /*names_only=*/true), "V1 V2 | V3 V4 | V5");
  EXPECT_EQ(ListVisible(kB1, "User", 2), "");  // not subscribed: nothing
  EXPECT_EQ(ListVisible(kB1, "Nope", 2).substr(0, 8), "error 3:");
}

// Not a check (run by hand with --gtest_also_run_disabled_tests): the cost
// per entry of a pull of 500 Updates of held Notes (condition judged on
// each) when branch1 holds 10,000 and 1,000,000 documents (issue 14,
// "Scale": per-consumer state must not make pulls dearer).
TEST_F(PullTest, DISABLED_MeasurePullCostByHoldings) {
  int64_t wm = Subscribe(kB1, "branch1", {Sub("Note", "doc.public == 1")});
  Write(R"(INSERT INTO "tabNote" (name, title, public)
           SELECT 'M' || lpad(g::text, 4, '0'), 't', 1 FROM generate_series(1, 500) g;)");
  int64_t after = MustPull(kB1, wm, 1000).next_after_seq();
  MustPull(kB1, after);  // acknowledges the 500 move-ins: held
  Write(R"(UPDATE "tabNote" SET title = 'u';)");
  auto per_entry_us = [&](int64_t holdings) {
    absl::Status held = conn_->ExecScript(absl::StrCat(
        "INSERT INTO es_producer.holding (site, doctype, docname)"
        " SELECT 'branch1', 'Note', 'X' || g FROM generate_series(",
        QueryInt(conn_.get(), "SELECT count(*) FROM es_producer.holding") + 1, ", ",
        holdings, ") g; ANALYZE es_producer.holding;"));
    EXPECT_TRUE(held.ok()) << held;
    std::vector<double> us;
    for (int i = 0; i < 9; ++i) {
      absl::Time start = absl::Now();
      v1::PullUpdatesResponse resp = MustPull(kB1, after, 1000);
      us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start) / resp.entries_size());
      EXPECT_EQ(resp.entries_size(), 500);
    }
    std::sort(us.begin(), us.end());
    return us[4];
  };
  const double small = per_entry_us(10000);
  const double large = per_entry_us(1000000);
  std::printf("pull of 500 Updates: %.1f us/entry with 10k holdings, %.1f with 1M (%.2fx)\n",
              small, large, large / small);
}

// Not a check (run by hand with --gtest_also_run_disabled_tests): medians
// of GetDocument for an invisible vs a missing Note and of FindDocuments
// matching 2,500 invisible Notes vs none (issue 13 item 9).
TEST_F(PullTest, DISABLED_MeasureWhatTimingReveals) {
  Subscribe(kB1, "branch1", {Sub("Note", "doc.public == 1")});
  Write(R"(
    INSERT INTO "tabNote" (name, title, public) VALUES ('Q1', 'closed', 0);
    INSERT INTO "tabNote Seen By" (name, idx, parent, parenttype, parentfield, "user")
      VALUES ('s1', 1, 'Q1', 'Note', 'seen_by', 'U2');
    INSERT INTO "tabNote" (name, title, public)
      SELECT 'H' || g, 'hidden', 0 FROM generate_series(1, 2500) g;)");
  auto median_us = [](const std::function<void()>& call) {
    std::vector<double> us;
    for (int i = 0; i < 20; ++i) {
      absl::Time start = absl::Now();
      call();
      us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    }
    std::sort(us.begin(), us.end());
    return (us[9] + us[10]) / 2;
  };
  std::vector<std::string> names;
  std::printf("GetDocument invisible Q1: %.0f us, missing: %.0f us\n",
              median_us([&] { (void)Get(kB1, "Note", "Q1"); }),
              median_us([&] { (void)Get(kB1, "Note", "Nope"); }));
  std::printf("FindDocuments 2500 invisible matches: %.0f us, none: %.0f us\n",
              median_us([&] { (void)Find(kB1, "Note", {{"title", "hidden"}}, &names); }),
              median_us([&] { (void)Find(kB1, "Note", {{"title", "none"}}, &names); }));
}

}  // namespace
}  // namespace eventstream::testing
