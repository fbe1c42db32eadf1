// PgCluster: a throwaway PostgreSQL 15 cluster for integration tests.
//
// Start() runs initdb into a fresh temp directory and starts the server on a
// unix socket in that directory (no TCP; a random port number names the
// socket). When the tests run as root, initdb and the server run as the
// `postgres` system user, since PostgreSQL refuses to run as root. The
// destructor stops the server and removes the directory; a watchdog process
// does the same if the test binary dies without running destructors, so a
// crashed test leaves no server behind.
#ifndef EVENTSTREAM_TESTS_SUPPORT_PG_CLUSTER_H_
#define EVENTSTREAM_TESTS_SUPPORT_PG_CLUSTER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "libsync/base/pg.h"

namespace eventstream::testing {

class PgCluster {
 public:
  // `server_options` are appended to the server's command line, e.g.
  // "-c wal_level=logical" (WAL capture tests).
  static absl::StatusOr<std::unique_ptr<PgCluster>> Start(
      const std::string& server_options = "");
  ~PgCluster();

  // libpq URL of database `db` on this cluster.
  std::string Url(const std::string& db) const;
  absl::Status CreateDatabase(const std::string& db);
  absl::Status DropDatabase(const std::string& db);
  const std::string& socket_dir() const { return dir_; }
  int port() const { return port_; }

 private:
  PgCluster(std::string dir, int port) : dir_(std::move(dir)), port_(port) {}
  void Stop();
  std::string dir_;
  int port_;
  bool stopped_ = false;
};

// The cluster shared by all tests of one binary, with databases "hq" and
// "branch" created. Started on first use; stopped at exit by the gtest
// environment registered in pg_cluster.cc.
PgCluster& SharedCluster();
// Server options for the shared cluster (PgCluster::Start), e.g.
// "-c wal_level=logical"; call before its first use (a test binary's static
// initializer: `const bool kWal = SetSharedClusterOptions(...)`).
bool SetSharedClusterOptions(const std::string& server_options);

// A fresh, empty database on the shared cluster with a unique name
// (prefix + counter), for tests that must not see each other's tables.
std::string FreshDatabase(const std::string& prefix);

// FreshDatabase, a connection to it in `*conn`, and `sql` (a script) run
// there; fails the test (ASSERT) when any step fails. Returns its name.
std::string FreshSite(const std::string& prefix, const std::string& sql,
                      std::unique_ptr<pg::Connection>* conn);

}  // namespace eventstream::testing

#endif  // EVENTSTREAM_TESTS_SUPPORT_PG_CLUSTER_H_
