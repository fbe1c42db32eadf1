// Service configuration: the one YAML file both services read (--config).
//
// The Helm chart renders its values into this same file, so this comment is
// the schema reference for both. `*` marks required keys; everything else
// has the default shown. Unknown keys are errors at every level. A null
// value (`key:` or `key: null`) is the same as leaving the key out.
//
//   site:                              # *
//     name: branch1                    # * this site's name: letters, digits,
//                                      #   '.', '_', '-'; it is the
//                                      #   remote_site_name on consumers
//   database:
//     url: "postgresql:///branch1"     # * unless ES_DATABASE_URL is set
//                                      #   (ES_DATABASE_URL wins when set)
//   log:
//     level: info                      # debug | info | warn | error
//     format: text                     # text | json
//   doctypes:                          # the DocType registry (doctype.h)
//     - name: Note                     # *
//       table: tabNote                 # default "tab" + name
//       autoname: hash                 # hash | uuid | field:<fieldname> |
//                                      #   series:NOTE-.#####
//       istable: false                 # a child DocType
//       is_submittable: false
//       fields:
//         - fieldname: title           # * an identifier, not a standard column
//           fieldtype: Data            # * see KnownFieldtypes() in doctype.h
//           options: ""                # Link: target DocType; Table: child
//                                      #   DocType; Dynamic Link: the field
//                                      #   holding the target DocType
//           reqd: false
//           default: ""                # default value (as text)
//
//   producer:                          # present = this site runs a producer
//     listen: "0.0.0.0:50051"
//     metrics_listen: ""               # IPv4 host:port for /metrics; "" = off
//     database_pool:                   # the sessions RPCs use (per replica;
//                                      #   the assembler, webhook workers
//                                      #   and notifier have their own)
//       max_connections: 20            # never more at once (1-1000); a call
//                                      #   that finds all busy waits, then
//       acquire_timeout: 5s            #   RESOURCE_EXHAUSTED
//     max_concurrent_calls_per_key: 8  # RPCs of one api key running at once
//                                      #   (1-1000); more are refused with
//                                      #   RESOURCE_EXHAUSTED at once
//     tls:                             # absent = plaintext (warned about at
//                                      #   start unless listen is loopback)
//       cert_file: /etc/eventstream-tls/tls.crt  # * PEM certificate chain,
//                                      #   the server's own first
//       key_file: /etc/eventstream-tls/tls.key   # * its PEM private key
//       client_ca_file: ""             # PEM CA bundle; set = mutual TLS:
//                                      #   every client must present a
//                                      #   certificate one of these signed
//       refresh_interval: 60s          # the files are re-read this often;
//                                      #   new connections get what they
//                                      #   hold (rotation without restart);
//                                      #   whole seconds, at least 1s
//     notify_tls:                      # absent = Notify calls to consumers
//                                      #   are plaintext. Set = every
//                                      #   Notify call uses TLS:
//       ca_file: ""                    # PEM CA bundle that verifies the
//                                      #   consumers' servers; "" = the
//                                      #   system's roots
//       server_name: ""                # name their certificates must carry;
//                                      #   "" = the host of each consumer's
//                                      #   notify address (its `advertise`)
//       cert_file: ""                  # client certificate (and key_file)
//       key_file: ""                   #   presented for mutual TLS; both
//                                      #   or neither
//       refresh_interval: 60s          # as above
//     api_keys:                        # who may call the producer
//       - key: branch1                 # * a consumer key's id is the
//                                      #   consumer's site name
//         secret_env: ES_SECRET_BRANCH1   # * exactly one of secret_env
//         secret_file: /run/secrets/x     #   and secret_file
//         role: consumer               # * consumer | admin
//     condition_functions: []          # the only functions a consumer's own
//                                      #   cmd: condition may name
//                                      #   (schema.function); called
//                                      #   read-only. The producer's own
//                                      #   conditions below may name any.
//     consumers:                       # pre-approvals; they hold whenever
//       - site: branch1                # * that consumer asks for the DocType
//         doctypes:
//           - doctype: Note            # * a non-child DocType of the registry
//             status: approved         # approved | pending | rejected
//             condition: ""            # expression or cmd:schema.function
//     webhooks:                        # outgoing webhooks (Frappe's Webhook;
//                                      #   services/producer/webhook_*.h).
//                                      #   Runtime ones are added with the
//                                      #   Webhooks RPCs; config ones are
//                                      #   read-only there.
//       - name: crm-new-lead           # * unique; letters, digits, '.', '_',
//                                      #   '-', ' '
//         doctype: Lead                # * a non-child DocType of the registry
//         doc_event: after_insert      # * after_insert | on_update |
//                                      #   on_submit | on_cancel | on_trash |
//                                      #   on_update_after_submit | on_change
//         enabled: true
//         condition: ""                # expression over doc (expr.h);
//                                      #   "" = every document
//         request_url: "https://crm/x/{{ doc.name }}"  # * http(s); may use
//                                      #   {{ doc.field }} (percent-encoded)
//         request_method: POST         # POST | PUT | PATCH | DELETE
//         headers:
//           - key: X-Source            # * an HTTP header name
//             value: erpnext           # exactly one of value, value_env,
//             value_env: ES_CRM_TOKEN  #   value_file; the latter two are
//             value_file: /run/x       #   secrets: masked in the request log
//                                      #   (a runtime webhook: value_env
//                                      #   only, and only a variable that
//                                      #   webhook_delivery.
//                                      #   runtime_secret_env admits)
//         request_structure: Form      # Form | JSON
//         webhook_data:                # * for Form: the fields sent, as a
//           - fieldname: name          #   JSON object {key: value}
//             key: id                  # default: the fieldname
//         webhook_json: |              # * for JSON: a template; {{ doc.f }}
//           {"id": "{{ doc.name }}"}   #   and {{ doc.f | tojson }} only; it
//                                      #   must render to valid JSON
//         timeout: 5s                  # per attempt
//         enable_security: false       # adds X-Frappe-Webhook-Signature =
//                                      #   base64(HMAC-SHA256(secret, body))
//                                      #   and the Standard Webhooks
//                                      #   webhook-signature over id,
//                                      #   timestamp and body (a secret
//                                      #   "whsec_" + base64 is used
//                                      #   decoded there; webhook_signature.h)
//         secret_env: ES_WEBHOOK_SECRET  # * with enable_security: exactly
//         secret_file: /run/secrets/w    #   one of these two (never inline;
//                                      #   runtime webhooks: as value_env)
//     capture: trigger                 # trigger | wal: how changes are
//                                      #   captured (docs/design.md "WAL
//                                      #   capture"); wal needs wal_level=
//                                      #   logical and the REPLICATION role
//                                      #   attribute. Default trigger: it
//                                      #   works on every PostgreSQL
//     wal_slot: eventstream            # wal: the logical replication slot
//                                      #   ([a-z0-9_], 1-63 characters)
//     wal_publication: eventstream     # wal: the publication (same rule)
//     retention:                       # update log retention (docs/design.md
//                                      #   "Retention")
//       min_age: 1h                    # nothing younger is ever deleted (0 ok)
//       max_age: 168h                  # valve: older entries go even if a
//                                      #   consumer still needs them (it is
//                                      #   refused "log trimmed:" and re-syncs);
//                                      #   0 = none; at least min_age
//       max_entries: 0                 # valve: keep at most this many seqs
//                                      #   (0 = none)
//       batch: 1000                    # entries deleted per transaction
//       interval: 1m                   # between retention passes
//     webhook_delivery:
//       workers: 4                     # sender threads (1-64)
//       max_attempts: 8                # then Exhausted (1-100)
//       initial_backoff: 5s            # after the 1st failed attempt (+-20%
//       max_backoff: 15m               #   jitter); doubles per try up to this
//       poll_interval: 500ms           # how often idle workers look for work
//       retention: 720h                # finished request log rows are
//                                      #   deleted after this
//       nice: 10                       # CPU priority of the delivery threads
//                                      #   (0-19, as nice(1)): below capture
//                                      #   and pulls, which stay at 0
//       busy_cpu_percent: 5            # while the site is writing, the first
//                                      #   sends use at most this % of one
//                                      #   core (their threads' CPU and their
//                                      #   statements' time); they catch up
//                                      #   at full speed when it stops.
//                                      #   0 = no limit
//       runtime_secret_env: []         # the environment variables runtime
//                                      #   webhooks (Webhooks RPCs) may read
//                                      #   as value_env / secret_env: names,
//                                      #   or prefixes like ES_WEBHOOK_*
//                                      #   ("*" alone is refused, as is any
//                                      #   entry admitting ES_DATABASE_URL or
//                                      #   an api_keys secret_env). Runtime
//                                      #   webhooks never read files; config
//                                      #   webhooks may read any variable
//                                      #   or file. [] = none
//
//   consumer:                          # present = this site runs a consumer
//     listen: "0.0.0.0:50052"
//     advertise: ""                    # host:port producers send Notify to;
//                                      #   "" = no notifies, polling only
//     metrics_listen: ""
//     tls: {cert_file, key_file, client_ca_file, refresh_interval}
//                                      # as producer.tls
//     api_keys: [...]                  # as producer.api_keys; role: admin
//     poll_interval: 30s               # a duration: 500ms, 30s, 2m, 1h
//     max_message_mb: 64               # the largest answer accepted from a
//                                      #   producer, in MiB (4-1024): bounds
//                                      #   the largest document that
//                                      #   replicates; a larger entry is
//                                      #   logged Failed, naming this key
//     producers:
//       - name: hq                     # * unique
//         url: "hq-producer:50051"     # * host:port of the producer
//         delivery: stream             # stream: the producer pushes entries
//                                      #   as they are logged over one open
//                                      #   call (pulls only to catch up);
//                                      #   pull: pull after its Notify or
//                                      #   every poll_interval (e.g. behind
//                                      #   a proxy that cuts long calls)
//         apply_workers: 1             # 1-8: lanes a batch is applied in,
//                                      #   each its own connection and
//                                      #   transaction; a document's
//                                      #   entries (and what they link)
//                                      #   share a lane; 1 = one
//                                      #   transaction per batch
//         api_key: branch1             # *
//         api_secret_env: ES_SECRET_BRANCH1  # * exactly one of these two
//         api_secret_file: /run/secrets/y
//         tls:                         # absent = plaintext (warned about at
//                                      #   start unless url is loopback);
//                                      #   `tls: {}` = TLS, system's roots
//           ca_file: ""                # PEM CA bundle that verifies the
//                                      #   producer; "" = the system's roots
//           server_name: ""            # name its certificate must carry;
//                                      #   "" = the host of url
//           cert_file: ""              # client certificate (and key_file)
//           key_file: ""               #   for mutual TLS; both or neither
//           refresh_interval: 60s      # as producer.tls
//         doctypes:
//           - doctype: Note            # * the LOCAL DocType (registry);
//                                      #   with `mapping`, it must be the
//                                      #   mapping's local_doctype
//             use_same_name: false     # Frappe's default: local naming via
//                                      #   autoname, remote name kept in
//                                      #   remote_docname/remote_site_name
//             condition: ""            # expression or cmd:schema.function
//             mapping: ""              # name of a mapping below
//             unsubscribe: false
//             on_move_out: delete      # delete | keep: what a REVOKE
//                                      #   (the document stopped passing
//                                      #   the conditions) does to the
//                                      #   local copy; keep leaves it, no
//                                      #   longer followed
//             initial_sync: true       # when the subscription becomes
//                                      #   active, the producer first sends
//                                      #   every document this site may
//                                      #   see; false = only later changes
//     mappings:                        # Document Type Mappings (mapping.h)
//       - name: so-to-po               # * unique
//         local_doctype: Purchase Order   # * a DocType of the registry
//         remote_doctype: Sales Order     # * the producer's DocType
//         field_mapping:
//           - remote_fieldname: customer  # *
//             local_fieldname: supplier_ref  # * a field of local_doctype
//             mapping_type: ""         # "" | Child Table | Document (a
//                                      #   Document rule applies only when
//                                      #   remote_fieldname is set, as in
//                                      #   Frappe)
//             mapping: ""              # * for Child Table / Document: an
//                                      #   inner mapping producing the
//                                      #   Table's child / the Link's target
//             default_value: ""        # not for Child Table
//             remote_value_filters:    # * for Document (only): Frappe's
//               name: customer         #   {remote field: value} selecting
//                                      #   the remote document (mapping.h).
//                                      #   Each value, read against the outer
//                                      #   remote document (`doc`; for an
//                                      #   update, its changed fields):
//                                      #   "eval:<expr>": the value of an
//                                      #   expr.h expression over doc, e.g.
//                                      #   "eval:doc.get('a', doc.b)"; it
//                                      #   must parse at load;
//                                      #   "doc.<field>": that field (ours;
//                                      #   the entry fails when it is unset);
//                                      #   another string: doc's field of
//                                      #   that name when it is set (not
//                                      #   missing/null/""), else the string
//                                      #   itself. When a literal equals a
//                                      #   field name, the FIELD wins
//                                      #   (Frappe's rule): {title: title}
//                                      #   is "whose title is doc's title";
//                                      #   force a literal with
//                                      #   "eval:'title'". A number, boolean
//                                      #   or null is a literal.
//
// Conditions are either a Python-style expression checked with
// Condition::Parse (expr.h) or `cmd:schema.function`, a PostgreSQL function
// (consumer text, doc jsonb, update_log jsonb) -> boolean.
//
// Loading is pure: ParseConfig/LoadConfigFile read nothing but the text, so
// `--check-config` validates a file on any machine. ApplyEnvironment then
// fills in what the deployment supplies through the environment, and
// secrets are read by ResolveSecret only when a service needs them.
//
// Errors are INVALID_ARGUMENT with the message
//   `<file>: <key path>: <what was expected>`
// e.g. `config.yaml: consumer.producers[0].doctypes[1].doctype: required`,
// and for YAML syntax errors `<file>:<line>:<column>: invalid YAML: ...`.
//
// Adding a section (as producer.webhooks was): add a struct and a vector of it
// to the owning config struct here, a Parse function for it in config.cc,
// and its key to that section's list of allowed keys there.
#ifndef EVENTSTREAM_LIBSYNC_CONFIG_CONFIG_H_
#define EVENTSTREAM_LIBSYNC_CONFIG_CONFIG_H_

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libsync/model/doctype.h"
#include "libsync/model/mapping.h"

