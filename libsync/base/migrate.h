// Versioned schema migrations for a service's own tables.
//
// Each service's SQL lives in migrations/<service>/NNNN_name.sql and is
// compiled into its binary (cmake/embed_migrations.cmake), so a deployed
// binary always carries exactly the schema it expects. ApplyMigrations runs
// the ones not yet applied, each in its own transaction together with its
// row in <schema>.schema_migrations (version, name, checksum), under a
// PostgreSQL advisory lock: two replicas starting at once apply each
// migration once. A migration whose recorded checksum differs from the
// binary's is an error (someone edited an applied migration).
#ifndef EVENTSTREAM_LIBSYNC_BASE_MIGRATE_H_
#define EVENTSTREAM_LIBSYNC_BASE_MIGRATE_H_

#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "libsync/base/pg.h"

namespace eventstream {

struct Migration {
  int version;
  std::string name;
  std::string sql;
};

// FNV-1a 64-bit of the SQL text, hex: stable across builds and machines.
std::string MigrationChecksum(absl::string_view sql);

// Applies `migrations` (sorted by version) into `schema`. Returns the number
// applied through `applied` when non-null.
absl::Status ApplyMigrations(pg::Connection* conn, absl::string_view schema,
                             const std::vector<Migration>& migrations,
                             int* applied = nullptr);

// The migrations compiled into each service (generated from
// migrations/producer and migrations/consumer; linked with that service).
const std::vector<Migration>& ProducerMigrations();
const std::vector<Migration>& ConsumerMigrations();

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_BASE_MIGRATE_H_
