// RunServiceMain: the start-up sequence both binaries share, so each
// main.cc only names its parts.
//
//   parse the command line -> load and validate the config -> (--check-config
//   stops here, touching no database, no secret and no certificate file) ->
//   logging -> environment overrides -> connect -> migrate (the `migrate`
//   command stops here) -> check the server's TLS files (tls.h) -> build the
//   service -> serve (gRPC, and /metrics when configured) until
//   SIGTERM/SIGINT -> drain and stop.
//
// Shutdown fits a Kubernetes pod's default 30 s grace period:
// ServiceInstance::Draining() ends long-lived calls (the producer's streams;
// new ones are refused), health turns NOT_SERVING and the server stops
// accepting RPCs, in-flight RPCs get up to 10 s, then
// ServiceInstance::Stop() lets the background work finish the entry/batch
// in flight.
//
// Logging: `log.format: json` writes one JSON object per line
// ({"time","level","msg"}), the message escaped so that quotes, newlines,
// control characters and invalid UTF-8 never break the line.
//
// Every failure prints one line that names what is wrong and exits non-zero:
// 2 for a bad command line, 1 for everything else.
#ifndef EVENTSTREAM_SERVICES_COMMON_SERVICE_MAIN_H_
#define EVENTSTREAM_SERVICES_COMMON_SERVICE_MAIN_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/grpcpp.h"
#include "libsync/config/config.h"
#include "libsync/base/metrics.h"
#include "libsync/base/migrate.h"
#include "services/common/auth.h"

namespace eventstream {

// A running service: its gRPC services and its background work.
class ServiceInstance {
 public:
  virtual ~ServiceInstance() = default;
  virtual std::vector<grpc::Service*> services() = 0;
  // Called when shutdown starts, before the server drains in-flight RPCs:
  // end long-lived calls (streams) that would otherwise hold the drain for
  // its whole grace period.
  virtual void Draining() {}
  // Called after the server stopped accepting RPCs; finish work in flight.
  virtual void Stop() {}
  // The service's metrics, served on GET /metrics when the spec's
  // metrics_listen is not ""; null = none. Valid until destruction.
  virtual const metrics::Registry* metrics() { return nullptr; }
};

struct ServiceMainSpec {
  std::string binary;  // eventstream-producer
  std::string about;   // one paragraph for --help
  std::string schema;  // es_producer
  const std::vector<Migration>* migrations;
  // The config section this service runs from, or an error naming it
  // ("config.yaml: producer: required to run eventstream-producer").
  std::function<absl::Status(const Config&)> check_section;
  std::function<std::string(const Config&)> listen;
  // The server's TLS section (producer.tls / consumer.tls); null or unset =
  // plaintext.
  std::function<const TlsServerConfig*(const Config&)> tls;
  // host:port for the /metrics endpoint (metrics_server.h); "" or unset =
  // none. Started after the gRPC server, stopped before Stop().
  std::function<std::string(const Config&)> metrics_listen;
  std::function<absl::StatusOr<std::unique_ptr<ServiceInstance>>(const Config&)> create;
};

int RunServiceMain(int argc, char** argv, const ServiceMainSpec& spec);

// Appends `in` to `out` escaped as the inside of a JSON string: `"`, `\`,
// control characters escaped, well-formed UTF-8 kept, invalid bytes as
// \ufffd. What `log.format: json` does to each message.
void AppendJsonEscaped(absl::string_view in, std::string* out);

// Resolves each api key's secret into a credential with the given role
// mapping; errors name the key path and the variable or file.
absl::StatusOr<std::vector<Credential>> ResolveCredentials(
    const std::vector<ApiKeyConfig>& keys);

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_COMMON_SERVICE_MAIN_H_
