// Outgoing webhooks end to end: the real eventstream-producer binary with
// webhooks in its config (and added over the Webhooks RPCs), delivering to
// an HTTP/1.1 receiver on loopback written here. Each doc event fires
// exactly the webhooks it should; conditions filter; Form and JSON bodies;
// the signature verifies with a verifier written from Frappe's documented
// algorithm; 500/429/receiver down -> persisted, jittered backoff ->
// success, per document in order; Retry-After (seconds and HTTP-date) on
// 429/503 is honoured; kill -9 mid-delivery or mid-pass -> delivered after
// the restart with the same webhook-id and body, recorded once; each request
// renders the document as of its own log entry; delivery is held back while
// the site writes and catches up after; a slow receiver holds a pass up for
// a bounded time; the request log masks secrets. Issue 13: the Standard
// Webhooks signature verifies with the reference verifier (npm
// standardwebhooks, run by node from tests/webhooks/) and a replay does
// not; runtime webhooks read only allow-listed secrets, never files.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "eventstream/v1/webhooks.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "libsync/config/config.h"
#include "libsync/base/pg.h"
#include "libsync/base/value.h"
#include "libsync/config/webhook_template.h"
#include "services/producer/webhooks/delivery.h"
#include "services/producer/webhooks/webhook_service.h"
#include "services/producer/webhooks/webhook_store.h"
#include "tests/support/frappe_verifier.h"
#include "tests/support/frappe_schema.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/service_runner.h"
#include "tests/support/eventually.h"
#include "tests/support/producer_config.h"

namespace eventstream::testing {
namespace {

// ---- a tiny HTTP/1.1 receiver ---------------------------------------------

struct Received {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  int status = 0;  // what we answered; 0 = no answer (hang/drop)
  absl::Time at;
  int connection = 0;
};

// A scripted answer: its status, and a Retry-After header when
// `retry_after` is set ("2") or `retry_after_date_in` is (an IMF-fixdate
// that far after the moment of the answer, whole seconds, i.e. rounded
// down).
struct Reply {
  int status = 200;
  std::string retry_after = "";
  absl::Duration retry_after_date_in = absl::ZeroDuration();
};

class Receiver {
 public:
  Receiver() { Listen(0); }
  ~Receiver() {
    Down();
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      threads.swap(conn_threads_);
    }
    for (auto& t : threads) t.join();
  }
  int port() const { return port_; }

  // Statuses for the next requests (then 200).
  void Script(const std::deque<int>& statuses) {
    std::deque<Reply> replies;
    for (int s : statuses) replies.push_back(Reply{s});
    ScriptReplies(std::move(replies));
  }
  void ScriptReplies(std::deque<Reply> replies) {
    std::lock_guard<std::mutex> lock(mu_);
    script_ = std::move(replies);
  }
  // Each answer is sent this long after the request arrived.
  void Delay(absl::Duration d) {
    std::lock_guard<std::mutex> lock(mu_);
    delay_ = d;
  }
  // While hanging, requests are read and recorded but never answered.
  void Hang(bool hang) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      hang_ = hang;
    }
    cv_.notify_all();
  }
  // Down: nothing listens on the port (connection refused); Up: back on the
  // same port.
  void Down() {
    int fd = listen_fd_.exchange(-1);
    if (fd >= 0) {
      ::shutdown(fd, SHUT_RDWR);
      ::close(fd);
    }
    if (accept_thread_.joinable()) accept_thread_.join();
    std::lock_guard<std::mutex> lock(mu_);
    for (int c : open_fds_) ::shutdown(c, SHUT_RDWR);
    down_ = true;
    cv_.notify_all();
  }
  void Up() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      down_ = false;
    }
    Listen(port_);
  }
  std::vector<Received> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }
  std::vector<Received> requests(const std::string& path_prefix) {
    std::vector<Received> out;
    for (Received& r : requests()) {
      if (absl::StartsWith(r.path, path_prefix)) out.push_back(std::move(r));
    }
    return out;
  }
  int connections() { return connections_.load(); }

 private:
  void Listen(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < 100; ++i) {
      if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) break;
      absl::SleepFor(absl::Milliseconds(50));
    }
    ::listen(fd, 64);
    socklen_t len = sizeof(addr);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen_fd_ = fd;
    accept_thread_ = std::thread([this, fd] {
      while (true) {
        int c = ::accept(fd, nullptr, nullptr);
        if (c < 0) return;
        int id = ++connections_;
        std::lock_guard<std::mutex> lock(mu_);
        open_fds_.push_back(c);
        conn_threads_.emplace_back([this, c, id] { Serve(c, id); });
      }
    });
  }

  void Serve(int fd, int id) {
    std::string buf;
    char chunk[4096];
    while (true) {
      size_t end;
      while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
        if (n <= 0) return Close(fd);
        buf.append(chunk, n);
      }
      Received r;
      r.connection = id;
      std::vector<std::string> lines = absl::StrSplit(buf.substr(0, end), "\r\n");
      std::vector<std::string> first = absl::StrSplit(lines[0], ' ');
      r.method = first.size() > 0 ? first[0] : "";
      r.path = first.size() > 1 ? first[1] : "";
      size_t length = 0;
      for (size_t i = 1; i < lines.size(); ++i) {
        size_t colon = lines[i].find(':');
        if (colon == std::string::npos) continue;
        std::string key = absl::AsciiStrToLower(lines[i].substr(0, colon));
        std::string value(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
        if (key == "content-length") (void)absl::SimpleAtoi(value, &length);
        r.headers[key] = value;
      }
      buf.erase(0, end + 4);
      while (buf.size() < length) {
        ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
        if (n <= 0) return Close(fd);
        buf.append(chunk, n);
      }
      r.body = buf.substr(0, length);
      buf.erase(0, length);
      r.at = absl::Now();
      Reply reply;
      absl::Duration delay;
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (hang_) {
          received_.push_back(r);
          cv_.wait(lock, [&] { return !hang_ || down_; });
          lock.unlock();
          return Close(fd);
        }
        if (!script_.empty()) {
          reply = script_.front();
          script_.pop_front();
        }
        r.status = reply.status;
        received_.push_back(r);
        delay = delay_;
      }
      absl::SleepFor(delay);
      std::string retry_after = reply.retry_after;
      if (reply.retry_after_date_in > absl::ZeroDuration()) {
        retry_after = absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT",
                                       absl::Now() + reply.retry_after_date_in,
                                       absl::UTCTimeZone());
      }
      std::string response = absl::StrCat(
          "HTTP/1.1 ", reply.status, " X\r\nContent-Type: text/plain\r\n",
          retry_after.empty() ? "" : absl::StrCat("Retry-After: ", retry_after, "\r\n"),
          "Content-Length: 9\r\nConnection: keep-alive\r\n\r\nreply-", reply.status);
      if (::send(fd, response.data(), response.size(), MSG_NOSIGNAL) < 0) {
        return Close(fd);
      }
    }
  }
  void Close(int fd) {
    std::lock_guard<std::mutex> lock(mu_);
    open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd),
                    open_fds_.end());
    ::close(fd);
  }

  std::atomic<int> listen_fd_{-1};
  int port_ = 0;
  std::thread accept_thread_;
  std::atomic<int> connections_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> conn_threads_;
  std::vector<int> open_fds_;
  std::deque<Reply> script_;
  bool hang_ = false;
  absl::Duration delay_;
  bool down_ = false;
  std::vector<Received> received_;
};

// ---- the site -----------------------------------------------------------------

constexpr char kSecret[] = "frappe-shared-secret";
// A Standard Webhooks secret: "whsec_" + base64 of 32 bytes.
constexpr char kWhsec[] = "whsec_ZXZlbnRzdHJlYW0tc3RhbmRhcmQtd2ViaG9va3MtMzI=";
constexpr char kCrmToken[] = "Bearer crm-token-123";
constexpr char kRuntimeToken[] = "Bearer runtime-token-456";
const std::map<std::string, std::string> kEnv = KeySecretsWith({
    {"ES_T_WEBHOOK_SECRET", kSecret},
    {"ES_T_WHSEC", kWhsec},
    {"ES_T_CRM_TOKEN", kCrmToken},
    {"ES_T_RT_TOKEN", kRuntimeToken}});

const std::string kSiteTables =
    NoteTable({"public", "amount"}) +
    FrappeTable("Note Seen By", "\"user\" text", /*child=*/true);

std::string Base(const std::string& url, const std::string& delivery,
                 const std::string& webhooks) {
  ProducerYaml yaml;
  yaml.url = url;
  yaml.doctypes = NoteDocType({"public", "amount", "seen_by"}, /*submittable=*/true) +
                  R"(  - name: Note Seen By
    istable: true
    fields:
      - {fieldname: user, fieldtype: Data}
)";
  yaml.extra = absl::StrCat("  webhook_delivery: ", delivery, "\n  webhooks:\n", webhooks);
  return ProducerConfigYaml(yaml);
}

