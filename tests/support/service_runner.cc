#include "tests/support/service_runner.h"

#include <filesystem>
#include <regex>

#include "absl/strings/str_cat.h"

namespace eventstream::testing {

RunningService::~RunningService() {
  process.reset();  // kills it if still running
  if (!dir.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
}

absl::StatusOr<RunningService> StartService(
    const std::string& binary, const std::string& config_yaml,
    const std::map<std::string, std::string>& env) {
  RunningService svc;
  svc.dir = MakeTempDir(binary);
  WriteFile(svc.dir + "/config.yaml", config_yaml);
  auto process = Process::Start(
      {BinDir() + "/" + binary, "serve", "--config", svc.dir + "/config.yaml"},
      svc.dir + "/service.log", env);
  if (!process.ok()) return process.status();
  svc.process = std::move(*process);
  auto log = svc.process->WaitForLog("listening on", absl::Seconds(30));
  if (!log.ok()) return log.status();
  std::smatch m;
  static const std::regex kListening("listening on [^\\s]*:(\\d+)");
  if (!std::regex_search(*log, m, kListening))
    return absl::InternalError(absl::StrCat("no port in log:\n", *log));
  svc.port = std::stoi(m[1]);
  return svc;
}

}  // namespace eventstream::testing
