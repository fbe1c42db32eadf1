// The producer a test starts on its own database: the api keys every
// producer test configures (consumers branch1..branch4 and the admin ops,
// with their secrets and `authorization` values) and its config YAML, so a
// test states only its registry and the producer: keys particular to it.
// No gRPC here (tests/support/grpc/ holds the calls).
#ifndef EVENTSTREAM_TESTS_SUPPORT_PRODUCER_CONFIG_H_
#define EVENTSTREAM_TESTS_SUPPORT_PRODUCER_CONFIG_H_

#include <map>
#include <string>

#include "absl/time/time.h"
#include "libsync/base/pg.h"

namespace eventstream::testing {

// `authorization` values of the keys ProducerConfigYaml configures.
inline constexpr char kB1[] = "token branch1:b1-secret";
inline constexpr char kB2[] = "token branch2:b2-secret";
inline constexpr char kB3[] = "token branch3:b3-secret";
inline constexpr char kB4[] = "token branch4:b4-secret";
inline constexpr char kOps[] = "token ops:ops-secret";
inline constexpr char kOpsSecret[] = "ops-secret";  // ES_T_OPS

// The secrets' environment (ES_T_B1..ES_T_B4, ES_T_OPS) for StartService.
const std::map<std::string, std::string>& KeySecrets();
// KeySecrets() plus `more` (a test's own secrets, e.g. webhooks').
std::map<std::string, std::string> KeySecretsWith(std::map<std::string, std::string> more);

struct ProducerYaml {
  std::string url;       // database.url
  std::string doctypes;  // the registry, YAML list items ("  - name: Note\n...")
  int consumers = 1;     // keys branch1..branch<consumers>, then ops
  int metrics_port = 0;  // producer.metrics_listen; 0 = none
  // More keys of producer:, as YAML lines indented by 2 ("  retention: ...\n"),
  // then any more top-level sections.
  std::string extra;
};

// site hq, listening on 127.0.0.1:0 (StartService reads the port).
std::string ProducerConfigYaml(const ProducerYaml& yaml);

// Whether the producer's assembler consumed every raw change on `conn`'s
// database within `timeout` (the writes are then entries in the log).
bool Assembled(pg::Connection* conn, absl::Duration timeout = absl::Seconds(15));

}  // namespace eventstream::testing

#endif  // EVENTSTREAM_TESTS_SUPPORT_PRODUCER_CONFIG_H_