namespace eventstream {

// Where a secret comes from. Exactly one of `env` and `file` is set.
struct SecretRef {
  std::string env;   // name of an environment variable holding the secret
  std::string file;  // path of a file holding it (one trailing newline is
                     // ignored, as `kubectl create secret --from-file` adds)
  // `<file>: <key path>` of the key that named it, so that a failure to
  // resolve points at the config line without ever showing the secret.
  std::string origin;
};

enum class ApiKeyRole { kConsumer, kAdmin };

struct ApiKeyConfig {
  std::string key;  // the id half of `authorization: token KEY:SECRET`
  SecretRef secret;
  ApiKeyRole role = ApiKeyRole::kConsumer;
};

enum class SubscriptionStatus { kPending, kApproved, kRejected };

struct SiteConfig {
  std::string name;
};

struct DatabaseConfig {
  std::string url;  // libpq connection string or URI
};

enum class LogFormat { kText, kJson };

struct LogConfig {
  std::string level = "info";  // debug | info | warn | error
  LogFormat format = LogFormat::kText;
};

// ---- TLS -------------------------------------------------------------------

// A server's TLS (producer.tls, consumer.tls). The files are PEM. The
// service checks them at start (services/common/tls.h) and then re-reads
// them every refresh_interval, so a rotated certificate is served to new
// connections without a restart.
struct TlsServerConfig {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // "" = no client certificate asked for
  absl::Duration refresh_interval = absl::Seconds(60);
  std::string origin;  // `<file>: producer.tls`, for messages
};

// A client channel's TLS (consumer.producers[].tls, producer.notify_tls).
struct TlsClientConfig {
  std::string ca_file;      // "" = the system's root certificates
  std::string server_name;  // "" = the host of the address dialled
  std::string cert_file;    // "" = no client certificate; set with key_file
  std::string key_file;
  absl::Duration refresh_interval = absl::Seconds(60);
  std::string origin;  // `<file>: consumer.producers[0].tls`, for messages
};

// ---- producer --------------------------------------------------------------

// A config pre-approval of one DocType for one consumer site.
struct ConsumerDocTypeConfig {
  std::string doctype;
  SubscriptionStatus status = SubscriptionStatus::kApproved;
  std::string condition;  // "" = every document
};

struct ConsumerSiteConfig {
  std::string site;
  std::vector<ConsumerDocTypeConfig> doctypes;
};

// One header of a webhook. A header whose value comes from value_env /
// value_file is a secret: masked in the request log, resolved when sent.
struct WebhookHeaderConfig {
  std::string key;
  std::string value;        // inline value (not secret)
  SecretRef secret;         // set (env or file) for a secret value
  bool is_secret() const { return !secret.env.empty() || !secret.file.empty(); }
};

// One field of a Form webhook: doc[fieldname] sent as body[key].
struct WebhookFieldConfig {
  std::string fieldname;
  std::string key;  // "" = the fieldname
};

// An outgoing webhook (Frappe's Webhook DocType). Checked by CheckWebhook
// (libsync/config/webhook_template.h), for config and RPC alike.
struct WebhookConfig {
  std::string name;
  std::string doctype;
  std::string doc_event;  // after_insert | on_update | ... (see above)
  bool enabled = true;
  std::string condition;  // "" = every document
  std::string request_url;
  std::string request_method = "POST";
  std::vector<WebhookHeaderConfig> headers;
  std::string request_structure = "Form";  // Form | JSON
  std::vector<WebhookFieldConfig> webhook_data;
  std::string webhook_json;
  absl::Duration timeout = absl::Seconds(5);
  bool enable_security = false;
  SecretRef secret;  // with enable_security
};

struct WebhookDeliveryConfig {
  int workers = 4;
  int max_attempts = 8;
  absl::Duration initial_backoff = absl::Seconds(5);
  absl::Duration max_backoff = absl::Minutes(15);
  absl::Duration poll_interval = absl::Milliseconds(500);
  absl::Duration retention = absl::Hours(720);
  // Added to the delivery threads' nice value (setpriority on each thread;
  // lowering one's own priority needs no privilege).
  int nice = 10;
  // While the update log grows, a dispatcher pass is followed by a pause
  // that holds its cost to this percent of one core (0 = none).
  int busy_cpu_percent = 5;
  // What runtime webhooks may read (CheckRuntimeWebhookSecrets in
  // webhook_template.h): variable names, or prefixes ending in '*'.
  std::vector<std::string> runtime_secret_env;
};

// producer.retention: how long update_log entries are kept (docs/design.md
// "Retention"). An entry goes once every consumer that needs it
// acknowledged it, webhook delivery passed it and it is older than min_age;
// the valve (max_age, max_entries) deletes older ones even so. Nothing
// younger than min_age is ever deleted.
struct RetentionConfig {
  absl::Duration min_age = absl::Hours(1);
  absl::Duration max_age = absl::Hours(24 * 7);  // zero = no valve by age
  int64_t max_entries = 0;                       // 0 = no valve by count
  int batch = 1000;                              // entries per delete transaction
  absl::Duration interval = absl::Minutes(1);    // between passes
};

// The producer's database pool for RPCs (libsync/base/pg_pool.h).
struct DatabasePoolConfig {
  int max_connections = 20;
  absl::Duration acquire_timeout = absl::Seconds(5);
};

// producer.capture: where changes come from (services/producer/capture.h
// triggers, or services/producer/wal_capture.h logical decoding).
enum class CaptureMode { kTrigger, kWal };

struct ProducerConfig {
  std::string listen = "0.0.0.0:50051";
  CaptureMode capture = CaptureMode::kTrigger;
  std::string wal_slot = "eventstream";         // capture: wal only
  std::string wal_publication = "eventstream";  // capture: wal only
  std::string metrics_listen;  // "" = no metrics endpoint
  DatabasePoolConfig database_pool;
  int max_concurrent_calls_per_key = 8;
  std::optional<TlsServerConfig> tls;         // absent = plaintext
  std::optional<TlsClientConfig> notify_tls;  // absent = plaintext Notify
  std::vector<ApiKeyConfig> api_keys;
  std::vector<ConsumerSiteConfig> consumers;
  // schema.function names a consumer's cmd: condition may call.
  std::vector<std::string> condition_functions;
  std::vector<WebhookConfig> webhooks;
  WebhookDeliveryConfig webhook_delivery;
  RetentionConfig retention;

