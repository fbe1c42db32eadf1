// eventstream-consumer: wires the consumer's parts together; logic lives in
// services/consumer/*.cc and libsync.
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "libsync/base/migrate.h"
#include "services/common/service_main.h"
#include "services/consumer/consumer_service.h"

int main(int argc, char** argv) {
  using namespace eventstream;
  ServiceMainSpec spec;
  spec.binary = "eventstream-consumer";
  spec.about =
      "Follows producers: pulls their Event Update Logs and replays each change\n"
      "into this site's database, recording every attempt in the Event Sync Log.";
  spec.schema = "es_consumer";
  spec.migrations = &ConsumerMigrations();
  spec.check_section = [](const Config& c) {
    return c.consumer ? absl::OkStatus()
                      : absl::InvalidArgumentError(absl::StrCat(
                            c.source, ": consumer: required to run eventstream-consumer"));
  };
  spec.listen = [](const Config& c) { return c.consumer->listen; };
  spec.tls = [](const Config& c) { return c.consumer->tls ? &*c.consumer->tls : nullptr; };
  spec.metrics_listen = [](const Config& c) { return c.consumer->metrics_listen; };
  spec.create = CreateConsumer;
  return RunServiceMain(argc, argv, spec);
}
