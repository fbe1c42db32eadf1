#include "tests/support/process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace eventstream::testing {

absl::StatusOr<std::unique_ptr<Process>> Process::Start(
    std::vector<std::string> argv, const std::string& log_path,
    const std::map<std::string, std::string>& env) {
  int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot open ", log_path));
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    perror(("exec " + argv[0]).c_str());
    _exit(127);
  }
  close(fd);
  return std::unique_ptr<Process>(new Process(pid, log_path));
}

Process::~Process() {
  if (!exited_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

void Process::Signal(int sig) {
  if (!exited_) kill(pid_, sig);
}

absl::StatusOr<int> Process::Wait(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (!exited_) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (absl::Now() > deadline)
      return absl::DeadlineExceededError(absl::StrCat("pid ", pid_, " still running"));
    usleep(10000);
  }
  return exit_code_;
}

bool Process::Running() {
  if (exited_) return false;
  return !Wait(absl::ZeroDuration()).ok();
}

std::string Process::Log() const { return ReadFile(log_path_); }

absl::StatusOr<std::string> Process::WaitForLog(const std::string& needle,
                                                absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    std::string log = Log();
    if (log.find(needle) != std::string::npos) return log;
    if (!Running())
      return absl::FailedPreconditionError(
          absl::StrCat("process exited (", exit_code_, ") before logging \"",
                       needle, "\"; log:\n", log));
    if (absl::Now() > deadline)
      return absl::DeadlineExceededError(
          absl::StrCat("no \"", needle, "\" in log:\n", log));
    usleep(20000);
  }
}

CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env) {
  std::string dir = MakeTempDir("cmd");
  std::string log = dir + "/out";
  auto p = Process::Start(argv, log, env);
  if (!p.ok()) return {-1, std::string(p.status().message())};
  auto code = (*p)->Wait(absl::Minutes(5));
  CommandResult result{code.ok() ? *code : -1, ReadFile(log)};
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  return result;
}

std::string BinDir() {
  const char* d = getenv("ES_BIN_DIR");
  if (d) return d;
  // Test binaries sit next to the service binaries in build/bin.
  return std::filesystem::canonical("/proc/self/exe").parent_path().string();
}

std::string SourceDir() {
  const char* d = getenv("ES_SOURCE_DIR");
  return d ? d : ".";
}

std::string MakeTempDir(const std::string& prefix) {
  const char* tmp = getenv("TMPDIR");
  std::string templ = absl::StrCat(tmp ? tmp : "/tmp", "/es-", prefix, "-XXXXXX");
  char* made = mkdtemp(templ.data());
  return made ? std::string(made) : std::string();
}

ScopedTempDir::~ScopedTempDir() {
  std::error_code ignored;
  if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
}

size_t Occurrences(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

}  // namespace eventstream::testing
