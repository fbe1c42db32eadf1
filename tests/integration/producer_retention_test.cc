// Update log retention end to end (docs/design.md "Retention"; issue 15
// item 1): the real eventstream-producer (capture, pulls, RestartSync) on a
// fresh database, and retention passes (RetentionLoop::Pass, the loop's own
// step) run by the test with the time it chooses, so nothing waits for an
// interval or for entries to age. Trimming after acknowledgment, min_age,
// the webhook position, the valve cutting a consumer off (its pull refused
// "log trimmed:", its skip_trimmed recovery) and kill -9 of the producer in
// the middle of its own trim.
#include <signal.h>

#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "eventstream/v1/producer.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "libsync/base/pg.h"
#include "services/producer/producer_metrics.h"
#include "services/producer/retention.h"
#include "tests/support/eventually.h"
#include "tests/support/http_get.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/service_runner.h"
#include "tests/support/two_sites.h"
#include "tests/support/frappe_schema.h"
#include "tests/support/grpc/producer_calls.h"

namespace eventstream::testing {
namespace {

// The producer's own loop: idle unless a test gives it another policy.
constexpr char kIdleRetention[] = "{min_age: 1h, max_age: 0, interval: 24h}";

std::string Config(const std::string& url, int metrics_port, const std::string& retention) {
  ProducerYaml yaml;
  yaml.url = url;
  yaml.doctypes = NoteDocType({}) + R"(  - name: Project
    fields:
      - {fieldname: title, fieldtype: Data}
)";
  yaml.consumers = 2;
  yaml.metrics_port = metrics_port;
  yaml.extra = absl::StrCat("  retention: ", retention, "\n");
  return ProducerConfigYaml(yaml);
}

const std::string kSiteTables = NoteTable({}) + FrappeTable("Project", "title text");

class RetentionTest : public ProducerTest {
 protected:
  void SetUp() override {
    OpenSite("retention", kSiteTables);
    metrics_port_ = FreeTcpPort();
    StartProducer(kIdleRetention);
  }

  void StartProducer(const std::string& retention) {
    ProducerTest::StartProducer(Config(Url(), metrics_port_, retention));
  }

  // Registers `site` for `doctype` (no initial sync) and approves it.
  int64_t Subscribe(const std::string& auth, const std::string& site,
                    const std::string& doctype = "Note", const std::string& condition = "") {
    return SubscribeApproved(auth, site,
                             {Sub(doctype, condition, false, /*skip_initial_sync=*/true)});
  }

  // Inserts Notes first..last-1 (one entry each) and waits for the log.
  void WriteNotes(int first, int last, const std::string& doctype = "Note") {
    ASSERT_TRUE(conn_
                    ->Exec(absl::StrCat("INSERT INTO \"tab", doctype,
                                        "\" (name, title) SELECT 'N' || i, 't' || i"
                                        " FROM generate_series($1::int, $2::int) AS i"),
                           {first, last - 1})
                    .ok());
    AwaitAssembled();
  }
  // Waits until the assembler consumed every raw change.
  void AwaitAssembled() {
    ASSERT_TRUE(Assembled(conn_.get(), absl::Seconds(30)));
  }

  int64_t Int(const std::string& sql) {
    auto r = conn_->Exec(sql);
    EXPECT_TRUE(r.ok()) << r.status() << ": " << sql;
    return r.ok() && r->rows() > 0 ? r->GetInt64(0, 0) : -1;
  }
  int64_t End() { return Int("SELECT coalesce(max(seq), 0) FROM es_producer.update_log"); }
  int64_t FirstKept() { return Int("SELECT coalesce(min(seq), 0) FROM es_producer.update_log"); }
  int64_t TrimmedThrough() { return Int("SELECT trimmed_through FROM es_producer.log_state"); }

