// The producer under a flood (issue 13 item 3): the real eventstream-producer
// binary, ~250 concurrent FindDocuments of one consumer key with short
// client deadlines, pg_stat_activity watched throughout. Before: the
// producer opened a session per call (200, every one of max_connections)
// and kept them busy for minutes after the clients gave up, locking the
// site's own applications out.
//
// Now: the pool never holds more than producer.database_pool.max_connections
// sessions, a key never runs more than max_concurrent_calls_per_key calls,
// the calls over a limit are RESOURCE_EXHAUSTED at once, work whose
// deadline passed stops, and the site's own connections are unaffected.
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "eventstream/v1/producer.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "libsync/base/pg.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/service_runner.h"
#include "tests/support/two_sites.h"
#include "tests/support/frappe_schema.h"
#include "tests/support/grpc/producer_calls.h"

namespace eventstream::testing {
namespace {

std::string Config(const std::string& url, const std::string& limits) {
  ProducerYaml yaml;
  yaml.url = url;
  yaml.doctypes = NoteDocType({"public"});
  yaml.consumers = 2;
  yaml.extra = absl::StrCat(R"(  consumers:
    - site: branch1
      doctypes: [{doctype: Note, status: approved}]
    - site: branch2
      doctypes: [{doctype: Note, status: approved}]
)",
                            limits);
  return ProducerConfigYaml(yaml);
}

// `rows` Notes that branch1 may not see (kSlowCondition), so that every
// FindDocuments reads and judges up to 2,000 (limit 100) or 10,000 (limit
// 1,000) of them: the issue's slow call.
std::string Tables(int rows) {
  return absl::StrCat(NoteTable({"public"}), R"(
INSERT INTO "tabNote" (name, title, public)
  SELECT 'N' || lpad(i::text, 6, '0'), 'hidden', 0 FROM generate_series(1, )",
                      rows, ") AS i;\n");
}

constexpr char kProducerSessions[] =
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'eventstream-producer'"
    " AND datname = current_database()";

// When the producer's sessions last started a statement.
constexpr char kLastStatement[] =
    "SELECT coalesce(max(query_start)::text, '') FROM pg_stat_activity"
    " WHERE application_name = 'eventstream-producer' AND datname = current_database()";

// Hides every Note above. Comparing two fields has no SQL form
// (libsync/config/condition_sql.h), so FindDocuments judges each row in C++ and
// stays slow, as any call may be; "doc.public == 1" alone would be decided
// in the query in milliseconds.
constexpr char kSlowCondition[] = "doc.public == 1 and doc.title != doc.name";

class LimitsTest : public ProducerTest {
 protected:
  void Start(const std::string& limits, int rows) {
    OpenSite("limits", Tables(rows));
    ASSERT_NO_FATAL_FAILURE(StartProducer(Config(Url(), limits)));
    for (const char* auth : {kB1, kB2}) {
      v1::RegisterConsumerResponse resp;
      grpc::Status s = Register(stub_.get(), auth, auth == kB1 ? "branch1" : "branch2",
                                {Sub("Note", kSlowCondition)}, &resp);
      ASSERT_TRUE(s.ok()) << s.error_message();
    }
  }

  grpc::Status Find(const std::string& auth, absl::Duration deadline, int limit = 100) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", auth);
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    v1::FindDocumentsRequest req;
    req.set_doctype("Note");
    req.set_limit(limit);
    v1::FindDocumentsResponse resp;
    return stub_->FindDocuments(&ctx, req, &resp);
  }

  grpc::Status Pull(const std::string& auth) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", auth);
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    v1::PullUpdatesRequest req;
    v1::PullUpdatesResponse resp;
    return stub_->PullUpdates(&ctx, req, &resp);
  }

  // `calls` concurrent FindDocuments of `auth`, each with `deadline`;
  // returns their codes (and one message per code in `messages`).
  std::map<grpc::StatusCode, int> Flood(const std::string& auth, int calls,
                                        absl::Duration deadline,
                                        std::map<grpc::StatusCode, std::string>* messages) {
    std::mutex mu;
    std::map<grpc::StatusCode, int> codes;
    std::vector<std::thread> threads;
    for (int i = 0; i < calls; ++i) {
      threads.emplace_back([&] {
        grpc::Status s = Find(auth, deadline);
        std::lock_guard<std::mutex> lock(mu);
        ++codes[s.error_code()];
        (*messages)[s.error_code()] = s.error_message();
      });
    }
    for (std::thread& t : threads) t.join();
    return codes;
  }

  // Whether no session of the producer started a statement in 300 ms.
  bool AtRest() {
    const std::string last = QueryText(conn_.get(), kLastStatement);
    absl::SleepFor(absl::Milliseconds(300));
    return QueryText(conn_.get(), kLastStatement) == last;
  }

};

// Watches the database while a flood runs: the most producer sessions
// seen, and whether a new site connection (an application connecting)
// always got in and answered.
class Watch {
 public:
  explicit Watch(const std::string& url) : url_(url) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Watch() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int64_t max_sessions() const { return max_sessions_; }
  int site_failures() const { return site_failures_; }
  int site_tries() const { return site_tries_; }
  std::string last_failure() const { return last_failure_; }

