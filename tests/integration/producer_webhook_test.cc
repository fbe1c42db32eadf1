// Outgoing webhooks end to end: the real eventstream-producer binary with
// webhooks in its config (and added over the Webhooks RPCs), delivering to
// an HTTP/1.1 receiver on loopback written here. Each doc event fires
// exactly the webhooks it should; conditions filter; Form and JSON bodies;
// the signature verifies with a verifier written from Frappe's documented
// algorithm; 500/429/receiver down -> persisted backoff -> success, per
// document in order; kill -9 mid-delivery -> delivered after the restart
// with the same webhook-id; the request log masks secrets.
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
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "eventstream/v1/webhooks.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "libsync/config.h"
#include "libsync/pg.h"
#include "libsync/value.h"
#include "libsync/webhook_template.h"
#include "services/producer/webhook_delivery.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/service_runner.h"

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
  void Script(std::deque<int> statuses) {
    std::lock_guard<std::mutex> lock(mu_);
    script_ = std::move(statuses);
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
      int status = 200;
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (hang_) {
          received_.push_back(r);
          cv_.wait(lock, [&] { return !hang_ || down_; });
          lock.unlock();
          return Close(fd);
        }
        if (!script_.empty()) {
          status = script_.front();
          script_.pop_front();
        }
        r.status = status;
        received_.push_back(r);
      }
      std::string response = absl::StrCat(
          "HTTP/1.1 ", status, " X\r\nContent-Type: text/plain\r\n"
          "Content-Length: 9\r\nConnection: keep-alive\r\n\r\nreply-", status);
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
  std::deque<int> script_;
  bool hang_ = false;
  bool down_ = false;
  std::vector<Received> received_;
};

// ---- Frappe's verifier ------------------------------------------------------
// From the documented receiver (seed 003):
//   computed = base64.b64encode(hmac.new(secret.encode("utf-8"), payload,
//                                        hashlib.sha256).digest()).decode()
//   return hmac.compare_digest(computed, signature_header)
bool VerifyFrappeWebhook(const std::string& payload, const std::string& header,
                         const std::string& secret) {
  unsigned char digest[32];
  unsigned int digest_len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(payload.data()), payload.size(),
       digest, &digest_len);
  static const char kB64[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string computed;
  for (unsigned int i = 0; i < digest_len; i += 3) {
    unsigned int n = digest[i] << 16;
    if (i + 1 < digest_len) n |= digest[i + 1] << 8;
    if (i + 2 < digest_len) n |= digest[i + 2];
    computed += kB64[(n >> 18) & 63];
    computed += kB64[(n >> 12) & 63];
    computed += i + 1 < digest_len ? kB64[(n >> 6) & 63] : '=';
    computed += i + 2 < digest_len ? kB64[n & 63] : '=';
  }
  if (computed.size() != header.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < computed.size(); ++i) diff |= computed[i] ^ header[i];
  return diff == 0;
}

// ---- the site -----------------------------------------------------------------

constexpr char kSecret[] = "frappe-shared-secret";
constexpr char kCrmToken[] = "Bearer crm-token-123";
const std::map<std::string, std::string> kEnv = {
    {"ES_T_OPS", "ops-secret-wh"},
    {"ES_T_B1", "b1-secret-wh"},
    {"ES_T_WEBHOOK_SECRET", kSecret},
    {"ES_T_CRM_TOKEN", kCrmToken}};
const char kOps[] = "token ops:ops-secret-wh";
const char kB1[] = "token branch1:b1-secret-wh";

constexpr char kSiteTables[] = R"(
CREATE TABLE "tabNote" (name text PRIMARY KEY, creation timestamptz,
  modified timestamptz, modified_by text, owner text, docstatus int DEFAULT 0,
  idx int, title text, public int DEFAULT 0, amount numeric(30,9));
CREATE TABLE "tabNote Seen By" (name text PRIMARY KEY, creation timestamptz,
  modified timestamptz, modified_by text, owner text, docstatus int DEFAULT 0,
  idx int, parent text, parenttype text, parentfield text, "user" text);
)";