std::string Hook(const std::string& name, const std::string& event, int port,
                 const std::string& extra = "") {
  return absl::StrCat("    - name: ", name, "\n      doctype: Note\n",
                      "      doc_event: ", event, "\n",
                      "      request_url: \"http://127.0.0.1:", port, "/", name,
                      "/{{ doc.name }}\"\n",
                      extra.empty() ? "      webhook_data: [{fieldname: name}, "
                                      "{fieldname: title}]\n"
                                    : extra);
}

class WebhookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = FreshSite("webhook", kSiteTables, &conn_);
    ASSERT_NE(conn_, nullptr);
  }

  void Start(const std::string& delivery, const std::string& webhooks) {
    config_ = Base(SharedCluster().Url(db_), delivery, webhooks);
    Restart();
  }
  void Restart() {
    auto svc = StartService("eventstream-producer", config_, kEnv);
    ASSERT_TRUE(svc.ok()) << svc.status();
    service_ = std::move(*svc);
    stub_ = v1::Webhooks::NewStub(grpc::CreateChannel(
        service_.address(), grpc::InsecureChannelCredentials()));
  }

  // Runs `sql` and waits until the assembler turned it into log entries.
  // Keep the producer's dispatcher out: its session advisory lock, taken on
  // the test's connection (a session may take a lock it holds again, so
  // DispatchOnce on conn_ still runs).
  void HoldDispatcher() {
    ASSERT_TRUE(conn_->Exec("SELECT pg_advisory_lock(hashtext('es_producer.webhook_dispatch'))").ok());
  }
  void ReleaseDispatcher() {
    ASSERT_TRUE(conn_->Exec("SELECT pg_advisory_unlock(hashtext('es_producer.webhook_dispatch'))").ok());
  }

  void Write(const std::string& sql) {
    ASSERT_TRUE(conn_->ExecScript(sql).ok()) << sql;
    ASSERT_TRUE(Assembled(conn_.get())) << "the assembler did not run";
  }

  int64_t Count(const std::string& where) {
    auto r = conn_->Exec(absl::StrCat(
        "SELECT count(*) FROM es_producer.webhook_request WHERE ", where));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->GetInt64(0, 0) : -1;
  }

  // Waits until no request is Queued and at least `min_rows` exist.
  void WaitSettled(int min_rows, absl::Duration timeout = absl::Seconds(20)) {
    absl::Time deadline = absl::Now() + timeout;
    while (!(Count("true") >= min_rows && Count("status = 'Queued'") == 0)) {
      ASSERT_LT(absl::Now(), deadline)
          << "requests not settled; log:\n" << service_.process->Log();
      absl::SleepFor(absl::Milliseconds(50));
    }
  }

  static bool WaitUntil(const std::function<bool()>& pred,
                        absl::Duration timeout = absl::Seconds(20)) {
    return Eventually(pred, timeout);
  }

  std::string db_;
  std::string config_;
  std::unique_ptr<pg::Connection> conn_;
  RunningService service_;
  std::unique_ptr<v1::Webhooks::Stub> stub_;
};

constexpr char kFastDelivery[] =
    "{workers: 3, max_attempts: 6, initial_backoff: 200ms, max_backoff: 800ms,"
    " poll_interval: 100ms}";
// The same, letting runtime webhooks read ES_T_WEBHOOK_SECRET and ES_T_RT_*.
constexpr char kFastDeliveryRuntimeSecrets[] =
    "{workers: 3, max_attempts: 6, initial_backoff: 200ms, max_backoff: 800ms,"
    " poll_interval: 100ms,"
    " runtime_secret_env: [ES_T_WEBHOOK_SECRET, \"ES_T_RT_*\"]}";

TEST_F(WebhookTest, EachDocEventFiresExactlyItsWebhooks) {
  Receiver rx;
  int p = rx.port();
  std::string hooks = absl::StrCat(
      Hook("insert", "after_insert", p,
           "      webhook_data: [{fieldname: name, key: id}, {fieldname: title}]\n"
           "      headers:\n"
           "        - {key: Authorization, value_env: ES_T_CRM_TOKEN}\n"
           "        - {key: X-Source, value: eventstream}\n"),
      Hook("update", "on_update", p,
           "      request_method: PUT\n"
           "      request_structure: JSON\n"
           "      webhook_json: |\n"
           "        {\"name\": \"{{ doc.name }}\", \"title\": \"{{ doc.title }}\",\n"
           "         \"amount\": {{ doc.amount }}, \"seen\": {{ doc.seen_by | tojson }}}\n"
           "      enable_security: true\n"
           "      secret_env: ES_T_WEBHOOK_SECRET\n"),
      Hook("submit", "on_submit", p), Hook("cancel", "on_cancel", p),
      Hook("uas", "on_update_after_submit", p), Hook("change", "on_change", p),
      Hook("trash", "on_trash", p,
           "      request_method: DELETE\n"
           "      request_structure: JSON\n"
           "      webhook_json: '{\"deleted\": \"{{ doc.name }}\", \"title\": \"{{ doc.title }}\"}'\n"),
      Hook("public", "after_insert", p,
           "      condition: doc.public == 1\n"
           "      webhook_data: [{fieldname: name}]\n"));
  ASSERT_NO_FATAL_FAILURE(Start(kFastDelivery, hooks));

  Write(R"(INSERT INTO "tabNote" (name, title, public, amount) VALUES ('N1', 'first', 0, 12.500000000))");
  Write(R"(INSERT INTO "tabNote" (name, title, public) VALUES ('N2', 'second "quoted"', 1);
           INSERT INTO "tabNote Seen By" (name, parent, parenttype, parentfield, idx, "user")
             VALUES ('S1', 'N2', 'Note', 'seen_by', 1, 'ann'))");
  Write(R"(UPDATE "tabNote" SET title = 'first v2' WHERE name = 'N1')");
  Write(R"(UPDATE "tabNote" SET docstatus = 1 WHERE name = 'N1')");
  Write(R"(UPDATE "tabNote" SET title = 'first v3' WHERE name = 'N1')");
  Write(R"(UPDATE "tabNote" SET docstatus = 2 WHERE name = 'N1')");
  Write(R"(DELETE FROM "tabNote Seen By" WHERE parent = 'N2'; DELETE FROM "tabNote" WHERE name = 'N2')");

  // A Create fires after_insert and on_update, not on_change (Frappe's
  // insert() runs on_update after after_insert, and on_change only when not
  // in insert): /update/ gets both inserts and the title edit; /change/ the
  // four updates of N1 only.
  std::map<std::string, int> expected = {
      {"/insert/", 2}, {"/public/", 1}, {"/update/", 3}, {"/submit/", 1},
      {"/uas/", 1},    {"/cancel/", 1}, {"/trash/", 1},  {"/change/", 4}};
  int total = 0;
  for (const auto& [path, n] : expected) total += n;
  WaitSettled(total);
  EXPECT_EQ(Count("status = 'Success'"), total);
  ASSERT_TRUE(WaitUntil([&] { return static_cast<int>(rx.requests().size()) >= total; }));
  absl::SleepFor(absl::Milliseconds(300));  // nothing more arrives
  EXPECT_EQ(static_cast<int>(rx.requests().size()), total);
  for (const auto& [path, n] : expected) {
    EXPECT_EQ(static_cast<int>(rx.requests(path).size()), n) << path;
  }
  // Conditions: only the public note.
  ASSERT_EQ(rx.requests("/public/").size(), 1u);
  EXPECT_EQ(rx.requests("/public/")[0].path, "/public/N2");

  // Form: the selected fields with key overrides; secret header resolved.
  auto inserts = rx.requests("/insert/");
  ASSERT_EQ(inserts.size(), 2u);
  std::sort(inserts.begin(), inserts.end(),
            [](const Received& a, const Received& b) { return a.path < b.path; });
  EXPECT_EQ(inserts[0].method, "POST");
  EXPECT_EQ(inserts[0].body, R"({"id":"N1","title":"first"})");
  EXPECT_EQ(inserts[0].headers["content-type"], "application/json");
  EXPECT_EQ(inserts[0].headers["authorization"], kCrmToken);
  EXPECT_EQ(inserts[0].headers["x-source"], "eventstream");
  EXPECT_TRUE(absl::StartsWith(inserts[0].headers["webhook-id"], "msg_"));
  int64_t ts = 0;
  ASSERT_TRUE(absl::SimpleAtoi(inserts[0].headers["webhook-timestamp"], &ts));
  EXPECT_LE(std::abs(ts - absl::ToUnixSeconds(absl::Now())), 60);
  EXPECT_EQ(inserts[0].headers.count("x-frappe-webhook-signature"), 0u);

  // JSON template, PUT, signed: Frappe's verifier accepts the exact bytes.
  // N1's on_update requests in order (per webhook and document): its insert,
  // then the title edit.
  auto updates = rx.requests("/update/N1");
  ASSERT_EQ(updates.size(), 2u);
  updates.erase(updates.begin());
  EXPECT_EQ(updates[0].method, "PUT");
  auto body = Value::ParseJson(updates[0].body);
  ASSERT_TRUE(body.ok()) << updates[0].body;
  EXPECT_EQ(body->Find("title")->as_string(), "first v2");
  EXPECT_EQ(body->Find("amount")->number_text(), "12.500000000");
  EXPECT_TRUE(VerifyFrappeWebhook(updates[0].body,
                                  updates[0].headers["x-frappe-webhook-signature"],
                                  kSecret));
  EXPECT_FALSE(VerifyFrappeWebhook(updates[0].body + " ",
                                   updates[0].headers["x-frappe-webhook-signature"],
                                   kSecret));
  EXPECT_FALSE(VerifyFrappeWebhook(updates[0].body,
                                   updates[0].headers["x-frappe-webhook-signature"],
                                   "wrong"));
  // N2's insert fired on_update too, with its child row.
  auto n2_update = rx.requests("/update/N2");
  ASSERT_EQ(n2_update.size(), 1u);
  auto n2_body = Value::ParseJson(n2_update[0].body);
  ASSERT_TRUE(n2_body.ok()) << n2_update[0].body;
  ASSERT_TRUE(n2_body->Find("seen") != nullptr && n2_body->Find("seen")->is_array())
      << n2_update[0].body;
  ASSERT_EQ(n2_body->Find("seen")->as_array().size(), 1u) << n2_update[0].body;
  EXPECT_TRUE(VerifyFrappeWebhook(n2_update[0].body,
                                  n2_update[0].headers["x-frappe-webhook-signature"],
                                  kSecret));

  // on_trash renders the last known document (from the log).
  auto trash = rx.requests("/trash/");
  ASSERT_EQ(trash.size(), 1u);
  EXPECT_EQ(trash[0].method, "DELETE");
  auto tbody = Value::ParseJson(trash[0].body);
  ASSERT_TRUE(tbody.ok()) << trash[0].body;
  EXPECT_EQ(tbody->Find("deleted")->as_string(), "N2");
  EXPECT_EQ(tbody->Find("title")->as_string(), "second \"quoted\"");

  // Keep-alive: far fewer connections than requests.
  EXPECT_LE(rx.connections(), 3 * 2) << "connections are not reused";

  // The request log: secrets masked, real values never stored.
  EXPECT_EQ(Count(absl::StrCat("headers::text LIKE '%", "crm-token", "%'")), 0);
  EXPECT_EQ(Count("webhook = 'insert' AND headers @> '[[\"Authorization\", \"***\"]]'"), 2);
  EXPECT_EQ(Count("webhook = 'update' AND headers @> "
                  "'[[\"X-Frappe-Webhook-Signature\", \"***\"]]'"), 3);

  // ...and over the RPC.
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", kOps);
  v1::ListWebhookRequestsRequest lreq;
  lreq.set_webhook("insert");
  v1::ListWebhookRequestsResponse lresp;
  ASSERT_TRUE(stub_->ListWebhookRequests(&ctx, lreq, &lresp).ok());
  ASSERT_EQ(lresp.requests_size(), 2);
  const v1::WebhookRequest& logged = lresp.requests(0);
  EXPECT_EQ(logged.status(), "Success");
  EXPECT_EQ(logged.attempts(), 1);
  EXPECT_EQ(logged.response_code(), 200);
  EXPECT_EQ(logged.response_body(), "reply-200");
  EXPECT_FALSE(logged.finished_at().empty());
  bool masked = false;
  for (const auto& h : logged.headers()) {
    if (h.key() == "Authorization") masked = h.value() == "***";
  }
  EXPECT_TRUE(masked);
}

