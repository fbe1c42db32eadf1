// Webhook templates, and CheckRuntimeWebhookSecrets: what a runtime webhook
// may read (issue 13, item 8).
#include "libsync/config/webhook_template.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "libsync/base/value.h"

namespace eventstream {
namespace {

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


WebhookConfig Hook() {
  WebhookConfig hook;
  hook.name = "rt";
  WebhookHeaderConfig plain;
  plain.key = "X-Source";
  plain.value = "eventstream";
  hook.headers.push_back(plain);
  return hook;
}

WebhookHeaderConfig EnvHeader(const std::string& env) {
  WebhookHeaderConfig h;
  h.key = "Authorization";
  h.secret.env = env;
  return h;
}

const std::vector<std::string> kAllowed = {"ES_WEBHOOK_CRM_TOKEN",
                                           "ES_HOOK_*"};

TEST(RuntimeWebhookSecretsTest, AllowListAdmitsNamesAndPrefixes) {
  EXPECT_TRUE(RuntimeSecretEnvAllowed("ES_WEBHOOK_CRM_TOKEN", kAllowed));
  EXPECT_TRUE(RuntimeSecretEnvAllowed("ES_HOOK_A", kAllowed));
  EXPECT_TRUE(RuntimeSecretEnvAllowed("ES_HOOK_", kAllowed));
  EXPECT_FALSE(RuntimeSecretEnvAllowed("ES_WEBHOOK_CRM_TOKEN2", kAllowed));
  EXPECT_FALSE(RuntimeSecretEnvAllowed("ES_WEBHOOK_CRM", kAllowed));
  EXPECT_FALSE(RuntimeSecretEnvAllowed("ES_HOO", kAllowed));
  EXPECT_FALSE(RuntimeSecretEnvAllowed("ES_SECRET_OPS", kAllowed));
  EXPECT_FALSE(RuntimeSecretEnvAllowed("", kAllowed));
  EXPECT_FALSE(RuntimeSecretEnvAllowed("ES_HOOK_A=B", kAllowed));
  EXPECT_FALSE(RuntimeSecretEnvAllowed("ES_SECRET_OPS", {}));
  // A bare "*" (refused by the config) admits nothing here either.
  EXPECT_FALSE(RuntimeSecretEnvAllowed("ES_SECRET_OPS", {"*"}));
}

TEST(RuntimeWebhookSecretsTest, PlainValuesAndAllowedVariablesPass) {
  WebhookConfig hook = Hook();
  EXPECT_FALSE(CheckRuntimeWebhookSecrets(hook, {}).has_value());
  hook.headers.push_back(EnvHeader("ES_WEBHOOK_CRM_TOKEN"));
  hook.enable_security = true;
  hook.secret.env = "ES_HOOK_SIGNING";
  EXPECT_FALSE(CheckRuntimeWebhookSecrets(hook, kAllowed).has_value());
}

// The audit's attack: a runtime webhook header reading the producer's own
// API secret.
TEST(RuntimeWebhookSecretsTest, OtherVariablesAreRefused) {
  WebhookConfig hook = Hook();
  hook.headers.push_back(EnvHeader("ES_SECRET_OPS"));
  auto problem = CheckRuntimeWebhookSecrets(hook, kAllowed);
  ASSERT_TRUE(problem.has_value());
  EXPECT_EQ(problem->key, "headers[1].value_env");
  EXPECT_EQ(problem->message,
            "a runtime webhook may not read environment variable "
            "ES_SECRET_OPS: it is not in "
            "producer.webhook_delivery.runtime_secret_env (the variables "
            "runtime webhooks may read)");
  // With no allow-list, no variable at all.
  hook.headers.back().secret.env = "ES_WEBHOOK_CRM_TOKEN";
  EXPECT_FALSE(CheckRuntimeWebhookSecrets(hook, kAllowed).has_value());
  EXPECT_TRUE(CheckRuntimeWebhookSecrets(hook, {}).has_value());

  // The signing secret too.
  hook = Hook();
  hook.enable_security = true;
  hook.secret.env = "ES_DATABASE_URL";
  problem = CheckRuntimeWebhookSecrets(hook, kAllowed);
  ASSERT_TRUE(problem.has_value());
  EXPECT_EQ(problem->key, "secret_env");

  // A name that is not one is not echoed.
  hook.secret.env = std::string(10000, 'A') + "\n";
  problem = CheckRuntimeWebhookSecrets(hook, kAllowed);
  ASSERT_TRUE(problem.has_value());
  EXPECT_EQ(problem->message,
            "expected an environment variable name like ES_WEBHOOK_CRM_TOKEN");
}

// No file, whatever the path: the same message whether it exists or not,
// and nothing is read to decide.
TEST(RuntimeWebhookSecretsTest, FilesAreRefusedWithoutLookingAtThem) {
  std::string message;
  for (const char* path : {"/etc/passwd", "/nonexistent/x", "/etc"}) {
    WebhookConfig hook = Hook();
    WebhookHeaderConfig h;
    h.key = "Authorization";
    h.secret.file = path;
    hook.headers.push_back(h);
    auto problem = CheckRuntimeWebhookSecrets(hook, kAllowed);
    ASSERT_TRUE(problem.has_value()) << path;
    EXPECT_EQ(problem->key, "headers[1].value_file");
    EXPECT_EQ(problem->message.find(path), std::string::npos);
    if (message.empty()) message = problem->message;
    EXPECT_EQ(problem->message, message);
  }
  WebhookConfig hook = Hook();
  hook.enable_security = true;
  hook.secret.file = "/run/secrets/x";
  auto problem = CheckRuntimeWebhookSecrets(hook, kAllowed);
  ASSERT_TRUE(problem.has_value());
  EXPECT_EQ(problem->key, "secret_file");
  EXPECT_EQ(problem->message, message);
}

TEST(RuntimeWebhookSecretsTest, WebhookSignatureHeaderIsSetByTheSender) {
  DocTypeDef note;
  note.name = "Note";
  auto registry_or = DocTypeRegistry::Create({note});
  ASSERT_TRUE(registry_or.ok()) << registry_or.status();
  const DocTypeRegistry& registry = *registry_or;
  WebhookConfig hook = Hook();
  hook.doctype = "Note";
  hook.doc_event = "on_update";
  hook.request_url = "http://h/x";
  hook.webhook_data.push_back({"name", ""});
  ASSERT_FALSE(CheckWebhook(hook, registry).has_value());
  hook.headers[0].key = "Webhook-Signature";
  auto problem = CheckWebhook(hook, registry);
  ASSERT_TRUE(problem.has_value());
  EXPECT_EQ(problem->key, "headers[0].key");
}

}  // namespace
}  // namespace eventstream
