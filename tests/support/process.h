// Process: a child process for integration tests (the real service
// binaries). Output goes to a log file the test can read; the destructor
// kills what is still running, so a failing test leaves nothing behind.
#ifndef EVENTSTREAM_TESTS_SUPPORT_PROCESS_H_
#define EVENTSTREAM_TESTS_SUPPORT_PROCESS_H_

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace eventstream::testing {

class Process {
 public:
  // Starts argv[0] (a path) with `env` added to this process's environment.
  // stdout and stderr both go to `log_path`.
  static absl::StatusOr<std::unique_ptr<Process>> Start(
      std::vector<std::string> argv, const std::string& log_path,
      const std::map<std::string, std::string>& env = {});
  ~Process();

  pid_t pid() const { return pid_; }
  // Sends `sig` (SIGTERM, SIGKILL ...).
  void Signal(int sig);
  // Waits for exit up to `timeout`; returns the exit code (128+signal when
  // killed) or DEADLINE_EXCEEDED.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  bool Running();
  std::string Log() const;
  // Waits until the log contains `needle`; returns the log then.
  absl::StatusOr<std::string> WaitForLog(const std::string& needle,
                                         absl::Duration timeout);

 private:
  Process(pid_t pid, std::string log_path)
      : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_;
  std::string log_path_;
  bool exited_ = false;
  int exit_code_ = 0;
};

// Runs a command to completion; returns its exit code and output.
struct CommandResult {
  int exit_code;
  std::string output;
};
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env = {});

// Directory of the built binaries (ES_BIN_DIR, set by ctest).
std::string BinDir();
// Source tree root (ES_SOURCE_DIR).
std::string SourceDir();
// A fresh temporary directory under $TMPDIR, removed by the caller.
std::string MakeTempDir(const std::string& prefix);
// A temporary directory removed (with its contents) when this goes away.
class ScopedTempDir {
 public:
  explicit ScopedTempDir(const std::string& prefix) : path_(MakeTempDir(prefix)) {}
  ~ScopedTempDir();
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};
std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& content);

// How many times `needle` starts in `text` (e.g. a line in a service log).
size_t Occurrences(const std::string& text, const std::string& needle);

}  // namespace eventstream::testing

#endif  // EVENTSTREAM_TESTS_SUPPORT_PROCESS_H_