  const ApiKeyConfig* FindApiKey(std::string_view key) const;
  const ConsumerSiteConfig* FindConsumer(std::string_view site) const;
};

// ---- consumer --------------------------------------------------------------

// One row of an Event Producer's DocType list.
struct ProducerDocTypeConfig {
  std::string doctype;         // local DocType
  bool use_same_name = false;  // Frappe's default (a Check defaulting to 0)
  std::string condition;       // sent to the producer at registration
  std::string mapping;  // "" = none; else a ConsumerConfig::mappings name
  bool unsubscribe = false;
  // What an UPDATE_TYPE_REVOKE (move-out) does to the local copy.
  enum class MoveOut { kDelete, kKeep };
  MoveOut on_move_out = MoveOut::kDelete;  // as PostgreSQL row filters do
  // Sent as !SubscriptionRequest.skip_initial_sync; the producer reads it
  // only when the subscription becomes active.
  bool initial_sync = true;
};

// An Event Producer: a producer this site's consumer follows.
struct EventProducerConfig {
  std::string name;
  std::string url;  // host:port of its gRPC endpoint
  std::string api_key;
  SecretRef api_secret;
  std::optional<TlsClientConfig> tls;  // absent = plaintext
  // How entries arrive (docs/design.md "Delivery"): kStream keeps one
  // Producer.StreamUpdates call open (pulling only to catch up); kPull
  // pulls after a Notify or the poll timer.
  enum class Delivery { kStream, kPull };
  Delivery delivery = Delivery::kStream;
  // Parallel apply (docs/design.md "Batch apply"): up to this many lanes
  // per batch, each on its own connection; 1 = the whole batch in one
  // transaction.
  int apply_workers = 1;
  std::vector<ProducerDocTypeConfig> doctypes;
};

struct ConsumerConfig {
  std::string listen = "0.0.0.0:50052";
  std::string advertise;       // "" = producers cannot Notify; poll only
  std::string metrics_listen;  // "" = no metrics endpoint
  std::optional<TlsServerConfig> tls;  // absent = plaintext
  std::vector<ApiKeyConfig> api_keys;  // operators' keys; role admin
  absl::Duration poll_interval = absl::Seconds(30);
  int max_message_mb = 64;  // the largest answer accepted from a producer
  // Synced sync log rows older than this are deleted (Failed and Parked
  // stay until resolved); zero = kept for ever.
  absl::Duration sync_log_retention = absl::Hours(24 * 30);
  std::vector<EventProducerConfig> producers;
  std::vector<DocTypeMapping> mappings;

