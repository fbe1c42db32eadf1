// libsync/rules/webhook_rules.h: the pure decisions of webhook delivery (doc
// events, the document as of an entry, request ids, bodies and masked
// headers, conditions, a pass's cap and chains, outcomes, retry delays, the
// busy pause), and webhook config errors.
#include "libsync/rules/webhook_rules.h"

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libsync/config/config.h"
#include "libsync/config/expr.h"
#include "libsync/base/value.h"

namespace eventstream {
namespace {

Value Json(const char* text) {
  auto v = Value::ParseJson(text);
  EXPECT_TRUE(v.ok()) << text;
  return v.ok() ? *v : Value();
}

WebhookConfig Hook(const std::string& name) {
  WebhookConfig hook;
  hook.name = name;
  hook.doctype = "Note";
  hook.doc_event = "on_update";
  hook.request_url = "http://x/{{ doc.name }}";
  return hook;
}

// ---- doc events and the document as of an entry ----------------------------

TEST(DocEventsForTest, FrappeInsertRunsOnUpdateButNotOnChange) {
  using V = std::vector<std::string>;
  auto data = [](const char* json) {
    auto v = Value::ParseJson(json);
    EXPECT_TRUE(v.ok()) << json;
    return v.ok() ? *v : Value();
  };
  EXPECT_EQ(DocEventsFor("Create", data(R"({"name": "N", "docstatus": 0})"), 0),
            (V{"after_insert", "on_update"}));
  EXPECT_EQ(DocEventsFor("Create", data(R"({"name": "N", "docstatus": 1})"), 0),
            (V{"after_insert", "on_update", "on_submit"}));
  EXPECT_EQ(DocEventsFor("Update", data(R"({"changed": {"title": "x"}})"), 0),
            (V{"on_update", "on_change"}));
  EXPECT_EQ(DocEventsFor("Update", data(R"({"changed": {"docstatus": 1}})"), 0),
            (V{"on_submit", "on_change"}));
  EXPECT_EQ(DocEventsFor("Update", data(R"({"changed": {"title": "x"}})"), 1),
            (V{"on_update_after_submit", "on_change"}));
  EXPECT_EQ(DocEventsFor("Cancel", data(R"({"changed": {"docstatus": 2}})"), 1),
            (V{"on_cancel", "on_change"}));
  EXPECT_EQ(DocEventsFor("Delete", data("{}"), 0), (V{"on_trash"}));
}

TEST(DocEventsForTest, RenameIsAnUpdateAndUnknownTypesFireNothing) {
  using V = std::vector<std::string>;
  EXPECT_EQ(DocEventsFor("Rename", Json("{}"), 0), (V{"on_update", "on_change"}));
  EXPECT_EQ(DocEventsFor("Update", Json(R"({"changed": {"docstatus": 2}})"), 1),
            (V{"on_update", "on_change"}));
  EXPECT_EQ(DocEventsFor("Bogus", Json("{}"), 0), V{});
}

TEST(DocstatusSaidByTest, CreatesAndChangedDocstatusSayOne) {
  // An Update without docstatus says nothing; a Cancel's changed one does.
  EXPECT_EQ(DocstatusSaidBy("Update", Json(R"({"changed": {"title": "x"}})")), std::nullopt);
  EXPECT_EQ(DocstatusSaidBy("Cancel", Json(R"({"changed": {"docstatus": 2}})")),
            std::optional<int>(2));
  EXPECT_EQ(DocstatusSaidBy("Update", Json(R"({"changed": {"docstatus": 1}})")),
            std::optional<int>(1));
  // A Create says its own (0 when absent).
  EXPECT_EQ(DocstatusSaidBy("Create", Json(R"({"docstatus": 1})")), std::optional<int>(1));
  EXPECT_EQ(DocstatusSaidBy("Create", Json(R"({"name": "N1"})")), std::optional<int>(0));
  // Renames and unreadable data (null) say nothing; nor does a docstatus
  // only in an added row.
  EXPECT_EQ(DocstatusSaidBy("Rename", Json(R"({"old_name": "a"})")), std::nullopt);
  EXPECT_EQ(DocstatusSaidBy("Update", Value()), std::nullopt);
  EXPECT_EQ(DocstatusSaidBy("Update", Json(R"({"added": [{"docstatus": 1}]})")), std::nullopt);
}

TEST(ReplayEntryTest, FollowsCreateAndDiffsAndForgetsOnDeleteOrRename) {
  std::optional<Value> doc;
  ReplayEntry("Update", Json(R"({"changed": {"title": "x"}})"), &doc);
  EXPECT_FALSE(doc.has_value());  // nothing to patch: still unknown
  ReplayEntry("Create", Json(R"({"name": "N", "title": "a", "docstatus": 0})"), &doc);
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(DocstatusOf(doc->Find("docstatus")), 0);
  ReplayEntry("Create", Json("null"), &doc);
  EXPECT_FALSE(doc.has_value());
  ReplayEntry("Create", Json(R"({"name": "N", "docstatus": 1})"), &doc);
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(DocstatusOf(doc->Find("docstatus")), 1);
  ReplayEntry("Rename", Json("{}"), &doc);
  EXPECT_FALSE(doc.has_value());
  ReplayEntry("Create", Json(R"({"name": "N"})"), &doc);
  ReplayEntry("Delete", Json("{}"), &doc);
  EXPECT_FALSE(doc.has_value());
}

TEST(ReplayEntryTest, DocstatusAndStub) {
  EXPECT_EQ(DocstatusOf(nullptr), 0);
  Value s = Value::String("1");
  EXPECT_EQ(DocstatusOf(&s), 0);  // only a number counts
  Value stub = DocumentStub("Note", "N/1");
  EXPECT_EQ(stub.ToJson(), R"({"doctype":"Note","name":"N/1"})");
}

// ---- one request ------------------------------------------------------------

TEST(WebhookRequestIdTest, StableHexPerWebhookAndEntry) {
  std::string id = WebhookRequestId("w", 42);
  EXPECT_EQ(id.size(), 4u + 32u);
  EXPECT_TRUE(absl::StartsWith(id, "msg_"));
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef", 4), std::string::npos);
  EXPECT_EQ(id, WebhookRequestId("w", 42));  // the same when built again
  EXPECT_NE(id, WebhookRequestId("w", 43));
  EXPECT_NE(id, WebhookRequestId("w2", 42));
  // The NUL separator: ("w1", 2) is not ("w", 12).
  EXPECT_NE(WebhookRequestId("w1", 2), WebhookRequestId("w", 12));
}

TEST(BuildRequestTest, MasksSecretsAndAddsContentTypeUnlessSet) {
  WebhookConfig hook = Hook("w");
  hook.request_structure = "JSON";
  hook.webhook_json = R"({"t": "{{ doc.title }}"})";
  WebhookHeaderConfig plain;
  plain.key = "X-Plain";
  plain.value = "v";
  WebhookHeaderConfig secret;
  secret.key = "Authorization";
  secret.secret.env = "SOME_SECRET";
  hook.headers = {plain, secret};
  hook.enable_security = true;
  auto built = BuildRequest(hook, Json(R"({"name": "N/1", "title": "hi"})"));
  ASSERT_TRUE(built.ok()) << built.status();
  EXPECT_EQ(built->url, "http://x/N%2F1");
  EXPECT_EQ(built->method, "POST");
  EXPECT_EQ(built->body, R"({"t": "hi"})");
  using H = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(built->headers, (H{{"Content-Type", "application/json"},
                               {"X-Plain", "v"},
                               {"Authorization", "***"},
                               {"X-Frappe-Webhook-Signature", "***"},
                               {"webhook-signature", "***"}}));
  EXPECT_EQ(HeadersToJson(built->headers).ToJson().substr(0, 40),
            R"([["Content-Type","application/json"],["X)");

  hook.enable_security = false;
  plain.key = "content-type";
  plain.value = "text/plain";
  hook.headers = {plain};
  hook.request_method = "PUT";
  built = BuildRequest(hook, Json(R"({"name": "N", "title": "hi"})"));
  ASSERT_TRUE(built.ok());
  EXPECT_EQ(built->method, "PUT");
  EXPECT_EQ(built->headers, (H{{"content-type", "text/plain"}}));
}

TEST(BuildRequestTest, BadTemplatesNameTheWebhook) {
  WebhookConfig hook = Hook("w");
  hook.request_url = "http://x/{{ doc.name | upper }}";
  auto prepared = PrepareWebhook(hook);
  ASSERT_FALSE(prepared.ok());
  EXPECT_TRUE(absl::StartsWith(prepared.status().message(), "webhook \"w\": request_url: "))
      << prepared.status();
  hook = Hook("w");
  hook.request_structure = "JSON";
  hook.webhook_json = R"({"t": {{ doc.title }})";  // not closed
  auto built = BuildRequest(hook, Json(R"({"name": "N", "title": "x y"})"));
  ASSERT_FALSE(built.ok());
  EXPECT_TRUE(absl::StrContains(built.status().message(),
                                "webhook \"w\": webhook_json rendered invalid JSON"))
      << built.status();
}

TEST(CleanTextTest, KeepsValidUtf8CutsAtCharactersReplacesTheRest) {
  EXPECT_EQ(CleanText("plain", 100), "plain");
  EXPECT_EQ(CleanText("abcdef", 3), "abc");
  EXPECT_EQ(CleanText("a\xC3\xA9", 100), "a\xC3\xA9");  // é kept
  EXPECT_EQ(CleanText("a\xC3\xA9", 2), "a?");  // not cut in half: '?' if room
  EXPECT_EQ(CleanText(std::string("a\0b", 3), 100), "a?b");
  EXPECT_EQ(CleanText("a\xFF" "b", 100), "a?b");
  EXPECT_EQ(CleanText("\xC3", 100), "?");  // truncated sequence
}

TEST(WebhookConditionVerdictTest, FalseSkipsErrorsFail) {
  Value doc = Json(R"({"name": "N", "qty": 3})");
  EXPECT_TRUE(WebhookConditionVerdict("w", nullptr, "", doc, "Note", "N").fires);
  auto big = Condition::Parse("doc.qty > 2");
  ASSERT_TRUE(big.ok());
  ConditionVerdict v = WebhookConditionVerdict("w", &*big, "", doc, "Note", "N");
  EXPECT_TRUE(v.fires);
  EXPECT_EQ(v.error, "");
  auto small = Condition::Parse("doc.qty > 5");
  ASSERT_TRUE(small.ok());
  EXPECT_FALSE(WebhookConditionVerdict("w", &*small, "", doc, "Note", "N").fires);
  v = WebhookConditionVerdict("w", nullptr, "column 3: bad", doc, "Note", "N");
  EXPECT_TRUE(v.fires);
  EXPECT_EQ(v.error, "webhook \"w\": condition: column 3: bad");
  auto type_error = Condition::Parse("doc.name < 1");
  ASSERT_TRUE(type_error.ok());
  v = WebhookConditionVerdict("w", &*type_error, "", doc, "Note", "N");
  EXPECT_TRUE(v.fires);
  EXPECT_TRUE(absl::StartsWith(v.error, "webhook \"w\": condition failed for Note \"N\": "))
      << v.error;
}

// ---- a dispatcher pass --------------------------------------------------------

TEST(PassPlanTest, FetchLimitFollowsTheBusiestDocType) {
  EXPECT_EQ(PassFetchLimit(1000, {}, 500), 500);
  EXPECT_EQ(PassFetchLimit(1000, {{"Note", 1}}, 500), 500);
  EXPECT_EQ(PassFetchLimit(1000, {{"Note", 10}, {"Task", 2}}, 500), 101);
  EXPECT_EQ(PassFetchLimit(1000, {{"Note", 5000}}, 500), 1);
  EXPECT_EQ(PassFetchLimit(1, {{"Note", 3}}, 500), 1);
}

TEST(PassPlanTest, TakesWholeEntriesUpToTheCap) {
  // The first entry always, even when it alone passes the cap.
  EXPECT_TRUE(PassTakesEntry(0, 5000, 1000));
  EXPECT_TRUE(PassTakesEntry(0, 0, 1000));
  EXPECT_TRUE(PassTakesEntry(998, 2, 1000));
  EXPECT_FALSE(PassTakesEntry(998, 3, 1000));
  EXPECT_TRUE(PassTakesEntry(998, 0, 1000));
  EXPECT_FALSE(PassIsFull(999, 1000));
  EXPECT_TRUE(PassIsFull(1000, 1000));
  EXPECT_TRUE(PassIsFull(5000, 1000));
}

TEST(PassPlanTest, ChainsPerWebhookAndDocumentInOrder) {
  std::vector<ChainKey> requests = {
      {true, 0, "Note", "A"},   // 0
      {true, 1, "Note", "A"},   // 1: another webhook, another chain
      {true, 0, "Note", "B"},   // 2
      {false, 0, "Note", "A"},  // 3: not sendable (Failed, or queued behind)
      {true, 0, "Note", "A"},   // 4: behind 0
      {true, 0, "Task", "A"},   // 5: another DocType
  };
  using C = std::vector<std::vector<size_t>>;
  EXPECT_EQ(SendChains(requests), (C{{0, 4}, {1}, {2}, {5}}));
  EXPECT_EQ(SendChains({}), C{});
  EXPECT_EQ(SendChains({{false, 0, "Note", "A"}}), C{});
}

// ---- outcomes and retries -----------------------------------------------------

TEST(WebhookOutcomeTest, ClassifiesStatuses) {
  EXPECT_EQ(ClassifyHttpStatus(200), AttemptKind::kSuccess);
  EXPECT_EQ(ClassifyHttpStatus(204), AttemptKind::kSuccess);
  EXPECT_EQ(ClassifyHttpStatus(299), AttemptKind::kSuccess);
  EXPECT_EQ(ClassifyHttpStatus(429), AttemptKind::kRetry);
  EXPECT_EQ(ClassifyHttpStatus(500), AttemptKind::kRetry);
  EXPECT_EQ(ClassifyHttpStatus(503), AttemptKind::kRetry);
  EXPECT_EQ(ClassifyHttpStatus(301), AttemptKind::kFail);
  EXPECT_EQ(ClassifyHttpStatus(400), AttemptKind::kFail);
  EXPECT_EQ(ClassifyHttpStatus(404), AttemptKind::kFail);
  EXPECT_TRUE(HonoursRetryAfter(429));
  EXPECT_TRUE(HonoursRetryAfter(503));
  EXPECT_FALSE(HonoursRetryAfter(500));
}

TEST(WebhookOutcomeTest, SettlesAfterEachAttempt) {
  WebhookDeliveryConfig options;
  options.max_attempts = 3;
  options.initial_backoff = absl::Seconds(5);
  options.max_backoff = absl::Seconds(60);
  EXPECT_STREQ(SettleAttempt(options, AttemptKind::kSuccess, 1, std::nullopt, 0.5).status,
               "Success");
  EXPECT_STREQ(SettleAttempt(options, AttemptKind::kFail, 1, std::nullopt, 0.5).status,
               "Failed");
  Settled s = SettleAttempt(options, AttemptKind::kRetry, 1, std::nullopt, 0.5);
  EXPECT_STREQ(s.status, "Queued");
  EXPECT_EQ(s.delay, absl::Seconds(5));
  s = SettleAttempt(options, AttemptKind::kRetry, 2, absl::Seconds(30), 0.5);
  EXPECT_STREQ(s.status, "Queued");
  EXPECT_EQ(s.delay, absl::Seconds(30));
  EXPECT_STREQ(SettleAttempt(options, AttemptKind::kRetry, 3, std::nullopt, 0.5).status,
               "Exhausted");
}

TEST(WebhookRetryTest, ParsesRetryAfterInAllItsForms) {
  absl::Time now = absl::FromUnixSeconds(784111777);  // Sun, 06 Nov 1994 08:49:37 GMT
  EXPECT_EQ(ParseRetryAfter("2", now), absl::Seconds(2));
  EXPECT_EQ(ParseRetryAfter(" 120 ", now), absl::Seconds(120));
  EXPECT_EQ(ParseRetryAfter("0", now), absl::ZeroDuration());
  EXPECT_GE(*ParseRetryAfter("99999999999999999999", now), absl::Hours(24 * 365));
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:47 GMT", now), absl::Seconds(10));
  EXPECT_EQ(ParseRetryAfter("Sunday, 06-Nov-94 08:50:37 GMT", now), absl::Seconds(60));
  EXPECT_EQ(ParseRetryAfter("Sun Nov  6 08:49:39 1994", now), absl::Seconds(2));
  // In the past: retry as soon as the normal backoff allows.
  EXPECT_EQ(ParseRetryAfter("Sat, 05 Nov 1994 08:49:37 GMT", now), absl::ZeroDuration());
  for (const char* bad : {"", "  ", "-1", "1.5", "soon", "2 s",
                          "Sun, 06 Nov 1994 08:49:47 CET", "06 Nov 1994"}) {
    EXPECT_FALSE(ParseRetryAfter(bad, now).has_value()) << bad;
  }
}

TEST(WebhookRetryTest, JitteredDelaysStayWithinBounds) {
  WebhookDeliveryConfig options;
  options.initial_backoff = absl::Seconds(5);
  options.max_backoff = absl::Seconds(60);
  auto secs = [&](int attempts, std::optional<absl::Duration> retry_after,
                  double unit) {
    return absl::ToDoubleSeconds(
        WebhookRetryDelay(options, attempts, retry_after, unit));
  };
  // Exact bounds: the base doubles per attempt up to max_backoff; jitter
  // spans [0.8, 1.2] x base and never passes max_backoff.
  EXPECT_NEAR(secs(1, std::nullopt, 0.0), 4, 1e-6);
  EXPECT_NEAR(secs(1, std::nullopt, 0.5), 5, 1e-6);
  EXPECT_NEAR(secs(1, std::nullopt, 1.0), 6, 1e-6);
  EXPECT_NEAR(secs(3, std::nullopt, 0.0), 16, 1e-6);
  EXPECT_NEAR(secs(3, std::nullopt, 1.0), 24, 1e-6);
  EXPECT_NEAR(secs(4, std::nullopt, 1.0), 48, 1e-6);
  EXPECT_NEAR(secs(5, std::nullopt, 0.0), 48, 1e-6);  // base 60 (capped)
  EXPECT_NEAR(secs(5, std::nullopt, 1.0), 60, 1e-6);
  EXPECT_NEAR(secs(50, std::nullopt, 0.0), 48, 1e-6);
  EXPECT_NEAR(secs(50, std::nullopt, 1.0), 60, 1e-6);
  // Random factors: always inside the bounds, and spread out (no lockstep).
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int attempts = 1; attempts <= 8; ++attempts) {
    double base = std::min(5.0 * (1 << (attempts - 1)), 60.0);
    double lo = base * 0.8;
    double hi = std::min(base * 1.2, 60.0);
    double min_seen = 1e9, max_seen = -1;
    for (int i = 0; i < 1000; ++i) {
      double d = secs(attempts, std::nullopt, unit(rng));
      ASSERT_GE(d, lo - 1e-6) << attempts;
      ASSERT_LE(d, hi + 1e-6) << attempts;
      min_seen = std::min(min_seen, d);
      max_seen = std::max(max_seen, d);
    }
    EXPECT_GT(max_seen - min_seen, (hi - lo) * 0.9) << attempts;
  }
  // Retry-After: at least that long, still capped at max_backoff; a shorter
  // one does not shorten the backoff.
  EXPECT_NEAR(secs(1, absl::Seconds(30), 0.5), 30, 1e-6);
  EXPECT_NEAR(secs(1, absl::Hours(2), 0.5), 60, 1e-6);
  EXPECT_NEAR(secs(3, absl::Seconds(1), 0.5), 20, 1e-6);
  EXPECT_NEAR(secs(3, absl::ZeroDuration(), 0.0), 16, 1e-6);
  // initial_backoff == max_backoff: jitter only downwards.
  options.max_backoff = options.initial_backoff;
  EXPECT_NEAR(secs(1, std::nullopt, 0.0), 4, 1e-6);
  EXPECT_NEAR(secs(1, std::nullopt, 1.0), 5, 1e-6);
}

TEST(BusyPauseTest, HoldsThePassPeriodToThePercent) {
  // A pass that cost 50 ms at 5 %: a 1 s period, less the pass's own 200 ms.
  EXPECT_EQ(BusyPause(absl::Milliseconds(50), absl::Milliseconds(200), 5),
            absl::Milliseconds(800));
  EXPECT_LE(BusyPause(absl::Milliseconds(1), absl::Milliseconds(200), 5),
            absl::ZeroDuration());
  EXPECT_EQ(BusyPause(absl::Seconds(10), absl::ZeroDuration(), 1), absl::Minutes(1));
  EXPECT_EQ(BusyPause(absl::Seconds(10), absl::ZeroDuration(), 0), absl::ZeroDuration());
}

// ---- webhook config -------------------------------------------------------------

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

}  // namespace
}  // namespace eventstream
