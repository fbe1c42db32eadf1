// Issue 5 items 3 and 4 with the real binaries: two consumer replicas on one
// branch database fail over (kill -9 the active one) without applying any
// entry twice; two producer replicas on one hq database assemble each change
// once and keep serving when one dies; /metrics over HTTP shows the
// producer's lag for a stopped consumer growing and returning to 0 after it
// restarts; `log.format: json` writes one valid JSON object per line.
#include <signal.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "libsync/base/pg.h"
#include "libsync/base/value.h"
#include "services/common/service_main.h"
#include "tests/support/http_get.h"
#include "tests/support/eventually.h"
#include "tests/support/frappe_schema.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/service_runner.h"
#include "tests/support/two_sites.h"

namespace eventstream::testing {
namespace {

const std::map<std::string, std::string> kSecrets = {
    {"ES_OP_BRANCH", "branch-secret-op"},
    {"ES_OP_HQ_OPS", "hq-ops-secret-op"},
    {"ES_OP_OPS", "branch-ops-secret-op"},
    {"ES_OP_WRONG", "not-the-secret"},
};

const std::string kDocTypes = "doctypes:\n" + NoteDocType({});

const std::string kTables = NoteTable({});

std::string Addr(int port) { return absl::StrCat("127.0.0.1:", port); }

struct ProducerOpts {
  std::string db;
  int port = 0;
  int metrics_port = 0;  // 0 = no /metrics
  std::string log = "{level: info}";
};

std::string ProducerConfig(const ProducerOpts& o) {
  return absl::StrCat(
      "site: {name: hq}\ndatabase: {url: \"", SharedCluster().Url(o.db), "\"}\nlog: ", o.log,
      "\n", kDocTypes, "producer:\n  listen: \"", Addr(o.port), "\"\n",
      o.metrics_port ? absl::StrCat("  metrics_listen: \"", Addr(o.metrics_port), "\"\n") : "",
      "  api_keys:\n"
      "    - {key: branch, secret_env: ES_OP_BRANCH, role: consumer}\n"
      "    - {key: ops, secret_env: ES_OP_HQ_OPS, role: admin}\n"
      "  consumers:\n    - site: branch\n      doctypes:\n"
      "        - {doctype: Note, status: approved}\n");
}

struct ConsumerOpts {
  std::string db;
  int port = 0;
  std::string advertise;  // "" = the consumer's own address
  std::string producer;   // host:port
  int metrics_port = 0;
  std::string poll_interval = "1s";
  std::string log = "{level: info}";
  std::string secret_env = "ES_OP_BRANCH";
};

std::string ConsumerConfig(const ConsumerOpts& o) {
  return absl::StrCat(
      "site: {name: branch}\ndatabase: {url: \"", SharedCluster().Url(o.db), "\"}\nlog: ",
      o.log, "\n", kDocTypes, "consumer:\n  listen: \"", Addr(o.port), "\"\n  advertise: \"",
      o.advertise.empty() ? Addr(o.port) : o.advertise, "\"\n  poll_interval: ",
      o.poll_interval, "\n",
      o.metrics_port ? absl::StrCat("  metrics_listen: \"", Addr(o.metrics_port), "\"\n") : "",
      "  api_keys:\n    - {key: ops, secret_env: ES_OP_OPS, role: admin}\n"
      "  producers:\n    - name: hq\n      url: \"",
      o.producer, "\"\n      api_key: branch\n      api_secret_env: ", o.secret_env,
      "\n      doctypes:\n        - {doctype: Note, use_same_name: true}\n");
}


int64_t Count(pg::Connection* conn, const std::string& sql) {
  auto r = conn->Exec(sql);
  if (!r.ok() || r->rows() == 0) return -1;
  return r->GetInt64(0, 0);
}

absl::Status InsertNotes(pg::Connection* hq, int from, int to) {
  for (int i = from; i < to; ++i) {
    auto r = hq->Exec(
        "INSERT INTO \"tabNote\" (name, title, creation, modified) VALUES ($1, $2, now(), "
        "now())",
        {absl::StrCat("N", i), absl::StrCat("note ", i)});
    if (!r.ok()) return r.status();
  }
  return absl::OkStatus();
}

// Waits until the consumer registered (the producer captures Note from
// then on) and pulls.
void WaitPulling(RunningService& consumer) {
  ASSERT_TRUE(consumer.process->WaitForLog("holds the pull lock", absl::Seconds(20)).ok())
      << consumer.process->Log();
}

class OperabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    hq_db_ = FreshSite("hq", kTables, &hq_);
    branch_db_ = FreshSite("branch", kTables, &branch_);
    ASSERT_FALSE(::testing::Test::HasFailure());
  }

