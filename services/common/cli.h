// Command line of both service binaries:
//   eventstream-<svc> [serve|migrate] --config FILE [--check-config]
//                     [--log-level LEVEL] [--help]
// Parsing is pure so it can be unit tested; main.cc prints Usage() on error.
#ifndef EVENTSTREAM_SERVICES_COMMON_CLI_H_
#define EVENTSTREAM_SERVICES_COMMON_CLI_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace eventstream {

struct CommandLine {
  std::string command = "serve";  // serve | migrate
  std::string config_path;
  bool check_config = false;
  bool help = false;
  std::string log_level;          // overrides config log.level when set
};

absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args);

// `binary` is "eventstream-producer" or "eventstream-consumer"; `about` is
// one paragraph on what it does.
std::string Usage(const std::string& binary, const std::string& about);

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_COMMON_CLI_H_
