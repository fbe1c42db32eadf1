// Large documents end to end (issue 13 item 2): the real producer and
// consumer (tests/support/two_sites.h). A pull answer is sized by bytes as
// well as by count, and a document travels whole in one answer up to the
// consumer's consumer.max_message_mb (default 64 MiB); one larger than that
// is logged Failed with an error naming the limit, the stream goes on, and
// Resync brings it once the limit is raised. Before: one answer over gRPC's
// default 4 MB (one 5 MB document, or 500 documents of 9 KB) failed every
// pull, for good.
//
// The 50 MB test prints how long the document took from hq's COMMIT to
// branch's row, and the services' peak RSS (VmHWM).
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "eventstream/v1/consumer.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/support/frappe_schema.h"
#include "tests/support/two_sites.h"

namespace eventstream::testing {
namespace {

constexpr char kDocTypes[] = R"(  - name: Note
    fields:
      - {fieldname: title, fieldtype: Data}
      - {fieldname: content, fieldtype: Long Text}
)";

const std::string kTables = FrappeTable("Note", "title text, content text");

// Peak resident set of `pid` in kB (VmHWM), or -1.
int64_t PeakRssKb(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (!absl::StartsWith(line, "VmHWM:")) continue;
    int64_t kb = -1;
    std::string digits;
    for (char c : line) {
      if (c >= '0' && c <= '9') digits += c;
    }
    return absl::SimpleAtoi(digits, &kb) ? kb : -1;
  }
  return -1;
}

class LargeDocumentsTest : public ::testing::Test {
 protected:
  void Start(const std::string& consumer_extra = "") {
    TwoSites::Spec spec = TwoSites::NoteSpec(kDocTypes, kTables);
    spec.poll_interval = "1s";
    spec.consumer_extra = consumer_extra;
    auto sites = TwoSites::Create(std::move(spec));
    ASSERT_TRUE(sites.ok()) << sites.status();
    sites_ = std::move(*sites);
    ASSERT_TRUE(sites_->StartProducer().ok()) << sites_->Logs();
    ASSERT_TRUE(sites_->StartConsumer().ok()) << sites_->Logs();
    // Registered (with the pre-approval) once the watermark row exists.
    ASSERT_TRUE(Eventually([&] {
      return QueryInt(sites_->branch(), "SELECT count(*) FROM es_consumer.last_update") == 1;
    })) << sites_->Logs();
  }

  void Hq(const std::string& sql) {
    absl::Status s = sites_->hq()->ExecScript(sql);
    ASSERT_TRUE(s.ok()) << s;
  }
  std::string OnBranch(const std::string& sql) { return QueryText(sites_->branch(), sql); }
  void AwaitBranch(const std::string& sql, const std::string& expected,
                   absl::Duration timeout = absl::Seconds(60)) {
    ASSERT_TRUE(Eventually([&] { return OnBranch(sql) == expected; }, timeout))
        << sql << "\n  is " << OnBranch(sql) << ", expected " << expected << "\n"
        << sites_->Logs().substr(0, 20000);
  }

  std::unique_ptr<TwoSites> sites_;
};

// Text of `bytes` bytes that does not compress to nothing: a 32 KB block of
// md5 hex digits, repeated (pglz looks back 4 KB at most).
std::string Content(int64_t bytes) {
  return absl::StrCat("(SELECT left(repeat(string_agg(md5(i::text), ''), ", bytes / 32768 + 1,
                      "), ", bytes, ") FROM generate_series(1, 1024) AS i)");
}