  const ApiKeyConfig* FindApiKey(std::string_view key) const;
  const EventProducerConfig* FindProducer(std::string_view name) const;
  const DocTypeMapping* FindMapping(std::string_view name) const;
};

// ---- the whole file --------------------------------------------------------

struct Config {
  std::string source;  // the path the config was loaded from, as given
  SiteConfig site;
  DatabaseConfig database;
  LogConfig log;
  DocTypeRegistry registry;                // from `doctypes:`, validated
  std::optional<ProducerConfig> producer;  // absent: no producer on this site
  std::optional<ConsumerConfig> consumer;  // absent: no consumer on this site

  // producer.condition_functions, empty when there is no producer.
  const std::vector<std::string>& condition_functions() const;
};

// Parses and validates `yaml_text`; `filename` is only used in messages.
absl::StatusOr<Config> ParseConfig(std::string_view yaml_text,
                                   std::string_view filename);
// Reads `path` and parses it; errors name `path` exactly as given.
absl::StatusOr<Config> LoadConfigFile(const std::string& path);

// Looks up an environment variable; nullopt when unset. Tests pass a fake.
using EnvLookup = std::function<std::optional<std::string>(std::string_view)>;
// The real process environment (getenv).
EnvLookup ProcessEnvironment();

// Applies the environment overrides (ES_DATABASE_URL replaces database.url
// when set and non-empty) and then requires database.url, naming both
// ways to set it. Services call this after loading and before connecting;
// --check-config does not, so a file whose URL comes from a Secret checks.
absl::Status ApplyEnvironment(Config& config,
                              const EnvLookup& env = ProcessEnvironment());

// Reads a secret now. FAILED_PRECONDITION naming the key path and the
// variable or file (as configured) when it is unset, missing, unreadable or
// empty, with one message for all of these (it does not tell whether a
// variable is set or a path exists). The secret's value never appears in a
// message.
absl::StatusOr<std::string> ResolveSecret(
    const SecretRef& ref, const EnvLookup& env = ProcessEnvironment());

// True when `address` (a listen address or a gRPC target) can only be
// reached from this machine: a unix: socket, localhost, 127.0.0.0/8 or
// [::1]. What the services check before warning about plaintext.
bool IsLoopbackAddress(std::string_view address);

// Names as they appear in the config (and in logs).
std::string_view ToString(SubscriptionStatus status);
std::string_view ToString(ApiKeyRole role);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_CONFIG_CONFIG_H_
