// ServiceRunner: starts a real eventstream binary against the shared test
// cluster with a config the test writes, and waits until it listens.
#ifndef EVENTSTREAM_TESTS_SUPPORT_SERVICE_RUNNER_H_
#define EVENTSTREAM_TESTS_SUPPORT_SERVICE_RUNNER_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tests/support/process.h"

namespace eventstream::testing {

struct RunningService {
  RunningService() = default;
  RunningService(RunningService&& other) noexcept { *this = std::move(other); }
  RunningService& operator=(RunningService&& other) noexcept {
    std::swap(process, other.process);
    std::swap(dir, other.dir);
    std::swap(port, other.port);
    return *this;
  }
  // Stops the process (if still running) and removes `dir`.
  ~RunningService();

  std::unique_ptr<Process> process;
  std::string dir;      // holds config.yaml and the log
  int port = 0;
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

// `binary` is "eventstream-producer" or "eventstream-consumer"; `config_yaml`
// is written to <dir>/config.yaml; `env` adds environment variables (secrets).
absl::StatusOr<RunningService> StartService(
    const std::string& binary, const std::string& config_yaml,
    const std::map<std::string, std::string>& env = {});

}  // namespace eventstream::testing

#endif  // EVENTSTREAM_TESTS_SUPPORT_SERVICE_RUNNER_H_
