// eventstream-producer: wires the producer's parts together; logic lives in
// services/producer/*.cc and libsync.
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "libsync/base/migrate.h"
#include "services/common/service_main.h"
#include "services/producer/producer_service.h"

int main(int argc, char** argv) {
  using namespace eventstream;
  ServiceMainSpec spec;
  spec.binary = "eventstream-producer";
  spec.about =
      "Captures changes to the DocTypes other sites subscribed to into the\n"
      "Event Update Log and serves it over gRPC (service eventstream.v1.Producer).";
  spec.schema = "es_producer";
  spec.migrations = &ProducerMigrations();
  spec.check_section = [](const Config& c) {
    return c.producer ? absl::OkStatus()
                      : absl::InvalidArgumentError(absl::StrCat(
                            c.source, ": producer: required to run eventstream-producer"));
  };
  spec.listen = [](const Config& c) { return c.producer->listen; };
  spec.tls = [](const Config& c) { return c.producer->tls ? &*c.producer->tls : nullptr; };
  spec.metrics_listen = [](const Config& c) { return c.producer->metrics_listen; };
  spec.create = CreateProducer;
  return RunServiceMain(argc, argv, spec);
}
