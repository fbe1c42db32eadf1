#include "tests/support/producer_config.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "tests/support/eventually.h"

namespace eventstream::testing {

const std::map<std::string, std::string>& KeySecrets() {
  static const auto* secrets = new std::map<std::string, std::string>{
      {"ES_T_B1", "b1-secret"}, {"ES_T_B2", "b2-secret"}, {"ES_T_B3", "b3-secret"},
      {"ES_T_B4", "b4-secret"}, {"ES_T_OPS", kOpsSecret}};
  return *secrets;
}

std::map<std::string, std::string> KeySecretsWith(std::map<std::string, std::string> more) {
  more.insert(KeySecrets().begin(), KeySecrets().end());
  return more;
}

std::string ProducerConfigYaml(const ProducerYaml& yaml) {
  std::string out = absl::StrCat("site: {name: hq}\ndatabase: {url: \"", yaml.url,
                                 "\"}\ndoctypes:\n", yaml.doctypes,
                                 "producer:\n  listen: \"127.0.0.1:0\"\n");
  if (yaml.metrics_port != 0)
    absl::StrAppend(&out, "  metrics_listen: \"127.0.0.1:", yaml.metrics_port, "\"\n");
  absl::StrAppend(&out, "  api_keys:\n");
  for (int i = 1; i <= yaml.consumers; ++i)
    absl::StrAppend(&out, "    - {key: branch", i, ", secret_env: ES_T_B", i, ", role: consumer}\n");
  absl::StrAppend(&out, "    - {key: ops, secret_env: ES_T_OPS, role: admin}\n", yaml.extra);
  return out;
}

bool Assembled(pg::Connection* conn, absl::Duration timeout) {
  return Eventually(
      [&] {
        auto r = conn->Exec("SELECT count(*) FROM es_producer.raw_change");
        return r.ok() && r->GetInt64(0, 0) == 0;
      },
      timeout, absl::Milliseconds(20));
}

}  // namespace eventstream::testing