  int64_t BranchNotes() { return Count(branch_.get(), "SELECT count(*) FROM \"tabNote\""); }

  std::string hq_db_, branch_db_;
  std::unique_ptr<pg::Connection> hq_, branch_;
};

// SIGTERM and wait; expects a clean exit within the pod's grace period.
void Terminate(RunningService& svc, absl::Duration* took = nullptr) {
  absl::Time start = absl::Now();
  svc.process->Signal(SIGTERM);
  auto code = svc.process->Wait(absl::Seconds(30));
  ASSERT_TRUE(code.ok()) << code.status() << "\n" << svc.process->Log();
  EXPECT_EQ(*code, 0) << svc.process->Log();
  if (took != nullptr) *took = absl::Now() - start;
}

TEST_F(OperabilityTest, ConsumerReplicasFailOverWithoutApplyingTwice) {
  ProducerOpts po{hq_db_, FreeTcpPort()};
  auto producer = StartService("eventstream-producer", ProducerConfig(po), kSecrets);
  ASSERT_TRUE(producer.ok()) << producer.status();

  // Both replicas advertise the first one's address (in Kubernetes: the
  // Service); the standby polls for the lock every second.
  const int port_a = FreeTcpPort(), port_b = FreeTcpPort();
  ConsumerOpts co;
  co.db = branch_db_;
  co.producer = Addr(po.port);
  co.advertise = Addr(port_a);
  co.port = port_a;
  auto a = StartService("eventstream-consumer", ConsumerConfig(co), kSecrets);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(a->process->WaitForLog("holds the pull lock", absl::Seconds(20)).ok())
      << a->process->Log();
  co.port = port_b;
  auto b = StartService("eventstream-consumer", ConsumerConfig(co), kSecrets);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(b->process->WaitForLog("stands by", absl::Seconds(20)).ok())
      << b->process->Log();

  ASSERT_TRUE(InsertNotes(hq_.get(), 0, 20).ok());
  ASSERT_TRUE(Eventually([&] { return BranchNotes() == 20; }))
      << BranchNotes() << "\n" << a->process->Log() << "\n" << b->process->Log();
  EXPECT_FALSE(absl::StrContains(b->process->Log(), "pulled "))
      << "the standby replica pulled:\n" << b->process->Log();

  // kill -9 the active replica while documents keep coming.
  ASSERT_TRUE(InsertNotes(hq_.get(), 20, 30).ok());
  const absl::Time killed = absl::Now();
  a->process->Signal(SIGKILL);
  (void)a->process->Wait(absl::Seconds(10));
  ASSERT_TRUE(b->process->WaitForLog("holds the pull lock", absl::Seconds(10)).ok())
      << b->process->Log();
  const absl::Duration takeover = absl::Now() - killed;
  EXPECT_LT(takeover, absl::Seconds(5));
  ASSERT_TRUE(InsertNotes(hq_.get(), 30, 40).ok());
  ASSERT_TRUE(Eventually([&] { return BranchNotes() == 40; }))
      << BranchNotes() << "\n" << b->process->Log();

  // Exactly once: one Synced row per entry, no (producer, seq) twice.
  EXPECT_EQ(Count(branch_.get(),
                  "SELECT count(*) FROM es_consumer.sync_log WHERE status = 'Synced'"),
            40);
  EXPECT_EQ(Count(branch_.get(),
                  "SELECT count(*) FROM (SELECT producer, seq FROM es_consumer.sync_log"
                  " GROUP BY producer, seq HAVING count(*) > 1) d"),
            0);
  EXPECT_EQ(Count(branch_.get(),
                  "SELECT count(*) FROM es_consumer.sync_log WHERE status <> 'Synced'"),
            0);
  std::cout << "[ takeover ] " << absl::FormatDuration(takeover) << "\n";
}

