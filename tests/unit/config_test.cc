#include "libsync/config/config.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/support/doctype_fixtures.h"
#include "tests/support/frappe_schema.h"

namespace eventstream {
namespace {

// The docs/design.md "Config" sketch, with its `doctypes: [...]` filled in and
// the `soi-to-poi` mapping it refers to defined, so that it is complete.
const std::string kSketch = R"yaml(
site: {name: branch1}
database: {url: "postgresql:///branch1"}
doctypes:
  - name: Note
    autoname: hash
    fields:
      - {fieldname: title, fieldtype: Data, reqd: true}
      - {fieldname: public, fieldtype: Check}
      - {fieldname: content, fieldtype: Text}
      - {fieldname: seen_by, fieldtype: Table, options: Note Seen By}
  - name: Note Seen By
    istable: true
    fields:
      - {fieldname: user, fieldtype: Link, options: User}
  - name: Purchase Order
    autoname: series:PO-.#####
    fields:
      - {fieldname: supplier_ref, fieldtype: Data}
      - {fieldname: items, fieldtype: Table, options: Purchase Order Item}
  - name: Purchase Order Item
    istable: true
    fields:
      - {fieldname: item_code, fieldtype: Data}
producer:
  listen: "0.0.0.0:50051"
  api_keys: [{key: branch1, secret_env: ES_SECRET_BRANCH1, role: consumer}]
  consumers: [{site: branch1, doctypes: [{doctype: Note, status: approved}]}]
consumer:
  listen: "0.0.0.0:50052"
  advertise: "branch1-consumer:50052"   # where producers send Notify
  api_keys: [{key: ops, secret_env: ES_SECRET_OPS, role: admin}]
  poll_interval: 30s
  producers:
    - name: hq
      url: "hq-producer:50051"
      api_key: branch1
      api_secret_env: ES_SECRET_BRANCH1
      doctypes:
        - {doctype: Note, use_same_name: true, condition: "doc.public == 1"}
        - {doctype: Purchase Order, mapping: so-to-po}   # local DocType, fed by the producer's Sales Order
  mappings:
)yaml" + std::string(testing::kSoToPoMapping) + R"yaml(    - name: soi-to-poi
      local_doctype: Purchase Order Item
      remote_doctype: Sales Order Item
      field_mapping:
        - {remote_fieldname: item_code, local_fieldname: item_code}
)yaml";

std::string TestData(const std::string& name) {
  return std::string(ES_SOURCE_DIR) + "/tests/testdata/config/" + name;
}

// kSketch with the first occurrence of `from` replaced by `to`; fails the
// test when `from` is not there, so edits to kSketch cannot silently make a
// test vacuous.
std::string Sketch(const std::string& from, const std::string& to) {
  std::string text = kSketch;
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << "not in kSketch: " << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

// The error message of parsing `yaml` as config.yaml, or "OK".
std::string ErrorOf(const std::string& yaml) {
  absl::StatusOr<Config> config = ParseConfig(yaml, "config.yaml");
  if (config.ok()) return "OK";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(config.status().message());
}

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars](std::string_view name) -> std::optional<std::string> {
    auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

// A file under the test's temp dir holding `contents`; removed on exit.
class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    char path[] = "/tmp/es_config_test_XXXXXX";
    int fd = mkstemp(path);
    EXPECT_GE(fd, 0);
    close(fd);
    path_ = path;
    std::ofstream(path_, std::ios::binary) << contents;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ---- valid configs
// -----------------------------------------------------------

TEST(Config, DesignSketchParses) {
  absl::StatusOr<Config> config = ParseConfig(kSketch, "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->source, "config.yaml");
  EXPECT_EQ(config->site.name, "branch1");
  EXPECT_EQ(config->database.url, "postgresql:///branch1");
  EXPECT_EQ(config->registry.all().size(), 4u);
  EXPECT_EQ(config->registry.Find("Note")->table, "tabNote");

  ASSERT_TRUE(config->producer.has_value());
  const ProducerConfig& producer = *config->producer;
  EXPECT_EQ(producer.listen, "0.0.0.0:50051");
  ASSERT_EQ(producer.api_keys.size(), 1u);
  EXPECT_EQ(producer.api_keys[0].key, "branch1");
  EXPECT_EQ(producer.api_keys[0].secret.env, "ES_SECRET_BRANCH1");
  EXPECT_EQ(producer.api_keys[0].role, ApiKeyRole::kConsumer);
  ASSERT_NE(producer.FindConsumer("branch1"), nullptr);
  EXPECT_EQ(producer.FindConsumer("branch1")->doctypes[0].doctype, "Note");
  EXPECT_EQ(producer.FindConsumer("branch1")->doctypes[0].status,
            SubscriptionStatus::kApproved);
  EXPECT_NE(producer.FindApiKey("branch1"), nullptr);

  ASSERT_TRUE(config->consumer.has_value());
  const ConsumerConfig& consumer = *config->consumer;
  EXPECT_EQ(consumer.listen, "0.0.0.0:50052");
  EXPECT_EQ(consumer.advertise, "branch1-consumer:50052");
  EXPECT_EQ(consumer.api_keys[0].role, ApiKeyRole::kAdmin);
  EXPECT_EQ(consumer.poll_interval, absl::Seconds(30));
  const EventProducerConfig* hq = consumer.FindProducer("hq");
  ASSERT_NE(hq, nullptr);
  EXPECT_EQ(hq->url, "hq-producer:50051");
  EXPECT_EQ(hq->api_key, "branch1");
  EXPECT_EQ(hq->api_secret.env, "ES_SECRET_BRANCH1");
  ASSERT_EQ(hq->doctypes.size(), 2u);
  EXPECT_TRUE(hq->doctypes[0].use_same_name);
  EXPECT_EQ(hq->doctypes[0].condition, "doc.public == 1");
  EXPECT_EQ(hq->doctypes[1].doctype, "Purchase Order");
  EXPECT_EQ(hq->doctypes[1].mapping, "so-to-po");
  EXPECT_FALSE(hq->doctypes[1].use_same_name);  // the documented default
  const DocTypeMapping* so = consumer.FindMapping("so-to-po");
  ASSERT_NE(so, nullptr);
  EXPECT_EQ(so->remote_doctype, "Sales Order");
  ASSERT_EQ(so->field_mapping.size(), 2u);
  EXPECT_EQ(so->field_mapping[1].mapping_type, "Child Table");
  EXPECT_EQ(so->field_mapping[1].mapping, "soi-to-poi");
}

TEST(Config, FullExampleLoadsWithEveryKey) {
  const std::string path = TestData("full.yaml");
  absl::StatusOr<Config> config = LoadConfigFile(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->source, path);
  EXPECT_EQ(config->log.level, "info");
  EXPECT_EQ(config->log.format, LogFormat::kJson);
  const DocTypeDef* customer = config->registry.Find("Customer");
  ASSERT_NE(customer, nullptr);
  EXPECT_EQ(customer->autoname, "field:customer_name");
  EXPECT_TRUE(customer->FindField("customer_name")->reqd);
  EXPECT_EQ(config->registry.Find("Note")->FindField("public")->default_value,
            "0");
  EXPECT_EQ(config->registry.Find("Note")->FindField("title")->default_value,
            std::nullopt);
  EXPECT_TRUE(config->registry.Find("Sales Invoice")->is_submittable);

  const ProducerConfig& producer = *config->producer;
  EXPECT_EQ(producer.metrics_listen, "0.0.0.0:9101");
  const ApiKeyConfig* ops = producer.FindApiKey("ops");
  ASSERT_NE(ops, nullptr);
  EXPECT_EQ(ops->role, ApiKeyRole::kAdmin);
  EXPECT_EQ(ops->secret.file, "/run/secrets/eventstream/ops");
  EXPECT_EQ(ops->secret.env, "");
  EXPECT_EQ(ops->secret.origin, path + ": producer.api_keys[1].secret_file");
  const ConsumerSiteConfig* hq_site = producer.FindConsumer("hq");
  ASSERT_NE(hq_site, nullptr);
  EXPECT_EQ(hq_site->doctypes[1].status, SubscriptionStatus::kPending);
  EXPECT_EQ(hq_site->doctypes[1].condition, "cmd:public.note_visible_to");
  EXPECT_EQ(producer.condition_functions,
            (std::vector<std::string>{"public.note_visible_to", "app.visible"}));
  EXPECT_EQ(producer.webhook_delivery.runtime_secret_env,
            (std::vector<std::string>{"ES_WEBHOOK_CRM_TOKEN", "ES_HOOK_*"}));
  EXPECT_EQ(producer.retention.min_age, absl::Minutes(30));
  EXPECT_EQ(producer.retention.max_age, absl::Hours(72));
  EXPECT_EQ(producer.retention.max_entries, 1000000);
  EXPECT_EQ(producer.retention.batch, 500);
  EXPECT_EQ(producer.retention.interval, absl::Seconds(30));

  EXPECT_EQ(producer.database_pool.max_connections, 12);
  EXPECT_EQ(producer.database_pool.acquire_timeout, absl::Seconds(2));
  EXPECT_EQ(producer.max_concurrent_calls_per_key, 4);

  const ConsumerConfig& consumer = *config->consumer;
  EXPECT_EQ(consumer.metrics_listen, "0.0.0.0:9102");
  EXPECT_EQ(consumer.max_message_mb, 128);
  EXPECT_EQ(consumer.sync_log_retention, absl::Hours(240));
  EXPECT_EQ(consumer.producers.size(), 2u);
  const EventProducerConfig* archive = consumer.FindProducer("hq-archive");
  ASSERT_NE(archive, nullptr);
  EXPECT_EQ(archive->api_secret.file, "/run/secrets/eventstream/hq-archive");
  EXPECT_TRUE(archive->doctypes[0].unsubscribe);
  const EventProducerConfig* hq_full = consumer.FindProducer("hq");
  ASSERT_NE(hq_full, nullptr);
  ASSERT_EQ(hq_full->doctypes.size(), 4u);
  EXPECT_EQ(hq_full->doctypes[2].on_move_out, ProducerDocTypeConfig::MoveOut::kKeep);
  EXPECT_FALSE(hq_full->doctypes[2].initial_sync);
  EXPECT_TRUE(hq_full->doctypes[3].initial_sync);
  ASSERT_TRUE(producer.tls.has_value());
  EXPECT_EQ(producer.tls->cert_file, "/etc/eventstream-tls/tls.crt");
  EXPECT_EQ(producer.tls->client_ca_file, "/etc/eventstream-tls/ca.crt");
  EXPECT_EQ(producer.tls->refresh_interval, absl::Seconds(30));
  EXPECT_EQ(producer.tls->origin, path + ": producer.tls");
  ASSERT_TRUE(producer.notify_tls.has_value());
  EXPECT_EQ(producer.notify_tls->ca_file, "/etc/eventstream-tls/ca.crt");
  EXPECT_EQ(producer.notify_tls->server_name, "");
  EXPECT_EQ(producer.notify_tls->key_file, "/etc/eventstream-tls/tls.key");
  EXPECT_EQ(producer.notify_tls->refresh_interval, absl::Minutes(1));
  ASSERT_TRUE(consumer.tls.has_value());
  EXPECT_EQ(consumer.tls->client_ca_file, "");
  EXPECT_EQ(consumer.tls->refresh_interval, absl::Seconds(60));
  const EventProducerConfig* hq_entry = consumer.FindProducer("hq");
  ASSERT_NE(hq_entry, nullptr);
  ASSERT_TRUE(hq_entry->tls.has_value());
  EXPECT_EQ(hq_entry->tls->server_name, "hq-producer.example.com");
  EXPECT_EQ(hq_entry->tls->cert_file, "/etc/eventstream-tls/tls.crt");
  EXPECT_EQ(hq_entry->tls->origin, path + ": consumer.producers[0].tls");
  // `tls: {}`: TLS against the system's roots, no client certificate.
  ASSERT_TRUE(archive->tls.has_value());
  EXPECT_EQ(archive->tls->ca_file, "");
  EXPECT_EQ(archive->tls->cert_file, "");
  const DocTypeMapping* so = consumer.FindMapping("so-to-po");
  ASSERT_NE(so, nullptr);
  EXPECT_EQ(so->field_mapping[1].default_value, "2024-01-01");
  const FieldMapping& doc_mapping = so->field_mapping[3];
  EXPECT_EQ(doc_mapping.mapping_type, "Document");
  EXPECT_EQ(doc_mapping.remote_value_filters.ToJson(),
            R"({"customer_name":"doc.customer"})");
}

TEST(Config, Defaults) {
  absl::StatusOr<Config> config = ParseConfig(R"yaml(
site: {name: s1}
doctypes: [{name: Note, fields: [{fieldname: t, fieldtype: Data}]}]
producer:
  consumers: [{site: b, doctypes: [{doctype: Note}]}]
consumer:
  producers: [{name: p, url: "p:1", api_key: k, api_secret_env: S,
               doctypes: [{doctype: Note}]}]
)yaml",
                                              "c.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->database.url, "");  // may come from ES_DATABASE_URL
  EXPECT_EQ(config->log.level, "info");
  EXPECT_EQ(config->log.format, LogFormat::kText);
  EXPECT_EQ(config->registry.Find("Note")->autoname, "hash");
  EXPECT_EQ(config->producer->listen, "0.0.0.0:50051");
  EXPECT_EQ(config->producer->metrics_listen, "");
  EXPECT_EQ(config->producer->consumers[0].doctypes[0].status,
            SubscriptionStatus::kApproved);
  EXPECT_EQ(config->consumer->listen, "0.0.0.0:50052");
  EXPECT_EQ(config->consumer->advertise, "");
  EXPECT_EQ(config->consumer->poll_interval, absl::Seconds(30));
  EXPECT_EQ(config->producer->database_pool.max_connections, 20);
  EXPECT_EQ(config->producer->database_pool.acquire_timeout, absl::Seconds(5));
  EXPECT_EQ(config->producer->max_concurrent_calls_per_key, 8);
  EXPECT_EQ(config->consumer->max_message_mb, 64);
  EXPECT_EQ(config->consumer->sync_log_retention, absl::Hours(720));
  const ProducerDocTypeConfig& d = config->consumer->producers[0].doctypes[0];
  EXPECT_FALSE(d.use_same_name);
  EXPECT_FALSE(d.unsubscribe);
  EXPECT_EQ(d.on_move_out, ProducerDocTypeConfig::MoveOut::kDelete);
  EXPECT_TRUE(d.initial_sync);
  EXPECT_EQ(d.condition, "");
  EXPECT_EQ(d.mapping, "");
  // No tls anywhere: plaintext.
  EXPECT_FALSE(config->producer->tls.has_value());
  EXPECT_FALSE(config->producer->notify_tls.has_value());
  EXPECT_FALSE(config->consumer->tls.has_value());
  EXPECT_FALSE(config->consumer->producers[0].tls.has_value());
  EXPECT_EQ(config->consumer->producers[0].delivery, EventProducerConfig::Delivery::kStream);
}

TEST(Config, DeliveryIsStreamOrPull) {
  absl::StatusOr<Config> config = ParseConfig(
      Sketch("      api_key: branch1", "      api_key: branch1\n      delivery: pull"),
      "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->consumer->producers[0].delivery, EventProducerConfig::Delivery::kPull);
  EXPECT_EQ(ErrorOf(Sketch("      api_key: branch1", "      api_key: branch1\n      delivery: push")),
            "config.yaml: consumer.producers[0].delivery: expected one of stream, pull");
}

TEST(Config, ApplyWorkersFromOneToEight) {
  absl::StatusOr<Config> config = ParseConfig(Sketch("      api_key: branch1", "      api_key: branch1"), "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->consumer->producers[0].apply_workers, 1);  // the default
  config = ParseConfig(
      Sketch("      api_key: branch1", "      api_key: branch1\n      apply_workers: 4"),
      "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->consumer->producers[0].apply_workers, 4);
  for (const char* bad : {"0", "9", "two"}) {
    EXPECT_EQ(ErrorOf(Sketch("      api_key: branch1",
                             absl::StrCat("      api_key: branch1\n      apply_workers: ", bad))),
              "config.yaml: consumer.producers[0].apply_workers: expected an integer from 1 to 8")
        << bad;
  }
}

TEST(Config, SectionsAreOptional) {
  absl::StatusOr<Config> config = ParseConfig("site: {name: a}\n", "c.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->producer.has_value());
  EXPECT_FALSE(config->consumer.has_value());
  EXPECT_TRUE(config->registry.all().empty());
  // A null section is the same as a missing one (`producer:` alone).
  config = ParseConfig("site: {name: a}\nproducer:\nconsumer: ~\n", "c.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->producer.has_value());
  EXPECT_FALSE(config->consumer.has_value());
  // An empty mapping turns the section on with its defaults.
  config = ParseConfig("site: {name: a}\nproducer: {}\n", "c.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->producer.has_value());
}

TEST(Config, EmptyStringsKeepDefaults) {
  // Templates (Helm) render unset values as "".
  std::string yaml = Sketch("{doctype: Note, status: approved}",
                            "{doctype: Note, status: \"\", condition: \"\"}");
  absl::StatusOr<Config> config = ParseConfig(yaml, "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->producer->consumers[0].doctypes[0].status,
            SubscriptionStatus::kApproved);
}

TEST(Config, DurationsAndCaseInsensitiveEnums) {
  for (const auto& [text, want] :
       std::vector<std::pair<std::string, absl::Duration>>{
           {"500ms", absl::Milliseconds(500)},
           {"2m", absl::Minutes(2)},
           {"1h30m", absl::Minutes(90)},
           {"\"45s\"", absl::Seconds(45)}}) {
    absl::StatusOr<Config> config = ParseConfig(
        Sketch("poll_interval: 30s", "poll_interval: " + text), "config.yaml");
    ASSERT_TRUE(config.ok()) << text << ": " << config.status();
    EXPECT_EQ(config->consumer->poll_interval, want) << text;
  }
  absl::StatusOr<Config> config = ParseConfig(
      Sketch("status: approved", "status: Rejected"), "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->producer->consumers[0].doctypes[0].status,
            SubscriptionStatus::kRejected);
  EXPECT_EQ(ErrorOf(Sketch("use_same_name: true", "use_same_name: 1")), "OK");
  EXPECT_EQ(ErrorOf(Sketch("use_same_name: true", "use_same_name: False")),
            "OK");
}

TEST(Config, RemoteValueFiltersKeepYamlTypes) {
  absl::StatusOr<Config> config = ParseConfig(
      R"yaml(
site: {name: a}
doctypes:
  - {name: Customer, fields: [{fieldname: n, fieldtype: Data}]}
  - {name: Order, fields: [{fieldname: customer, fieldtype: Link, options: Customer}]}
consumer:
  mappings:
    - name: order
      local_doctype: Order
      remote_doctype: Sales Order
      field_mapping:
        - remote_fieldname: customer
          local_fieldname: customer
          mapping_type: document
          mapping: cust
          remote_value_filters: {name: doc.customer, n: 3, q: "3", b: true, z: null}
    - name: cust
      local_doctype: Customer
      remote_doctype: Customer
      field_mapping: [{remote_fieldname: n, local_fieldname: n}]
)yaml",
      "c.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  const FieldMapping& f = config->consumer->mappings[0].field_mapping[0];
  EXPECT_EQ(f.mapping_type, "Document");  // normalized
  EXPECT_EQ(f.remote_value_filters.ToJson(),
            R"({"b":true,"n":3,"name":"doc.customer","q":"3","z":null})");
}

// Frappe's remote_value_filters, as copied from a Frappe site (JSON is
// YAML): a bare field name and an "eval:" expression, next to doc.<field>.
TEST(Config, RemoteValueFiltersInFrappeForm) {
  absl::StatusOr<Config> config = ParseConfig(
      R"yaml(
site: {name: a}
doctypes:
  - {name: Role, fields: [{fieldname: role_name, fieldtype: Data}]}
  - name: ToDo
    fields:
      - {fieldname: description, fieldtype: Text}
      - {fieldname: role, fieldtype: Link, options: Role}
      - {fieldname: owner_role, fieldtype: Link, options: Role}
consumer:
  mappings:
    - name: todo-from-note
      local_doctype: ToDo
      remote_doctype: Note
      field_mapping:
        - {remote_fieldname: content, local_fieldname: description}
        - {remote_fieldname: title, local_fieldname: role, mapping_type: Document,
           mapping: role-from-note, remote_value_filters: {"title": "title"}}
        - remote_fieldname: owner
          local_fieldname: owner_role
          mapping_type: Document
          mapping: role-from-note
          remote_value_filters:
            title: "eval:doc.get('owner_title', doc.owner)"
            public: 1
            name: doc.owner_note
    - name: role-from-note
      local_doctype: Role
      remote_doctype: Note
      field_mapping: [{remote_fieldname: title, local_fieldname: role_name}]
)yaml",
      "c.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  const DocTypeMapping& m = config->consumer->mappings[0];
  EXPECT_EQ(m.field_mapping[1].remote_value_filters.ToJson(),
            R"({"title":"title"})");
  EXPECT_EQ(m.field_mapping[2].remote_value_filters.ToJson(),
            R"({"name":"doc.owner_note","public":1,)"
            R"j("title":"eval:doc.get('owner_title', doc.owner)"})j");
}

// ---- error messages
// ------------------------------------------------------------

TEST(ConfigErrors, RequiredExactMessageFromTheIssue) {
  EXPECT_EQ(ErrorOf(Sketch("{doctype: Purchase Order, mapping: so-to-po}",
                           "{mapping: so-to-po}")),
            "config.yaml: consumer.producers[0].doctypes[1].doctype: required");
}

TEST(ConfigErrors, FileNameIsUsedAsGiven) {
  absl::StatusOr<Config> config =
      ParseConfig("site: {}\n", "/etc/eventstream/config.yaml");
  EXPECT_EQ(std::string(config.status().message()),
            "/etc/eventstream/config.yaml: site.name: required");
}

TEST(ConfigErrors, BadUnknownKeyFile) {
  const std::string path = TestData("bad_unknown_key.yaml");
  absl::StatusOr<Config> config = LoadConfigFile(path);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(std::string(config.status().message()),
            path +
                ": consumer.pol_interval: unknown key \"pol_interval\" "
                "(expected one of: listen, advertise, metrics_listen, tls, "
                "api_keys, poll_interval, max_message_mb, sync_log_retention, producers, "
                "mappings)");
}

TEST(ConfigErrors, UnknownKeysAtEveryLevel) {
  struct Case {
    std::string from, to, want;
  };
  const std::vector<Case> cases = {
      {"site: {name: branch1}", "site: {name: branch1}\nsites: 1",
       "config.yaml: sites: unknown key \"sites\" (expected one of: site, "
       "database, log, doctypes, producer, consumer)"},
      {"site: {name: branch1}", "site: {name: branch1, id: 1}",
       "config.yaml: site.id: unknown key \"id\" (expected one of: name)"},
      {"database: {url:", "database: {uri: x, url:",
       "config.yaml: database.uri: unknown key \"uri\" (expected one of: "
       "url)"},
      {"site: {name: branch1}", "site: {name: branch1}\nlog: {lvl: 1}",
       "config.yaml: log.lvl: unknown key \"lvl\" (expected one of: level, "
       "format)"},
      {"    autoname: hash", "    autoname: hash\n    label: Note",
       "config.yaml: doctypes[0].label: unknown key \"label\" (expected one "
       "of: name, table, autoname, istable, is_submittable, fields)"},
      {"{fieldname: title, fieldtype: Data, reqd: true}",
       "{fieldname: title, fieldtype: Data, required: true}",
       "config.yaml: doctypes[0].fields[0].required: unknown key "
       "\"required\" (expected one of: fieldname, fieldtype, options, reqd, "
       "default)"},
      {"  listen: \"0.0.0.0:50051\"", "  listen: \"0.0.0.0:50051\"\n  x: 1",
       "config.yaml: producer.x: unknown key \"x\" (expected one of: listen, "
       "metrics_listen, tls, notify_tls, api_keys, consumers, condition_functions, webhooks, "
       "webhook_delivery, database_pool, max_concurrent_calls_per_key, retention, capture, "
       "wal_slot, wal_publication)"},
      {"{key: branch1, secret_env", "{key: branch1, secret: x, secret_env",
       "config.yaml: producer.api_keys[0].secret: unknown key \"secret\" "
       "(expected one of: key, secret_env, secret_file, role)"},
      {"[{site: branch1, doctypes", "[{site: branch1, x: 1, doctypes",
       "config.yaml: producer.consumers[0].x: unknown key \"x\" (expected "
       "one of: site, doctypes)"},
      {"{doctype: Note, status: approved}",
       "{doctype: Note, status: approved, approved: true}",
       "config.yaml: producer.consumers[0].doctypes[0].approved: unknown key "
       "\"approved\" (expected one of: doctype, status, condition)"},
      {"  poll_interval: 30s", "  poll_interval: 30s\n  poll: 1",
       "config.yaml: consumer.poll: unknown key \"poll\" (expected one of: "
       "listen, advertise, metrics_listen, tls, api_keys, poll_interval, "
       "max_message_mb, sync_log_retention, producers, mappings)"},
      {"      api_key: branch1", "      api_key: branch1\n      api_secret: x",
       "config.yaml: consumer.producers[0].api_secret: unknown key "
       "\"api_secret\" (expected one of: name, url, api_key, api_secret_env, "
       "api_secret_file, tls, delivery, apply_workers, doctypes)"},
      {"{doctype: Note, use_same_name: true,",
       "{doctype: Note, same_name: true,",
       "config.yaml: consumer.producers[0].doctypes[0].same_name: unknown "
       "key \"same_name\" (expected one of: doctype, use_same_name, "
       "condition, mapping, unsubscribe, on_move_out, initial_sync)"},
      {"      remote_doctype: Sales Order\n",
       "      remote_doctype: Sales Order\n      has_mapping: 1\n",
       "config.yaml: consumer.mappings[0].has_mapping: unknown key "
       "\"has_mapping\" (expected one of: name, local_doctype, "
       "remote_doctype, field_mapping)"},
      {"{remote_fieldname: customer, local_fieldname: supplier_ref}",
       "{remote_fieldname: customer, local_fieldname: supplier_ref, x: 1}",
       "config.yaml: consumer.mappings[0].field_mapping[0].x: unknown key "
       "\"x\" (expected one of: remote_fieldname, local_fieldname, "
       "mapping_type, mapping, default_value, remote_value_filters)"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ErrorOf(Sketch(c.from, c.to)), c.want) << c.to;
  }
}

TEST(ConfigErrors, WrongTypes) {
  EXPECT_EQ(ErrorOf(Sketch("site: {name: branch1}", "site: {name: [a, b]}")),
            "config.yaml: site.name: expected a string");
  EXPECT_EQ(ErrorOf(Sketch("site: {name: branch1}", "site: branch1")),
            "config.yaml: site: expected a mapping with keys: name");
  EXPECT_EQ(ErrorOf(Sketch("reqd: true", "reqd: yes please")),
            "config.yaml: doctypes[0].fields[0].reqd: expected true or false");
  EXPECT_EQ(ErrorOf(Sketch("use_same_name: true", "use_same_name: {}")),
            "config.yaml: consumer.producers[0].doctypes[0].use_same_name: "
            "expected true or false");
  EXPECT_EQ(ErrorOf("site: {name: a}\ndoctypes: [{name: Note, fields: title}]"),
            "config.yaml: doctypes[0].fields: expected a list");
  EXPECT_EQ(ErrorOf("site: {name: a}\nconsumer: {producers: [[hq]]}"),
            "config.yaml: consumer.producers[0]: expected a mapping with "
            "keys: name, url, api_key, api_secret_env, api_secret_file, tls, "
            "delivery, apply_workers, doctypes");
  EXPECT_EQ(ErrorOf("- a\n- b\n"),
            "config.yaml: expected a mapping with keys site, database, log, "
            "doctypes, producer, consumer");
}

TEST(ConfigErrors, Required) {
  EXPECT_EQ(ErrorOf("database: {url: x}\n"), "config.yaml: site: required");
  EXPECT_EQ(ErrorOf(Sketch("site: {name: branch1}", "site: {name: \"\"}")),
            "config.yaml: site.name: required");
  EXPECT_EQ(ErrorOf(Sketch("{fieldname: public, fieldtype: Check}",
                           "{fieldname: public}")),
            "config.yaml: doctypes[0].fields[1].fieldtype: required");
  EXPECT_EQ(ErrorOf(Sketch("  - name: Note Seen By\n", "  - \n")),
            "config.yaml: doctypes[1].name: required");
  EXPECT_EQ(ErrorOf(Sketch("{key: branch1, ", "{")),
            "config.yaml: producer.api_keys[0].key: required");
  EXPECT_EQ(ErrorOf(Sketch(", role: consumer}", "}")),
            "config.yaml: producer.api_keys[0].role: required");
  EXPECT_EQ(ErrorOf(Sketch("[{site: branch1, ", "[{")),
            "config.yaml: producer.consumers[0].site: required");
  EXPECT_EQ(ErrorOf(Sketch("      url: \"hq-producer:50051\"\n", "")),
            "config.yaml: consumer.producers[0].url: required");
  EXPECT_EQ(ErrorOf(Sketch("    - name: hq\n", "    - \n")),
            "config.yaml: consumer.producers[0].name: required");
  EXPECT_EQ(ErrorOf(Sketch("      api_key: branch1\n", "")),
            "config.yaml: consumer.producers[0].api_key: required");
  EXPECT_EQ(ErrorOf(Sketch("      remote_doctype: Sales Order\n", "")),
            "config.yaml: consumer.mappings[0].remote_doctype: required");
  EXPECT_EQ(ErrorOf(Sketch("      local_doctype: Purchase Order\n", "")),
            "config.yaml: consumer.mappings[0].local_doctype: required");
  EXPECT_EQ(ErrorOf(Sketch("{remote_fieldname: customer, ", "{")),
            "config.yaml: consumer.mappings[0].field_mapping[0]."
            "remote_fieldname: required");
  EXPECT_EQ(ErrorOf(Sketch("\n        - {remote_fieldname: item_code, "
                           "local_fieldname: item_code}",
                           " []")),
            "config.yaml: consumer.mappings[1].field_mapping: required (at "
            "least one field)");
}

TEST(ConfigErrors, Enums) {
  EXPECT_EQ(ErrorOf(Sketch("status: approved", "status: yes")),
            "config.yaml: producer.consumers[0].doctypes[0].status: expected "
            "one of approved, pending, rejected");
  EXPECT_EQ(ErrorOf(Sketch("role: consumer", "role: reader")),
            "config.yaml: producer.api_keys[0].role: expected one of "
            "consumer, admin");
  EXPECT_EQ(ErrorOf(Sketch("role: admin", "role: consumer")),
            "config.yaml: consumer.api_keys[0].role: expected one of admin");
  EXPECT_EQ(ErrorOf(Sketch("site: {name: branch1}",
                           "site: {name: branch1}\nlog: {format: xml}")),
            "config.yaml: log.format: expected one of text, json");
  EXPECT_EQ(ErrorOf(Sketch("site: {name: branch1}",
                           "site: {name: branch1}\nlog: {level: trace}")),
            "config.yaml: log.level: expected one of debug, info, warn, "
            "error");
  EXPECT_EQ(ErrorOf(Sketch("mapping_type: Child Table", "mapping_type: Table")),
            "config.yaml: consumer.mappings[0].field_mapping[1].mapping_type: "
            "expected one of Child Table, Document");
  EXPECT_EQ(ErrorOf(Sketch("mapping: so-to-po}", "mapping: so-to-po, on_move_out: drop}")),
            "config.yaml: consumer.producers[0].doctypes[1].on_move_out: "
            "expected one of delete, keep");
}

TEST(Config, OnMoveOutKeepIsCaseInsensitive) {
  absl::StatusOr<Config> config = ParseConfig(
      Sketch("mapping: so-to-po}", "mapping: so-to-po, on_move_out: KEEP}"), "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->consumer->producers[0].doctypes[0].on_move_out,
            ProducerDocTypeConfig::MoveOut::kDelete);
  EXPECT_EQ(config->consumer->producers[0].doctypes[1].on_move_out,
            ProducerDocTypeConfig::MoveOut::kKeep);
}

TEST(Config, InitialSyncDefaultsToTrueAndCanBeTurnedOff) {
  absl::StatusOr<Config> config = ParseConfig(
      Sketch("mapping: so-to-po}", "mapping: so-to-po, initial_sync: false}"),
      "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->consumer->producers[0].doctypes[0].initial_sync);
  EXPECT_FALSE(config->consumer->producers[0].doctypes[1].initial_sync);
}

TEST(ConfigErrors, InitialSyncMustBeABoolean) {
  for (const char* bad : {"later", "{}", "[true]"}) {
    EXPECT_EQ(ErrorOf(Sketch("mapping: so-to-po}",
                             std::string("mapping: so-to-po, initial_sync: ") +
                                 bad + "}")),
              "config.yaml: consumer.producers[0].doctypes[1].initial_sync: "
              "expected true or false")
        << bad;
  }
}

TEST(ConfigErrors, Durations) {
  for (const char* bad : {"30", "thirty seconds", "inf", "[30s]"}) {
    EXPECT_EQ(
        ErrorOf(
            Sketch("poll_interval: 30s", std::string("poll_interval: ") + bad)),
        std::string("config.yaml: consumer.poll_interval: ") +
            (std::string(bad) == "[30s]" ? "expected a string"
                                         : "expected a duration like 30s"))
        << bad;
  }
  EXPECT_EQ(ErrorOf(Sketch("poll_interval: 30s", "poll_interval: -5s")),
            "config.yaml: consumer.poll_interval: expected a positive "
            "duration like 30s");
  EXPECT_EQ(ErrorOf(Sketch("poll_interval: 30s", "poll_interval: 0s")),
            "config.yaml: consumer.poll_interval: expected a positive "
            "duration like 30s");
}

// Issue 13 items 2 and 3: the limits are bounded integers and durations,
// and their errors name the key.
TEST(ConfigErrors, Limits) {
  const std::string pool = "  listen: \"0.0.0.0:50051\"";
  EXPECT_EQ(ErrorOf(Sketch(pool, pool + "\n  database_pool: {max_connections: 0}")),
            "config.yaml: producer.database_pool.max_connections: expected an integer "
            "from 1 to 1000");
  EXPECT_EQ(ErrorOf(Sketch(pool, pool + "\n  database_pool: {max_connections: lots}")),
            "config.yaml: producer.database_pool.max_connections: expected an integer "
            "from 1 to 1000");
  EXPECT_EQ(ErrorOf(Sketch(pool, pool + "\n  database_pool: {acquire_timeout: 0s}")),
            "config.yaml: producer.database_pool.acquire_timeout: expected a positive "
            "duration like 30s");
  EXPECT_EQ(ErrorOf(Sketch(pool, pool + "\n  database_pool: {size: 3}")),
            "config.yaml: producer.database_pool.size: unknown key \"size\" (expected one "
            "of: max_connections, acquire_timeout)");
  EXPECT_EQ(ErrorOf(Sketch(pool, pool + "\n  max_concurrent_calls_per_key: 0")),
            "config.yaml: producer.max_concurrent_calls_per_key: expected an integer from 1 "
            "to 1000");
  EXPECT_EQ(ErrorOf(Sketch("  poll_interval: 30s",
                           "  poll_interval: 30s\n  sync_log_retention: 30d")),
            "config.yaml: consumer.sync_log_retention: expected a duration like 30s");
  EXPECT_EQ(ErrorOf(Sketch("  poll_interval: 30s", "  poll_interval: 30s\n  max_message_mb: 2")),
            "config.yaml: consumer.max_message_mb: expected an integer from 4 to 1024");
  EXPECT_EQ(ErrorOf(Sketch("  poll_interval: 30s",
                           "  poll_interval: 30s\n  max_message_mb: 4096")),
            "config.yaml: consumer.max_message_mb: expected an integer from 4 to 1024");
  absl::StatusOr<Config> config = ParseConfig(
      Sketch(pool, pool + "\n  database_pool: {max_connections: 3, acquire_timeout: 250ms}"
                          "\n  max_concurrent_calls_per_key: 2"),
      "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->producer->database_pool.max_connections, 3);
  EXPECT_EQ(config->producer->database_pool.acquire_timeout, absl::Milliseconds(250));
  EXPECT_EQ(config->producer->max_concurrent_calls_per_key, 2);
  config = ParseConfig(Sketch("  poll_interval: 30s", "  poll_interval: 30s\n  sync_log_retention: 0"),
                       "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->consumer->sync_log_retention, absl::ZeroDuration());  // kept for ever
}

TEST(ConfigErrors, YamlSyntaxHasLineAndColumn) {
  // Line 3 opens a flow mapping that never closes.
  std::string error = ErrorOf("site:\n  name: a\ndatabase: {url: x\n");
  EXPECT_EQ(error.rfind("config.yaml:", 0), 0u) << error;
  EXPECT_CONTAINS(error, "invalid YAML: ");
  int line = 0, column = 0;
  ASSERT_EQ(std::sscanf(error.c_str(), "config.yaml:%d:%d:", &line, &column), 2)
      << error;
  EXPECT_GE(line, 3);
  EXPECT_GE(column, 1);

  error = ErrorOf("site: {name: a}\n  bad indent: [\n");
  EXPECT_EQ(std::sscanf(error.c_str(), "config.yaml:%d:%d:", &line, &column), 2)
      << error;
  EXPECT_EQ(line, 2) << error;
}

TEST(ConfigErrors, EmptyOrMultipleDocuments) {
  EXPECT_EQ(ErrorOf(""),
            "config.yaml: expected a mapping with keys site, database, log, "
            "doctypes, producer, consumer");
  EXPECT_EQ(ErrorOf("# only a comment\n"),
            "config.yaml: expected a mapping with keys site, database, log, "
            "doctypes, producer, consumer");
  EXPECT_EQ(ErrorOf("site: {name: a}\n---\nsite: {name: b}\n"),
            "config.yaml: expected one YAML document, found 2");
}

TEST(ConfigErrors, DuplicateYamlKey) {
  EXPECT_EQ(ErrorOf(Sketch("  poll_interval: 30s",
                           "  poll_interval: 30s\n  poll_interval: 1m")),
            "config.yaml: consumer.poll_interval: duplicate key "
            "\"poll_interval\"");
}

TEST(ConfigErrors, RegistryProblemsCarryTheKeyPath) {
  EXPECT_EQ(ErrorOf(Sketch("options: Note Seen By", "options: Note Seen")),
            "config.yaml: doctypes[0].fields[3].options: unknown DocType "
            "\"Note Seen\" (a Table field's options must name a child "
            "DocType of the registry)");
  EXPECT_EQ(ErrorOf(Sketch("autoname: hash", "autoname: random")),
            "config.yaml: doctypes[0].autoname: expected one of hash, uuid, "
            "field:<fieldname>, series:PREFIX-.#####");
  EXPECT_EQ(ErrorOf(Sketch("autoname: hash", "autoname: field:subject")),
            "config.yaml: doctypes[0].autoname: \"subject\" is not a field "
            "of \"Note\"");
  EXPECT_EQ(
      ErrorOf(Sketch("autoname: series:PO-.#####", "autoname: series:PO-")),
      "config.yaml: doctypes[2].autoname: expected series:PREFIX.##### "
      "(a prefix, then 1 to 18 '#', e.g. series:NOTE-.#####)");
  EXPECT_EQ(ErrorOf(Sketch("fieldtype: Text}", "fieldtype: Txt}"))
                .rfind("config.yaml: doctypes[0].fields[2].fieldtype: unknown "
                       "fieldtype \"Txt\" (expected one of: Data, ",
                       0),
            0u);
  EXPECT_EQ(ErrorOf(Sketch("{fieldname: public,", "{fieldname: modified,")),
            "config.yaml: doctypes[0].fields[1].fieldname: \"modified\" is a "
            "standard column; it exists on every table and must not be "
            "listed");
  EXPECT_EQ(ErrorOf(Sketch("  - name: Note Seen By\n", "  - name: Note\n")),
            "config.yaml: doctypes[1].name: duplicate DocType \"Note\"");
  EXPECT_EQ(ErrorOf(Sketch("{fieldname: user, fieldtype: Link, options: "
                           "User}",
                           "{fieldname: user, fieldtype: Dynamic Link, "
                           "options: user_type}")),
            "config.yaml: doctypes[1].fields[0].options: \"user_type\" is not "
            "a field of \"Note Seen By\" (a Dynamic Link's options name the "
            "field that holds the target DocType)");
}

TEST(ConfigErrors, SubscriptionsNameRegistryDocTypes) {
  EXPECT_EQ(ErrorOf(Sketch("{doctype: Note, status: approved}",
                           "{doctype: Notes, status: approved}")),
            "config.yaml: producer.consumers[0].doctypes[0].doctype: unknown "
            "DocType \"Notes\" (add it under doctypes:)");
  EXPECT_EQ(ErrorOf(Sketch("{doctype: Note, status: approved}",
                           "{doctype: Note Seen By}")),
            "config.yaml: producer.consumers[0].doctypes[0].doctype: \"Note "
            "Seen By\" is a child DocType (istable); subscribe to its parent "
            "DocType instead");
  EXPECT_EQ(ErrorOf(Sketch("{doctype: Note, use_same_name",
                           "{doctype: ToDo, use_same_name")),
            "config.yaml: consumer.producers[0].doctypes[0].doctype: unknown "
            "DocType \"ToDo\" (add it under doctypes:)");
}

TEST(ConfigErrors, Mappings) {
  EXPECT_EQ(ErrorOf(Sketch("mapping: so-to-po}", "mapping: so-to-pi}")),
            "config.yaml: consumer.producers[0].doctypes[1].mapping: unknown "
            "mapping \"so-to-pi\" (expected the name of one of "
            "consumer.mappings)");
  EXPECT_EQ(ErrorOf(Sketch("{doctype: Purchase Order, mapping",
                           "{doctype: Note, mapping")),
            "config.yaml: consumer.producers[0].doctypes[1].doctype: expected "
            "\"Purchase Order\", the local_doctype of mapping \"so-to-po\"");
  EXPECT_EQ(ErrorOf(Sketch("local_doctype: Purchase Order\n",
                           "local_doctype: Bestellung\n")),
            "config.yaml: consumer.mappings[0].local_doctype: unknown DocType "
            "\"Bestellung\" (add it under doctypes:)");
  EXPECT_EQ(ErrorOf(Sketch("mapping: soi-to-poi}", "mapping: soi-to-xx}")),
            "config.yaml: consumer.mappings[0].field_mapping[1].mapping: "
            "unknown mapping \"soi-to-xx\" (expected the name of one of "
            "consumer.mappings)");
  EXPECT_EQ(ErrorOf(Sketch(", mapping: soi-to-poi}", "}")),
            "config.yaml: consumer.mappings[0].field_mapping[1].mapping: "
            "required with mapping_type Child Table");
  EXPECT_EQ(ErrorOf(Sketch("{remote_fieldname: customer, local_fieldname: "
                           "supplier_ref}",
                           "{remote_fieldname: customer, local_fieldname: "
                           "supplier_ref, mapping: soi-to-poi}")),
            "config.yaml: consumer.mappings[0].field_mapping[0].mapping: only "
            "used with mapping_type Child Table or Document");
  EXPECT_EQ(ErrorOf(Sketch("local_fieldname: supplier_ref}",
                           "local_fieldname: supplier}")),
            "config.yaml: consumer.mappings[0].field_mapping[0]."
            "local_fieldname: \"supplier\" is not a field of DocType "
            "\"Purchase Order\"");
  EXPECT_EQ(ErrorOf(Sketch("local_fieldname: items, mapping_type",
                           "local_fieldname: name, mapping_type")),
            "config.yaml: consumer.mappings[0].field_mapping[1]."
            "local_fieldname: \"name\" is not a Table field "
            "(required by mapping_type Child Table)");
  EXPECT_EQ(ErrorOf(Sketch("mapping: soi-to-poi}", "mapping: so-to-po}")),
            "config.yaml: consumer.mappings[0].field_mapping[1].mapping: "
            "mapping \"so-to-po\" produces \"Purchase Order\" but field "
            "\"items\" holds \"Purchase Order Item\"");
  EXPECT_EQ(ErrorOf(Sketch("mapping: soi-to-poi}",
                           "mapping: soi-to-poi, remote_value_filters: {a: "
                           "b}}")),
            "config.yaml: consumer.mappings[0].field_mapping[1]."
            "remote_value_filters: only used with mapping_type Document");
  EXPECT_EQ(ErrorOf(Sketch("mapping_type: Child Table, mapping: soi-to-poi}",
                           "mapping_type: Document, mapping: soi-to-poi, "
                           "remote_value_filters: {name: doc.items}}")),
            "config.yaml: consumer.mappings[0].field_mapping[1]."
            "local_fieldname: \"items\" is not a Link field (required by "
            "mapping_type Document)");
  EXPECT_EQ(ErrorOf(Sketch("mapping_type: Child Table, mapping: soi-to-poi}",
                           "mapping_type: Document, mapping: soi-to-poi}")),
            "config.yaml: consumer.mappings[0].field_mapping[1]."
            "remote_value_filters: required with mapping_type Document: "
            "{field: value} selecting the remote document, e.g. {name: "
            "doc.items}");
  EXPECT_EQ(ErrorOf(Sketch("mapping_type: Child Table, mapping: soi-to-poi}",
                           "mapping_type: Document, mapping: soi-to-poi, "
                           "remote_value_filters: {name: [a]}}")),
            "config.yaml: consumer.mappings[0].field_mapping[1]."
            "remote_value_filters.name: expected a value, a field name, "
            "doc.<field> or eval:<expression>");
  // An "eval:" expression is parsed at load time, its column given.
  EXPECT_EQ(ErrorOf(Sketch("mapping_type: Child Table, mapping: soi-to-poi}",
                           "mapping_type: Document, mapping: soi-to-poi, "
                           "remote_value_filters: {name: \"eval:doc.x ==\"}}")),
            "config.yaml: consumer.mappings[0].field_mapping[1]."
            "remote_value_filters.name: the expression after \"eval:\" "
            "(doc.x ==) does not parse: column 9: expected a value, found end "
            "of input");
  // Frappe's eval also sees `frappe`; ours only `doc`.
  EXPECT_EQ(ErrorOf(Sketch("mapping_type: Child Table, mapping: soi-to-poi}",
                           "mapping_type: Document, mapping: soi-to-poi, "
                           "remote_value_filters: {name: "
                           "\"eval:frappe.session.user\"}}")),
            "config.yaml: consumer.mappings[0].field_mapping[1]."
            "remote_value_filters.name: the expression after \"eval:\" "
            "(frappe.session.user) does not parse: column 1: 'frappe' is not "
            "allowed; a condition can only name doc, True, False and None");
  EXPECT_EQ(ErrorOf(Sketch("mapping_type: Child Table, mapping: soi-to-poi}",
                           "mapping_type: Document, mapping: soi-to-poi, "
                           "remote_value_filters: {name: doc.}}")),
            "config.yaml: consumer.mappings[0].field_mapping[1]."
            "remote_value_filters.name: \"doc.\" must be followed by a field "
            "name");
  // A well-formed "eval:" passes this check (and fails on the Link below).
  EXPECT_EQ(ErrorOf(Sketch("mapping_type: Child Table, mapping: soi-to-poi}",
                           "mapping_type: Document, mapping: soi-to-poi, "
                           "remote_value_filters: {name: \"eval:doc.x\"}}")),
            "config.yaml: consumer.mappings[0].field_mapping[1]."
            "local_fieldname: \"items\" is not a Link field (required by "
            "mapping_type Document)");
  EXPECT_EQ(ErrorOf(Sketch("mapping: soi-to-poi}",
                           "mapping: soi-to-poi, default_value: x}")),
            "config.yaml: consumer.mappings[0].field_mapping[1].default_value: "
            "not used with mapping_type Child Table (rows come from the remote "
            "table or not at all)");
  EXPECT_EQ(ErrorOf(Sketch("{remote_fieldname: items, local_fieldname: items",
                           "{remote_fieldname: customer2, local_fieldname: "
                           "supplier_ref}\n        - {remote_fieldname: items, "
                           "local_fieldname: items")),
            "config.yaml: consumer.mappings[0].field_mapping[1]."
            "local_fieldname: \"supplier_ref\" is already written by "
            "field_mapping[0]");
  // Standard columns may be mapped too.
  EXPECT_EQ(ErrorOf(Sketch("local_fieldname: supplier_ref}",
                           "local_fieldname: name}")),
            "OK");
}

TEST(ConfigErrors, Duplicates) {
  EXPECT_EQ(ErrorOf(Sketch("role: consumer}]",
                           "role: consumer}, {key: branch1, secret_env: X, "
                           "role: admin}]")),
            "config.yaml: producer.api_keys[1].key: duplicate api key "
            "\"branch1\" (also api_keys[0])");
  EXPECT_EQ(ErrorOf(Sketch("status: approved}]}]",
                           "status: approved}]}, {site: branch1}]")),
            "config.yaml: producer.consumers[1].site: duplicate consumer site "
            "\"branch1\" (also consumers[0])");
  EXPECT_EQ(ErrorOf(Sketch("{doctype: Note, status: approved}",
                           "{doctype: Note}, {doctype: Note}")),
            "config.yaml: producer.consumers[0].doctypes[1].doctype: "
            "duplicate DocType \"Note\" (also doctypes[0])");
  EXPECT_EQ(ErrorOf(Sketch("  mappings:\n",
                           "    - name: hq\n"
                           "      url: \"hq2:50051\"\n"
                           "      api_key: b\n"
                           "      api_secret_env: S\n"
                           "  mappings:\n")),
            "config.yaml: consumer.producers[1].name: duplicate producer "
            "\"hq\" (also producers[0])");
  EXPECT_EQ(ErrorOf(Sketch("    - name: soi-to-poi", "    - name: so-to-po")),
            "config.yaml: consumer.mappings[1].name: duplicate mapping "
            "\"so-to-po\" (also mappings[0])");
  EXPECT_EQ(ErrorOf(Sketch("{doctype: Purchase Order, mapping: so-to-po}",
                           "{doctype: Purchase Order, mapping: so-to-po}\n"
                           "        - {doctype: Purchase Order, mapping: "
                           "so-to-po}")),
            "config.yaml: consumer.producers[0].doctypes[2].doctype: the "
            "producer's DocType \"Sales Order\" is already subscribed by "
            "doctypes[1]");
}

TEST(ConfigErrors, ConditionFunctions) {
  const std::string from = "  consumers: [{site: branch1";
  EXPECT_EQ(ErrorOf(Sketch(from, "  condition_functions: [public.f, app.g]\n" + from)), "OK");
  EXPECT_EQ(ErrorOf(Sketch(from, "  condition_functions: [public.f, \"f; drop\"]\n" + from)),
            "config.yaml: producer.condition_functions[1]: expected schema.function (a "
            "PostgreSQL function)");
  EXPECT_EQ(ErrorOf(Sketch(from, "  condition_functions: [{a: b}]\n" + from)),
            "config.yaml: producer.condition_functions[0]: expected a string");
}

TEST(ConfigErrors, Conditions) {
  EXPECT_EQ(ErrorOf(Sketch("condition: \"doc.public == 1\"",
                           "condition: \"cmd:public.visible_to_branch\"")),
            "OK");
  EXPECT_EQ(ErrorOf(Sketch("condition: \"doc.public == 1\"",
                           "condition: \"cmd:my_app.access.is_visible\"")),
            "config.yaml: consumer.producers[0].doctypes[0].condition: "
            "expected cmd:schema.function (a PostgreSQL function (consumer "
            "text, doc jsonb, update_log jsonb) -> boolean, e.g. "
            "cmd:public.visible_to_branch)");
  EXPECT_EQ(ErrorOf(Sketch("{doctype: Note, status: approved}",
                           "{doctype: Note, condition: \"cmd:fn; drop\"}")),
            "config.yaml: producer.consumers[0].doctypes[0].condition: "
            "expected cmd:schema.function (a PostgreSQL function (consumer "
            "text, doc jsonb, update_log jsonb) -> boolean, e.g. "
            "cmd:public.visible_to_branch)");
  // Expressions go through the condition parser, whose message (with its
  // column) follows the key path.
  std::string error = ErrorOf(Sketch("condition: \"doc.public == 1\"",
                                     "condition: \"doc.public == (1\""));
  EXPECT_EQ(error.rfind("config.yaml: consumer.producers[0].doctypes[0]."
                        "condition: invalid condition: ",
                        0),
            0u)
      << error;
  EXPECT_CONTAINS(error, "column");
  error = ErrorOf(Sketch("condition: \"doc.public == 1\"",
                         "condition: \"__import__('os').system('x')\""));
  EXPECT_CONTAINS(error, "condition: invalid condition: ");
  EXPECT_EQ(ErrorOf(Sketch("condition: \"doc.public == 1\"",
                           "condition: 'doc.public == 1 and doc.customer_group"
                           " in (\"Retail\", \"Wholesale\")'")),
            "OK");
}

TEST(ConfigErrors, Secrets) {
  EXPECT_EQ(ErrorOf(Sketch("secret_env: ES_SECRET_BRANCH1, role", "role")),
            "config.yaml: producer.api_keys[0].secret_env: required (or "
            "secret_file)");
  EXPECT_EQ(ErrorOf(Sketch("secret_env: ES_SECRET_BRANCH1, role",
                           "secret_env: A, secret_file: /f, role")),
            "config.yaml: producer.api_keys[0]: set only one of secret_env "
            "and secret_file");
  EXPECT_EQ(ErrorOf(Sketch("secret_env: ES_SECRET_BRANCH1, role",
                           "secret_env: \"$ES_SECRET\", role")),
            "config.yaml: producer.api_keys[0].secret_env: expected an "
            "environment variable name like ES_SECRET_BRANCH1");
  EXPECT_EQ(ErrorOf(Sketch("      api_secret_env: ES_SECRET_BRANCH1\n", "")),
            "config.yaml: consumer.producers[0].api_secret_env: required (or "
            "api_secret_file)");
  EXPECT_EQ(ErrorOf(Sketch("{key: branch1,", "{key: \"branch:1\",")),
            "config.yaml: producer.api_keys[0].key: expected a key id of "
            "letters, digits, '.', '_', '-' (no ':')");
}

TEST(Config, RuntimeSecretEnv) {
  absl::StatusOr<Config> config = ParseConfig(kSketch, "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->producer->webhook_delivery.runtime_secret_env.empty());

  const std::string consumers =
      "  consumers: [{site: branch1, doctypes: [{doctype: Note, status: "
      "approved}]}]\n";
  config = ParseConfig(
      Sketch(consumers,
             consumers + "  webhook_delivery:\n    runtime_secret_env: "
                         "[ES_WEBHOOK_CRM_TOKEN, \"ES_HOOK_*\"]\n"),
      "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->producer->webhook_delivery.runtime_secret_env,
            (std::vector<std::string>{"ES_WEBHOOK_CRM_TOKEN", "ES_HOOK_*"}));
}

TEST(ConfigErrors, RuntimeSecretEnv) {
  const std::string consumers =
      "  consumers: [{site: branch1, doctypes: [{doctype: Note, status: "
      "approved}]}]\n";
  auto with = [&](const std::string& list) {
    return ErrorOf(Sketch(consumers, consumers + "  webhook_delivery: "
                                                 "{runtime_secret_env: " +
                                         list + "}\n"));
  };
  const std::string bad_name =
      ": expected an environment variable name like ES_WEBHOOK_CRM_TOKEN, "
      "or a prefix like ES_WEBHOOK_* (not * alone)";
  EXPECT_EQ(with("[\"*\"]"),
            "config.yaml: producer.webhook_delivery.runtime_secret_env[0]" +
                bad_name);
  EXPECT_EQ(with("[A, \"$B\"]"),
            "config.yaml: producer.webhook_delivery.runtime_secret_env[1]" +
                bad_name);
  EXPECT_EQ(with("[\"A*B\"]"),
            "config.yaml: producer.webhook_delivery.runtime_secret_env[0]" +
                bad_name);
  EXPECT_EQ(with("A"),
            "config.yaml: producer.webhook_delivery.runtime_secret_env: "
            "expected a list");
  // Never the service's own secrets.
  EXPECT_EQ(with("[\"ES_SECRET_*\"]"),
            "config.yaml: producer.webhook_delivery.runtime_secret_env[0]: "
            "\"ES_SECRET_*\" admits ES_SECRET_BRANCH1, a secret of this "
            "service itself; runtime webhooks could send it to any URL");
  EXPECT_EQ(with("[X, ES_DATABASE_URL]"),
            "config.yaml: producer.webhook_delivery.runtime_secret_env[1]: "
            "\"ES_DATABASE_URL\" admits ES_DATABASE_URL, a secret of this "
            "service itself; runtime webhooks could send it to any URL");
  EXPECT_EQ(with("[ES_WEBHOOK_CRM_TOKEN, \"ES_HOOK_*\"]"), "OK");
}

TEST(Config, Retention) {
  absl::StatusOr<Config> config = ParseConfig(kSketch, "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  const RetentionConfig& d = config->producer->retention;
  EXPECT_EQ(d.min_age, absl::Hours(1));
  EXPECT_EQ(d.max_age, absl::Hours(24 * 7));
  EXPECT_EQ(d.max_entries, 0);
  EXPECT_EQ(d.batch, 1000);
  EXPECT_EQ(d.interval, absl::Minutes(1));

  const std::string consumers =
      "  consumers: [{site: branch1, doctypes: [{doctype: Note, status: "
      "approved}]}]\n";
  config = ParseConfig(
      Sketch(consumers, consumers + "  retention: {min_age: 0, max_age: 2s, "
                                    "max_entries: 5000, batch: 50, interval: 250ms}\n"),
      "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  const RetentionConfig& r = config->producer->retention;
  EXPECT_EQ(r.min_age, absl::ZeroDuration());
  EXPECT_EQ(r.max_age, absl::Seconds(2));
  EXPECT_EQ(r.max_entries, 5000);
  EXPECT_EQ(r.batch, 50);
  EXPECT_EQ(r.interval, absl::Milliseconds(250));

  config = ParseConfig(Sketch(consumers, consumers + "  retention: {max_age: 0s}\n"),
                       "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->producer->retention.max_age, absl::ZeroDuration());
}

TEST(ConfigErrors, Retention) {
  const std::string consumers =
      "  consumers: [{site: branch1, doctypes: [{doctype: Note, status: "
      "approved}]}]\n";
  auto with = [&](const std::string& map) {
    return ErrorOf(Sketch(consumers, consumers + "  retention: " + map + "\n"));
  };
  EXPECT_EQ(with("{max_age: 30m}"),
            "config.yaml: producer.retention.max_age: expected at least min_age "
            "(1h), or 0 for no valve by age");
  EXPECT_EQ(with("{min_age: 2h, max_age: 1h}"),
            "config.yaml: producer.retention.max_age: expected at least min_age "
            "(2h), or 0 for no valve by age");
  EXPECT_EQ(with("{min_age: soon}"),
            "config.yaml: producer.retention.min_age: expected a duration like 30s");
  EXPECT_EQ(with("{min_age: -1h}"),
            "config.yaml: producer.retention.min_age: expected a positive duration like 30s");
  EXPECT_EQ(with("{interval: 0}"),
            "config.yaml: producer.retention.interval: expected a duration like 30s");
  EXPECT_EQ(with("{batch: 0}"),
            "config.yaml: producer.retention.batch: expected an integer from 1 to 100000");
  EXPECT_EQ(with("{max_entries: -5}"),
            "config.yaml: producer.retention.max_entries: expected an integer from 0 to "
            "2000000000");
  EXPECT_EQ(with("{keep: 1d}"),
            "config.yaml: producer.retention.keep: unknown key \"keep\" (expected one of: "
            "min_age, max_age, max_entries, batch, interval)");
  EXPECT_EQ(with("{min_age: 0, max_age: 0, max_entries: 0}"), "OK");
}

TEST(ConfigErrors, Addresses) {
  EXPECT_EQ(ErrorOf(Sketch("listen: \"0.0.0.0:50051\"", "listen: \"50051\"")),
            "config.yaml: producer.listen: expected host:port like "
            "0.0.0.0:50051 (or unix:/path)");
  EXPECT_EQ(ErrorOf(Sketch("advertise: \"branch1-consumer:50052\"",
                           "advertise: \"branch1-consumer:port\"")),
            "config.yaml: consumer.advertise: expected host:port like "
            "0.0.0.0:50051 (or unix:/path)");
  EXPECT_EQ(
      ErrorOf(Sketch("listen: \"0.0.0.0:50051\"", "listen: \"[::]:50051\"")),
      "OK");
  EXPECT_EQ(ErrorOf(Sketch("url: \"hq-producer:50051\"",
                           "url: \"https://hq.example.com\"")),
            "config.yaml: consumer.producers[0].url: expected the producer's "
            "gRPC address host:port (not an http URL)");
  EXPECT_EQ(ErrorOf(Sketch("site: {name: branch1}", "site: {name: branch 1}")),
            "config.yaml: site.name: expected a site name (letters, digits, "
            "'.', '_', '-')");
}

TEST(ConfigErrors, Tls) {
  const std::string server_tls = "  tls: {cert_file: /c, key_file: /k}\n  api_keys: [{key: branch1";
  EXPECT_EQ(ErrorOf(Sketch("  api_keys: [{key: branch1", server_tls)), "OK");
  EXPECT_EQ(ErrorOf(Sketch("  api_keys: [{key: branch1",
                           "  tls: {cert_file: /c}\n  api_keys: [{key: branch1")),
            "config.yaml: producer.tls.key_file: required");
  EXPECT_EQ(ErrorOf(Sketch("  api_keys: [{key: branch1",
                           "  tls: {key_file: /k, client_ca_file: /ca}\n  api_keys: [{key: "
                           "branch1")),
            "config.yaml: producer.tls.cert_file: required");
  EXPECT_EQ(ErrorOf(Sketch("  api_keys: [{key: branch1",
                           "  tls: {cert_file: /c, key_file: /k, ca_file: /ca}\n  api_keys: "
                           "[{key: branch1")),
            "config.yaml: producer.tls.ca_file: unknown key \"ca_file\" (expected one of: "
            "cert_file, key_file, client_ca_file, refresh_interval)");
  EXPECT_EQ(ErrorOf(Sketch("  api_keys: [{key: branch1",
                           "  tls: {cert_file: /c, key_file: /k, refresh_interval: 500ms}\n  "
                           "api_keys: [{key: branch1")),
            "config.yaml: producer.tls.refresh_interval: expected whole seconds, at least 1s "
            "(e.g. 60s)");
  EXPECT_EQ(ErrorOf(Sketch("  api_keys: [{key: branch1",
                           "  tls: {cert_file: /c, key_file: /k, refresh_interval: 1500ms}\n  "
                           "api_keys: [{key: branch1")),
            "config.yaml: producer.tls.refresh_interval: expected whole seconds, at least 1s "
            "(e.g. 60s)");
  EXPECT_EQ(ErrorOf(Sketch("  api_keys: [{key: branch1",
                           "  tls: /etc/tls\n  api_keys: [{key: branch1")),
            "config.yaml: producer.tls: expected a mapping with keys: cert_file, key_file, "
            "client_ca_file, refresh_interval");
  EXPECT_EQ(ErrorOf(Sketch("  api_keys: [{key: branch1",
                           "  notify_tls: {cert_file: /c}\n  api_keys: [{key: branch1")),
            "config.yaml: producer.notify_tls.key_file: required with cert_file (a client "
            "certificate needs both)");
  EXPECT_EQ(ErrorOf(Sketch("  api_keys: [{key: ops",
                           "  tls: {cert_file: /c}\n  api_keys: [{key: ops")),
            "config.yaml: consumer.tls.key_file: required");
  const std::string entry = "      api_secret_env: ES_SECRET_BRANCH1\n";
  EXPECT_EQ(ErrorOf(Sketch(entry, entry + "      tls: {ca_file: /ca, server_name: hq}\n")), "OK");
  EXPECT_EQ(ErrorOf(Sketch(entry, entry + "      tls: {key_file: /k}\n")),
            "config.yaml: consumer.producers[0].tls.cert_file: required with key_file (a client "
            "certificate needs both)");
  EXPECT_EQ(ErrorOf(Sketch(entry, entry + "      tls: {server_name: \"https://hq\"}\n")),
            "config.yaml: consumer.producers[0].tls.server_name: expected a host name like "
            "hq-producer.example.com (no port, no URL)");
  EXPECT_EQ(ErrorOf(Sketch(entry, entry + "      tls: {client_ca_file: /ca}\n")),
            "config.yaml: consumer.producers[0].tls.client_ca_file: unknown key "
            "\"client_ca_file\" (expected one of: ca_file, server_name, cert_file, key_file, "
            "refresh_interval)");
  // Certificate files are not read when loading (--check-config).
  absl::StatusOr<Config> config = ParseConfig(
      Sketch("  api_keys: [{key: branch1",
             "  tls: {cert_file: /nonexistent/c, key_file: /nonexistent/k}\n  api_keys: "
             "[{key: branch1"),
      "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->producer->tls->refresh_interval, absl::Seconds(60));
}

TEST(Config, IsLoopbackAddress) {
  for (const char* local : {"127.0.0.1:50051", "127.1.2.3:1", "localhost:50051",
                            "LOCALHOST:1", "[::1]:50051", "unix:/run/es.sock",
                            "dns:///localhost:50051", "ipv4:127.0.0.1:5"}) {
    EXPECT_TRUE(IsLoopbackAddress(local)) << local;
  }
  for (const char* remote : {"0.0.0.0:50051", "[::]:50051", "10.0.0.1:50051",
                             "hq-producer:50051", "127.0.0.1.example.com:1",
                             "1270.0.0.1:1", "127.0.0.256:1", "localhost.example.com:1",
                             ":50051", "dns:///hq:50051"}) {
    EXPECT_FALSE(IsLoopbackAddress(remote)) << remote;
  }
}

TEST(ConfigErrors, MissingFile) {
  absl::StatusOr<Config> config = LoadConfigFile("/nonexistent/config.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(std::string(config.status().message()),
            "/nonexistent/config.yaml: cannot read the config file: No such "
            "file or directory");
}

// yaml-cpp reports by exception; whatever the input, none may escape.
TEST(ConfigErrors, NoExceptionEscapesOnMutatedInput) {
  std::string base = kSketch;
  std::mt19937 rng(42);
  const std::string alphabet = "{}[]:,-#&*!|>'\"%@` \n\tabc019.~?";
  for (int i = 0; i < 3000; ++i) {
    std::string text = base;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      size_t at = rng() % text.size();
      switch (rng() % 3) {
        case 0:
          text[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          text.erase(at, 1 + rng() % 8);
          break;
        default:
          text.insert(at, 1, alphabet[rng() % alphabet.size()]);
      }
      if (text.empty()) text = "x";
    }
    absl::StatusOr<Config> config = ParseConfig(text, "fuzz.yaml");
    if (!config.ok()) {
      EXPECT_EQ(std::string(config.status().message()).rfind("fuzz.yaml", 0),
                0u)
          << config.status();
    }
  }
}

// ---- environment and secrets
// ---------------------------------------------------

TEST(ConfigEnv, DatabaseUrlOverride) {
  absl::StatusOr<Config> config = ParseConfig(kSketch, "config.yaml");
  ASSERT_TRUE(config.ok());
  ASSERT_TRUE(ApplyEnvironment(*config, FakeEnv({})).ok());
  EXPECT_EQ(config->database.url, "postgresql:///branch1");
  ASSERT_TRUE(
      ApplyEnvironment(*config, FakeEnv({{"ES_DATABASE_URL", ""}})).ok());
  EXPECT_EQ(config->database.url, "postgresql:///branch1");
  ASSERT_TRUE(
      ApplyEnvironment(
          *config, FakeEnv({{"ES_DATABASE_URL", "postgresql://u@db/branch1"}}))
          .ok());
  EXPECT_EQ(config->database.url, "postgresql://u@db/branch1");
}

TEST(ConfigEnv, DatabaseUrlRequiredAfterEnvironment) {
  absl::StatusOr<Config> config = ParseConfig("site: {name: a}\n", "c.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  absl::Status status = ApplyEnvironment(*config, FakeEnv({}));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(status.message()),
            "c.yaml: database.url: required (set it in the config or set the "
            "environment variable ES_DATABASE_URL)");
  EXPECT_TRUE(
      ApplyEnvironment(*config, FakeEnv({{"ES_DATABASE_URL", "x"}})).ok());
  EXPECT_EQ(config->database.url, "x");
}

TEST(ConfigSecrets, FromEnvironment) {
  absl::StatusOr<Config> config = ParseConfig(kSketch, "config.yaml");
  ASSERT_TRUE(config.ok());
  const SecretRef& ref = config->producer->api_keys[0].secret;
  EXPECT_EQ(ref.origin, "config.yaml: producer.api_keys[0].secret_env");
  absl::StatusOr<std::string> secret =
      ResolveSecret(ref, FakeEnv({{"ES_SECRET_BRANCH1", "s3cr3t"}}));
  ASSERT_TRUE(secret.ok()) << secret.status();
  EXPECT_EQ(*secret, "s3cr3t");

  // Unset and empty: one message (it does not tell which).
  secret = ResolveSecret(ref, FakeEnv({}));
  EXPECT_EQ(secret.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(std::string(secret.status().message()),
            "config.yaml: producer.api_keys[0].secret_env: environment "
            "variable ES_SECRET_BRANCH1 is not set or empty");
  secret = ResolveSecret(ref, FakeEnv({{"ES_SECRET_BRANCH1", ""}}));
  EXPECT_EQ(std::string(secret.status().message()),
            "config.yaml: producer.api_keys[0].secret_env: environment "
            "variable ES_SECRET_BRANCH1 is not set or empty");

  const SecretRef& api = config->consumer->producers[0].api_secret;
  secret = ResolveSecret(api, FakeEnv({}));
  EXPECT_EQ(std::string(secret.status().message()),
            "config.yaml: consumer.producers[0].api_secret_env: environment "
            "variable ES_SECRET_BRANCH1 is not set or empty");
}

TEST(ConfigSecrets, FromProcessEnvironment) {
  SecretRef ref;
  ref.env = "ES_CONFIG_TEST_SECRET";
  ref.origin = "c.yaml: producer.api_keys[0].secret_env";
  setenv("ES_CONFIG_TEST_SECRET", "from-env", 1);
  absl::StatusOr<std::string> secret = ResolveSecret(ref);
  unsetenv("ES_CONFIG_TEST_SECRET");
  ASSERT_TRUE(secret.ok()) << secret.status();
  EXPECT_EQ(*secret, "from-env");
  EXPECT_FALSE(ResolveSecret(ref).ok());
}

TEST(ConfigSecrets, FromFile) {
  TempFile file("top-secret\n");
  std::string yaml = Sketch("secret_env: ES_SECRET_BRANCH1, role",
                            "secret_file: \"" + file.path() + "\", role");
  absl::StatusOr<Config> config = ParseConfig(yaml, "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  const SecretRef& ref = config->producer->api_keys[0].secret;
  EXPECT_EQ(ref.file, file.path());
  absl::StatusOr<std::string> secret = ResolveSecret(ref, FakeEnv({}));
  ASSERT_TRUE(secret.ok()) << secret.status();
  EXPECT_EQ(*secret, "top-secret");  // trailing newline dropped

  TempFile crlf("a b\r\n");
  SecretRef r2 = ref;
  r2.file = crlf.path();
  EXPECT_EQ(*ResolveSecret(r2, FakeEnv({})), "a b");
}

// Issue 13 item 8: a message must not tell whether a path exists. A
// missing file, a directory, an existing file without read permission (not
// testable as root, which reads anything) and an empty file all get the
// same words; only the path as configured is named.
TEST(ConfigSecrets, FileErrorsDoNotRevealWhetherThePathExists) {
  SecretRef ref;
  ref.origin = "config.yaml: producer.api_keys[1].secret_file";
  auto message_for = [&](const std::string& path) {
    ref.file = path;
    absl::StatusOr<std::string> secret = ResolveSecret(ref, FakeEnv({}));
    EXPECT_EQ(secret.status().code(), absl::StatusCode::kFailedPrecondition);
    return std::string(secret.status().message());
  };
  auto expected = [](const std::string& path) {
    return "config.yaml: producer.api_keys[1].secret_file: secret file " +
           path + " is missing, unreadable or empty";
  };
  EXPECT_EQ(message_for("/nonexistent/secret"),
            expected("/nonexistent/secret"));
  EXPECT_EQ(message_for("/etc"), expected("/etc"));  // exists, a directory
  TempFile empty("\n");
  EXPECT_EQ(message_for(empty.path()), expected(empty.path()));
}

TEST(ConfigSecrets, CheckConfigNeedsNoSecrets) {
  // Parsing never reads secrets: a config whose secrets are not available
  // here still loads (that is what --check-config relies on).
  std::string yaml = Sketch("secret_env: ES_SECRET_BRANCH1, role",
                            "secret_file: /nonexistent/secret, role");
  EXPECT_EQ(ErrorOf(yaml), "OK");
}

TEST(Config, CaptureMode) {
  absl::StatusOr<Config> config = ParseConfig(kSketch, "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->producer->capture, CaptureMode::kTrigger);
  EXPECT_EQ(config->producer->wal_slot, "eventstream");
  EXPECT_EQ(config->producer->wal_publication, "eventstream");

  const std::string consumers =
      "  consumers: [{site: branch1, doctypes: [{doctype: Note, status: "
      "approved}]}]\n";
  config = ParseConfig(
      Sketch(consumers, consumers + "  capture: wal\n  wal_slot: es_hq\n  wal_publication: \"\"\n"),
      "config.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->producer->capture, CaptureMode::kWal);
  EXPECT_EQ(config->producer->wal_slot, "es_hq");
  EXPECT_EQ(config->producer->wal_publication, "eventstream");

  EXPECT_EQ(ErrorOf(Sketch(consumers, consumers + "  capture: logical\n")),
            "config.yaml: producer.capture: expected one of trigger, wal");
  EXPECT_EQ(ErrorOf(Sketch(consumers, consumers + "  wal_slot: Bad-Name\n")),
            "config.yaml: producer.wal_slot: expected 1-63 of a-z, 0-9, '_'");
}

}  // namespace
}  // namespace eventstream
