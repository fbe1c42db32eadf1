// The producer's consumer registry, end to end: the real eventstream-producer
// binary on a fresh database, called over gRPC. Registration and its
// watermark, idempotency and refusal of other credentials, subscription
// updates that keep approvals, approvals installing and removing capture
// triggers, config pre-approvals (on register, on update, on start),
// ListConsumers' acknowledged position and lag, the auth matrix, input
// validation, and that no secret reaches the log.
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "eventstream/v1/producer.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "libsync/base/pg.h"
#include "tests/support/frappe_schema.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/service_runner.h"
#include "tests/support/grpc/producer_calls.h"

namespace eventstream::testing {
namespace {

const char kNotifyToken[] = "notify-token-qqx";

// `preapprove`: whether producer.consumers pre-approves Note for branch2.
std::string Config(const std::string& url, bool preapprove) {
  ProducerYaml yaml;
  yaml.url = url;
  yaml.doctypes = NoteDocType({"public", "items"}) + NoteItemDocType({}) + R"(  - name: Task
    fields:
      - {fieldname: subject, fieldtype: Data}
  - name: Memo
    fields:
      - {fieldname: body, fieldtype: Text}
)";
  yaml.consumers = 3;
  yaml.extra = "  condition_functions: [public.visible]\n";
  if (preapprove) {
    absl::StrAppend(&yaml.extra, R"(  consumers:
    - site: branch2
      doctypes:
        - {doctype: Note, status: approved, condition: "doc.public == 1"}
)");
  }
  return ProducerConfigYaml(yaml);
}

// Standard Frappe columns; Memo deliberately has no table.
const std::string kSiteTables = NoteTable({"public", "items"}) +
                                NoteItemTable({}) +
                                FrappeTable("Task", "subject text");

class RegistryTest : public ProducerTest {
 protected:
  void SetUp() override {
    OpenSite("registry", kSiteTables);
    Start(/*preapprove=*/true);
  }

  void Start(bool preapprove) { StartProducer(Config(Url(), preapprove)); }

  void Restart(bool preapprove) {
    logs_ += service_.process->Log();
    stub_.reset();  // close our connection, so shutdown need not wait for it
    service_.process->Signal(SIGTERM);
    auto code = service_.process->Wait(absl::Seconds(15));
    ASSERT_TRUE(code.ok()) << code.status();
    Start(preapprove);
  }

  std::string AllLogs() { return logs_ + service_.process->Log(); }

  grpc::Status Register(const std::string& auth, const std::string& site,
                        const std::vector<v1::SubscriptionRequest>& doctypes,
                        v1::RegisterConsumerResponse* resp,
                        const std::string& token = kNotifyToken,
                        const std::string& notify_address = "127.0.0.1:1") {
    return eventstream::testing::Register(stub_.get(), auth, site, doctypes, resp, token,
                                          notify_address);
  }

  grpc::Status Update(const std::string& auth, const std::string& site,
                      const std::vector<v1::SubscriptionRequest>& doctypes,
                      v1::UpdateSubscriptionResponse* resp) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", auth);
    v1::UpdateSubscriptionRequest req;
    req.set_consumer_site(site);
    req.set_notify_address("127.0.0.1:2");
    req.set_notify_token(kNotifyToken);
    for (const auto& d : doctypes) *req.add_doctypes() = d;
    return stub_->UpdateSubscription(&ctx, req, resp);
  }

  grpc::Status SetStatus(const std::string& auth, const std::string& site,
                         const std::string& doctype, v1::SubscriptionStatus status,
                         v1::SetSubscriptionStatusResponse* resp = nullptr) {
    return eventstream::testing::SetStatus(stub_.get(), auth, site, doctype, status, resp);
  }