TEST_F(WebhookTest, RetriesWithBackoffInOrderUntilSuccessOrExhausted) {
  Receiver rx;
  Receiver nobody;
  int dead_port = nobody.port();
  nobody.Down();
  std::string hooks = absl::StrCat(Hook("change", "on_update", rx.port()),
                                   Hook("dead", "after_insert", dead_port));
  ASSERT_NO_FATAL_FAILURE(Start(kFastDelivery, hooks));

  // 500, then 429, then success; meanwhile the next change of the same
  // document waits for it.
  rx.Script({500, 429});
  Write(R"(INSERT INTO "tabNote" (name, title) VALUES ('R1', 'v1'))");
  Write(R"(UPDATE "tabNote" SET title = 'v2' WHERE name = 'R1')");
  WaitSettled(3, absl::Seconds(30));
  auto got = rx.requests("/change/");
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].status, 500);
  EXPECT_EQ(got[1].status, 429);
  EXPECT_EQ(got[2].status, 200);
  EXPECT_EQ(got[3].status, 200);
  EXPECT_EQ(got[0].body, R"({"name":"R1","title":"v1"})");
  EXPECT_EQ(got[2].body, got[0].body);
  EXPECT_EQ(got[2].headers["webhook-id"], got[0].headers["webhook-id"]);
  EXPECT_EQ(got[3].body, R"({"name":"R1","title":"v2"})");
  EXPECT_NE(got[3].headers["webhook-id"], got[0].headers["webhook-id"]);
  // Backoff: 200ms after the 1st failure, 400ms after the 2nd, each -20%
  // at worst (jitter), counted from the end of the attempt.
  EXPECT_GE(got[1].at - got[0].at, absl::Milliseconds(160));
  EXPECT_GE(got[2].at - got[1].at, absl::Milliseconds(320));
  EXPECT_EQ(Count("webhook = 'change' AND attempts = 3 AND status = 'Success'"), 1);

  // Nothing listening at all: retried max_attempts (6) times, then Exhausted.
  EXPECT_EQ(Count("webhook = 'dead' AND status = 'Exhausted' AND attempts = 6"), 1);
  EXPECT_EQ(Count("webhook = 'dead' AND error IS NOT NULL AND response_code IS NULL"), 1);

  // Receiver down, then back: delivered once it returns.
  rx.Down();
  Write(R"(INSERT INTO "tabNote" (name, title) VALUES ('R2', 'down'))");
  ASSERT_TRUE(WaitUntil([&] {
    return Count("webhook = 'change' AND docname = 'R2' AND attempts >= 2") == 1;
  })) << service_.process->Log();
  // The backoff is persisted: the next attempt is scheduled, not immediate.
  EXPECT_EQ(Count("webhook = 'change' AND docname = 'R2' AND status = 'Queued'"
                  " AND next_attempt_at >= last_attempt_at + interval '150 ms'"), 1);
  rx.Up();
  WaitSettled(5, absl::Seconds(30));
  EXPECT_EQ(Count("webhook = 'change' AND docname = 'R2' AND status = 'Success'"), 1);
  auto r2 = rx.requests("/change/R2");
  ASSERT_EQ(r2.size(), 1u);  // no duplicate
  EXPECT_EQ(r2[0].body, R"({"name":"R2","title":"down"})");

  // A 4xx is not retried; RetryWebhookRequest sends the stored request again.
  rx.Script({404});
  Write(R"(INSERT INTO "tabNote" (name, title) VALUES ('R3', 'nf'))");
  WaitSettled(7);
  ASSERT_EQ(Count("webhook = 'change' AND docname = 'R3' AND status = 'Failed'"
                  " AND response_code = 404 AND attempts = 1"), 1);
  auto id = conn_->Exec("SELECT id FROM es_producer.webhook_request"
                        " WHERE webhook = 'change' AND docname = 'R3'");
  ASSERT_TRUE(id.ok());
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", kOps);
  v1::RetryWebhookRequestRequest rreq;
  rreq.set_id(id->GetInt64(0, 0));
  v1::RetryWebhookRequestResponse rresp;
  grpc::Status s = stub_->RetryWebhookRequest(&ctx, rreq, &rresp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(WaitUntil([&] {
    return Count("webhook = 'change' AND docname = 'R3' AND status = 'Success'") == 1;
  }));
  auto r3 = rx.requests("/change/R3");
  ASSERT_EQ(r3.size(), 2u);
  EXPECT_EQ(r3[0].body, r3[1].body);
  EXPECT_EQ(r3[0].headers["webhook-id"], r3[1].headers["webhook-id"]);
}

