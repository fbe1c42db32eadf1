// Push delivery end to end (Producer.StreamUpdates; docs/design.md
// "Delivery"; issue 17 item 2): the real producer on a fresh database with
// raw stream clients made here (flow control: at most `window` answers
// unacknowledged; errors; the producer stops promptly with streams open;
// the retention valve ends a stream "log trimmed:"), and the real consumer
// (tests/support/two_sites.h) with Notify off and polling once an hour, so
// the stream alone delivers: entries arrive quickly, kill -9 of the consumer
// mid-stream loses nothing and applies nothing twice, and a consumer the
// valve passed while it streamed recovers.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "eventstream/v1/producer.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "libsync/base/pg.h"
#include "tests/support/eventually.h"
#include "tests/support/frappe_schema.h"
#include "tests/support/http_get.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/two_sites.h"
#include "tests/support/grpc/producer_calls.h"

namespace eventstream::testing {
namespace {

// A StreamUpdates call made by the test. Answers are read on a thread of
// its own into a list, so the test can wait for them with a timeout (and
// see that no more come) while it decides when to acknowledge.
class RawStream {
 public:
  RawStream(v1::Producer::Stub* stub, const std::string& auth, int64_t after_seq, int limit,
            int window, bool send_start = true) {
    context_.AddMetadata("authorization", auth);
    call_ = stub->StreamUpdates(&context_);
    v1::StreamUpdatesRequest first;
    if (send_start) {
      first.mutable_start()->set_after_seq(after_seq);
      first.mutable_start()->set_limit(limit);
      first.mutable_start()->set_window(window);
    } else {
      first.set_acknowledged_seq(after_seq);
    }
    call_->Write(first);
    reader_ = std::thread([this] {
      v1::PullUpdatesResponse answer;
      while (call_->Read(&answer)) {
        absl::MutexLock lock(&mu_);
        answers_.push_back(answer);
      }
      absl::MutexLock lock(&mu_);
      ended_ = true;
    });
  }
  ~RawStream() {
    if (reader_.joinable()) {
      context_.TryCancel();
      reader_.join();
      (void)call_->Finish();
    }
  }

