#include "tests/support/pg_cluster.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "libsync/base/pg.h"
#include "tests/support/process.h"

namespace eventstream::testing {
namespace {

constexpr char kPgBin[] = "/usr/lib/postgresql/15/bin";

// Runs a PostgreSQL program, as `postgres` when we are root.
std::vector<std::string> AsPostgresUser(std::vector<std::string> argv) {
  if (geteuid() != 0) return argv;
  std::vector<std::string> wrapped = {"/usr/sbin/runuser", "-u", "postgres", "--"};
  wrapped.insert(wrapped.end(), argv.begin(), argv.end());
  return wrapped;
}

absl::Status Run(const std::vector<std::string>& argv) {
  CommandResult r = RunCommand(AsPostgresUser(argv));
  if (r.exit_code != 0)
    return absl::InternalError(absl::StrCat(argv[0], " failed (", r.exit_code,
                                            "):\n", r.output));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PgCluster>> PgCluster::Start(
    const std::string& server_options) {
  std::string dir = MakeTempDir("pg");
  if (dir.empty()) return absl::InternalError("mkdtemp failed");
  if (geteuid() == 0) {
    struct passwd* pw = getpwnam("postgres");
    if (pw == nullptr)
      return absl::FailedPreconditionError(
          "running as root needs the `postgres` user (tools/setup installs "
          "postgresql-15, which creates it)");
    if (chown(dir.c_str(), pw->pw_uid, pw->pw_gid) != 0)
      return absl::InternalError("chown of the cluster directory failed");
  }
  std::random_device rd;
  int port = 20000 + static_cast<int>(rd() % 40000);
  std::string data = dir + "/data";
  auto status = Run({absl::StrCat(kPgBin, "/initdb"), "-D", data, "-U", "postgres",
                     "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"});
  if (!status.ok()) return status;
  auto cluster = std::unique_ptr<PgCluster>(new PgCluster(dir, port));

  // Watchdog: if this process dies without running destructors, stop the
  // server and remove its directory within a second.
  pid_t parent = getpid();
  if (fork() == 0) {
    setsid();
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(devnull, 2);
    std::string script = absl::StrCat(
        "while kill -0 ", parent, " 2>/dev/null; do sleep 1; done; ",
        "if [ -d '", data, "' ]; then ",
        geteuid() == 0 ? "runuser -u postgres -- " : "", kPgBin,
        "/pg_ctl -D '", data, "' -m immediate stop >/dev/null 2>&1; rm -rf '",
        dir, "'; fi");
    execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    _exit(0);
  }

  status = Run({absl::StrCat(kPgBin, "/pg_ctl"), "-D", data, "-w", "-l",
                dir + "/server.log", "-o",
                absl::StrCat("-k ", dir, " -p ", port,
                             " -c listen_addresses='' -c fsync=off"
                             " -c full_page_writes=off -c max_connections=200 ",
                             server_options),
                "start"});
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat(status.message(), "\nserver log:\n",
                                            ReadFile(dir + "/server.log")));
  }
  return cluster;
}

PgCluster::~PgCluster() { Stop(); }

void PgCluster::Stop() {
  if (stopped_) return;
  stopped_ = true;
  (void)Run({absl::StrCat(kPgBin, "/pg_ctl"), "-D", dir_ + "/data", "-m", "fast",
             "-w", "stop"});
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string PgCluster::Url(const std::string& db) const {
  return absl::StrCat("postgresql:///", db, "?host=", dir_, "&port=", port_,
                      "&user=postgres");
}

absl::Status PgCluster::CreateDatabase(const std::string& db) {
  auto conn = pg::Connection::Open(Url("postgres"));
  if (!conn.ok()) return conn.status();
  return (*conn)->Exec(absl::StrCat("CREATE DATABASE ", pg::QuoteIdentifier(db))).status();
}

absl::Status PgCluster::DropDatabase(const std::string& db) {
  auto conn = pg::Connection::Open(Url("postgres"));
  if (!conn.ok()) return conn.status();
  return (*conn)
      ->Exec(absl::StrCat("DROP DATABASE IF EXISTS ", pg::QuoteIdentifier(db),
                          " WITH (FORCE)"))
      .status();
}

namespace {

std::unique_ptr<PgCluster>& SharedSlot() {
  static auto* slot = new std::unique_ptr<PgCluster>();
  return *slot;
}

// Stops the shared cluster after the last test, even when tests failed.
class SharedClusterEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { SharedSlot().reset(); }
};
const auto* const kRegistered =
    ::testing::AddGlobalTestEnvironment(new SharedClusterEnvironment);

}  // namespace

namespace {
std::string& SharedOptions() {
  static auto* options = new std::string();
  return *options;
}
}  // namespace

bool SetSharedClusterOptions(const std::string& server_options) {
  SharedOptions() = server_options;
  return true;
}

PgCluster& SharedCluster() {
  auto& slot = SharedSlot();
  if (!slot) {
    std::string options = SharedOptions();
    // ES_TEST_CAPTURE=wal: the producers the tests start capture from the
    // WAL (two_sites.cc), which needs logical decoding.
    if (const char* mode = getenv("ES_TEST_CAPTURE"); mode != nullptr && std::string(mode) == "wal") {
      options += " -c wal_level=logical -c max_wal_senders=40 -c max_replication_slots=200";
    }
    auto started = PgCluster::Start(options);
    if (!started.ok()) {
      fprintf(stderr, "cannot start PostgreSQL: %s\n",
              std::string(started.status().message()).c_str());
      std::abort();
    }
    slot = std::move(*started);
    for (const char* db : {"hq", "branch"}) {
      auto s = slot->CreateDatabase(db);
      if (!s.ok()) {
        fprintf(stderr, "%s\n", std::string(s.message()).c_str());
        std::abort();
      }
    }
  }
  return *slot;
}

std::string FreshDatabase(const std::string& prefix) {
  static std::atomic<int> counter{0};
  std::string name = absl::StrCat(prefix, "_", getpid(), "_", counter++);
  auto s = SharedCluster().CreateDatabase(name);
  if (!s.ok()) ADD_FAILURE() << s;
  return name;
}

std::string FreshSite(const std::string& prefix, const std::string& sql,
                      std::unique_ptr<pg::Connection>* conn) {
  const std::string db = FreshDatabase(prefix);
  auto opened = pg::Connection::Open(SharedCluster().Url(db));
  EXPECT_TRUE(opened.ok()) << opened.status();
  if (!opened.ok()) return db;
  *conn = std::move(*opened);
  absl::Status s = (*conn)->ExecScript(sql);
  EXPECT_TRUE(s.ok()) << s << "\n" << sql;
  return db;
}

}  // namespace eventstream::testing
