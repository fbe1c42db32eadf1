// The consumer's subscriptions, pull loop and RPCs end to end: the real
// eventstream-producer on an `hq` database and the real eventstream-consumer
// on a `branch` database, both as processes, talking gRPC. Registration at
// start (and the producer's approval mirrored), Notify authentication,
// PullNow, an unreachable producer (the consumer stays up and catches up once
// it appears), the watermark kept across a restart, Notify coalescing during
// a slow pull, and a document travelling from hq to branch with its sync log
// row.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "eventstream/v1/consumer.grpc.pb.h"
#include "eventstream/v1/producer.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "libsync/base/pg.h"
#include "tests/support/eventually.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/service_runner.h"
#include "tests/support/two_sites.h"
#include "tests/support/frappe_schema.h"
#include "tests/support/grpc/producer_calls.h"

namespace eventstream::testing {
namespace {

const std::map<std::string, std::string> kSecrets = {
    {"ES_T_BRANCH", "branch-secret-cs"},  // branch's key at hq
    {"ES_T_HQ_OPS", "hq-ops-secret-cs"},  // hq's admin
    {"ES_T_OPS", "branch-ops-secret-cs"}, // branch's admin
};
const char kHqOps[] = "token ops:hq-ops-secret-cs";
const char kBranchOps[] = "token ops:branch-ops-secret-cs";

const std::string kDocTypes = "doctypes:\n" + NoteDocType({"public"});

const std::string kTables = NoteTable({"public"});

std::string ProducerConfig(const std::string& url, int port) {
  return absl::StrCat("site: {name: hq}\ndatabase: {url: \"", url, "\"}\n", kDocTypes,
                      R"(producer:
  listen: "127.0.0.1:)", port, R"("
  api_keys:
    - {key: branch, secret_env: ES_T_BRANCH, role: consumer}
    - {key: ops, secret_env: ES_T_HQ_OPS, role: admin}
)");
}

// `delivery`: "" = the default (stream).
std::string ConsumerConfig(const std::string& url, int port, const std::string& producer,
                           const std::string& poll_interval, const std::string& condition,
                           const std::string& delivery = "") {
  return absl::StrCat("site: {name: branch}\ndatabase: {url: \"", url,
                      "\"}\nlog: {level: debug}\n", kDocTypes, R"(consumer:
  listen: "127.0.0.1:)", port, R"("
  advertise: "127.0.0.1:)", port, R"("
  poll_interval: )", poll_interval, R"(
  api_keys:
    - {key: ops, secret_env: ES_T_OPS, role: admin}
  producers:
    - name: hq
      url: ")", producer, R"("
      api_key: branch
      api_secret_env: ES_T_BRANCH
)", delivery.empty() ? "" : absl::StrCat("      delivery: ", delivery, "\n"), R"(      doctypes:
        - {doctype: Note, use_same_name: true, condition: ")", condition, R"("}
)");
}


class ConsumerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    hq_db_ = FreshSite("hq", kTables, &hq_);
    branch_db_ = FreshSite("branch", kTables, &branch_);
    ASSERT_FALSE(::testing::Test::HasFailure());
    producer_port_ = FreeTcpPort();
    consumer_port_ = FreeTcpPort();
  }

  void StartProducer() {
    auto svc = StartService("eventstream-producer",
                            ProducerConfig(SharedCluster().Url(hq_db_), producer_port_),
                            kSecrets);
    ASSERT_TRUE(svc.ok()) << svc.status();
    producer_ = std::move(*svc);
    hq_stub_ = ProducerStub(producer_.address());
  }

  void StartConsumer(const std::string& poll_interval = "1h",
                     const std::string& condition = "") {
    auto svc = StartService(
        "eventstream-consumer",
        ConsumerConfig(SharedCluster().Url(branch_db_), consumer_port_,
                       absl::StrCat("127.0.0.1:", producer_port_), poll_interval,
                       condition, delivery_),
        kSecrets);
    ASSERT_TRUE(svc.ok()) << svc.status();
    consumer_ = std::move(*svc);
    stub_ = v1::Consumer::NewStub(
        grpc::CreateChannel(consumer_.address(), grpc::InsecureChannelCredentials()));
  }

  // SIGTERM and wait; returns the log it wrote.
  std::string StopConsumer() {
    stub_.reset();
    consumer_.process->Signal(SIGTERM);
    auto code = consumer_.process->Wait(absl::Seconds(20));
    EXPECT_TRUE(code.ok()) << code.status();
    if (code.ok()) {
      EXPECT_EQ(*code, 0) << consumer_.process->Log();
    }
    return consumer_.process->Log();
  }