  int received() const {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(answers_.size());
  }
  v1::PullUpdatesResponse answer(int i) const {
    absl::MutexLock lock(&mu_);
    return answers_.at(i);
  }
  bool ended() const {
    absl::MutexLock lock(&mu_);
    return ended_;
  }
  // Polls every millisecond: the tests measure delivery with it.
  bool AwaitAnswers(int n, absl::Duration timeout = absl::Seconds(15)) const {
    return Eventually([&] { return received() >= n; }, timeout, absl::Milliseconds(1));
  }
  bool Ack(int64_t seq) {
    v1::StreamUpdatesRequest ack;
    ack.set_acknowledged_seq(seq);
    return call_->Write(ack);
  }
  // Waits for the end of the call; its status.
  grpc::Status Finish() {
    reader_.join();
    return call_->Finish();
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::StreamUpdatesRequest, v1::PullUpdatesResponse>>
      call_;
  std::thread reader_;
  mutable absl::Mutex mu_;
  std::vector<v1::PullUpdatesResponse> answers_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
};

std::string Inserts(const std::string& prefix, int from, int to) {
  return absl::StrCat("INSERT INTO \"tabNote\" (name, title, public) SELECT '", prefix,
                      "' || g, 'title ' || g, 1 FROM generate_series(", from, ", ", to,
                      ") g");
}

class StreamTest : public ProducerTest {
 protected:
  // The producer on a fresh database with Note and keys branch1..branch3;
  // `extra`: more producer: keys.
  void Start(const std::string& extra = "") {
    OpenSite("stream", NoteTable({"public"}));
    metrics_port_ = FreeTcpPort();
    ProducerYaml yaml;
    yaml.url = Url();
    yaml.doctypes = NoteDocType({"public"});
    yaml.consumers = 3;
    yaml.metrics_port = metrics_port_;
    yaml.extra = extra;
    StartProducer(ProducerConfigYaml(yaml));
  }
  std::optional<double> OpenStreams() {
    return Scrape(metrics_port_, "eventstream_producer_open_streams");
  }
  int metrics_port_ = 0;
};

TEST_F(StreamTest, AtMostWindowAnswersGoUnacknowledgedWhateverTheBacklog) {
  Start();
  const int64_t watermark = SubscribeApproved(kB1, "branch1", {Sub("Note")});
  Write(Inserts("N", 1, 30));  // 30 entries: 30 answers of one entry
  RawStream stream(stub_.get(), kB1, watermark, /*limit=*/1, /*window=*/2);
  ASSERT_TRUE(stream.AwaitAnswers(2)) << service_.process->Log();
  absl::SleepFor(absl::Seconds(1));
  EXPECT_EQ(stream.received(), 2);  // the window is full: it waits
  EXPECT_EQ(OpenStreams(), std::optional<double>(1));

  // One answer acknowledged: one more comes, and no other.
  ASSERT_TRUE(stream.Ack(stream.answer(0).next_after_seq()));
  ASSERT_TRUE(stream.AwaitAnswers(3));
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(stream.received(), 3);
  // The acknowledgment was recorded, as a pull's after_seq is.
  EXPECT_TRUE(Eventually([&] {
    return ConsumerOf(stub_.get(), kOps, "branch1").acknowledged_seq() ==
           stream.answer(0).next_after_seq();
  }));

  // One acknowledgment covers every answer it reaches: two more come.
  ASSERT_TRUE(stream.Ack(stream.answer(2).next_after_seq()));
  ASSERT_TRUE(stream.AwaitAnswers(5));
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(stream.received(), 5);
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(stream.answer(i).entries_size(), 1);
    EXPECT_EQ(stream.answer(i).entries(0).docname(), absl::StrCat("N", i + 1));
    EXPECT_TRUE(stream.answer(i).more());
  }
  // The answers came from the log tail (/metrics).
  EXPECT_GE(Scrape(metrics_port_, "eventstream_producer_log_tail_total{event=\"hit\"}")
                .value_or(0),
            5);
}

TEST_F(StreamTest, ACaughtUpStreamSendsEntriesAsTheyAreLogged) {
  Start();
  const int64_t watermark = SubscribeApproved(kB1, "branch1", {Sub("Note")});
  RawStream stream(stub_.get(), kB1, watermark, 0, 0);
  std::vector<absl::Duration> lags;
  for (int i = 1; i <= 10; ++i) {
    const absl::Time written = absl::Now();
    ASSERT_TRUE(conn_->ExecScript(Inserts("L", i, i)).ok());
    ASSERT_TRUE(stream.AwaitAnswers(i)) << service_.process->Log();
    lags.push_back(absl::Now() - written);
    const v1::PullUpdatesResponse answer = stream.answer(i - 1);
    ASSERT_EQ(answer.entries_size(), 1);
    EXPECT_EQ(answer.entries(0).docname(), absl::StrCat("L", i));
    ASSERT_TRUE(stream.Ack(answer.next_after_seq()));
  }
  std::sort(lags.begin(), lags.end());
  std::cout << "[          ] write to answer (capture + stream): p50 "
            << absl::FormatDuration(lags[5]) << ", max " << absl::FormatDuration(lags[9])
            << "\n";
  // Caught up and acknowledged: the producer's record says so.
  const int64_t last = stream.answer(9).next_after_seq();
  EXPECT_TRUE(Eventually(
      [&] { return ConsumerOf(stub_.get(), kOps, "branch1").acknowledged_seq() == last; }));
}

TEST_F(StreamTest, RequestsOutOfOrderOrOutOfBoundsAreRefused) {
  Start();
  const int64_t watermark = SubscribeApproved(kB1, "branch1", {Sub("Note")});
  {
    RawStream stream(stub_.get(), kB1, watermark, 0, 0, /*send_start=*/false);
    grpc::Status s = stream.Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_TRUE(absl::StrContains(s.error_message(), "StreamStart")) << s.error_message();
  }
  {
    RawStream stream(stub_.get(), kB1, watermark, 0, 17);
    grpc::Status s = stream.Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  }
  {
    RawStream stream(stub_.get(), "token branch1:wrong", watermark, 0, 0);
    EXPECT_EQ(stream.Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    RawStream stream(stub_.get(), kB2, 0, 0, 0);  // never registered
    EXPECT_EQ(stream.Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  }
}

TEST_F(StreamTest, TheProducerStopsPromptlyWithStreamsOpen) {
  Start();
  const int64_t w1 = SubscribeApproved(kB1, "branch1", {Sub("Note")});
  const int64_t w2 = SubscribeApproved(kB2, "branch2", {Sub("Note")});
  Write(Inserts("S", 1, 5));
  // One stream waits for entries, one for an acknowledgment that never comes.
  RawStream waiting_for_log(stub_.get(), kB1, w1, 0, 0);
  ASSERT_TRUE(waiting_for_log.AwaitAnswers(1));
  ASSERT_TRUE(waiting_for_log.Ack(waiting_for_log.answer(0).next_after_seq()));
  RawStream waiting_for_ack(stub_.get(), kB2, w2, 1, 1);
  ASSERT_TRUE(waiting_for_ack.AwaitAnswers(1));
  ASSERT_TRUE(Eventually([&] { return OpenStreams() == std::optional<double>(2); }));

  const absl::Time stopping = absl::Now();
  service_.process->Signal(SIGTERM);
  // Both streams end at once, not after the server's 10 s drain grace.
  for (RawStream* stream : {&waiting_for_log, &waiting_for_ack}) {
    grpc::Status s = stream->Finish();
    EXPECT_TRUE(s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                s.error_code() == grpc::StatusCode::CANCELLED)
        << s.error_code() << " " << s.error_message();
  }
  const absl::Duration ended = absl::Now() - stopping;
  EXPECT_LT(ended, absl::Seconds(2)) << service_.process->Log();
  auto code = service_.process->Wait(absl::Seconds(30));
  const absl::Duration took = absl::Now() - stopping;
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << service_.process->Log();
  // The rest of the stop takes what it takes without streams: 2, 6 or
  // 10 s here (the gRPC server's drain, also before streams existed; not
  // understood yet). The streams' own end is checked above; this only says
  // the process does not hang.
  EXPECT_LT(took, absl::Seconds(20)) << service_.process->Log();
  std::cout << "[          ] streams ended " << absl::FormatDuration(ended)
            << " after SIGTERM; the producer exited after " << absl::FormatDuration(took)
            << "\n";
}

TEST_F(StreamTest, TheRetentionValveEndsAStreamWithLogTrimmed) {
  Start("  retention: {min_age: 0, max_age: 2s, interval: 200ms}\n");
  const int64_t watermark = SubscribeApproved(kB1, "branch1", {Sub("Note")});
  Write(Inserts("T", 1, 10));
  RawStream stream(stub_.get(), kB1, watermark, /*limit=*/1, /*window=*/1);
  ASSERT_TRUE(stream.AwaitAnswers(1));
  // Unacknowledged past max_age: the valve cuts branch1 off.
  ASSERT_TRUE(Eventually([&] {
    return QueryInt(conn_.get(),
                    "SELECT lost_through FROM es_producer.consumer WHERE site = 'branch1'") >
           watermark;
  })) << service_.process->Log();
  stream.Ack(stream.answer(0).next_after_seq());
  grpc::Status s = stream.Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_TRUE(absl::StartsWith(s.error_message(), "log trimmed:")) << s.error_message();
  EXPECT_EQ(stream.received(), 1);
}

// ---- The real consumer, with the stream as its only way in ----

class ConsumerStreamTest : public ::testing::Test {
 protected:
  // Notify off, a poll once an hour: what arrives came by stream.
  static TwoSites::Spec Spec(const std::string& producer_extra = "") {
    TwoSites::Spec spec = TwoSites::NoteSpec(NoteDocType({"public"}), NoteTable({"public"}));
    spec.advertise = false;
    spec.poll_interval = "1h";
    spec.delivery = "stream";
    spec.consumer_metrics = true;
    spec.producer_extra = producer_extra;
    return spec;
  }
  void Start(TwoSites::Spec spec) {
    auto sites = TwoSites::Create(std::move(spec));
    ASSERT_TRUE(sites.ok()) << sites.status();
    sites_ = std::move(*sites);
    ASSERT_TRUE(sites_->StartProducer().ok());
    StartConsumer();
  }
  void StartConsumer() {
    absl::Status s = sites_->StartConsumer();
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_TRUE(Eventually([&] { return Streaming(); })) << sites_->Logs();
  }
  bool Streaming() {
    return Scrape(sites_->consumer_metrics_port(),
                  "eventstream_consumer_delivery{mode=\"stream\",producer=\"hq\"}") ==
           std::optional<double>(1);
  }
  std::string Notes(pg::Connection* conn) {
    return QueryText(conn, "SELECT count(*) || ':' || coalesce(md5(string_agg(name || title, ',' "
                           "ORDER BY name)), '') FROM \"tabNote\"");
  }
  void AwaitNotesEqual(absl::Duration timeout = absl::Seconds(60)) {
    ASSERT_TRUE(Eventually([&] { return Notes(sites_->hq()) == Notes(sites_->branch()); },
                           timeout))
        << Notes(sites_->hq()) << " " << Notes(sites_->branch()) << "\n" << sites_->Logs();
  }
  std::unique_ptr<TwoSites> sites_;
};

// A consumer streaming from the producer gets no Notify calls (one per
// consumer per logged batch, a cost that grew with the number of consumers):
// its stream delivers.
TEST_F(ConsumerStreamTest, AStreamingConsumerIsNotNotified) {
  const int port = FreeTcpPort();
  TwoSites::Spec spec = Spec(absl::StrCat("  metrics_listen: \"127.0.0.1:", port, "\"\n"));
  spec.advertise = true;
  Start(std::move(spec));
  auto calls = [&] {
    return Scrape(port, "eventstream_producer_notify_calls_total{consumer=\"branch\"}");
  };
  ASSERT_TRUE(Eventually([&] { return calls().has_value(); })) << sites_->Logs();
  const std::optional<double> before = calls();
  for (int i = 1; i <= 10; ++i) {
    ASSERT_TRUE(sites_->hq()->ExecScript(Inserts("S", i, i)).ok());
  }
  AwaitNotesEqual();
  EXPECT_EQ(calls(), before) << sites_->Logs();
}

TEST_F(ConsumerStreamTest, EntriesArriveByStreamWithoutNotifyOrPoll) {
  Start(Spec());
  std::vector<absl::Duration> lags;
  for (int i = 1; i <= 20; ++i) {
    const absl::Time written = absl::Now();
    ASSERT_TRUE(sites_->hq()->ExecScript(Inserts("A", i, i)).ok());
    const std::string query =
        absl::StrCat("SELECT count(*) FROM \"tabNote\" WHERE name = 'A", i, "'");
    ASSERT_TRUE(Eventually([&] { return QueryInt(sites_->branch(), query) == 1; },
                           absl::Seconds(10), absl::Milliseconds(1)))
        << sites_->Logs();
    lags.push_back(absl::Now() - written);
  }
  std::sort(lags.begin(), lags.end());
  std::cout << "[          ] hq write to branch commit, by stream: p50 "
            << absl::FormatDuration(lags[10]) << ", max " << absl::FormatDuration(lags[19])
            << "\n";
  EXPECT_LT(lags[19], absl::Seconds(2));  // the poll would take an hour
  EXPECT_TRUE(Streaming());
  EXPECT_GE(Occurrences(sites_->ConsumerLog(), "streaming after watermark"), 1u)
      << sites_->ConsumerLog();
}

TEST_F(ConsumerStreamTest, KilledMidStreamItLosesNothingAndAppliesNothingTwice) {
  Start(Spec());
  const char* seed_env = std::getenv("ES_E2E_SEED");
  const unsigned seed = seed_env != nullptr ? std::strtoul(seed_env, nullptr, 10) : 20261202u;
  SCOPED_TRACE(absl::StrCat("ES_E2E_SEED=", seed));
  std::mt19937 rng(seed);
  auto writer_conn = pg::Connection::Open(SharedCluster().Url(sites_->hq_db()));
  ASSERT_TRUE(writer_conn.ok()) << writer_conn.status();
  // 1,200 changes in small transactions: inserts, then an update of each.
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    for (int i = 0; i < 60; ++i) {
      EXPECT_TRUE((*writer_conn)->ExecScript(Inserts("K", i * 10, i * 10 + 9)).ok());
      EXPECT_TRUE((*writer_conn)
                      ->ExecScript(absl::StrCat("UPDATE \"tabNote\" SET title = title || ' v2' "
                                                "WHERE name IN (SELECT 'K' || g FROM "
                                                "generate_series(", i * 10, ", ", i * 10 + 9,
                                                ") g)"))
                      .ok());
      absl::SleepFor(absl::Milliseconds(30));
    }
    writing = false;
  });
  std::uniform_int_distribution<int> delay_ms(150, 700);
  int kills = 0;
  while (writing && kills < 6) {
    absl::SleepFor(absl::Milliseconds(delay_ms(rng)));
    sites_->KillConsumer();
    ++kills;
    StartConsumer();
    if (HasFatalFailure()) break;
  }
  writer.join();
  EXPECT_GE(kills, 2);
  AwaitNotesEqual();
  pg::Connection* hq = sites_->hq();
  pg::Connection* branch = sites_->branch();
  ASSERT_TRUE(Eventually([&] {
    return QueryInt(branch, "SELECT last_seq FROM es_consumer.last_update") ==
           QueryInt(hq, "SELECT max(seq) FROM es_producer.update_log");
  }));
  const int64_t entries = QueryInt(hq, "SELECT count(*) FROM es_producer.update_log");
  EXPECT_EQ(entries, 1200);
  EXPECT_EQ(QueryInt(branch, "SELECT count(*) FROM es_consumer.sync_log WHERE status = 'Synced'"),
            entries);
  EXPECT_EQ(QueryInt(branch, "SELECT count(*) FROM (SELECT seq FROM es_consumer.sync_log "
                             "GROUP BY seq HAVING count(*) > 1) twice"),
            0);
  std::cout << "[          ] " << kills << " kills mid-stream\n";
}

TEST_F(ConsumerStreamTest, AConsumerTheValvePassedWhileStreamingRecovers) {
  TwoSites::Spec spec = Spec("  retention: {min_age: 0, max_age: 2s, interval: 200ms}\n");
  // No initial sync running: the stream session is long (stream_flow.h),
  // so the valve meets the open stream, not a pull between sessions.
  spec.subscriptions = "        - {doctype: Note, use_same_name: true, initial_sync: false}\n";
  Start(spec);
  // The consumer cannot commit for a while (its Note table locked): it
  // acknowledges nothing, and the valve passes it.
  auto blocker = pg::Connection::Open(SharedCluster().Url(sites_->branch_db()));
  ASSERT_TRUE(blocker.ok()) << blocker.status();
  ASSERT_TRUE((*blocker)->ExecScript("BEGIN; LOCK TABLE \"tabNote\" IN ACCESS EXCLUSIVE MODE").ok());
  ASSERT_TRUE(sites_->hq()->ExecScript(Inserts("V", 1, 1500)).ok());
  ASSERT_TRUE(Eventually([&] {
    return QueryInt(sites_->hq(),
                    "SELECT lost_through FROM es_producer.consumer WHERE site = 'branch'") > 0;
  })) << sites_->Logs();
  ASSERT_TRUE((*blocker)->ExecScript("COMMIT").ok());
  AwaitNotesEqual();
  ASSERT_TRUE(Eventually([&] {
    return Scrape(sites_->consumer_metrics_port(),
                  "eventstream_consumer_trim_recoveries_total{producer=\"hq\"}") ==
           std::optional<double>(1);
  })) << sites_->Logs();
  // The valve met the open stream: it ended "log trimmed:".
  bool stream_trimmed = false;
  for (absl::string_view line : absl::StrSplit(sites_->ProducerLog(), '\n')) {
    stream_trimmed = stream_trimmed || (absl::StrContains(line, "stream closed") &&
                                        absl::StrContains(line, "log trimmed:"));
  }
  EXPECT_TRUE(stream_trimmed) << sites_->ProducerLog();
  EXPECT_EQ(Occurrences(sites_->ConsumerLog(), "fell behind its retention valve"), 1u)
      << sites_->ConsumerLog();
  EXPECT_TRUE(Eventually([&] { return Streaming(); })) << sites_->ConsumerLog();
}

}  // namespace
}  // namespace eventstream::testing