TEST_F(WebhookTest, HonoursRetryAfterOn429And503) {
  Receiver rx;
  ASSERT_NO_FATAL_FAILURE(Start(
      "{workers: 2, max_attempts: 6, initial_backoff: 200ms, max_backoff: 3s,"
      " poll_interval: 50ms}",
      Hook("ra", "after_insert", rx.port())));
  // A 500's Retry-After is not honoured (only 429 and 503 carry one that
  // means "come back later"); a 429's delta-seconds and a 503's HTTP-date are.
  rx.ScriptReplies({Reply{500, "30"}, Reply{429, "2"},
                    Reply{503, "", absl::Seconds(2)}});
  Write(R"(INSERT INTO "tabNote" (name, title) VALUES ('RA1', 'later'))");
  WaitSettled(1, absl::Seconds(20));
  auto got = rx.requests("/ra/");
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[3].status, 200);
  // 500: the normal first backoff (200ms +-20%), Retry-After: 30 ignored.
  EXPECT_GE(got[1].at - got[0].at, absl::Milliseconds(160));
  EXPECT_LT(got[1].at - got[0].at, absl::Seconds(2));
  // 429 + "Retry-After: 2": not before 2 s (the normal backoff is 400ms).
  EXPECT_GE(got[2].at - got[1].at, absl::Seconds(2));
  EXPECT_LT(got[2].at - got[1].at, absl::Seconds(3));
  // 503 + an HTTP-date 2 s ahead, in whole seconds: at least 1 s (the
  // normal backoff is 800ms +-20%).
  EXPECT_GE(got[3].at - got[2].at, absl::Seconds(1));
  EXPECT_LE(got[3].at - got[2].at, absl::Milliseconds(2900));
  EXPECT_EQ(got[3].headers["webhook-id"], got[0].headers["webhook-id"]);
  EXPECT_EQ(Count("webhook = 'ra' AND status = 'Success' AND attempts = 4"), 1);

  // A Retry-After beyond max_backoff waits max_backoff, persisted.
  rx.ScriptReplies({Reply{429, "3600"}});
  Write(R"(INSERT INTO "tabNote" (name, title) VALUES ('RA2', 'much later'))");
  ASSERT_TRUE(WaitUntil([&] {
    return Count("webhook = 'ra' AND docname = 'RA2' AND attempts = 1") == 1;
  })) << service_.process->Log();
  EXPECT_EQ(Count("webhook = 'ra' AND docname = 'RA2' AND status = 'Queued'"
                  " AND response_code = 429 AND error LIKE '%Retry-After: 3600%'"
                  " AND next_attempt_at - last_attempt_at"
                  "   BETWEEN interval '2990 ms' AND interval '3010 ms'"), 1);
}

TEST_F(WebhookTest, BackoffScheduleIsJittered) {
  Receiver nobody;
  int dead_port = nobody.port();
  nobody.Down();
  ASSERT_NO_FATAL_FAILURE(Start(
      "{workers: 4, max_attempts: 3, initial_backoff: 1s, max_backoff: 10s,"
      " poll_interval: 50ms}",
      Hook("dead", "after_insert", dead_port)));
  // 24 documents fail together (connection refused): their retries are
  // spread over [0.8 s, 1.2 s] instead of all at +1 s.
  std::string sql;
  for (int i = 1; i <= 24; ++i) {
    absl::StrAppend(&sql, "INSERT INTO \"tabNote\" (name, title) VALUES ('J", i,
                    "', 'j');\n");
  }
  Write(absl::StrCat("BEGIN;\n", sql, "COMMIT;"));
  ASSERT_TRUE(WaitUntil([&] { return Count("attempts >= 1") == 24; }))
      << service_.process->Log();
  // Every persisted delay within its attempt's bounds (1 s, then 2 s, +-20%).
  auto r = conn_->Exec(
      "SELECT attempts, extract(epoch FROM next_attempt_at - last_attempt_at)"
      " FROM es_producer.webhook_request WHERE status = 'Queued' AND attempts >= 1");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_GE(r->rows(), 20);
  std::vector<double> first;
  for (int i = 0; i < r->rows(); ++i) {
    int64_t attempts = r->GetInt64(i, 0);
    double delay = 0;
    ASSERT_TRUE(absl::SimpleAtod(r->Get(i, 1), &delay));
    double base = attempts == 1 ? 1.0 : 2.0;
    EXPECT_GE(delay, 0.8 * base - 0.005) << "attempt " << attempts;
    EXPECT_LE(delay, 1.2 * base + 0.005) << "attempt " << attempts;
    if (attempts == 1) first.push_back(delay);
  }
  ASSERT_GE(first.size(), 10u);
  auto [lo, hi] = std::minmax_element(first.begin(), first.end());
  EXPECT_GT(*hi - *lo, 0.05) << "retries in lockstep";
}

// kill -9 while the first attempt of a request is in flight (the receiver
// hangs): the pass that built it never committed, so there is no row and
// the cursor did not move; after the restart the request is built again
// (the same webhook-id and body: the document as of its log entry) and sent.
TEST_F(WebhookTest, KilledMidDeliveryIsDeliveredAfterRestart) {
  Receiver rx;
  ASSERT_NO_FATAL_FAILURE(Start("{workers: 2, initial_backoff: 200ms, max_backoff: 1s, poll_interval: 100ms}",
        Hook("change", "on_update", rx.port(), "      timeout: 60s\n"
             "      webhook_data: [{fieldname: name}, {fieldname: title}]\n")));
  rx.Hang(true);
  Write(R"(INSERT INTO "tabNote" (name, title) VALUES ('K1', 'killed'))");
  ASSERT_TRUE(WaitUntil([&] { return rx.requests().size() == 1; }));
  service_.process->Signal(SIGKILL);
  ASSERT_TRUE(service_.process->Wait(absl::Seconds(10)).ok());
  // The attempt in flight was never recorded.
  EXPECT_EQ(Count("true"), 0);
  // Changes while the producer is down are captured and delivered later.
  ASSERT_TRUE(conn_->ExecScript(
      R"(UPDATE "tabNote" SET title = 'while down' WHERE name = 'K1')").ok());
  rx.Hang(false);
  ASSERT_NO_FATAL_FAILURE(Restart());
  WaitSettled(2, absl::Seconds(30));
  auto got = rx.requests();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].status, 0);
  EXPECT_EQ(got[0].body, R"({"name":"K1","title":"killed"})");
  EXPECT_EQ(got[1].status, 200);
  EXPECT_EQ(got[1].headers["webhook-id"], got[0].headers["webhook-id"]);
  EXPECT_EQ(got[1].body, got[0].body);
  EXPECT_EQ(got[2].body, R"({"name":"K1","title":"while down"})");
  EXPECT_NE(got[2].headers["webhook-id"], got[0].headers["webhook-id"]);
  EXPECT_EQ(Count("status = 'Success' AND attempts = 1"), 2);
}

// Each request carries the document as of its own log entry, even when the
// dispatcher gets to the entries after later changes (held off here by its
// advisory lock, taken on the test's connection): the Create, then each
// edit in turn. A document written before capture was installed is not
// followed by the log: its edit renders the current document.
TEST_F(WebhookTest, RendersTheDocumentAsOfItsLogEntry) {
  Receiver rx;
  ASSERT_TRUE(conn_->ExecScript(
      R"(INSERT INTO "tabNote" (name, title) VALUES ('OLD', 'before capture'))").ok());
  ASSERT_NO_FATAL_FAILURE(Start(kFastDelivery, Hook("u", "on_update", rx.port())));
  ASSERT_NO_FATAL_FAILURE(HoldDispatcher());
  Write(R"(INSERT INTO "tabNote" (name, title) VALUES ('V', 'v1'))");
  Write(R"(UPDATE "tabNote" SET title = 'v2' WHERE name = 'V')");
  Write(R"(UPDATE "tabNote" SET title = 'v3', docstatus = 1 WHERE name = 'V')");
  Write(R"(UPDATE "tabNote" SET title = 'v4' WHERE name = 'V')");  // after submit
  Write(R"(UPDATE "tabNote" SET title = 'v5' WHERE name = 'V')");
  Write(R"(UPDATE "tabNote" SET title = 'old 2' WHERE name = 'OLD')");
  Write(R"(UPDATE "tabNote" SET title = 'old 3' WHERE name = 'OLD')");
  EXPECT_EQ(Count("true"), 0) << "the producer's dispatcher ran";
  ASSERT_NO_FATAL_FAILURE(ReleaseDispatcher());
  // on_update: the Create and v2; v3 is a submit, v4 and v5 are
  // on_update_after_submit (the docstatus before them comes from the log).
  WaitSettled(4);
  auto v = rx.requests("/u/V");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].body, R"({"name":"V","title":"v1"})");
  EXPECT_EQ(v[1].body, R"({"name":"V","title":"v2"})");
  auto old = rx.requests("/u/OLD");
  ASSERT_EQ(old.size(), 2u);
  EXPECT_EQ(old[0].body, R"({"name":"OLD","title":"old 3"})");
  EXPECT_EQ(old[1].body, R"({"name":"OLD","title":"old 3"})");
}