TEST_F(OperabilityTest, ProducerReplicasAssembleOnceAndSurviveOneDying) {
  ProducerOpts p1{hq_db_, FreeTcpPort()};
  ProducerOpts p2{hq_db_, FreeTcpPort()};
  auto first = StartService("eventstream-producer", ProducerConfig(p1), kSecrets);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = StartService("eventstream-producer", ProducerConfig(p2), kSecrets);
  ASSERT_TRUE(second.ok()) << second.status();

  ConsumerOpts co;
  co.db = branch_db_;
  co.port = FreeTcpPort();
  co.producer = Addr(p2.port);
  auto consumer = StartService("eventstream-consumer", ConsumerConfig(co), kSecrets);
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  WaitPulling(*consumer);

  // Writes in many small transactions while both assemblers race for them.
  ASSERT_TRUE(InsertNotes(hq_.get(), 0, 40).ok());
  ASSERT_TRUE(Eventually([&] {
    return Count(hq_.get(), "SELECT count(*) FROM es_producer.update_log") >= 40;
  }));
  first->process->Signal(SIGKILL);
  (void)first->process->Wait(absl::Seconds(10));
  ASSERT_TRUE(InsertNotes(hq_.get(), 40, 60).ok());
  ASSERT_TRUE(hq_->Exec("UPDATE \"tabNote\" SET title = 'changed' WHERE name = 'N0'").ok());

  ASSERT_TRUE(Eventually([&] {
    return Count(hq_.get(), "SELECT count(*) FROM es_producer.raw_change") == 0 &&
           Count(hq_.get(), "SELECT count(*) FROM es_producer.update_log") >= 61;
  })) << second->process->Log();
  EXPECT_EQ(Count(hq_.get(), "SELECT count(*) FROM es_producer.update_log"), 61);
  EXPECT_EQ(Count(hq_.get(),
                  "SELECT count(*) FROM (SELECT docname FROM es_producer.update_log"
                  " WHERE update_type = 'Create' GROUP BY docname HAVING count(*) > 1) d"),
            0);
  EXPECT_EQ(Count(hq_.get(),
                  "SELECT count(DISTINCT docname) FROM es_producer.update_log"
                  " WHERE update_type = 'Create'"),
            60);
  // The survivor serves: the consumer gets everything.
  ASSERT_TRUE(Eventually([&] {
    return BranchNotes() == 60 &&
           Count(branch_.get(), "SELECT count(*) FROM \"tabNote\" WHERE title = 'changed'") ==
               1;
  })) << BranchNotes() << "\n" << consumer->process->Log();
  EXPECT_EQ(Count(branch_.get(),
                  "SELECT count(*) FROM es_consumer.sync_log WHERE status = 'Synced'"),
            61);
}

