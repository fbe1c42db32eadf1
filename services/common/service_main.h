// RunServiceMain: the start-up sequence both binaries share, so each
// main.cc only names its parts.
//
//   parse the command line -> load and validate the config -> (--check-config
//   stops here, touching no database and no secret) -> logging -> environment
//   overrides -> connect -> migrate (the `migrate` command stops here) ->
//   build the service -> serve until SIGTERM/SIGINT -> drain and stop.
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
#include "grpcpp/grpcpp.h"
#include "libsync/config.h"
#include "libsync/migrate.h"
#include "services/common/auth.h"

namespace eventstream {

// A running service: its gRPC services and its background work.
class ServiceInstance {
 public:
  virtual ~ServiceInstance() = default;
  virtual std::vector<grpc::Service*> services() = 0;
  // Called after the server stopped accepting RPCs; finish work in flight.
  virtual void Stop() {}
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
  std::function<absl::StatusOr<std::unique_ptr<ServiceInstance>>(const Config&)> create;
};

int RunServiceMain(int argc, char** argv, const ServiceMainSpec& spec);

// Resolves each api key's secret into a credential with the given role
// mapping; errors name the key path and the variable or file.
absl::StatusOr<std::vector<Credential>> ResolveCredentials(
    const std::vector<ApiKeyConfig>& keys);

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_COMMON_SERVICE_MAIN_H_