 private:
  void Run() {
    auto watcher = pg::Connection::Open(url_);
    if (!watcher.ok()) {
      ++site_failures_;
      return;
    }
    while (!stop_) {
      int64_t n = QueryInt(watcher->get(), kProducerSessions);
      if (n > max_sessions_) max_sessions_ = n;
      // The site's own application: a fresh connection and a query.
      ++site_tries_;
      auto app = pg::Connection::Open(url_);
      if (!app.ok() || QueryInt(app->get(), "SELECT count(*) FROM \"tabNote\"") < 0) {
        ++site_failures_;
        last_failure_ = app.ok() ? "query failed" : std::string(app.status().message());
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
  }
  const std::string url_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> max_sessions_{0};
  std::atomic<int> site_failures_{0}, site_tries_{0};
  std::string last_failure_;
  std::thread thread_;
};

TEST_F(LimitsTest, FloodOfFindDocumentsStaysWithinThePoolBound) {
  // The per-key limit is out of the way here: the pool's bound is tested.
  Start("  database_pool: {max_connections: 4, acquire_timeout: 200ms}\n"
        "  max_concurrent_calls_per_key: 1000\n",
        3000);
  ASSERT_TRUE(Find(kB1, absl::Seconds(30)).ok());  // works when calm
  Watch watch(Url());
  std::map<grpc::StatusCode, std::string> messages;
  const absl::Time started = absl::Now();
  std::map<grpc::StatusCode, int> codes = Flood(kB1, 250, absl::Milliseconds(500), &messages);
  const absl::Time ended = absl::Now();
  // Back to rest: the producer's sessions start no statement any more.
  ASSERT_TRUE(Eventually([&] { return AtRest(); }, absl::Seconds(10)))
      << service_.process->Log();
  const absl::Duration settled = absl::Now() - ended - absl::Milliseconds(300);
  watch.Stop();

  int total = 0;
  for (const auto& [code, n] : codes) {
    total += n;
    EXPECT_TRUE(code == grpc::StatusCode::OK || code == grpc::StatusCode::RESOURCE_EXHAUSTED ||
                code == grpc::StatusCode::DEADLINE_EXCEEDED)
        << code << ": " << messages[code];
  }
  EXPECT_EQ(total, 250);
  EXPECT_GT(codes[grpc::StatusCode::RESOURCE_EXHAUSTED], 0);
  EXPECT_TRUE(absl::StrContains(messages[grpc::StatusCode::RESOURCE_EXHAUSTED],
                                "producer.database_pool.max_connections"))
      << messages[grpc::StatusCode::RESOURCE_EXHAUSTED];
  EXPECT_LE(watch.max_sessions(), 4) << "the pool opened past its bound";
  EXPECT_GT(watch.site_tries(), 10);
  EXPECT_EQ(watch.site_failures(), 0) << watch.last_failure();
  EXPECT_LE(QueryInt(conn_.get(), kProducerSessions), 4);
  EXPECT_LT(settled, absl::Seconds(2)) << "abandoned work kept running";
  std::cout << "flood of 250: " << codes[grpc::StatusCode::OK] << " OK, "
            << codes[grpc::StatusCode::RESOURCE_EXHAUSTED] << " RESOURCE_EXHAUSTED, "
            << codes[grpc::StatusCode::DEADLINE_EXCEEDED] << " DEADLINE_EXCEEDED in "
            << absl::FormatDuration(ended - started) << "; at most " << watch.max_sessions()
            << " producer sessions; at rest " << absl::FormatDuration(settled)
            << " after the last answer\n";
  // And the producer still answers.
  EXPECT_TRUE(Find(kB1, absl::Seconds(30)).ok());
}

TEST_F(LimitsTest, OneKeyCannotCrowdOutAnother) {
  Start("  max_concurrent_calls_per_key: 2\n", 3000);
  Watch watch(Url());
  std::atomic<int> other_ok{0}, other_failed{0};
  std::atomic<bool> flooding{true};
  std::string other_error;
  std::thread other([&] {
    while (flooding) {
      grpc::Status s = Pull(kB2);
      (s.ok() ? other_ok : other_failed)++;
      if (!s.ok()) other_error = s.error_message();
      absl::SleepFor(absl::Milliseconds(20));
    }
  });
  std::map<grpc::StatusCode, std::string> messages;
  std::map<grpc::StatusCode, int> codes = Flood(kB1, 60, absl::Seconds(5), &messages);
  flooding = false;
  other.join();
  watch.Stop();
  EXPECT_GT(codes[grpc::StatusCode::RESOURCE_EXHAUSTED], 0);
  EXPECT_GT(codes[grpc::StatusCode::OK], 0);
  EXPECT_TRUE(absl::StrContains(messages[grpc::StatusCode::RESOURCE_EXHAUSTED],
                                "producer.max_concurrent_calls_per_key = 2"))
      << messages[grpc::StatusCode::RESOURCE_EXHAUSTED];
  EXPECT_GT(other_ok, 0);
  EXPECT_EQ(other_failed, 0) << "branch2 was crowded out by branch1's flood: " << other_error;
  // branch1's two calls, branch2's pull, and an idle one or two.
  EXPECT_LE(watch.max_sessions(), 5);
}

// A call whose client gave up stops at its next page: no statement of it
// runs long after its deadline.
TEST_F(LimitsTest, WorkStopsWhenTheDeadlinePasses) {
  Start("", 12000);
  // limit 1,000: up to 10,000 invisible rows judged, seconds of work.
  grpc::Status s = Find(kB1, absl::Milliseconds(300), 1000);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  absl::SleepFor(absl::Milliseconds(500));
  const std::string before = QueryText(conn_.get(), kLastStatement);
  absl::SleepFor(absl::Milliseconds(800));
  EXPECT_EQ(QueryText(conn_.get(), kLastStatement), before)
      << "the producer still runs statements for a call abandoned 1.3 s ago";
}

}  // namespace
}  // namespace eventstream::testing