  // The producer's record of site branch (empty site when none).
  v1::ConsumerInfo HqConsumer() { return ConsumerOf(hq_stub_.get(), kHqOps, "branch"); }

  void Approve(const std::string& doctype) {
    grpc::Status s = SetStatus(hq_stub_.get(), kHqOps, "branch", doctype,
                               v1::SUBSCRIPTION_STATUS_APPROVED);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  v1::ProducerInfo Hq() {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", kBranchOps);
    v1::ListProducersResponse resp;
    grpc::Status s = stub_->ListProducers(&ctx, {}, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.producers_size(), 1);
    return resp.producers_size() > 0 ? resp.producers(0) : v1::ProducerInfo();
  }

  grpc::Status PullNow(v1::PullNowResponse* resp, const std::string& producer = "hq") {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", kBranchOps);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::PullNowRequest req;
    req.set_producer(producer);
    return stub_->PullNow(&ctx, req, resp);
  }

  grpc::Status Notify(const std::string& auth, const std::string& producer = "hq") {
    grpc::ClientContext ctx;
    if (!auth.empty()) ctx.AddMetadata("authorization", auth);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::NotifyRequest req;
    req.set_producer(producer);
    v1::NotifyResponse resp;
    return stub_->Notify(&ctx, req, &resp);
  }

  std::string NotifyToken() {
    auto r = branch_->Exec(
        "SELECT notify_token FROM es_consumer.event_producer WHERE name = 'hq'");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && r->rows() == 1 ? std::string(r->Get(0, 0)) : "";
  }

  // Starts both, waits for the registration, approves Note and pulls once.
  void StartApprovedPair() {
    StartProducer();
    StartConsumer();
    ASSERT_TRUE(Eventually([&] { return HqConsumer().subscriptions_size() == 1; }))
        << consumer_.process->Log();
    Approve("Note");
    v1::PullNowResponse resp;
    grpc::Status s = PullNow(&resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  int64_t Count(pg::Connection* conn, const std::string& sql) {
    auto r = conn->Exec(sql);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->GetInt64(0, 0) : -1;
  }

  std::string hq_db_, branch_db_;
  std::unique_ptr<pg::Connection> hq_, branch_;
  int producer_port_ = 0, consumer_port_ = 0;
  RunningService producer_, consumer_;
  std::string delivery_;  // consumer.producers[0].delivery; "" = the default
  std::unique_ptr<v1::Producer::Stub> hq_stub_;
  std::unique_ptr<v1::Consumer::Stub> stub_;
};

TEST_F(ConsumerServiceTest, RegistersAtStartAndMirrorsTheApproval) {
  StartProducer();
  StartConsumer();
  // Registered at start, without any RPC to the consumer.
  ASSERT_TRUE(Eventually([&] { return HqConsumer().subscriptions_size() == 1; }))
      << consumer_.process->Log();
  v1::ConsumerInfo at_hq = HqConsumer();
  EXPECT_EQ(at_hq.notify_address(), absl::StrCat("127.0.0.1:", consumer_port_));
  EXPECT_EQ(at_hq.subscriptions(0).doctype(), "Note");
  EXPECT_EQ(at_hq.subscriptions(0).status(), v1::SUBSCRIPTION_STATUS_PENDING);

  ASSERT_TRUE(Eventually([&] {
    v1::ProducerInfo hq = Hq();
    return hq.doctypes_size() == 1 &&
           hq.doctypes(0).status() == v1::SUBSCRIPTION_STATUS_PENDING && hq.reachable();
  })) << Hq().DebugString();
  v1::ProducerInfo hq = Hq();
  EXPECT_EQ(hq.name(), "hq");
  EXPECT_EQ(hq.url(), absl::StrCat("127.0.0.1:", producer_port_));
  EXPECT_EQ(hq.doctypes(0).doctype(), "Note");
  EXPECT_EQ(hq.doctypes(0).local_doctype(), "Note");
  EXPECT_TRUE(hq.doctypes(0).use_same_name());
  EXPECT_EQ(hq.consecutive_failures(), 0);
  EXPECT_FALSE(hq.last_pull_at().empty());

  // The producer's admin approves; a PullNow brings the status over.
  Approve("Note");
  v1::PullNowResponse resp;
  grpc::Status s = PullNow(&resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.results_size(), 1);
  EXPECT_EQ(resp.results(0).producer(), "hq");
  EXPECT_TRUE(resp.results(0).error().empty());
  EXPECT_EQ(Hq().doctypes(0).status(), v1::SUBSCRIPTION_STATUS_APPROVED);

  // The notify token never reaches the log.
  const std::string token = NotifyToken();
  ASSERT_FALSE(token.empty());
  std::string log = StopConsumer();
  EXPECT_FALSE(absl::StrContains(log, token));
  EXPECT_FALSE(absl::StrContains(log, "branch-secret-cs"));
}

TEST_F(ConsumerServiceTest, NotifyAndOperatorRpcsAuthenticate) {
  StartProducer();
  StartConsumer();
  ASSERT_TRUE(Eventually([&] { return HqConsumer().subscriptions_size() == 1; }));
  const std::string token = NotifyToken();
  ASSERT_FALSE(token.empty());

  EXPECT_EQ(Notify("").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Notify("token hq:wrong").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Notify(kBranchOps).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  grpc::Status s = Notify("token hq:" + token);
  EXPECT_TRUE(s.ok()) << s.error_message();
  s = Notify("token hq:" + token, "elsewhere");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  // An empty producer field means the caller's own.
  EXPECT_TRUE(Notify("token hq:" + token, "").ok());

  // Operator RPCs: admin only; a notify token is not an operator key.
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "token hq:" + token);
  v1::ListProducersResponse list;
  EXPECT_EQ(stub_->ListProducers(&ctx, {}, &list).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  grpc::ClientContext ctx2;
  ctx2.AddMetadata("authorization", "token ops:nope");
  EXPECT_EQ(stub_->ListProducers(&ctx2, {}, &list).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  v1::PullNowResponse pulled;
  EXPECT_EQ(PullNow(&pulled, "nowhere").error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ConsumerServiceTest, UnreachableProducerIsReportedAndRetried) {
  // No producer yet: the consumer starts anyway and keeps trying.
  StartConsumer();
  ASSERT_TRUE(Eventually([&] { return Hq().consecutive_failures() >= 2; }))
      << Hq().DebugString();
  v1::ProducerInfo hq = Hq();
  EXPECT_FALSE(hq.reachable());
  EXPECT_FALSE(hq.last_error().empty());
  EXPECT_TRUE(hq.last_pull_at().empty());
  EXPECT_EQ(hq.doctypes(0).status(), v1::SUBSCRIPTION_STATUS_UNSPECIFIED);
  v1::PullNowResponse resp;
  grpc::Status s = PullNow(&resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "hq")) << s.error_message();
  // PullNow for every producer reports the error per producer.
  v1::PullNowResponse all;
  s = PullNow(&all, "");
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(all.results_size(), 1);
  EXPECT_FALSE(all.results(0).error().empty());
  EXPECT_TRUE(consumer_.process->Running());

  // The producer appears: the background retry registers.
  StartProducer();
  ASSERT_TRUE(Eventually([&] { return HqConsumer().subscriptions_size() == 1; },
                         absl::Seconds(40)))
      << consumer_.process->Log();
  ASSERT_TRUE(Eventually([&] { return Hq().reachable(); })) << Hq().DebugString();
  EXPECT_EQ(Hq().consecutive_failures(), 0);
  EXPECT_TRUE(Hq().last_error().empty());
  // One warning for the outage, not one per retry.
  std::string log = StopConsumer();
  const size_t warnings = Occurrences(log, "pull failed");
  EXPECT_LE(warnings, 2u) << log;
  EXPECT_GE(warnings, 1u) << log;
}

TEST_F(ConsumerServiceTest, RestartKeepsTheWatermark) {
  StartApprovedPair();
  ASSERT_TRUE(hq_->ExecScript(
      "INSERT INTO \"tabNote\" (name, title) VALUES ('n1', 'one'), ('n2', 'two')").ok());
  ASSERT_TRUE(Eventually([&] {
    return Count(hq_.get(), "SELECT count(*) FROM es_producer.update_log") == 2;
  }));
  v1::PullNowResponse resp;
  ASSERT_TRUE(PullNow(&resp).ok());
  const int64_t watermark = Hq().last_seq();
  EXPECT_GE(watermark, 2);
  StopConsumer();

  // While the consumer is down, hq moves on.
  ASSERT_TRUE(
      hq_->ExecScript("INSERT INTO \"tabNote\" (name, title) VALUES ('n3', 'three')").ok());
  ASSERT_TRUE(Eventually([&] {
    return Count(hq_.get(), "SELECT count(*) FROM es_producer.update_log") == 3;
  }));
  StartConsumer();
  // The stored watermark was kept (not replaced by hq's current position on
  // a second registration), so the change made while down arrives: the pull
  // at start or this one brings it.
  ASSERT_TRUE(PullNow(&resp).ok());
  ASSERT_EQ(resp.results_size(), 1);
  const int64_t position =
      Count(hq_.get(), "SELECT max(seq) FROM es_producer.update_log");
  EXPECT_EQ(resp.results(0).last_seq(), position);
  EXPECT_GT(position, watermark);
  EXPECT_EQ(Hq().last_seq(), position);
  EXPECT_EQ(Count(branch_.get(), "SELECT count(*) FROM \"tabNote\" WHERE name = 'n3'"), 1)
      << consumer_.process->Log();
  EXPECT_EQ(Count(branch_.get(), "SELECT count(*) FROM es_consumer.sync_log"), 3);
  // Nothing changed in the config: nothing sent to hq at start.
  std::string log = StopConsumer();
  EXPECT_FALSE(absl::StrContains(log, "registered with producer")) << log;
  EXPECT_FALSE(absl::StrContains(log, "updated subscription")) << log;
}

TEST_F(ConsumerServiceTest, ChangedConfigUpdatesTheSubscriptionKeepingApproval) {
  StartApprovedPair();
  StopConsumer();
  StartConsumer("1h", "doc.public == 1");
  ASSERT_TRUE(Eventually([&] {
    v1::ConsumerInfo c = HqConsumer();
    return c.subscriptions_size() == 1 &&
           c.subscriptions(0).condition() == "doc.public == 1";
  })) << consumer_.process->Log();
  EXPECT_EQ(HqConsumer().subscriptions(0).status(), v1::SUBSCRIPTION_STATUS_APPROVED);
  ASSERT_TRUE(Eventually([&] { return Hq().doctypes(0).condition() == "doc.public == 1"; }));
  EXPECT_EQ(Hq().doctypes(0).status(), v1::SUBSCRIPTION_STATUS_APPROVED);
  std::string log = StopConsumer();
  EXPECT_TRUE(absl::StrContains(log, "updated subscription at producer hq")) << log;
  EXPECT_EQ(Count(branch_.get(), "SELECT count(*) FROM es_consumer.event_producer"), 1);
}

TEST_F(ConsumerServiceTest, NotifiesDuringASlowPullCoalesce) {
  delivery_ = "pull";  // how Notifies start pulls (streaming, they wait for the session's end)
  StartApprovedPair();
  const std::string auth = "token hq:" + NotifyToken();

  // Make the next pull hang on the watermark until we let go.
  auto blocker = pg::Connection::Open(SharedCluster().Url(branch_db_));
  ASSERT_TRUE(blocker.ok());
  ASSERT_TRUE((*blocker)
                  ->ExecScript("BEGIN; LOCK TABLE es_consumer.last_update IN ACCESS "
                               "EXCLUSIVE MODE;")
                  .ok());
  ASSERT_TRUE(Notify(auth).ok());
  ASSERT_TRUE(Eventually([&] {
    return Count(branch_.get(),
                 "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                 "'eventstream-consumer' AND wait_event_type = 'Lock'") > 0;
  })) << "the pull did not start";
  for (int i = 0; i < 25; ++i) ASSERT_TRUE(Notify(auth).ok());
  ASSERT_TRUE((*blocker)->ExecScript("COMMIT;").ok());
  // Let the one extra pull run, then count.
  absl::SleepFor(absl::Seconds(2));
  std::string log = StopConsumer();
  const size_t notify_pulls = Occurrences(log, "started (Notify)");
  // The blocked pull plus exactly one more for the 25 notifies (a producer's
  // own Notify may add one).
  EXPECT_GE(notify_pulls, 2u) << log;
  EXPECT_LE(notify_pulls, 3u) << log;
}

TEST_F(ConsumerServiceTest, ProducersOwnNotifyBringsTheChange) {
  // poll_interval is 1h: only hq's Notify to the advertised address can
  // trigger the pull.
  StartApprovedPair();
  ASSERT_TRUE(hq_->ExecScript(
      "INSERT INTO \"tabNote\" (name, title) VALUES ('pushed', 'Pushed')").ok());
  ASSERT_TRUE(Eventually([&] {
    return Count(branch_.get(), "SELECT count(*) FROM \"tabNote\" WHERE name = 'pushed'") ==
           1;
  })) << consumer_.process->Log() << producer_.process->Log();
}

TEST_F(ConsumerServiceTest, DocumentTravelsToBranchWithSyncLog) {
  StartApprovedPair();
  ASSERT_TRUE(hq_->ExecScript(
      "INSERT INTO \"tabNote\" (name, title, public) VALUES ('hello', 'Hello', 1)").ok());
  ASSERT_TRUE(Eventually([&] {
    return Count(hq_.get(), "SELECT count(*) FROM es_producer.update_log") == 1;
  }));
  // A Notify (as hq would send) brings it over without PullNow.
  ASSERT_TRUE(Notify("token hq:" + NotifyToken()).ok());
  ASSERT_TRUE(Eventually([&] {
    return Count(branch_.get(),
                 "SELECT count(*) FROM \"tabNote\" WHERE name = 'hello' AND title = "
                 "'Hello'") == 1;
  })) << consumer_.process->Log();

  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", kBranchOps);
  v1::ListSyncLogRequest req;
  req.set_producer("hq");
  req.set_doctype("Note");
  v1::ListSyncLogResponse log;
  grpc::Status s = stub_->ListSyncLog(&ctx, req, &log);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(log.entries_size(), 1);
  EXPECT_EQ(log.entries(0).docname(), "hello");
  EXPECT_EQ(log.entries(0).update_type(), v1::UPDATE_TYPE_CREATE);
  EXPECT_EQ(log.entries(0).status(), v1::SYNC_STATUS_SYNCED);
  EXPECT_FALSE(log.entries(0).created_at().empty());

  // An update through PullNow; the sync log lists newest first and filters.
  ASSERT_TRUE(
      hq_->ExecScript("UPDATE \"tabNote\" SET title = 'Hello again' WHERE name = 'hello'")
          .ok());
  ASSERT_TRUE(Eventually([&] {
    return Count(hq_.get(), "SELECT count(*) FROM es_producer.update_log") == 2;
  }));
  v1::PullNowResponse pulled;
  s = PullNow(&pulled);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(Count(branch_.get(),
                  "SELECT count(*) FROM \"tabNote\" WHERE title = 'Hello again'"),
            1);
  grpc::ClientContext ctx2;
  ctx2.AddMetadata("authorization", kBranchOps);
  v1::ListSyncLogRequest all;
  v1::ListSyncLogResponse both;
  ASSERT_TRUE(stub_->ListSyncLog(&ctx2, all, &both).ok());
  ASSERT_EQ(both.entries_size(), 2);
  EXPECT_EQ(both.entries(0).update_type(), v1::UPDATE_TYPE_UPDATE);
  EXPECT_GT(both.entries(0).id(), both.entries(1).id());
  grpc::ClientContext ctx3;
  ctx3.AddMetadata("authorization", kBranchOps);
  v1::ListSyncLogRequest failed;
  failed.set_status(v1::SYNC_STATUS_FAILED);
  v1::ListSyncLogResponse none;
  ASSERT_TRUE(stub_->ListSyncLog(&ctx3, failed, &none).ok());
  EXPECT_EQ(none.entries_size(), 0);
  grpc::ClientContext ctx4;
  ctx4.AddMetadata("authorization", kBranchOps);
  v1::ListSyncLogRequest page;
  page.set_before_id(both.entries(0).id());
  v1::ListSyncLogResponse older;
  ASSERT_TRUE(stub_->ListSyncLog(&ctx4, page, &older).ok());
  ASSERT_EQ(older.entries_size(), 1);
  EXPECT_EQ(older.entries(0).id(), both.entries(1).id());

  // Resync of a row that is not Failed.
  grpc::ClientContext ctx5;
  ctx5.AddMetadata("authorization", kBranchOps);
  v1::ResyncRequest resync;
  resync.set_id(both.entries(0).id());
  v1::ResyncResponse resynced;
  EXPECT_EQ(stub_->Resync(&ctx5, resync, &resynced).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  grpc::ClientContext ctx6;
  ctx6.AddMetadata("authorization", kBranchOps);
  resync.set_id(987654);
  EXPECT_EQ(stub_->Resync(&ctx6, resync, &resynced).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // Membership entries (issue 14) are listed by their type.
  ASSERT_TRUE(branch_
                  ->ExecScript("INSERT INTO es_consumer.sync_log (producer, seq, doctype, docname,"
                               " update_type, status, note) VALUES"
                               " ('hq', 1000, 'Note', 'moved', 'Sync', 'Synced', 'inserted'),"
                               " ('hq', 1001, 'Note', 'moved', 'Revoke', 'Synced', 'not here')")
                  .ok());
  grpc::ClientContext ctx7;
  ctx7.AddMetadata("authorization", kBranchOps);
  v1::ListSyncLogResponse membership;
  ASSERT_TRUE(stub_->ListSyncLog(&ctx7, all, &membership).ok());
  ASSERT_GE(membership.entries_size(), 2);
  EXPECT_EQ(membership.entries(0).update_type(), v1::UPDATE_TYPE_REVOKE);
  EXPECT_EQ(membership.entries(1).update_type(), v1::UPDATE_TYPE_SYNC);
}

}  // namespace
}  // namespace eventstream::testing
