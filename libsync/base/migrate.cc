#include "libsync/base/migrate.h"

#include <cstdint>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "libsync/base/status_macros.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

// Session-level advisory lock keyed by the schema name.
constexpr pg::Query kAdvisoryLock{"migrate_lock",
                                  "SELECT pg_advisory_lock(hashtext($1))"};
constexpr pg::Query kAdvisoryUnlock{"migrate_unlock",
                                    "SELECT pg_advisory_unlock(hashtext($1))"};

}  // namespace

std::string MigrationChecksum(absl::string_view sql) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : sql) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return absl::StrFormat("%016x", h);
}

absl::Status ApplyMigrations(pg::Connection* conn, absl::string_view schema,
                             const std::vector<Migration>& migrations,
                             int* applied) {
  if (applied) *applied = 0;
  const std::string qschema = pg::QuoteIdentifier(schema);
  const std::string table = absl::StrCat(qschema, ".schema_migrations");
  // Session-level advisory lock keyed by the schema name: a second replica
  // waits here until the first has finished, then finds nothing to do.
  RETURN_IF_ERROR(conn->Exec(kAdvisoryLock, {schema}).status());
  auto unlock = [&] { (void)conn->Exec(kAdvisoryUnlock, {schema}); };

  absl::Status status = conn->ExecScript(absl::StrCat(
      "CREATE SCHEMA IF NOT EXISTS ", qschema, ";",
      "CREATE TABLE IF NOT EXISTS ", table,
      " (version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
      "  applied_at timestamptz NOT NULL DEFAULT now())"));
  if (!status.ok()) {
    unlock();
    return status;
  }
  auto done = conn->Exec(absl::StrCat("SELECT version, checksum FROM ", table));
  if (!done.ok()) {
    unlock();
    return done.status();
  }
  std::map<int64_t, std::string> recorded;
  for (int r = 0; r < done->rows(); ++r)
    recorded[done->GetInt64(r, "version")] = std::string(done->Get(r, "checksum"));

  for (const Migration& m : migrations) {
    std::string checksum = MigrationChecksum(m.sql);
    auto it = recorded.find(m.version);
    if (it != recorded.end()) {
      if (it->second != checksum) {
        unlock();
        return absl::FailedPreconditionError(absl::StrFormat(
            "migration %04d_%s was changed after it was applied to schema %s "
            "(checksum %s, recorded %s); add a new migration instead",
            m.version, m.name, schema, checksum, it->second));
      }
      continue;
    }
    // The migration and its record commit together: a crash in between
    // leaves neither, and the next start applies it again from scratch.
    auto tx = pg::Transaction::Begin(conn);
    if (!tx.ok()) {
      unlock();
      return tx.status();
    }
    status = conn->ExecScript(
        absl::StrCat("SET LOCAL search_path TO ", qschema, ", public;\n", m.sql));
    if (status.ok()) {
      status = conn->Exec(absl::StrCat("INSERT INTO ", table,
                                       " (version, name, checksum) VALUES ($1, $2, $3)"),
                          {m.version, m.name, checksum})
                   .status();
    }
    if (status.ok()) status = (*tx)->Commit();
    if (!status.ok()) {
      unlock();
      return absl::Status(status.code(),
                          absl::StrFormat("migration %04d_%s: %s", m.version,
                                          m.name, status.message()));
    }
    spdlog::info("applied migration {:04d}_{} to schema {}", m.version, m.name, std::string(schema));
    if (applied) ++*applied;
  }
  unlock();
  return absl::OkStatus();
}

}  // namespace eventstream
