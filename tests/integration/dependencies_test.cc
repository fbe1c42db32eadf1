// Dependencies of dependencies end to end (issue 12, Frappe's
// sync_dependencies): the real producer on hq and the real consumer on
// branch (tests/support/two_sites.h). Branch follows Note only; a Note's
// child row links a User, whose Has Role rows link a Role, whose
// parent_role links another Role (a chain, and a cycle), and a Dynamic Link
// in a User's child row points at a Project. Everything the Note reaches
// arrives with it, and the consumer asks the producer once per missing
// top-level link, not once per document
// (eventstream_consumer_dependency_calls_total).
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "tests/support/frappe_schema.h"
#include "tests/support/http_get.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/two_sites.h"

namespace eventstream::testing {
namespace {

const std::string kDocTypes = NoteDocType({"seen_by"}) + kLinkedDocTypes;

std::string Tables() { return NoteTable({"seen_by"}) + LinkedTables(); }

class DependenciesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TwoSites::Spec spec = TwoSites::NoteSpec(kDocTypes, Tables());
    spec.consumer_metrics = true;
    auto sites = TwoSites::Create(std::move(spec));
    ASSERT_TRUE(sites.ok()) << sites.status();
    sites_ = std::move(*sites);
    ASSERT_TRUE(sites_->StartProducer().ok());
    ASSERT_TRUE(sites_->StartConsumer().ok());
    // Registered and approved: hq captures Note from then on.
    ASSERT_TRUE(Eventually([&] {
      return QueryInt(sites_->hq(),
                      "SELECT count(*) FROM es_producer.consumer_doctype"
                      " WHERE site = 'branch' AND status = 'approved'") == 1;
    })) << sites_->Logs();
  }

  void Hq(const std::string& sql) {
    absl::Status s = sites_->hq()->ExecScript(sql);
    ASSERT_TRUE(s.ok()) << s << "\n" << sql;
  }
  void AwaitSynced(const std::string& note) {
    const std::string sql = absl::StrCat(
        "SELECT string_agg(status, ',') FROM es_consumer.sync_log WHERE docname = '", note, "'");
    ASSERT_TRUE(Eventually([&] { return QueryText(sites_->branch(), sql) == "Synced"; }))
        << QueryText(sites_->branch(), sql) << "\n"
        << QueryText(sites_->branch(),
                     "SELECT string_agg(error, ' | ') FROM es_consumer.sync_log")
        << "\n"
        << sites_->Logs();
  }
  std::string OnBranch(const std::string& table) {
    return QueryText(sites_->branch(),
                     absl::StrCat("SELECT coalesce(string_agg(name, ',' ORDER BY name), '') FROM \"",
                                  table, "\""));
  }
  double DependencyCalls() {
    return Scrape(sites_->consumer_metrics_port(),
                  "eventstream_consumer_dependency_calls_total{producer=\"hq\"}")
        .value_or(-1);
  }

  std::unique_ptr<TwoSites> sites_;
};

TEST_F(DependenciesTest, AChainFourLevelsDeepArrivesInOneRoundTrip) {
  // Note N1 -> User U1 -> Role R1 -> Role R2 -> Role R3 (-> R2: a cycle),
  // and U1's Has Role row -> (Dynamic Link) Project PR1.
  Hq(R"(
    INSERT INTO "tabRole" (name, parent_role) VALUES ('R1', 'R2'), ('R2', 'R3'), ('R3', 'R2');
    INSERT INTO "tabProject" (name, title) VALUES ('PR1', 'one');
    INSERT INTO "tabUser" (name, full_name) VALUES ('U1', 'Ann');
    INSERT INTO "tabHas Role" (name, idx, parent, parenttype, parentfield, role, ref_type, ref_name)
      VALUES ('h1', 1, 'U1', 'User', 'roles', 'R1', 'Project', 'PR1');
    BEGIN;
    INSERT INTO "tabNote" (name, title) VALUES ('N1', 'hello');
    INSERT INTO "tabNote Seen By" (name, idx, parent, parenttype, parentfield, "user")
      VALUES ('s1', 1, 'N1', 'Note', 'seen_by', 'U1');
    COMMIT;)");
  AwaitSynced("N1");
  EXPECT_EQ(OnBranch("tabUser"), "U1");
  EXPECT_EQ(OnBranch("tabHas Role"), "h1");
  EXPECT_EQ(OnBranch("tabRole"), "R1,R2,R3");
  EXPECT_EQ(OnBranch("tabProject"), "PR1");
  EXPECT_EQ(QueryText(sites_->branch(), "SELECT parent_role FROM \"tabRole\" WHERE name = 'R3'"),
            "R2");
  // Hop by hop this took five GetDocument calls (U1, R1, R2, R3, PR1).
  EXPECT_EQ(DependencyCalls(), 1);

  // A second Note linking two Users that share roles already here: one call
  // per missing User, none for what branch has.
  Hq(R"(
    INSERT INTO "tabUser" (name, full_name) VALUES ('U2', 'Bob'), ('U3', 'Cy');
    INSERT INTO "tabHas Role" (name, idx, parent, parenttype, parentfield, role)
      VALUES ('h2', 1, 'U2', 'User', 'roles', 'R2'), ('h3', 1, 'U3', 'User', 'roles', 'R3');
    BEGIN;
    INSERT INTO "tabNote" (name, title) VALUES ('N2', 'again');
    INSERT INTO "tabNote Seen By" (name, idx, parent, parenttype, parentfield, "user")
      VALUES ('s2', 1, 'N2', 'Note', 'seen_by', 'U2'), ('s3', 2, 'N2', 'Note', 'seen_by', 'U3');
    COMMIT;)");
  AwaitSynced("N2");
  EXPECT_EQ(OnBranch("tabUser"), "U1,U2,U3");
  EXPECT_EQ(OnBranch("tabRole"), "R1,R2,R3");
  EXPECT_EQ(DependencyCalls(), 3);
}

}  // namespace
}  // namespace eventstream::testing