TEST_F(OperabilityTest, MetricsShowLagGrowingAndReturningToZero) {
  ProducerOpts po{hq_db_, FreeTcpPort(), FreeTcpPort()};
  auto producer = StartService("eventstream-producer", ProducerConfig(po), kSecrets);
  ASSERT_TRUE(producer.ok()) << producer.status();
  ConsumerOpts co;
  co.db = branch_db_;
  co.port = FreeTcpPort();
  co.metrics_port = FreeTcpPort();
  co.producer = Addr(po.port);
  auto consumer = StartService("eventstream-consumer", ConsumerConfig(co), kSecrets);
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  WaitPulling(*consumer);

  const std::string plag = "eventstream_producer_consumer_lag_entries{consumer=\"branch\"}";
  const std::string plag_s = "eventstream_producer_consumer_lag_seconds{consumer=\"branch\"}";
  const std::string clag = "eventstream_consumer_lag_entries{producer=\"hq\"}";

  ASSERT_TRUE(InsertNotes(hq_.get(), 0, 3).ok());
  ASSERT_TRUE(Eventually([&] { return BranchNotes() == 3; })) << consumer->process->Log();
  ASSERT_TRUE(Eventually([&] { return Scrape(po.metrics_port, plag) == 0.0; }))
      << HttpGet(po.metrics_port, "/metrics").body;

  // The producer's scrape.
  HttpResponse pm = HttpGet(po.metrics_port, "/metrics");
  ASSERT_EQ(pm.status, 200);
  // prometheus-cpp 1.0.1's Exposer says "text/plain; charset=utf-8" (no
  // version parameter); Prometheus reads text/plain as format 0.0.4.
  EXPECT_TRUE(absl::StrContains(pm.headers, "Content-Type: text/plain")) << pm.headers;
  EXPECT_TRUE(absl::StrContains(pm.body, "# TYPE eventstream_producer_consumer_lag_entries gauge"));
  EXPECT_EQ(Sample(pm.body, "eventstream_producer_entries_captured_total{doctype=\"Note\","
                            "update_type=\"Create\"}"),
            3.0)
      << pm.body;
  EXPECT_GE(Sample(pm.body, "eventstream_producer_pulls_total{consumer=\"branch\"}").value_or(0),
            1.0);
  EXPECT_EQ(Sample(pm.body, "eventstream_producer_entries_pulled_total{consumer=\"branch\"}"),
            3.0);
  EXPECT_TRUE(absl::StrContains(
      pm.body, "eventstream_producer_pull_duration_seconds_bucket{consumer=\"branch\",le=\"+Inf\"}"));
  EXPECT_TRUE(Sample(pm.body, "eventstream_producer_notify_failures_total{consumer=\"branch\"}")
                  .has_value())
      << pm.body;
  EXPECT_EQ(Sample(pm.body, plag_s), 0.0);
  // No webhooks here: nothing to deliver.
  EXPECT_EQ(Sample(pm.body, "eventstream_producer_webhook_backlog_entries"), 0.0) << pm.body;
  EXPECT_EQ(Sample(pm.body, "eventstream_producer_webhook_queued_requests"), 0.0) << pm.body;
  EXPECT_EQ(HttpGet(po.metrics_port, "/other").status, 404);
  EXPECT_EQ(HttpGet(po.metrics_port, "/metrics", "POST").status, 405);

  // The consumer's scrape.
  ASSERT_TRUE(Eventually([&] { return Scrape(co.metrics_port, clag) == 0.0; }))
      << HttpGet(co.metrics_port, "/metrics").body;
  HttpResponse cm = HttpGet(co.metrics_port, "/metrics");
  ASSERT_EQ(cm.status, 200);
  EXPECT_EQ(Sample(cm.body, "eventstream_consumer_entries_applied_total{producer=\"hq\","
                            "status=\"synced\"}"),
            3.0)
      << cm.body;
  EXPECT_GE(Sample(cm.body, "eventstream_consumer_watermark{producer=\"hq\"}").value_or(0), 3.0);
  EXPECT_EQ(Sample(cm.body, "eventstream_consumer_active{producer=\"hq\"}"), 1.0);
  EXPECT_GE(Sample(cm.body, "eventstream_consumer_pulls_total{producer=\"hq\"}").value_or(0), 1.0);
  EXPECT_EQ(Sample(cm.body, "eventstream_consumer_pull_errors_total{producer=\"hq\"}")
                .value_or(0),
            0.0);
  EXPECT_TRUE(absl::StrContains(
      cm.body, "eventstream_consumer_apply_batch_duration_seconds_count{producer=\"hq\"}"));

  // Stop the consumer (gracefully, well within 30 s); the lag grows.
  absl::Duration took;
  Terminate(*consumer, &took);
  EXPECT_LT(took, absl::Seconds(15));
  constexpr int kN = 7;
  ASSERT_TRUE(InsertNotes(hq_.get(), 3, 3 + kN).ok());
  ASSERT_TRUE(Eventually([&] { return Scrape(po.metrics_port, plag).value_or(0) >= kN; }))
      << HttpGet(po.metrics_port, "/metrics").body;
  absl::SleepFor(absl::Milliseconds(1200));
  const double seconds = Scrape(po.metrics_port, plag_s).value_or(-1);
  EXPECT_GT(seconds, 1.0);
  EXPECT_LT(seconds, 60.0);

  // Restart it: it catches up and the lag returns to 0.
  auto again = StartService("eventstream-consumer", ConsumerConfig(co), kSecrets);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE(Eventually([&] { return BranchNotes() == 3 + kN; })) << again->process->Log();
  EXPECT_TRUE(Eventually([&] {
    return Scrape(po.metrics_port, plag) == 0.0 && Scrape(po.metrics_port, plag_s) == 0.0;
  }, absl::Seconds(10)))
      << HttpGet(po.metrics_port, "/metrics").body;
  EXPECT_TRUE(Eventually([&] { return Scrape(co.metrics_port, clag) == 0.0; }))
      << HttpGet(co.metrics_port, "/metrics").body;
}