  grpc::Status List(const std::string& auth, v1::ListConsumersResponse* resp) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", auth);
    return stub_->ListConsumers(&ctx, v1::ListConsumersRequest(), resp);
  }

  // The listing's row for site/doctype (fails the test when missing).
  v1::DocTypeSubscription Row(const std::string& site, const std::string& doctype) {
    v1::ListConsumersResponse resp;
    grpc::Status s = List(kOps, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    for (const auto& c : resp.consumers()) {
      if (c.site() != site) continue;
      for (const auto& d : c.subscriptions())
        if (d.doctype() == doctype) return d;
    }
    ADD_FAILURE() << "no row " << site << "/" << doctype;
    return {};
  }

  // Tables carrying the capture trigger.
  std::set<std::string> TriggeredTables() {
    auto r = conn_->Exec(
        "SELECT tgrelid::regclass::text FROM pg_trigger"
        " WHERE tgname = 'es_capture' AND NOT tgisinternal");
    EXPECT_TRUE(r.ok()) << r.status();
    std::set<std::string> out;
    for (int i = 0; r.ok() && i < r->rows(); ++i) out.insert(std::string(r->Get(i, 0)));
    return out;
  }

  void AddLogEntry(int64_t seq, const std::string& doctype, const std::string& origin = "") {
    auto r = conn_->Exec(
        "INSERT INTO es_producer.update_log"
        " (seq, doctype, docname, update_type, data, origin, txid)"
        " VALUES ($1::bigint, $2, 'n' || $1::text, 'Update', '{}', nullif($3, ''), pg_current_xact_id())",
        {seq, doctype, origin});
    ASSERT_TRUE(r.ok()) << r.status();
  }

  std::string logs_;
};

const std::set<std::string> kNoteTables = {"\"tabNote\"", "\"tabNote Item\""};

TEST_F(RegistryTest, RegisterReturnsWatermarkAndPendingRowsAndIsIdempotent) {
  AddLogEntry(1, "Note");
  AddLogEntry(7, "Task");
  v1::RegisterConsumerResponse resp;
  grpc::Status s = Register(kB1, "branch1", {Sub("Note", "doc.public == 1"), Sub("Task")}, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.last_seq(), 7);
  ASSERT_EQ(resp.subscriptions_size(), 2);
  EXPECT_EQ(resp.subscriptions(0).doctype(), "Note");
  EXPECT_EQ(resp.subscriptions(0).status(), v1::SUBSCRIPTION_STATUS_PENDING);
  EXPECT_EQ(resp.subscriptions(0).condition(), "doc.public == 1");
  EXPECT_EQ(resp.subscriptions(1).doctype(), "Task");
  EXPECT_EQ(resp.subscriptions(1).status(), v1::SUBSCRIPTION_STATUS_PENDING);
  EXPECT_TRUE(TriggeredTables().empty());

  // Same site, key and token again: the same record, and the position it
  // acknowledged, which is its registration's until it pulls. A consumer
  // killed before it stored the first answer asks again: entry 9, logged
  // in between, must not be skipped.
  ASSERT_TRUE(SetStatus(kOps, "branch1", "Task", v1::SUBSCRIPTION_STATUS_APPROVED).ok());
  AddLogEntry(9, "Task");
  v1::RegisterConsumerResponse again;
  s = Register(kB1, "branch1", {Sub("Note", "doc.public == 1"), Sub("Task")}, &again);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(again.last_seq(), 7);
  ASSERT_EQ(again.subscriptions_size(), 2);
  EXPECT_EQ(again.subscriptions(1).status(), v1::SUBSCRIPTION_STATUS_APPROVED);
  ASSERT_TRUE(
      conn_->Exec("UPDATE es_producer.consumer SET acknowledged_seq = 9 WHERE site = 'branch1'")
          .ok());
  s = Register(kB1, "branch1", {Sub("Note", "doc.public == 1"), Sub("Task")}, &again);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(again.last_seq(), 9);
  v1::ListConsumersResponse list;
  ASSERT_TRUE(List(kOps, &list).ok());
  ASSERT_EQ(list.consumers_size(), 1);

  // Another deployment claiming branch1 (another notify token): refused,
  // and nothing changed.
  v1::RegisterConsumerResponse other;
  s = Register(kB1, "branch1", {Sub("Memo")}, &other, "another-token");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  EXPECT_NE(s.error_message().find("branch1"), std::string::npos) << s.error_message();
  EXPECT_EQ(s.error_message().find("another-token"), std::string::npos);
  EXPECT_EQ(Row("branch1", "Task").status(), v1::SUBSCRIPTION_STATUS_APPROVED);
  EXPECT_FALSE(Row("branch1", "Note").unsubscribed());
}