  // Tells the producer everything up to `seq` arrived.
  void Acknowledge(const std::string& auth, int64_t seq) {
    v1::PullUpdatesResponse resp;
    grpc::Status s = Pull(auth, seq, &resp, /*limit=*/1, /*acknowledged_seq=*/seq);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  // RestartSync with skip_trimmed, which must succeed.
  v1::RestartSyncResponse SkipTrimmed(const std::string& auth) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", auth);
    v1::RestartSyncRequest req;
    req.set_skip_trimmed(true);
    v1::RestartSyncResponse answer;
    grpc::Status s = stub_->RestartSync(&ctx, req, &answer);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return answer;
  }
  // docname -> update type of what the site is sent after `after` (each
  // answer acknowledged), until `n` documents came.
  std::map<std::string, std::string> PullDocuments(const std::string& auth, int64_t after,
                                                   size_t n) {
    std::map<std::string, std::string> got;
    EXPECT_TRUE(Eventually([&] {
      v1::PullUpdatesResponse r;
      if (!Pull(auth, after, &r, 0, after).ok()) return false;
      for (const auto& e : r.entries()) got[e.docname()] = v1::UpdateType_Name(e.update_type());
      after = r.next_after_seq();
      return got.size() >= n;
    })) << got.size();
    return got;
  }

  // One retention pass as the loop runs it, at `now`.
  int64_t Trim(RetentionConfig policy, absl::Time now, ProducerMetrics* metrics = nullptr) {
    RetentionLoop::Options options;
    options.policy = policy;
    options.metrics = metrics;
    auto deleted = RetentionLoop::Pass(conn_.get(), options, now);
    EXPECT_TRUE(deleted.ok()) << deleted.status();
    return deleted.ok() ? *deleted : -1;
  }
  static RetentionConfig Policy(absl::Duration min_age, absl::Duration max_age = absl::ZeroDuration(),
                                int64_t max_entries = 0, int batch = 1000) {
    RetentionConfig p;
    p.min_age = min_age;
    p.max_age = max_age;
    p.max_entries = max_entries;
    p.batch = batch;
    return p;
  }