// The docstatus a document not followed by the log had before an entry is
// the log's last word on it (DocstatusSaidBy, newest first), not the current
// document's: here the submit says 1 while the document is cancelled (2)
// by the time the dispatcher runs. An Update that names "docstatus" only in
// a row it added says nothing about the document's.
TEST_F(WebhookTest, AnUnfollowedDocumentsDocstatusBeforeComesFromTheLog) {
  Receiver rx;
  ASSERT_TRUE(conn_->ExecScript(
      R"(INSERT INTO "tabNote" (name, title) VALUES ('OLD', 'before capture'))").ok());
  ASSERT_NO_FATAL_FAILURE(
      Start(kFastDelivery, Hook("a", "on_update_after_submit", rx.port())));
  ASSERT_NO_FATAL_FAILURE(HoldDispatcher());
  Write(R"(UPDATE "tabNote" SET docstatus = 1 WHERE name = 'OLD')");
  Write(R"(INSERT INTO "tabNote Seen By" (name, parent, parenttype, parentfield, idx, "user",
             docstatus) VALUES ('OLD-s1', 'OLD', 'Note', 'seen_by', 1, 'u1', 1))");
  Write(R"(UPDATE "tabNote" SET title = 'after submit' WHERE name = 'OLD')");
  Write(R"(UPDATE "tabNote" SET docstatus = 2 WHERE name = 'OLD')");
  EXPECT_EQ(Count("true"), 0) << "the producer's dispatcher ran";
  ASSERT_NO_FATAL_FAILURE(ReleaseDispatcher());
  WaitSettled(2);
  EXPECT_EQ(rx.requests("/a/OLD").size(), 2u) << service_.process->Log();
}

// busy_cpu_percent: while the update log grows, passes are followed by
// pauses (logged once a minute); when the writes stop, delivery catches up.
// Only the behaviour is checked here; what it costs and saves is measured
// by tools/bench-webhooks.
TEST_F(WebhookTest, HeldBackWhileTheSiteWritesThenCatchesUp) {
  Receiver rx;
  ASSERT_NO_FATAL_FAILURE(Start(
      "{workers: 2, initial_backoff: 200ms, max_backoff: 1s, poll_interval: 50ms,"
      " busy_cpu_percent: 1}",
      Hook("a", "after_insert", rx.port())));
  const int docs = 120;
  for (int i = 1; i <= docs; ++i) {
    ASSERT_TRUE(conn_->ExecScript(absl::StrCat(
        "INSERT INTO \"tabNote\" (name, title) VALUES ('B", i, "', 'b')")).ok());
    absl::SleepFor(absl::Milliseconds(10));
  }
  WaitSettled(docs, absl::Seconds(60));
  EXPECT_EQ(Count("status = 'Success'"), docs);
  EXPECT_TRUE(absl::StrContains(service_.process->Log(),
                                "the site is writing; first sends held to 1% of a core"))
      << service_.process->Log();
  ASSERT_TRUE(WaitUntil([&] { return static_cast<int>(rx.requests().size()) >= docs; }));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(static_cast<int>(rx.requests().size()), docs);
}

// A slow receiver holds a pass up for at most its send budget (2 s) plus
// one attempt: the first attempts still to make then are queued, the pass
// records, and the workers deliver the rest (in order per document).
TEST_F(WebhookTest, ASlowReceiverHoldsAPassUpForAtMostItsBudget) {
  Receiver rx;
  rx.Delay(absl::Milliseconds(300));
  ASSERT_NO_FATAL_FAILURE(Start(
      "{workers: 2, initial_backoff: 200ms, max_backoff: 1s, poll_interval: 50ms}",
      Hook("slow", "after_insert", rx.port())));
  const int docs = 30;  // 30 x 300 ms on 2 threads: 4.5 s of first attempts
  std::string sql = "BEGIN;\n";
  for (int i = 1; i <= docs; ++i) {
    absl::StrAppend(&sql, "INSERT INTO \"tabNote\" (name, title) VALUES ('S", i, "', 's');\n");
  }
  Write(absl::StrCat(sql, "COMMIT;\n"));
  ASSERT_TRUE(WaitUntil([&] { return Count("true") == docs; })) << service_.process->Log();
  // Recorded after about 2 s: what the pass attempted, and the rest queued.
  EXPECT_GE(Count("status = 'Queued' AND attempts = 0"), 5);
  EXPECT_GE(Count("status = 'Success'"), 5);
  WaitSettled(docs, absl::Seconds(30));
  EXPECT_EQ(Count("status = 'Success' AND attempts = 1"), docs);
  EXPECT_EQ(static_cast<int>(rx.requests().size()), docs);
}

// Retention: finished requests are deleted once older than `retention`;
// Queued ones never.
TEST_F(WebhookTest, FinishedRequestsPastRetentionAreDeleted) {
  Receiver rx;
  ASSERT_NO_FATAL_FAILURE(Start(
      "{workers: 2, initial_backoff: 200ms, max_backoff: 1s, poll_interval: 50ms,"
      " retention: 1s}",
      Hook("a", "after_insert", rx.port())));
  Write(R"(INSERT INTO "tabNote" (name, title) VALUES ('R1', 'r'), ('R2', 'r'))");
  ASSERT_TRUE(conn_->Exec(
      "INSERT INTO es_producer.webhook_request (webhook, seq, doctype, docname,"
      "  doc_event, url, method, status, created_at, next_attempt_at)"
      " VALUES ('a', 0, 'Note', 'OLD', 'after_insert', 'http://x/', 'POST', 'Queued',"
      "  now() - interval '1 day', now() + interval '1 day')").ok());
  ASSERT_TRUE(WaitUntil([&] { return rx.requests().size() == 2u; }));
  // Sent first, recorded after: wait for the two rows (kept at least the
  // 1 s retention), then for them to go.
  ASSERT_TRUE(WaitUntil([&] { return Count("status = 'Success'") == 2; }))
      << service_.process->Log();
  ASSERT_TRUE(WaitUntil([&] { return Count("status <> 'Queued'") == 0; },
                        absl::Seconds(15)))
      << service_.process->Log();
  EXPECT_EQ(Count("status = 'Queued' AND docname = 'OLD'"), 1);
  EXPECT_TRUE(absl::StrContains(service_.process->Log(), "past retention deleted"));
}