std::string Base(const std::string& url, const std::string& delivery,
                 const std::string& webhooks) {
  return absl::StrCat(R"(site: {name: hq}
database: {url: ")", url, R"("}
doctypes:
  - name: Note
    is_submittable: true
    fields:
      - {fieldname: title, fieldtype: Data}
      - {fieldname: public, fieldtype: Check}
      - {fieldname: amount, fieldtype: Currency}
      - {fieldname: seen_by, fieldtype: Table, options: Note Seen By}
  - name: Note Seen By
    istable: true
    fields:
      - {fieldname: user, fieldtype: Data}
producer:
  listen: "127.0.0.1:0"
  api_keys:
    - {key: ops, secret_env: ES_T_OPS, role: admin}
    - {key: branch1, secret_env: ES_T_B1, role: consumer}
  webhook_delivery: )", delivery, R"(
  webhooks:
)", webhooks);
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
    db_ = FreshDatabase("webhook");
    auto conn = pg::Connection::Open(SharedCluster().Url(db_));
    ASSERT_TRUE(conn.ok()) << conn.status();
    conn_ = std::move(*conn);
    ASSERT_TRUE(conn_->ExecScript(kSiteTables).ok());
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
  void Write(const std::string& sql) {
    ASSERT_TRUE(conn_->ExecScript(sql).ok()) << sql;
    absl::Time deadline = absl::Now() + absl::Seconds(15);
    while (true) {
      auto r = conn_->Exec("SELECT count(*) FROM es_producer.raw_change");
      ASSERT_TRUE(r.ok()) << r.status();
      if (r->GetInt64(0, 0) == 0) return;
      ASSERT_LT(absl::Now(), deadline) << "the assembler did not run";
      absl::SleepFor(absl::Milliseconds(20));
    }
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
    absl::Time deadline = absl::Now() + timeout;
    while (!pred()) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return true;
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

TEST(WebhookSignature, KnownAnswerAndFrappeVerifier) {
  // RFC 4231 test case 2, base64 of the HMAC-SHA256.
  EXPECT_EQ(WebhookSignature("Jefe", "what do ya want for nothing?"),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
  EXPECT_TRUE(VerifyFrappeWebhook("what do ya want for nothing?",
                                  "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=",
                                  "Jefe"));
}

TEST(WebhookTemplateTest, RendersFieldsAndRejectsCode) {
  auto doc = Value::ParseJson(
      R"({"name":"N/1","title":"say \"hi\"","qty":12.50,"items":[{"a":1}],"o":{"k":"v"}})");
  ASSERT_TRUE(doc.ok());
  auto t = WebhookTemplate::Parse(
      R"({"n": "{{ doc.name }}", "t": "{{doc.title}}", "q": {{ doc.qty }},)"
      R"( "i": {{ doc.items | tojson }}, "k": "{{ doc.o.k }}", "m": {{ doc.missing }}})",
      WebhookTemplate::Kind::kJson);
  ASSERT_TRUE(t.ok()) << t.status();
  std::string out = t->Render(*doc);
  EXPECT_EQ(out, R"({"n": "N/1", "t": "say \"hi\"", "q": 12.50, "i": [{"a":1}],)"
                 R"( "k": "v", "m": null})");
  EXPECT_TRUE(Value::ParseJson(out).ok());
  auto url = WebhookTemplate::Parse("http://x/{{ doc.name }}", WebhookTemplate::Kind::kUrl);
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->Render(*doc), "http://x/N%2F1");
  auto bad = WebhookTemplate::Parse("{\n  \"a\": {{ doc.x.__class__ }}}", WebhookTemplate::Kind::kJson);
  EXPECT_FALSE(bad.ok());
  bad = WebhookTemplate::Parse("{\n \"a\": {{ frappe.db.sql('x') }}}", WebhookTemplate::Kind::kJson);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "line 2, column 7"))
      << bad.status();
  EXPECT_FALSE(WebhookTemplate::Parse("{% for x in y %}", WebhookTemplate::Kind::kJson).ok());
  EXPECT_FALSE(WebhookTemplate::Parse("{{ doc.a | upper }}", WebhookTemplate::Kind::kJson).ok());
  EXPECT_FALSE(CheckJsonTemplate(R"({"a": {{ doc.a }} "b": 1})").ok());
}