  int metrics_port_ = 0;
};

TEST_F(RetentionTest, TrimsWhatEveryConsumerAcknowledged) {
  const int64_t w1 = Subscribe(kB1, "branch1");
  // branch2 follows Project only: Notes are not its business.
  Subscribe(kB2, "branch2", "Project");
  WriteNotes(1, 11);
  const int64_t end = End();
  ASSERT_EQ(end - w1, 10);
  // branch1 has 1..w1+4; branch2 acknowledged nothing (but needs no Note).
  Acknowledge(kB1, w1 + 4);
  const absl::Time later = absl::Now() + absl::Hours(2);
  const int64_t first = FirstKept();
  EXPECT_EQ(Trim(Policy(absl::Hours(1)), later), w1 + 4 - first + 1);
  EXPECT_EQ(FirstKept(), w1 + 5);
  EXPECT_EQ(TrimmedThrough(), w1 + 4);
  v1::PullUpdatesResponse resp;
  grpc::Status s = Pull(kB1, w1 + 4, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.entries_size(), 6);
  EXPECT_EQ(resp.entries(0).seq(), w1 + 5);
  // branch2 was never cut off: it skipped nothing it needed.
  v1::PullUpdatesResponse other;
  s = Pull(kB2, 0, &other);
  EXPECT_TRUE(s.ok()) << s.error_message();

  // Everything acknowledged: all goes but the newest entry (the log's end).
  Acknowledge(kB1, end);
  Trim(Policy(absl::Hours(1)), later);
  EXPECT_EQ(FirstKept(), end);
  EXPECT_EQ(End(), end);
  EXPECT_EQ(Trim(Policy(absl::Hours(1)), later), 0);  // nothing more to do
}

// The loop VACUUMs update_log itself once its trims left enough dead rows
// (so its bytes stay bounded even when a crash reset autovacuum's counts).
TEST_F(RetentionTest, TrimmedEntriesAreVacuumedOnceEnoughAreDead) {
  auto vacuums = [&] {
    return QueryInt(conn_.get(), "SELECT vacuum_count FROM pg_stat_user_tables"
                                 " WHERE relid = 'es_producer.update_log'::regclass");
  };
  const int64_t before = vacuums();
  QueueVacuumPlanner planner(QueueVacuumPolicy{10, absl::Minutes(1)});
  const absl::Time now = absl::Now();
  planner.Consumed(9);
  EXPECT_FALSE(RetentionLoop::VacuumIfDue(conn_.get(), &planner, now));
  planner.Consumed(1);
  EXPECT_TRUE(RetentionLoop::VacuumIfDue(conn_.get(), &planner, now));
  EXPECT_EQ(planner.dead(), 0);
  EXPECT_EQ(vacuums(), before + 1);
  planner.Consumed(20);  // not again within min_interval
  EXPECT_FALSE(RetentionLoop::VacuumIfDue(conn_.get(), &planner, now + absl::Seconds(30)));
  EXPECT_TRUE(RetentionLoop::VacuumIfDue(conn_.get(), &planner, now + absl::Minutes(2)));
}

TEST_F(RetentionTest, MinAgeKeepsYoungEntries) {
  const int64_t w1 = Subscribe(kB1, "branch1");
  WriteNotes(1, 11);
  Acknowledge(kB1, End());
  // Nothing is an hour old yet.
  EXPECT_EQ(Trim(Policy(absl::Hours(1)), absl::Now()), 0);
  EXPECT_EQ(FirstKept(), w1 + 1);
  // The first four are made two hours old: only they go, and the valve
  // (max_age one day) cannot take the young ones either.
  ASSERT_TRUE(conn_
                  ->Exec("UPDATE es_producer.update_log SET created_at = now() - interval '2 hours'"
                         " WHERE seq <= $1",
                         {w1 + 4})
                  .ok());
  EXPECT_EQ(Trim(Policy(absl::Hours(1), absl::Hours(24), 3), absl::Now()), 4);
  EXPECT_EQ(FirstKept(), w1 + 5);
  EXPECT_EQ(End() - FirstKept() + 1, 6);
}

TEST_F(RetentionTest, WebhookPositionHoldsRetentionUntilTheValve) {
  const int64_t w1 = Subscribe(kB1, "branch1");
  WriteNotes(1, 11);
  const int64_t end = End();
  Acknowledge(kB1, end);
  // A webhook whose delivery looked at entries up to w1 + 2 only. The
  // producer is stopped, so no dispatcher moves it: this row's cursor is
  // what retention reads.
  service_ = RunningService();
  ASSERT_TRUE(conn_
                  ->Exec("INSERT INTO es_producer.webhook (name, doctype, definition, last_seq)"
                         " VALUES ('slow', 'Note', '{}', $1)",
                         {w1 + 2})
                  .ok());
  ASSERT_TRUE(conn_->Exec("UPDATE es_producer.webhook_dispatch SET position = $1", {w1 + 2}).ok());
  const absl::Time later = absl::Now() + absl::Hours(2);
  Trim(Policy(absl::Hours(1), absl::Hours(24)), later);
  EXPECT_EQ(FirstKept(), w1 + 3);

  // Past the valve (max_age) the entries go anyway: the webhook's requests
  // for them are never created, logged once and counted.
  auto pool = std::make_shared<pg::ConnectionPool>(SharedCluster().Url(db_));
  ProducerMetrics metrics(pool, nullptr);
  Trim(Policy(absl::Hours(1), absl::Hours(24)), absl::Now() + absl::Hours(48), &metrics);
  EXPECT_EQ(FirstKept(), end);
  EXPECT_EQ(metrics.webhook_entries_skipped->WithLabels({}).Value(), static_cast<double>(end - 1 - (w1 + 2)));
  // branch1 had acknowledged everything: it is not cut off.
  EXPECT_EQ(Int("SELECT lost_through FROM es_producer.consumer WHERE site = 'branch1'"), 0);
}

TEST_F(RetentionTest, ValveCutsOffAnUnacknowledgedConsumerWhichSkipsAndResyncs) {
  const int64_t w1 = Subscribe(kB1, "branch1");
  const int64_t w2 = Subscribe(kB2, "branch2");
  WriteNotes(1, 11);
  const int64_t end = End();
  Acknowledge(kB2, end);
  // branch1 stopped at w1. Without the valve it holds the whole log.
  const absl::Time later = absl::Now() + absl::Hours(2);
  EXPECT_EQ(Trim(Policy(absl::Hours(1)), later), 0);
  // max_entries 3: everything but the last three entries goes.
  EXPECT_EQ(Trim(Policy(absl::Hours(1), absl::ZeroDuration(), 3), later), end - 3 - w1);
  EXPECT_EQ(FirstKept(), end - 2);
  EXPECT_EQ(Int("SELECT lost_through FROM es_producer.consumer WHERE site = 'branch1'"), end - 3);
  EXPECT_EQ(Int("SELECT lost_through FROM es_producer.consumer WHERE site = 'branch2'"), 0);
  (void)w2;

  // Its next pull is refused, distinctly, naming how far behind it is.
  v1::PullUpdatesResponse resp;
  grpc::Status s = Pull(kB1, w1, &resp);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_TRUE(absl::StartsWith(s.error_message(), "log trimmed:")) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), absl::StrCat("is at seq ", w1)))
      << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), absl::StrCat("first seq kept is ", end - 2)))
      << s.error_message();
  // Also when it asks from a position it only prefetched.
  s = Pull(kB1, end - 1, &resp, 0, w1);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_EQ(Scrape(metrics_port_, "eventstream_producer_log_trimmed_pulls_total{consumer=\"branch1\"}"),
            std::optional<double>(2));

  // It recovers: position to the log's end, the initial sync again.
  v1::RestartSyncResponse answer = SkipTrimmed(kB1);
  EXPECT_EQ(answer.watermark(), end);
  ASSERT_EQ(answer.subscriptions_size(), 1);
  EXPECT_EQ(answer.subscriptions(0).doctype(), "Note");
  // The old position stays refused; the new one is served: every Note
  // comes whole as a Sync.
  s = Pull(kB1, w1, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  std::map<std::string, std::string> synced = PullDocuments(kB1, answer.watermark(), 10);
  EXPECT_EQ(synced.size(), 10u);
  for (const auto& [name, type] : synced) EXPECT_EQ(type, "UPDATE_TYPE_SYNC") << name;
  EXPECT_EQ(Int("SELECT (acknowledged_seq >= lost_through)::int FROM es_producer.consumer"
                " WHERE site = 'branch1'"),
            1);
}