// The dispatcher, in this process on the test's connection, with the cap set
// low: the producer's own dispatcher is kept out by holding its advisory
// lock on that connection (a session may take a lock it holds again), while
// its assembler writes the log.
TEST_F(WebhookTest, DispatchPassesAreCappedAndRecordEachRequestOnce) {
  Receiver rx;
  int p = rx.port();
  ASSERT_NO_FATAL_FAILURE(Start(
      kFastDelivery, absl::StrCat(Hook("a", "after_insert", p),
                                  Hook("b", "after_insert", p),
                                  Hook("u", "on_update", p),
                                  Hook("t", "on_trash", p))));
  ASSERT_NO_FATAL_FAILURE(HoldDispatcher());
  // 10 Creates (a, b, u each) and 5 Updates (u): 35 requests.
  std::string sql = "BEGIN;\n";
  for (int i = 1; i <= 10; ++i) {
    absl::StrAppend(&sql, "INSERT INTO \"tabNote\" (name, title) VALUES ('C", i, "', 'c');\n");
  }
  absl::StrAppend(&sql, "COMMIT;\n");
  Write(sql);
  for (int i = 1; i <= 5; ++i) {
    Write(absl::StrCat("UPDATE \"tabNote\" SET title = 'v2' WHERE name = 'C", i, "'"));
  }
  auto max_seq = conn_->Exec("SELECT max(seq) FROM es_producer.update_log");
  ASSERT_TRUE(max_seq.ok());
  const int64_t last = max_seq->GetInt64(0, 0);
  EXPECT_EQ(Count("true"), 0) << "the producer's dispatcher ran";

  auto config = ParseConfig(config_, "test.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  WebhookDelivery delivery(&*config, SharedCluster().Url(db_));
  auto cursors_below = [&](int64_t seq) {
    auto r = conn_->Exec("SELECT count(*) FROM es_producer.webhook_cursor WHERE last_seq < $1",
                         {seq});
    EXPECT_TRUE(r.ok());
    return r.ok() ? r->GetInt64(0, 0) : -1;
  };
  // Cap 7: 3 requests per Create, so two Creates a pass (a third would make
  // 9); the Updates fire 1 each.
  delivery.set_max_requests_per_pass(7);
  std::vector<int> passes;
  int total = 0;
  for (int guard = 0; guard < 50; ++guard) {
    auto n = delivery.DispatchOnce(conn_.get());
    ASSERT_TRUE(n.ok()) << n.status();
    if (*n == 0 && cursors_below(last) == 0) break;
    passes.push_back(*n);
    total += *n;
    EXPECT_LE(*n, 7);
    // Every pass commits whole entries: the rows so far are exactly the
    // requests of the entries up to the lowest cursor.
    auto r = conn_->Exec(
        "SELECT (SELECT count(*) FROM es_producer.webhook_request),"
        " (SELECT count(*) FROM es_producer.update_log l"
        "   JOIN es_producer.webhook_cursor w ON l.seq <= w.last_seq"
        "   WHERE (w.name IN ('a', 'b') AND l.update_type = 'Create')"
        "      OR (w.name = 'u' AND l.update_type IN ('Create', 'Update')))");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->GetInt64(0, 0), total);
    EXPECT_EQ(r->GetInt64(0, 1), total) << "cursors and requests disagree";
  }
  EXPECT_EQ(total, 35);
  EXPECT_GE(passes.size(), 6u);
  EXPECT_EQ(cursors_below(last), 0);
  EXPECT_EQ(Count("webhook = 'a'"), 10);
  EXPECT_EQ(Count("webhook = 'b'"), 10);
  EXPECT_EQ(Count("webhook = 'u'"), 15);
  EXPECT_EQ(Count("webhook = 't'"), 0);

  // A cap below what one entry fires (3): each pass takes one entry whole.
  std::string more = "BEGIN;\n";
  for (int i = 1; i <= 4; ++i) {
    absl::StrAppend(&more, "INSERT INTO \"tabNote\" (name, title) VALUES ('D", i, "', 'd');\n");
  }
  Write(absl::StrCat(more, "COMMIT;\n"));
  delivery.set_max_requests_per_pass(2);
  for (int i = 0; i < 4; ++i) {
    auto n = delivery.DispatchOnce(conn_.get());
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(*n, 3) << "pass " << i;
  }
  auto n = delivery.DispatchOnce(conn_.get());
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0);
  EXPECT_EQ(Count("true"), 47);
  EXPECT_EQ(Count("docname LIKE 'D%'"), 12);

  // Each pass sent what it recorded: each request exactly once.
  ASSERT_NO_FATAL_FAILURE(ReleaseDispatcher());
  WaitSettled(47, absl::Seconds(30));
  EXPECT_EQ(Count("status = 'Success'"), 47);
  ASSERT_TRUE(WaitUntil([&] { return rx.requests().size() >= 47u; }));
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(rx.requests().size(), 47u);
  std::map<std::string, int> per_id;
  for (Received& r : rx.requests()) ++per_id[r.headers["webhook-id"]];
  EXPECT_EQ(per_id.size(), 47u);
  EXPECT_EQ(rx.requests("/a/").size(), 14u);
  EXPECT_EQ(rx.requests("/u/").size(), 14u + 5u);
}

// A request the pass would record is there already (only if two
// dispatchers overlapped): the pass records the others and moves on.
TEST_F(WebhookTest, PassRecordsAroundARequestAlreadyRecorded) {
  Receiver rx;
  int p = rx.port();
  ASSERT_NO_FATAL_FAILURE(Start(kFastDelivery, absl::StrCat(Hook("a", "after_insert", p),
                                                            Hook("b", "after_insert", p))));
  ASSERT_NO_FATAL_FAILURE(HoldDispatcher());
  Write(R"(INSERT INTO "tabNote" (name, title) VALUES ('DUP', 'd'))");
  ASSERT_TRUE(conn_->Exec(
      "INSERT INTO es_producer.webhook_request (webhook, seq, doctype, docname,"
      "  doc_event, url, method, body, status)"
      " SELECT 'a', max(seq), 'Note', 'DUP', 'after_insert', 'http://x/', 'POST',"
      "  'recorded before', 'Success' FROM es_producer.update_log").ok());
  auto config = ParseConfig(config_, "test.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  WebhookDelivery delivery(&*config, SharedCluster().Url(db_));
  auto n = delivery.DispatchOnce(conn_.get());
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(Count("webhook = 'a'"), 1);
  EXPECT_EQ(Count("webhook = 'a' AND body = 'recorded before'"), 1);
  EXPECT_EQ(Count("webhook = 'b' AND status = 'Success'"), 1);
  auto behind = conn_->Exec(
      "SELECT count(*) FROM es_producer.webhook_cursor"
      " WHERE last_seq < (SELECT max(seq) FROM es_producer.update_log)");
  ASSERT_TRUE(behind.ok());
  EXPECT_EQ(behind->GetInt64(0, 0), 0);
  ASSERT_NO_FATAL_FAILURE(ReleaseDispatcher());
}

// kill -9 of the producer while its dispatcher pass waits between two
// statements (held by a lock the test holds): at its first read, before
// anything was sent; at the COPY of the requests and at the UPDATE of the
// cursors, after it sent them. Nothing of the pass is committed; after the
// restart every request is recorded exactly once and delivered: once when
// the kill came before the sends, a second time with the same webhook-id
// when it came after (at least once).
TEST_F(WebhookTest, KilledMidDispatchRecordsEachRequestOnceAfterRestart) {
  Receiver rx;
  int p = rx.port();
  ASSERT_NO_FATAL_FAILURE(Start(
      kFastDelivery, absl::StrCat(Hook("a", "after_insert", p),
                                  Hook("u", "on_update", p))));
  struct Stage {
    const char* lock;   // taken in the test's transaction
    const char* query;  // the statement the dispatcher then waits in
    int sends;          // times each request reaches the receiver
  };
  const Stage stages[] = {
      {"LOCK TABLE es_producer.webhook IN ACCESS EXCLUSIVE MODE",
       "SELECT greatest(d.position", 1},
      {"LOCK TABLE es_producer.webhook_request IN SHARE MODE",
       "COPY es_producer.webhook_request", 2},
      {"SELECT * FROM es_producer.webhook_dispatch FOR UPDATE",
       "UPDATE es_producer.webhook_dispatch SET position", 2},
  };
  int docs = 0;
  std::map<std::string, int> expected_sends;  // by path
  for (const Stage& stage : stages) {
    auto before = conn_->Exec(
        "SELECT string_agg(name || ':' || last_seq, ',' ORDER BY name)"
        " FROM es_producer.webhook_cursor");
    ASSERT_TRUE(before.ok());
    int64_t rows_before = Count("true");
    auto locker = pg::Connection::Open(SharedCluster().Url(db_));
    ASSERT_TRUE(locker.ok()) << locker.status();
    ASSERT_TRUE((*locker)->Exec("BEGIN").ok());
    ASSERT_TRUE((*locker)->Exec(stage.lock).ok()) << stage.lock;
    std::string sql = "BEGIN;\n";
    for (int i = 0; i < 5; ++i) {
      std::string name = absl::StrCat("K", ++docs);
      absl::StrAppend(&sql, "INSERT INTO \"tabNote\" (name, title) VALUES ('",
                      name, "', 'k');\n");
      expected_sends["/a/" + name] = stage.sends;
      expected_sends["/u/" + name] = stage.sends;
    }
    Write(absl::StrCat(sql, "COMMIT;\n"));
    ASSERT_TRUE(WaitUntil([&] {
      auto r = conn_->Exec(
          "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
          " AND application_name = 'eventstream-producer webhooks'"
          " AND query LIKE $1",
          {absl::StrCat(stage.query, "%")});
      return r.ok() && r->GetInt64(0, 0) == 1;
    })) << "the dispatcher did not reach: " << stage.query;
    service_.process->Signal(SIGKILL);
    ASSERT_TRUE(service_.process->Wait(absl::Seconds(10)).ok());
    ASSERT_TRUE((*locker)->Exec("ROLLBACK").ok());
    locker->reset();
    // The killed backend notices its client is gone and rolls back.
    auto after = conn_->Exec(
        "SELECT string_agg(name || ':' || last_seq, ',' ORDER BY name)"
        " FROM es_producer.webhook_cursor");
    ASSERT_TRUE(after.ok());
    EXPECT_EQ(after->Get(0, 0), before->Get(0, 0)) << stage.query;
    EXPECT_EQ(Count("true"), rows_before) << stage.query;
    ASSERT_NO_FATAL_FAILURE(Restart());
    WaitSettled(2 * docs, absl::Seconds(30));
    EXPECT_EQ(Count("true"), 2 * docs) << stage.query;
    EXPECT_EQ(Count("status = 'Success'"), 2 * docs) << stage.query;
  }
  size_t total = 0;
  for (const auto& [path, n] : expected_sends) total += n;
  ASSERT_TRUE(WaitUntil([&] { return rx.requests().size() >= total; }));
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(rx.requests().size(), total);
  std::map<std::string, std::set<std::string>> ids;  // by path
  std::map<std::string, int> sends;
  for (Received& r : rx.requests()) {
    ++sends[r.path];
    ids[r.path].insert(r.headers["webhook-id"]);
  }
  EXPECT_EQ(sends, expected_sends);
  for (const auto& [path, id] : ids) EXPECT_EQ(id.size(), 1u) << path;
}

TEST_F(WebhookTest, AdminRpcs) {
  Receiver rx;
  ASSERT_NO_FATAL_FAILURE(
      Start(kFastDeliveryRuntimeSecrets, Hook("cfg", "on_update", rx.port())));
  auto call = [&](auto method, const auto& req, auto* resp,
                  const char* auth = kOps) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", auth);
    return (stub_.get()->*method)(&ctx, req, resp);
  };

  v1::UpsertWebhookRequest up;
  v1::Webhook* w = up.mutable_webhook();
  w->set_name("rt");
  w->set_doctype("Note");
  w->set_doc_event("after_insert");
  w->set_request_url(absl::StrCat("http://127.0.0.1:", rx.port(), "/rt/{{ doc.name }}"));
  w->set_request_structure(v1::REQUEST_STRUCTURE_JSON);
  w->set_webhook_json("{\"n\": {{ doc.name }} \"x\": 1}");
  v1::UpsertWebhookResponse upr;
  grpc::Status s = call(&v1::Webhooks::Stub::UpsertWebhook, up, &upr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "webhook \"rt\": webhook_json"))
      << s.error_message();
  s = call(&v1::Webhooks::Stub::UpsertWebhook, up, &upr, kB1);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  w->set_webhook_json("{\"n\": \"{{ doc.name }}\", \"t\": {{ doc.title | tojson }}}");
  w->set_enable_security(true);
  w->set_secret_env("ES_T_WEBHOOK_SECRET");
  s = call(&v1::Webhooks::Stub::UpsertWebhook, up, &upr);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(upr.created());

  // Config webhooks are read-only.
  v1::UpsertWebhookRequest cfg_up = up;
  cfg_up.mutable_webhook()->set_name("cfg");
  s = call(&v1::Webhooks::Stub::UpsertWebhook, cfg_up, &upr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  v1::DeleteWebhookRequest del;
  del.set_name("cfg");
  v1::DeleteWebhookResponse delr;
  EXPECT_EQ(call(&v1::Webhooks::Stub::DeleteWebhook, del, &delr).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  v1::ListWebhooksRequest lreq;
  v1::ListWebhooksResponse lresp;
  ASSERT_TRUE(call(&v1::Webhooks::Stub::ListWebhooks, lreq, &lresp).ok());
  ASSERT_EQ(lresp.webhooks_size(), 2);
  EXPECT_EQ(lresp.webhooks(0).name(), "cfg");
  EXPECT_TRUE(lresp.webhooks(0).from_config());
  EXPECT_EQ(lresp.webhooks(1).name(), "rt");
  EXPECT_FALSE(lresp.webhooks(1).from_config());

  // The runtime webhook fires (its DocType got captured).
  Write(R"(INSERT INTO "tabNote" (name, title) VALUES ('P1', 'preview me'))");
  WaitSettled(1);
  auto got = rx.requests("/rt/P1");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].body, R"({"n": "P1", "t": "preview me"})");
  EXPECT_TRUE(VerifyFrappeWebhook(got[0].body,
                                  got[0].headers["x-frappe-webhook-signature"], kSecret));

  v1::PreviewWebhookRequest preq;
  preq.set_name("rt");
  preq.set_docname("P1");
  v1::PreviewWebhookResponse presp;
  s = call(&v1::Webhooks::Stub::PreviewWebhook, preq, &presp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(presp.url(), absl::StrCat("http://127.0.0.1:", rx.port(), "/rt/P1"));
  EXPECT_EQ(presp.body(), R"({"n": "P1", "t": "preview me"})");
  EXPECT_TRUE(presp.condition_met());
  bool masked = false;
  for (const auto& h : presp.headers()) {
    if (h.key() == "X-Frappe-Webhook-Signature") masked = h.value() == "***";
  }
  EXPECT_TRUE(masked);
  preq.set_docname("nope");
  EXPECT_EQ(call(&v1::Webhooks::Stub::PreviewWebhook, preq, &presp).error_code(),
            grpc::StatusCode::NOT_FOUND);

  del.set_name("rt");
  ASSERT_TRUE(call(&v1::Webhooks::Stub::DeleteWebhook, del, &delr).ok());
  Write(R"(INSERT INTO "tabNote" (name, title) VALUES ('P2', 'after delete'))");
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(rx.requests("/rt/P2").size(), 0u);
  EXPECT_EQ(Count("webhook = 'rt'"), 1);
}