TEST(JsonLogTest, EscapesEveryMessageIntoOneJsonString) {
  const std::string nasty =
      "say \"hi\"\nsecond line\r\n\ttab \\ back \x01 ctl, caf\xc3\xa9, bad \xff\xc3 end";
  std::string escaped;
  AppendJsonEscaped(nasty, &escaped);
  EXPECT_EQ(escaped.find('\n'), std::string::npos);
  auto parsed = Value::ParseJson("\"" + escaped + "\"");
  ASSERT_TRUE(parsed.ok()) << parsed.status() << ": " << escaped;
  ASSERT_TRUE(parsed->is_string());
  EXPECT_EQ(parsed->as_string(),
            "say \"hi\"\nsecond line\r\n\ttab \\ back \x01 ctl, caf\xc3\xa9, bad "
            "\xef\xbf\xbd\xef\xbf\xbd end");
}

TEST_F(OperabilityTest, JsonLogLinesAllParse) {
  ProducerOpts po{hq_db_, FreeTcpPort()};
  po.log = "{level: debug, format: json}";
  auto producer = StartService("eventstream-producer", ProducerConfig(po), kSecrets);
  ASSERT_TRUE(producer.ok()) << producer.status();
  ConsumerOpts co;
  co.db = branch_db_;
  co.port = FreeTcpPort();
  co.producer = Addr(po.port);
  co.log = "{level: debug, format: json}";
  // First with a wrong secret: the refusal's message has quotes in it.
  co.secret_env = "ES_OP_WRONG";
  auto bad = StartService("eventstream-consumer", ConsumerConfig(co), kSecrets);
  ASSERT_TRUE(bad.ok()) << bad.status();
  ASSERT_TRUE(bad->process->WaitForLog("UNAUTHENTICATED", absl::Seconds(20)).ok())
      << bad->process->Log();
  Terminate(*bad);
  std::string bad_log = bad->process->Log();

  co.secret_env = "ES_OP_BRANCH";
  auto consumer = StartService("eventstream-consumer", ConsumerConfig(co), kSecrets);
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  WaitPulling(*consumer);
  ASSERT_TRUE(InsertNotes(hq_.get(), 0, 2).ok());
  ASSERT_TRUE(Eventually([&] { return BranchNotes() == 2; })) << consumer->process->Log();
  Terminate(*consumer);
  Terminate(*producer);

  bool saw_quotes = false;
  for (const std::string& log :
       {bad_log, consumer->process->Log(), producer->process->Log()}) {
    int lines = 0;
    for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
      ++lines;
      auto v = Value::ParseJson(std::string(line));
      ASSERT_TRUE(v.ok()) << v.status() << "\nline: " << line;
      ASSERT_TRUE(v->is_object()) << line;
      for (const char* key : {"time", "level", "msg"}) {
        const Value* f = v->Find(key);
        ASSERT_TRUE(f != nullptr && f->is_string()) << key << " in " << line;
      }
      if (absl::StrContains(v->Find("msg")->as_string(), "\"branch\"")) saw_quotes = true;
    }
    EXPECT_GT(lines, 2) << log;
  }
  EXPECT_TRUE(saw_quotes) << bad_log;
}

}  // namespace
}  // namespace eventstream::testing