// A consumer cut off with answers it received but never acknowledged (a
// move-in, then a move-out of N2): every document they touched counts as
// held, so the new sync moves N2 out again (REVOKE) and sends the rest.
TEST_F(RetentionTest, SkipCountsUnacknowledgedMoveInsAsHeld) {
  const int64_t w1 = Subscribe(kB1, "branch1", "Note", "doc.title != \"hidden\"");
  WriteNotes(1, 6);
  v1::PullUpdatesResponse resp;
  grpc::Status s = Pull(kB1, w1, &resp);  // received, never acknowledged
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.entries_size(), 5);
  EXPECT_EQ(Int("SELECT count(*) FROM es_producer.holding_change WHERE site = 'branch1'"), 5);
  ASSERT_TRUE(conn_->Exec("UPDATE \"tabNote\" SET title = 'hidden' WHERE name = 'N2'").ok());
  AwaitAssembled();
  // Its move-out is received too, and not acknowledged either: whether the
  // consumer applied it is unknown, so N2 must still count as held.
  v1::PullUpdatesResponse out;
  s = Pull(kB1, resp.next_after_seq(), &out, 0, w1);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(out.entries_size(), 1);
  EXPECT_EQ(out.entries(0).update_type(), v1::UPDATE_TYPE_REVOKE);
  EXPECT_EQ(Int("SELECT count(*) FROM es_producer.holding_change WHERE site = 'branch1'"), 6);
  Trim(Policy(absl::Hours(1), absl::ZeroDuration(), 1), absl::Now() + absl::Hours(2));
  s = Pull(kB1, w1, &resp);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();

  v1::RestartSyncResponse answer = SkipTrimmed(kB1);
  EXPECT_EQ(Int("SELECT count(*) FROM es_producer.holding_change WHERE site = 'branch1'"), 0);
  EXPECT_EQ(Int("SELECT count(*) FROM es_producer.holding WHERE site = 'branch1'"), 5);
  std::map<std::string, std::string> got = PullDocuments(kB1, answer.watermark(), 5);
  EXPECT_EQ(got, (std::map<std::string, std::string>{{"N1", "UPDATE_TYPE_SYNC"},
                                                     {"N2", "UPDATE_TYPE_REVOKE"},
                                                     {"N3", "UPDATE_TYPE_SYNC"},
                                                     {"N4", "UPDATE_TYPE_SYNC"},
                                                     {"N5", "UPDATE_TYPE_SYNC"}}));
}