// ---- issue 13, item 8: what a runtime webhook may read ------------------------

// The audit: an admin creating a webhook over the RPCs could send the
// producer's own API secrets to any URL (value_env: ES_T_OPS), and the error
// for a file told whether its path exists. Runtime webhooks now read only
// the variables producer.webhook_delivery.runtime_secret_env admits, never a
// file; config webhooks (the operator's) still read anything.
TEST_F(WebhookTest, RuntimeWebhooksReadOnlyAllowListedSecrets) {
  Receiver rx;
  ASSERT_NO_FATAL_FAILURE(Start(
      kFastDeliveryRuntimeSecrets,
      Hook("cfg", "after_insert", rx.port(),
           "      webhook_data: [{fieldname: name}]\n"
           "      headers: [{key: Authorization, value_env: ES_T_CRM_TOKEN}]\n")));
  auto upsert = [&](const v1::Webhook& w) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", kOps);
    v1::UpsertWebhookRequest req;
    *req.mutable_webhook() = w;
    v1::UpsertWebhookResponse resp;
    return stub_->UpsertWebhook(&ctx, req, &resp);
  };
  v1::Webhook w;
  w.set_name("rt");
  w.set_doctype("Note");
  w.set_doc_event("after_insert");
  w.set_request_url(absl::StrCat("http://127.0.0.1:", rx.port(), "/rt/{{ doc.name }}"));
  w.add_webhook_data()->set_fieldname("name");
  v1::WebhookHeader* h = w.add_headers();
  h->set_key("Authorization");

  // The producer's own API secret: refused, naming the key and the list.
  h->set_value_env("ES_T_OPS");
  grpc::Status s = upsert(w);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StartsWith(s.error_message(),
                               "webhook \"rt\": headers[0].value_env: "))
      << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(),
                                "producer.webhook_delivery.runtime_secret_env"))
      << s.error_message();
  EXPECT_FALSE(absl::StrContains(s.error_message(), kOpsSecret));

  // Files: refused with one message, whether the path exists or not.
  h->clear_value_env();
  std::string file_message;
  for (const char* path : {"/etc/passwd", "/nonexistent/secret", "/etc"}) {
    h->set_value_file(path);
    s = upsert(w);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << path;
    EXPECT_FALSE(absl::StrContains(s.error_message(), path)) << s.error_message();
    if (file_message.empty()) file_message = s.error_message();
    EXPECT_EQ(s.error_message(), file_message);
  }
  h->clear_value_file();

  // The signing secret likewise; and PreviewWebhook of a definition.
  h->set_value_env("ES_T_RT_TOKEN");
  w.set_enable_security(true);
  w.set_secret_env("ES_T_B1");
  s = upsert(w);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "secret_env")) << s.error_message();
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", kOps);
    v1::PreviewWebhookRequest preq;
    *preq.mutable_webhook() = w;
    preq.set_docname("X");
    v1::PreviewWebhookResponse presp;
    EXPECT_EQ(stub_->PreviewWebhook(&ctx, preq, &presp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }

  // Allowed ones work (a name matching the ES_T_RT_* prefix).
  w.set_secret_env("ES_T_WEBHOOK_SECRET");
  s = upsert(w);
  ASSERT_TRUE(s.ok()) << s.error_message();

  // A runtime webhook stored earlier (before this check, or before the list
  // shrank) that reads the API secret: Failed, never sent.
  v1::Webhook old_hook = w;
  old_hook.set_name("old");
  old_hook.set_request_url(absl::StrCat("http://127.0.0.1:", rx.port(), "/old/{{ doc.name }}"));
  old_hook.mutable_headers(0)->set_value_env("ES_T_OPS");
  old_hook.set_enable_security(false);
  old_hook.clear_secret_env();
  auto stored = conn_->Exec(
      "INSERT INTO es_producer.webhook (name, doctype, definition, last_seq)"
      " VALUES ('old', 'Note', $1::jsonb,"
      "  (SELECT coalesce(max(seq), 0) FROM es_producer.update_log))",
      {WebhookToJson(WebhookFromProto(old_hook)).ToJson()});
  ASSERT_TRUE(stored.ok()) << stored.status();

  Write(R"(INSERT INTO "tabNote" (name, title) VALUES ('S1', 'secrets'))");
  WaitSettled(3);
  ASSERT_TRUE(WaitUntil([&] { return rx.requests().size() >= 2; }));
  absl::SleepFor(absl::Milliseconds(300));  // nothing more arrives
  EXPECT_EQ(rx.requests("/old/").size(), 0u);
  for (const Received& r : rx.requests()) {
    for (const auto& [k, v] : r.headers) {
      EXPECT_FALSE(absl::StrContains(v, kOpsSecret)) << r.path << " " << k;
    }
  }
  EXPECT_EQ(Count("webhook = 'old' AND status = 'Failed' AND attempts = 1"
                  " AND error LIKE '%headers[0].value_env%runtime_secret_env%'"),
            1);
  // The runtime webhook got its allowed secret, the config one its own.
  auto rt = rx.requests("/rt/S1");
  ASSERT_EQ(rt.size(), 1u);
  EXPECT_EQ(rt[0].headers["authorization"], kRuntimeToken);
  auto cfg = rx.requests("/cfg/S1");
  ASSERT_EQ(cfg.size(), 1u);
  EXPECT_EQ(cfg[0].headers["authorization"], kCrmToken);
}