TEST_F(LargeDocumentsTest, FiftyMegabyteDocumentReplicatesBetweenSmallOnes) {
  Start();
  constexpr int64_t kBytes = 50'000'000;
  Hq("INSERT INTO \"tabNote\" (name, title) VALUES ('before', 'small')");
  Hq(absl::StrCat("INSERT INTO \"tabNote\" (name, title, content) VALUES ('big', 'large', ",
                  Content(kBytes), ")"));
  const absl::Time written = absl::Now();  // committed
  Hq("INSERT INTO \"tabNote\" (name, title) VALUES ('after', 'small')");
  AwaitBranch("SELECT coalesce(length(content), 0) FROM \"tabNote\" WHERE name = 'big'",
              std::to_string(kBytes));
  const absl::Duration took = absl::Now() - written;
  AwaitBranch("SELECT string_agg(name, ',' ORDER BY name) FROM \"tabNote\"", "after,before,big");
  EXPECT_EQ(OnBranch("SELECT md5(content) FROM \"tabNote\" WHERE name = 'big'"),
            QueryText(sites_->hq(), "SELECT md5(content) FROM \"tabNote\" WHERE name = 'big'"));
  EXPECT_EQ(OnBranch("SELECT string_agg(status, ',') FROM es_consumer.sync_log"),
            "Synced,Synced,Synced");
  std::cout << "50 MB document: hq COMMIT -> branch row in " << absl::FormatDuration(took)
            << "; peak RSS producer " << PeakRssKb(sites_->producer_pid()) / 1024
            << " MiB, consumer " << PeakRssKb(sites_->consumer_pid()) / 1024 << " MiB\n";
}

TEST_F(LargeDocumentsTest, FiveHundredDocumentsOfTwentyKilobytesInOneTransaction) {
  Start();
  // 10 MB of entries in one log window: several answers of about 4 MiB.
  Hq(absl::StrCat("INSERT INTO \"tabNote\" (name, title, content)"
                  " SELECT 'N' || i, 'n', repeat(md5(i::text), 640)"
                  " FROM generate_series(1, 500) AS i"));
  AwaitBranch("SELECT count(*) || ' ' || sum(length(content)) FROM \"tabNote\"",
              absl::StrCat(500, " ", 500 * 20480));
  EXPECT_EQ(OnBranch("SELECT count(*) FROM es_consumer.sync_log WHERE status = 'Synced'"),
            "500");
}

// Above the consumer's limit: Failed with an error naming the limit, later
// documents keep coming, the document's own later change parks behind it,
// and Resync after raising the limit fetches it whole.
TEST_F(LargeDocumentsTest, LargerThanTheLimitFailsVisiblyAndResyncsOnceRaised) {
  Start("  max_message_mb: 4\n");
  Hq(absl::StrCat("INSERT INTO \"tabNote\" (name, title, content) VALUES ('big', 'large', ",
                  Content(6'000'000), ")"));
  Hq("INSERT INTO \"tabNote\" (name, title) VALUES ('later', 'small')");
  AwaitBranch("SELECT count(*) FROM \"tabNote\" WHERE name = 'later'", "1");
  const std::string error = OnBranch(
      "SELECT error FROM es_consumer.sync_log WHERE docname = 'big' AND status = 'Failed'");
  EXPECT_TRUE(absl::StrContains(error, "consumer.max_message_mb")) << error;
  EXPECT_TRUE(absl::StrContains(error, "more than this consumer accepts")) << error;
  Hq("UPDATE \"tabNote\" SET title = 'large, edited' WHERE name = 'big'");
  AwaitBranch("SELECT string_agg(status, ',' ORDER BY seq) FROM es_consumer.sync_log"
              " WHERE docname = 'big'",
              "Failed,Parked");

  // Raise the limit, restart, Resync: the current document is fetched whole.
  ASSERT_TRUE(sites_->StopConsumer().ok());
  sites_->mutable_spec()->consumer_extra = "  max_message_mb: 16\n";
  ASSERT_TRUE(sites_->StartConsumer().ok()) << sites_->Logs();
  auto stub = v1::Consumer::NewStub(
      grpc::CreateChannel(sites_->consumer_address(), grpc::InsecureChannelCredentials()));
  const int64_t failed = QueryInt(
      sites_->branch(), "SELECT id FROM es_consumer.sync_log WHERE status = 'Failed'");
  v1::ResyncResponse resp;
  ASSERT_TRUE(Eventually([&] {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", TwoSites::kBranchAdmin);
    v1::ResyncRequest req;
    req.set_id(failed);
    resp.Clear();
    return stub->Resync(&ctx, req, &resp).ok();
  })) << sites_->Logs().substr(0, 20000);
  EXPECT_EQ(OnBranch("SELECT title || ' ' || length(content) FROM \"tabNote\" WHERE name = 'big'"),
            "large, edited 6000000");
  EXPECT_EQ(OnBranch("SELECT string_agg(status, ',' ORDER BY seq) FROM es_consumer.sync_log"
                     " WHERE docname = 'big'"),
            "Synced,Synced");
}

}  // namespace
}  // namespace eventstream::testing