TEST_F(RetentionTest, KillDuringTrimLosesNothingAConsumerStillNeeds) {
  const int64_t w1 = Subscribe(kB1, "branch1");
  WriteNotes(1, 6001);
  const int64_t end = End();
  const int64_t acknowledged = w1 + 4000;
  Acknowledge(kB1, acknowledged);
  // The producer's own loop trims, 20 entries a transaction, from now on.
  service_ = RunningService();
  StartProducer("{min_age: 0, max_age: 0, batch: 20, interval: 50ms}");
  ASSERT_TRUE(Eventually([&] { return FirstKept() > w1 + 1; }, absl::Seconds(20)));
  service_.process->Signal(SIGKILL);
  (void)service_.process->Wait(absl::Seconds(10));
  const int64_t killed_at = FirstKept();
  std::cout << "[          ] killed with seq " << killed_at << " the first kept (trim from "
            << w1 + 1 << " through " << acknowledged << ")\n";
  // Whatever the moment, nothing past the acknowledged position went.
  EXPECT_GT(killed_at, w1 + 1);
  EXPECT_LE(killed_at, acknowledged + 1);
  EXPECT_LE(TrimmedThrough(), acknowledged);
  EXPECT_EQ(Int(absl::StrCat("SELECT count(*) FROM es_producer.update_log WHERE seq > ",
                             acknowledged)),
            end - acknowledged);

  // Restarted, it finishes the trim up to the horizon and no further.
  service_ = RunningService();
  StartProducer("{min_age: 0, max_age: 0, batch: 20, interval: 50ms}");
  ASSERT_TRUE(Eventually([&] { return FirstKept() == acknowledged + 1; }, absl::Seconds(30)))
      << FirstKept();
  EXPECT_EQ(End() - FirstKept() + 1, end - acknowledged);
  v1::PullUpdatesResponse resp;
  grpc::Status s = Pull(kB1, acknowledged, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_GT(resp.entries_size(), 0);
  EXPECT_EQ(resp.entries(0).seq(), acknowledged + 1);
  // Table sizes are on /metrics.
  EXPECT_TRUE(Scrape(metrics_port_, "eventstream_producer_table_bytes{table=\"update_log\"}")
                  .has_value());
  EXPECT_EQ(Scrape(metrics_port_, "eventstream_producer_consumer_held_back_entries{consumer=\"branch1\"}"),
            std::optional<double>(static_cast<double>(end - acknowledged)));
}

}  // namespace
}  // namespace eventstream::testing