// ---- issue 13, item 13: Standard Webhooks signatures ------------------------

// Runs tests/webhooks/verify.js (npm standardwebhooks, installed by
// tools/setup) on `cases` (the array verify.js documents); returns each
// case's verdict by name: "ok" or the library's error message.
std::map<std::string, std::string> VerifyWithStandardWebhooks(
    const Value& cases) {
  const std::string dir = SourceDir() + "/tests/webhooks";
  std::map<std::string, std::string> verdicts;
  if (ReadFile(dir + "/node_modules/standardwebhooks/package.json").empty()) {
    ADD_FAILURE() << dir << "/node_modules has no standardwebhooks: run tools/setup";
    return verdicts;
  }
  ScopedTempDir tmp("verify");
  WriteFile(tmp.path() + "/cases.json", cases.ToJson());
  CommandResult run = RunCommand(
      {"/usr/bin/env", "node", dir + "/verify.js", tmp.path() + "/cases.json"});
  EXPECT_EQ(run.exit_code, 0) << run.output;
  for (absl::string_view line : absl::StrSplit(run.output, '\n', absl::SkipEmpty())) {
    auto v = Value::ParseJson(std::string_view(line.data(), line.size()));
    if (!v.ok() || v->Find("name") == nullptr) {
      ADD_FAILURE() << "verify.js printed: " << line;
      continue;
    }
    const Value* ok = v->Find("verified");
    verdicts[v->Find("name")->as_string()] =
        ok != nullptr && ok->is_bool() && ok->as_bool()
            ? "ok"
            : v->Find("error")->as_string();
  }
  return verdicts;
}

Value VerifyCase(const std::string& name, const std::string& secret, bool raw,
                 const std::map<std::string, std::string>& headers,
                 const std::string& body, int now_offset_seconds = 0) {
  Value c = Value::EmptyObject();
  c["name"] = Value::String(name);
  c["secret"] = Value::String(secret);
  c["raw"] = Value::Bool(raw);
  Value h = Value::EmptyObject();
  for (const auto& [k, v] : headers) h[k] = Value::String(v);
  c["headers"] = std::move(h);
  c["body_base64"] = Value::String(absl::Base64Escape(body));
  c["now_offset_seconds"] = Value::Int(now_offset_seconds);
  return c;
}

// Our requests verify with a verifier nobody here wrote, on both send paths
// (a pass's first attempt, and a worker's retry); a captured request
// replayed 10 minutes later is refused as too old, and one replayed with a
// fresh timestamp (or another id, body or secret) does not match. Frappe's
// header is unchanged beside it.
TEST_F(WebhookTest, StandardWebhooksVerifierAcceptsOurRequestsAndRefusesReplays) {
  Receiver rx;
  std::string json_hook =
      "      request_structure: JSON\n"
      "      webhook_json: '{\"name\": \"{{ doc.name }}\", \"title\": \"{{ doc.title }}\"}'\n"
      "      enable_security: true\n";
  ASSERT_NO_FATAL_FAILURE(Start(
      kFastDelivery,
      absl::StrCat(Hook("std", "after_insert", rx.port(),
                        json_hook + "      secret_env: ES_T_WHSEC\n"),
                   Hook("plain", "after_insert", rx.port(),
                        json_hook + "      secret_env: ES_T_WEBHOOK_SECRET\n"))));
  rx.Script({500});  // one of the two is retried by a worker
  Write(R"(INSERT INTO "tabNote" (name, title) VALUES ('V1', 'café "q"'))");
  WaitSettled(2);
  EXPECT_EQ(Count("status = 'Success'"), 2);
  std::vector<Received> got = rx.requests();
  ASSERT_EQ(got.size(), 3u);

  Value::Array cases;
  std::vector<std::string> fresh;
  for (size_t i = 0; i < got.size(); ++i) {
    const Received& r = got[i];
    bool whsec = absl::StartsWith(r.path, "/std/");
    std::map<std::string, std::string> headers = r.headers;
    EXPECT_TRUE(absl::StartsWith(headers["webhook-signature"], "v1,"))
        << r.path << ": webhook-signature: " << headers["webhook-signature"];
    // Frappe's header as before, keyed with the configured text as is.
    EXPECT_TRUE(VerifyFrappeWebhook(r.body, r.headers.at("x-frappe-webhook-signature"),
                                    whsec ? kWhsec : kSecret));
    // As a receiver would: the configured secret, unchanged (whsec_: the
    // default format; anything else: format "raw").
    fresh.push_back(absl::StrCat("fresh ", i, " ", r.path));
    cases.push_back(VerifyCase(fresh.back(), whsec ? kWhsec : kSecret, !whsec,
                               r.headers, r.body));
  }
  const Received& r = got[0];
  const std::string secret = absl::StartsWith(r.path, "/std/") ? kWhsec : kSecret;
  const bool raw = secret == kSecret;
  cases.push_back(VerifyCase("replayed 10 minutes later", secret, raw, r.headers,
                             r.body, 600));
  auto refreshed = r.headers;
  int64_t sent_at = 0;
  ASSERT_TRUE(absl::SimpleAtoi(refreshed["webhook-timestamp"], &sent_at));
  refreshed["webhook-timestamp"] = absl::StrCat(sent_at + 600);
  cases.push_back(VerifyCase("replayed 10 minutes later with a fresh timestamp",
                             secret, raw, refreshed, r.body, 600));
  auto other_id = r.headers;
  other_id["webhook-id"] = "msg_00000000000000000000000000000000";
  cases.push_back(VerifyCase("another id", secret, raw, other_id, r.body));
  cases.push_back(VerifyCase("another body", secret, raw, r.headers, r.body + " "));
  cases.push_back(VerifyCase("another secret", "whsec_d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==",
                             false, r.headers, r.body));

  std::map<std::string, std::string> verdicts =
      VerifyWithStandardWebhooks(Value::FromArray(std::move(cases)));
  for (const std::string& name : fresh) EXPECT_EQ(verdicts[name], "ok") << name;
  EXPECT_EQ(verdicts["replayed 10 minutes later"], "Message timestamp too old");
  EXPECT_EQ(verdicts["replayed 10 minutes later with a fresh timestamp"],
            "No matching signature found");
  EXPECT_EQ(verdicts["another id"], "No matching signature found");
  EXPECT_EQ(verdicts["another body"], "No matching signature found");
  EXPECT_EQ(verdicts["another secret"], "No matching signature found");

  // The retry kept the webhook-id and signed its own timestamp.
  std::map<std::string, std::set<std::string>> ids;
  for (const Received& g : got) ids[g.path].insert(g.headers.at("webhook-id"));
  for (const auto& [path, set] : ids) EXPECT_EQ(set.size(), 1u) << path;
}

// A Wake() that comes while a loop is not waiting (it is working, or
// between two waits) ends its next wait at once instead of being lost until
// the poll interval runs out. No database, no thread: were the wake lost,
// the waits below would take an hour.
TEST(WebhookDeliveryWake, AWakeBeforeTheWaitEndsItAtOnce) {
  Config config;
  WebhookDelivery delivery(&config, "");
  const absl::Time start = absl::Now();
  delivery.Wake();
  EXPECT_TRUE(delivery.sleeper(-1).SleepFor(absl::Hours(1)));
  delivery.WakeWorkers();
  for (int i = 0; i < WebhookDeliveryConfig().workers; ++i) {
    EXPECT_TRUE(delivery.sleeper(i).SleepFor(absl::Hours(1))) << "worker " << i;
  }
  EXPECT_LT(absl::Now() - start, absl::Minutes(1));
  // Stop() ends them too, and for good.
  delivery.Stop();
  EXPECT_FALSE(delivery.sleeper(-1).SleepFor(absl::Hours(1)));
  EXPECT_FALSE(delivery.sleeper(0).SleepFor(absl::Hours(1)));
}

}  // namespace
}  // namespace eventstream::testing