TEST_F(RegistryTest, UpdateSubscriptionKeepsApprovals) {
  v1::RegisterConsumerResponse reg;
  ASSERT_TRUE(Register(kB1, "branch1", {Sub("Note"), Sub("Task")}, &reg).ok());
  ASSERT_TRUE(SetStatus(kOps, "branch1", "Note", v1::SUBSCRIPTION_STATUS_APPROVED).ok());
  ASSERT_TRUE(SetStatus(kOps, "branch1", "Task", v1::SUBSCRIPTION_STATUS_REJECTED).ok());

  v1::UpdateSubscriptionResponse resp;
  grpc::Status s = Update(kB1, "branch1", {Sub("Note", "doc.title == \"x\""), Sub("Task")}, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.subscriptions_size(), 2);
  EXPECT_EQ(resp.subscriptions(0).status(), v1::SUBSCRIPTION_STATUS_APPROVED);
  EXPECT_EQ(resp.subscriptions(0).condition(), "doc.title == \"x\"");
  EXPECT_EQ(resp.subscriptions(1).status(), v1::SUBSCRIPTION_STATUS_REJECTED);
  EXPECT_EQ(TriggeredTables(), kNoteTables);

  // Unsubscribing (flag or leaving it out) keeps the approval but stops
  // capture; asking again brings both back.
  s = Update(kB1, "branch1", {Sub("Task"), Sub("Memo")}, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  v1::DocTypeSubscription note = Row("branch1", "Note");
  EXPECT_TRUE(note.unsubscribed());
  EXPECT_EQ(note.status(), v1::SUBSCRIPTION_STATUS_APPROVED);
  EXPECT_EQ(Row("branch1", "Memo").status(), v1::SUBSCRIPTION_STATUS_PENDING);
  EXPECT_TRUE(TriggeredTables().empty());

  s = Update(kB1, "branch1", {Sub("Note", "", /*unsubscribe=*/true)}, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(Row("branch1", "Note").unsubscribed());
  EXPECT_TRUE(TriggeredTables().empty());

  s = Update(kB1, "branch1", {Sub("Note")}, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_FALSE(Row("branch1", "Note").unsubscribed());
  EXPECT_EQ(Row("branch1", "Note").status(), v1::SUBSCRIPTION_STATUS_APPROVED);
  EXPECT_EQ(TriggeredTables(), kNoteTables);

  // Not registered.
  s = Update(kB3, "branch3", {Sub("Note")}, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
}

TEST_F(RegistryTest, ApprovalsInstallAndRemoveCapture) {
  v1::RegisterConsumerResponse reg;
  ASSERT_TRUE(Register(kB1, "branch1", {Sub("Note"), Sub("Memo")}, &reg).ok());
  ASSERT_TRUE(Register(kB3, "branch3", {Sub("Note")}, &reg).ok());
  EXPECT_TRUE(TriggeredTables().empty());

  v1::SetSubscriptionStatusResponse resp;
  grpc::Status s =
      SetStatus(kOps, "branch1", "Note", v1::SUBSCRIPTION_STATUS_APPROVED, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.subscription().status(), v1::SUBSCRIPTION_STATUS_APPROVED);
  EXPECT_EQ(TriggeredTables(), kNoteTables);
  ASSERT_TRUE(SetStatus(kOps, "branch3", "Note", v1::SUBSCRIPTION_STATUS_APPROVED).ok());

  // A captured write lands in raw_change (or, once the producer's assembler
  // ran, in the update log).
  ASSERT_TRUE(conn_->Exec("INSERT INTO \"tabNote\" (name, title) VALUES ('N1', 't')").ok());
  auto raw = conn_->Exec(
      "SELECT (SELECT count(*) FROM es_producer.raw_change)"
      " + (SELECT count(*) FROM es_producer.update_log WHERE docname = 'N1')");
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ(raw->GetInt64(0, 0), 1);

  ASSERT_TRUE(SetStatus(kOps, "branch1", "Note", v1::SUBSCRIPTION_STATUS_REJECTED).ok());
  EXPECT_EQ(TriggeredTables(), kNoteTables);  // branch3 still approved
  ASSERT_TRUE(SetStatus(kOps, "branch3", "Note", v1::SUBSCRIPTION_STATUS_PENDING).ok());
  EXPECT_TRUE(TriggeredTables().empty());

  // Memo has no table: the approval is refused and nothing changes.
  s = SetStatus(kOps, "branch1", "Memo", v1::SUBSCRIPTION_STATUS_APPROVED);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_NE(s.error_message().find("tabMemo"), std::string::npos) << s.error_message();
  EXPECT_EQ(Row("branch1", "Memo").status(), v1::SUBSCRIPTION_STATUS_PENDING);

  // Unknown consumer / row; unspecified status.
  s = SetStatus(kOps, "nobody", "Note", v1::SUBSCRIPTION_STATUS_APPROVED);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("nobody"), std::string::npos) << s.error_message();
  s = SetStatus(kOps, "branch3", "Task", v1::SUBSCRIPTION_STATUS_APPROVED);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("Task"), std::string::npos) << s.error_message();
  s = SetStatus(kOps, "branch3", "Note", v1::SUBSCRIPTION_STATUS_UNSPECIFIED);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(RegistryTest, ConfigPreApprovalAppliesOnRegisterUpdateAndStart) {
  // branch2 asks for Task only: pending; later for Note too: approved by
  // config, with the config's condition, and captured.
  v1::RegisterConsumerResponse reg;
  ASSERT_TRUE(Register(kB2, "branch2", {Sub("Task")}, &reg).ok());
  EXPECT_EQ(reg.subscriptions(0).status(), v1::SUBSCRIPTION_STATUS_PENDING);
  v1::UpdateSubscriptionResponse upd;
  grpc::Status s = Update(kB2, "branch2", {Sub("Task"), Sub("Note", "doc.title != \"\"")}, &upd);
  ASSERT_TRUE(s.ok()) << s.error_message();
  v1::DocTypeSubscription note = Row("branch2", "Note");
  EXPECT_EQ(note.status(), v1::SUBSCRIPTION_STATUS_APPROVED);
  EXPECT_TRUE(note.from_config());
  EXPECT_EQ(note.condition(), "doc.title != \"\"");
  EXPECT_EQ(note.producer_condition(), "doc.public == 1");
  EXPECT_EQ(TriggeredTables(), kNoteTables);

  // The config decides: an admin cannot override it.
  s = SetStatus(kOps, "branch2", "Note", v1::SUBSCRIPTION_STATUS_REJECTED);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_NE(s.error_message().find("producer.consumers"), std::string::npos);

  // Config entry removed: on start the row falls back to pending, capture goes.
  Restart(/*preapprove=*/false);
  note = Row("branch2", "Note");
  EXPECT_EQ(note.status(), v1::SUBSCRIPTION_STATUS_PENDING);
  EXPECT_FALSE(note.from_config());
  EXPECT_EQ(note.producer_condition(), "");
  EXPECT_TRUE(TriggeredTables().empty());

  // Config entry added while the row exists: applied on start.
  Restart(/*preapprove=*/true);
  EXPECT_EQ(Row("branch2", "Note").status(), v1::SUBSCRIPTION_STATUS_APPROVED);
  EXPECT_EQ(TriggeredTables(), kNoteTables);

  // And on a fresh registration of the site.
  ASSERT_TRUE(conn_->Exec("DELETE FROM es_producer.consumer").ok());
  ASSERT_TRUE(Register(kB2, "branch2", {Sub("Note")}, &reg).ok());
  ASSERT_EQ(reg.subscriptions_size(), 1);
  EXPECT_EQ(reg.subscriptions(0).status(), v1::SUBSCRIPTION_STATUS_APPROVED);
  EXPECT_TRUE(reg.subscriptions(0).from_config());
}

TEST_F(RegistryTest, ListConsumersShowsStatusAcknowledgedPositionAndLag) {
  v1::RegisterConsumerResponse reg;
  ASSERT_TRUE(Register(kB1, "branch1", {Sub("Note"), Sub("Task")}, &reg).ok());
  ASSERT_TRUE(Register(kB3, "branch3", {Sub("Task")}, &reg).ok());
  ASSERT_TRUE(SetStatus(kOps, "branch1", "Note", v1::SUBSCRIPTION_STATUS_APPROVED).ok());
  AddLogEntry(1, "Note");
  AddLogEntry(2, "Note");
  AddLogEntry(3, "Note");
  AddLogEntry(4, "Task");               // not approved for branch1
  AddLogEntry(5, "Note", "branch1");    // its own origin
  AddLogEntry(6, "Note", "branch3");
  ASSERT_TRUE(conn_->Exec("UPDATE es_producer.consumer SET acknowledged_seq = 1,"
                          " last_pull_at = '2024-05-06T07:08:09Z' WHERE site = 'branch1'")
                  .ok());

  v1::ListConsumersResponse resp;
  grpc::Status s = List(kOps, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.log_position(), 6);
  ASSERT_EQ(resp.consumers_size(), 2);
  const v1::ConsumerInfo& b1 = resp.consumers(0);
  EXPECT_EQ(b1.site(), "branch1");
  EXPECT_EQ(b1.notify_address(), "127.0.0.1:1");
  EXPECT_EQ(b1.acknowledged_seq(), 1);
  EXPECT_EQ(b1.lag_entries(), 3);  // seq 2, 3, 6
  EXPECT_EQ(b1.last_pull_at(), "2024-05-06T07:08:09.000000Z");
  ASSERT_EQ(b1.subscriptions_size(), 2);
  EXPECT_EQ(b1.subscriptions(0).doctype(), "Note");
  EXPECT_EQ(b1.subscriptions(0).status(), v1::SUBSCRIPTION_STATUS_APPROVED);
  EXPECT_EQ(b1.subscriptions(1).status(), v1::SUBSCRIPTION_STATUS_PENDING);
  const v1::ConsumerInfo& b3 = resp.consumers(1);
  EXPECT_EQ(b3.site(), "branch3");
  EXPECT_EQ(b3.lag_entries(), 0);  // nothing approved
  EXPECT_EQ(b3.last_pull_at(), "");
  // The notify token is a credential: not part of the listing.
  EXPECT_EQ(resp.DebugString().find(kNotifyToken), std::string::npos);
}

TEST_F(RegistryTest, AuthMatrix) {
  v1::RegisterConsumerResponse reg;
  grpc::Status s = Register("", "branch1", {Sub("Note")}, &reg);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  s = Register("token branch1:wrong", "branch1", {Sub("Note")}, &reg);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  s = Register("token nobody:x", "nobody", {Sub("Note")}, &reg);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);

  // A consumer key acts only for its own site.
  s = Register(kB1, "branch3", {Sub("Note")}, &reg);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(s.error_message().find("key \"branch1\" may only act for site \"branch1\""),
            std::string::npos)
      << s.error_message();
  ASSERT_TRUE(Register(kB3, "branch3", {Sub("Note")}, &reg).ok());
  v1::UpdateSubscriptionResponse upd;
  s = Update(kB1, "branch3", {Sub("Task")}, &upd);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // An admin key is not a consumer.
  s = Register(kOps, "branch3", {Sub("Note")}, &reg);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // Admin RPCs need an admin key.
  v1::ListConsumersResponse list;
  EXPECT_EQ(List(kB1, &list).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(List("token ops:wrong", &list).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(SetStatus(kB3, "branch3", "Note", v1::SUBSCRIPTION_STATUS_APPROVED).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Row("branch3", "Note").status(), v1::SUBSCRIPTION_STATUS_PENDING);

  // No secret or notify token in the service log.
  std::string log = AllLogs();
  EXPECT_NE(log.find("consumer branch3 registered"), std::string::npos) << log;
  for (const auto& [env, secret] : KeySecrets())
    EXPECT_EQ(log.find(secret), std::string::npos) << env;
  EXPECT_EQ(log.find(kNotifyToken), std::string::npos);
}

TEST_F(RegistryTest, InvalidRequestsNameTheProblem) {
  struct Case {
    std::vector<v1::SubscriptionRequest> doctypes;
    std::string needle;
  };
  std::vector<Case> cases = {
      {{Sub("Note"), Sub("Nope")}, "unknown DocType \"Nope\""},
      {{Sub("Note Item")}, "\"Note Item\" is a child table"},
      {{Sub("Note"), Sub("Note")}, "\"Note\" is listed twice"},
      {{Sub("Note", "doc.public == ")}, "column"},
      {{Sub("Task", "__import__('os')")}, "condition for DocType \"Task\""},
      {{Sub("Note", "cmd:not a function")}, "cmd:schema.function"},
      // Only functions the producer's config allows (issue 13 item 6).
      {{Sub("Note", "cmd:public.pg_terminate_backend")},
       "condition for DocType \"Note\": function public.pg_terminate_backend is not one the "
       "producer allows in conditions (its config's producer.condition_functions: "
       "public.visible)"},
  };
  for (const Case& c : cases) {
    v1::RegisterConsumerResponse reg;
    grpc::Status s = Register(kB1, "branch1", c.doctypes, &reg);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.needle;
    EXPECT_NE(s.error_message().find(c.needle), std::string::npos)
        << c.needle << " not in: " << s.error_message();
  }
  // Nothing was registered by the refused calls; a cmd: condition is fine.
  v1::ListConsumersResponse list;
  ASSERT_TRUE(List(kOps, &list).ok());
  EXPECT_EQ(list.consumers_size(), 0);
  v1::RegisterConsumerResponse reg;
  grpc::Status s = Register(kB1, "branch1", {Sub("Note", "cmd:public.visible")}, &reg);
  EXPECT_TRUE(s.ok()) << s.error_message();
  v1::UpdateSubscriptionResponse upd;
  s = Update(kB1, "branch1", {Sub("Nope")}, &upd);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// Small robustness findings (issue 13 item 12): a notify_address that
// would inject a log line or reach a link-local metadata service is
// refused; a huge input echoed in an error is cut, so the client still
// gets the error and not a metadata-size failure.
TEST_F(RegistryTest, InputsCannotForgeLogLinesOrOverflowErrors) {
  v1::RegisterConsumerResponse reg;
  const std::string forged = "127.0.0.1:1\n2026-12-01 00:00:00.000 info consumer admin approved";
  for (const std::string& address : {forged, std::string("169.254.169.254:80"),
                                     std::string("[fe80::1]:80"), std::string("0.0.0.0:1")}) {
    grpc::Status s = Register(kB1, "branch1", {Sub("Note")}, &reg, kNotifyToken, address);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << address;
    EXPECT_NE(s.error_message().find("notify_address"), std::string::npos) << s.error_message();
  }
  EXPECT_EQ(AllLogs().find("\n2026-12-01 00:00:00.000 info consumer admin"), std::string::npos);

  // 20 KB of DocType name: the answer names it, cut to about 1 KB.
  grpc::Status s = Register(kB1, "branch1", {Sub(std::string(20000, 'N'))}, &reg);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("unknown DocType \"NNNN"), std::string::npos)
      << s.error_message().substr(0, 200);
  EXPECT_LT(s.error_message().size(), 1100u);
  EXPECT_NE(s.error_message().find("more bytes)"), std::string::npos);

  // A NUL in a name is refused, never cut short to match another one.
  ASSERT_TRUE(Register(kB1, "branch1", {Sub("Note")}, &reg).ok());
  s = Register(kB1, std::string("branch1\0junk", 12), {Sub("Note")}, &reg);
  EXPECT_NE(s.error_code(), grpc::StatusCode::OK);
}

}  // namespace
}  // namespace eventstream::testing