TEST(WebhookConfigTest, ErrorsNameTheKey) {
  auto parse = [](const std::string& hook) {
    return ParseConfig(absl::StrCat(R"(site: {name: hq}
database: {url: "x"}
doctypes: [{name: Note, fields: [{fieldname: title, fieldtype: Data}]}]
producer:
  webhooks:
    - name: w
      doctype: Note
      request_url: "http://h/x"
)", hook), "c.yaml");
  };
  auto ok = parse("      doc_event: on_update\n      webhook_data: [{fieldname: title}]\n");
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_EQ(ok->producer->webhooks.size(), 1u);
  auto bad = parse("      doc_event: on_update\n      request_structure: JSON\n"
                   "      webhook_json: '{\"a\": {{ doc.title }} }x'\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StartsWith(bad.status().message(),
                               "c.yaml: producer.webhooks[0].webhook_json: "))
      << bad.status();
  bad = parse("      doc_event: on_save\n      webhook_data: [{fieldname: title}]\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "webhooks[0].doc_event")) << bad.status();
  bad = parse("      doc_event: on_update\n      webhook_data: [{fieldname: title}]\n"
              "      enable_security: true\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "webhooks[0].secret_env")) << bad.status();
  bad = parse("      doc_event: on_update\n      webhook_data: [{fieldname: title}]\n"
              "      webhook_secret: abc\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "never inline")) << bad.status();
}

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

  std::map<std::string, int> expected = {
      {"/insert/", 2}, {"/public/", 1}, {"/update/", 1}, {"/submit/", 1},
      {"/uas/", 1},    {"/cancel/", 1}, {"/trash/", 1},  {"/change/", 6}};
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
  auto updates = rx.requests("/update/");
  ASSERT_EQ(updates.size(), 1u);
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
                  "'[[\"X-Frappe-Webhook-Signature\", \"***\"]]'"), 1);

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
  std::string hooks = absl::StrCat(Hook("change", "on_change", rx.port()),
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
  // Backoff: 200ms after the 1st failure, 400ms after the 2nd.
  EXPECT_GE(got[1].at - got[0].at, absl::Milliseconds(180));
  EXPECT_GE(got[2].at - got[1].at, absl::Milliseconds(380));
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

TEST_F(WebhookTest, KilledMidDeliveryIsDeliveredAfterRestart) {
  Receiver rx;
  ASSERT_NO_FATAL_FAILURE(Start("{workers: 2, initial_backoff: 200ms, max_backoff: 1s, poll_interval: 100ms}",
        Hook("change", "on_change", rx.port(), "      timeout: 60s\n"
             "      webhook_data: [{fieldname: name}, {fieldname: title}]\n")));
  rx.Hang(true);
  Write(R"(INSERT INTO "tabNote" (name, title) VALUES ('K1', 'killed'))");
  ASSERT_TRUE(WaitUntil([&] { return rx.requests().size() == 1; }));
  service_.process->Signal(SIGKILL);
  ASSERT_TRUE(service_.process->Wait(absl::Seconds(10)).ok());
  // The attempt in flight was never recorded: still Queued.
  EXPECT_EQ(Count("status = 'Queued' AND attempts = 0"), 1);
  // Changes while the producer is down are captured and delivered later.
  ASSERT_TRUE(conn_->ExecScript(
      R"(UPDATE "tabNote" SET title = 'while down' WHERE name = 'K1')").ok());
  rx.Hang(false);
  ASSERT_NO_FATAL_FAILURE(Restart());
  WaitSettled(2, absl::Seconds(30));
  auto got = rx.requests();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].status, 0);
  EXPECT_EQ(got[1].status, 200);
  EXPECT_EQ(got[1].body, got[0].body);
  EXPECT_EQ(got[1].headers["webhook-id"], got[0].headers["webhook-id"]);
  EXPECT_EQ(got[2].body, R"({"name":"K1","title":"while down"})");
  EXPECT_EQ(Count("status = 'Success'"), 2);
}

TEST_F(WebhookTest, AdminRpcs) {
  Receiver rx;
  ASSERT_NO_FATAL_FAILURE(Start(kFastDelivery, Hook("cfg", "on_update", rx.port())));
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

}  // namespace
}  // namespace eventstream::testing
