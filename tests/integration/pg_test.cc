// The PostgreSQL access layer, migrations and the naming-series counter
// against a real throwaway cluster.
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libsync/base/migrate.h"
#include "libsync/model/naming.h"
#include "libsync/base/pg.h"
#include "libsync/base/pg_pool.h"
#include "libsync/base/status_macros.h"
#include "tests/support/pg_cluster.h"

namespace eventstream::testing {
namespace {

std::unique_ptr<pg::Connection> Connect(const std::string& db) {
  auto conn = pg::Connection::Open(SharedCluster().Url(db));
  EXPECT_TRUE(conn.ok()) << conn.status();
  return conn.ok() ? std::move(*conn) : nullptr;
}

TEST(Pg, ParametersRoundTripExactly) {
  auto conn = Connect("hq");
  auto r = conn->Exec("SELECT $1::numeric(30,9)::text, $2::bigint::text, $3::text IS NULL, $4",
                      {"12345678901234567.123456789", "9223372036854775807", pg::Param(),
                       "it's \"quoted\"; DROP TABLE x"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->Get(0, 0), "12345678901234567.123456789");
  EXPECT_EQ(r->Get(0, 1), "9223372036854775807");
  EXPECT_TRUE(r->GetBool(0, 2));
  EXPECT_EQ(r->Get(0, 3), "it's \"quoted\"; DROP TABLE x");
}

TEST(Pg, QuotedIdentifiersWithSpacesAndQuotes) {
  auto conn = Connect(FreshDatabase("ident"));
  std::string table = pg::QuoteIdentifier("tabSales \"Odd\" Invoice");
  ASSERT_TRUE(conn->Exec(absl::StrCat("CREATE TABLE ", table, " (name text primary key)")).ok());
  ASSERT_TRUE(conn->Exec(absl::StrCat("INSERT INTO ", table, " VALUES ($1)"), {"A"}).ok());
  auto r = conn->Exec(absl::StrCat("SELECT count(*) FROM ", table));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->GetInt64(0, 0), 1);
}

TEST(Pg, ErrorsCarrySqlState) {
  auto conn = Connect(FreshDatabase("err"));
  ASSERT_TRUE(conn->Exec("CREATE TABLE t (name text primary key)").ok());
  ASSERT_TRUE(conn->Exec("INSERT INTO t VALUES ('a')").ok());
  auto dup = conn->Exec("INSERT INTO t VALUES ($1)", {"a"});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(pg::SqlStateOf(dup.status()), "23505");
  EXPECT_NE(dup.status().message().find("SQLSTATE 23505"), absl::string_view::npos);
  auto missing = conn->Exec("SELECT * FROM nope");
  EXPECT_EQ(pg::SqlStateOf(missing.status()), "42P01");
  // A named query's error names it and keeps the SQLSTATE.
  constexpr pg::Query kFromNope{"select_from_nope", "SELECT * FROM nope WHERE $1 = 1"};
  for (absl::Status named : {conn->Exec(kFromNope, {1}).status(),
                             conn->ExecPrepared(kFromNope, {1}).status()}) {
    EXPECT_EQ(pg::SqlStateOf(named), "42P01");
    EXPECT_TRUE(absl::StartsWith(named.message(), "select_from_nope: ")) << named;
  }
}

TEST(Pg, TransactionRollsBackUnlessCommitted) {
  auto conn = Connect(FreshDatabase("tx"));
  ASSERT_TRUE(conn->Exec("CREATE TABLE t (v int)").ok());
  {
    auto tx = pg::Transaction::Begin(conn.get());
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(conn->Exec("INSERT INTO t VALUES (1)").ok());
  }  // no Commit: rolled back
  {
    auto tx = pg::Transaction::Begin(conn.get());
    ASSERT_TRUE(conn->Exec("INSERT INTO t VALUES (2)").ok());
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  {
    // A failed statement poisons the transaction; Commit must say so.
    auto tx = pg::Transaction::Begin(conn.get());
    ASSERT_TRUE(conn->Exec("INSERT INTO t VALUES (3)").ok());
    EXPECT_FALSE(conn->Exec("INSERT INTO t VALUES ('x')").ok());
    absl::Status committed = (*tx)->Commit();
    EXPECT_EQ(committed.code(), absl::StatusCode::kAborted) << committed;
  }
  auto r = conn->Exec("SELECT string_agg(v::text, ',') FROM t");
  EXPECT_EQ(r->Get(0, 0), "2");
}

TEST(Pg, PreparedStatementsAreReused) {
  auto conn = Connect("hq");
  for (int i = 0; i < 3; ++i) {
    auto r = conn->ExecPrepared("add_one", "SELECT $1::int + 1", {i});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->GetInt64(0, 0), i + 1);
  }
}

TEST(Pg, DeferredWritesLandInOrderBeforeTheNextRead) {
  auto conn = Connect(FreshDatabase("deferred"));
  ASSERT_TRUE(conn->Exec("CREATE TABLE t (k int PRIMARY KEY, v text)").ok());
  auto tx = pg::Transaction::Begin(conn.get());
  ASSERT_TRUE(tx.ok());
  // More than one window of deferred statements (256), then a read.
  for (int i = 0; i < 600; ++i) {
    ASSERT_TRUE(conn->ExecPreparedDeferred("ins", "INSERT INTO t VALUES ($1, $2)",
                                           {i, absl::StrCat("v", i)}, absl::StrCat("row ", i))
                    .ok());
  }
  ASSERT_TRUE(conn->ExecPreparedDeferred("upd", "UPDATE t SET v = $2 WHERE k = $1",
                                         {7, "seven"}, "updating 7")
                  .ok());
  auto r = conn->Exec("SELECT count(*), max(v) FILTER (WHERE k = 7) FROM t");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->GetInt64(0, 0), 600);
  EXPECT_EQ(r->Get(0, 1), "seven");
  EXPECT_EQ(conn->deferred(), 0);
  ASSERT_TRUE((*tx)->Commit().ok());
}

// The hook a row buffer uses: it runs before each statement (its own
// statements do not run it again), its failure replaces the statement, and
// a rollback runs without it.
TEST(Pg, BeforeStatementRunsFirstButNotBeforeRollback) {
  auto conn = Connect(FreshDatabase("before"));
  ASSERT_TRUE(conn->Exec("CREATE TABLE t (k int PRIMARY KEY)").ok());
  std::vector<int> held;
  int calls = 0;
  absl::Status fail;
  conn->SetBeforeStatement([&]() -> absl::Status {
    ++calls;
    if (!fail.ok()) return fail;
    std::vector<int> rows;
    rows.swap(held);
    for (int k : rows) {
      RETURN_IF_ERROR(conn->ExecPreparedDeferred("ins", "INSERT INTO t VALUES ($1)", {k},
                                                 absl::StrCat("row ", k)));
    }
    return absl::OkStatus();
  });
  {
    auto tx = pg::Transaction::Begin(conn.get());
    ASSERT_TRUE(tx.ok());
    held = {1, 2};
    auto r = conn->Exec("SELECT count(*) FROM t");  // sees the held rows
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->GetInt64(0, 0), 2);
    held = {3};
    ASSERT_TRUE((*tx)->Commit().ok());  // COMMIT sends them first
  }
  {
    auto tx = pg::Transaction::Begin(conn.get());
    ASSERT_TRUE(tx.ok());
    held = {4};
    fail = absl::InternalError("held rows refused");
    EXPECT_EQ(conn->Exec("SELECT 1").status().message(), "held rows refused");
    calls = 0;
  }  // rolled back: the hook is not asked again, row 4 never sent
  EXPECT_EQ(calls, 0);
  fail = absl::OkStatus();
  held.clear();
  conn->SetBeforeStatement(nullptr);
  auto r = conn->Exec("SELECT string_agg(k::text, ',' ORDER BY k) FROM t");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->Get(0, 0), "1,2,3");
}

TEST(Pg, DeferredFailureComesBackNamedAndRollsBack) {
  auto conn = Connect(FreshDatabase("deferred_err"));
  ASSERT_TRUE(conn->Exec("CREATE TABLE t (k int PRIMARY KEY)").ok());
  {
    auto tx = pg::Transaction::Begin(conn.get());
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(conn->ExecPreparedDeferred("i", "INSERT INTO t VALUES ($1)", {1}, "row 1").ok());
    ASSERT_TRUE(conn->ExecPreparedDeferred("i", "INSERT INTO t VALUES ($1)", {1}, "row 1 again")
                    .ok());
    ASSERT_TRUE(conn->ExecPreparedDeferred("i", "INSERT INTO t VALUES ($1)", {2}, "row 2").ok());
    absl::Status s = conn->FlushDeferred();
    EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
    EXPECT_TRUE(absl::StartsWith(s.message(), "row 1 again: SQLSTATE 23505")) << s;
    // The transaction is aborted; Commit reports it and nothing lands.
    EXPECT_FALSE((*tx)->Commit().ok());
  }
  auto r = conn->Exec("SELECT count(*) FROM t");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->GetInt64(0, 0), 0);
  // A deferred failure surfaces at the next call, which does not run.
  {
    auto tx = pg::Transaction::Begin(conn.get());
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(conn->ExecPreparedDeferred("bad", "INSERT INTO t VALUES ($1::int / 0)", {1},
                                           "dividing")
                    .ok());
    auto read = conn->Exec("SELECT 1");
    EXPECT_FALSE(read.ok());
    EXPECT_TRUE(absl::StartsWith(read.status().message(), "dividing: SQLSTATE 22012"))
        << read.status();
  }  // rolled back by the destructor
  EXPECT_TRUE(conn->Exec("INSERT INTO t VALUES (5)").ok());
  // A failed prepare is prepared again next time.
  ASSERT_TRUE(conn->ExecPreparedDeferred("p", "INSERT INTO nope VALUES ($1)", {1}, "nope").ok());
  EXPECT_EQ(pg::SqlStateOf(conn->FlushDeferred()), "42P01");
  ASSERT_TRUE(conn->Exec("CREATE TABLE nope (k int)").ok());
  ASSERT_TRUE(conn->ExecPreparedDeferred("p", "INSERT INTO nope VALUES ($1)", {1}, "nope").ok());
  EXPECT_TRUE(conn->FlushDeferred().ok());
}

TEST(Pg, CopyInRoundTripsEscapesAndNulls) {
  auto conn = Connect(FreshDatabase("copy"));
  ASSERT_TRUE(conn->ExecScript("CREATE TABLE t (id bigint PRIMARY KEY, a text, b jsonb)").ok());
  const std::string tricky = "tab\there\nnew line\r\\N back\\slash \xc3\xa9";
  pg::CopyText rows;
  rows.Field(int64_t{1}).Field(tricky).Field(R"({"k": "v\tw"})");
  rows.EndRow();
  rows.Field(int64_t{2}).Null().Null();
  rows.EndRow();
  rows.Field(int64_t{3}).Field("").Field("[]");
  rows.EndRow();
  auto copied = conn->CopyIn("COPY t (id, a, b) FROM STDIN", rows.data());
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(*copied, 3);
  auto r = conn->Exec("SELECT a, a IS NULL, b->>'k' FROM t ORDER BY id");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->Get(0, 0), tricky);
  EXPECT_EQ(r->Get(0, 2), "v\tw");
  EXPECT_TRUE(r->GetBool(1, 1));
  EXPECT_EQ(r->Get(2, 0), "");
  EXPECT_FALSE(r->GetBool(2, 1));

  // A failing COPY inserts nothing, names the SQLSTATE, and the connection
  // stays usable.
  pg::CopyText again;
  again.Field(int64_t{4}).Field("new").Null();
  again.EndRow();
  again.Field(int64_t{1}).Field("duplicate").Null();
  again.EndRow();
  auto failed = conn->CopyIn("COPY t (id, a, b) FROM STDIN", again.data());
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kAlreadyExists) << failed.status();
  EXPECT_EQ(pg::SqlStateOf(failed.status()), "23505");
  auto count = conn->Exec("SELECT count(*) FROM t");
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(count->GetInt64(0, 0), 3);
  auto not_copy = conn->CopyIn("SELECT 1", "");
  EXPECT_FALSE(not_copy.ok());
  EXPECT_TRUE(conn->Exec("SELECT 1").ok());
}

TEST(Pg, ConnectErrorIsUnavailableAndHidesPassword) {
  auto conn = pg::Connection::Open("postgresql://u:hunter2@/x?host=/nonexistent-dir");
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(conn.status().message().find("hunter2"), absl::string_view::npos);
}

const std::vector<Migration> kMigrations = {
    {1, "first", "CREATE TABLE a (x int);"},
    {2, "second", "CREATE TABLE b (y int); INSERT INTO b VALUES (1);"},
};

// Idle connections are kept for reuse up to max_idle, and closed once
// unused for idle_timeout (here zero: at the next use).
TEST(Pool, KeepsIdleConnectionsUntilTheyGoStale) {
  const std::string url = SharedCluster().Url(FreshDatabase("pool"));
  auto burst = [](pg::ConnectionPool& pool) {
    std::vector<pg::ConnectionPool::Lease> leases;
    for (int i = 0; i < 3; ++i) {
      auto lease = pool.Acquire();
      EXPECT_TRUE(lease.ok()) << lease.status();
      if (lease.ok()) leases.push_back(std::move(*lease));
    }
  };
  pg::ConnectionPool kept(url, pg::ConnectionPool::Options{});
  burst(kept);
  EXPECT_EQ(kept.stats().idle, 3u);
  burst(kept);  // reused: nothing new opened
  EXPECT_EQ(kept.stats().open, 3u);
  pg::ConnectionPool::Options prompt;
  prompt.idle_timeout = absl::ZeroDuration();
  pg::ConnectionPool closing(url, prompt);
  burst(closing);
  EXPECT_EQ(closing.stats().idle, 1u);  // each return closed the older idle ones
  EXPECT_EQ(closing.stats().open, 1u);
}

TEST(Migrations, ApplyOnceAndRecordChecksums) {
  std::string db = FreshDatabase("mig");
  auto conn = Connect(db);
  int applied = 0;
  ASSERT_TRUE(ApplyMigrations(conn.get(), "es_test", kMigrations, &applied).ok());
  EXPECT_EQ(applied, 2);
  ASSERT_TRUE(ApplyMigrations(conn.get(), "es_test", kMigrations, &applied).ok());
  EXPECT_EQ(applied, 0);
  auto r = conn->Exec("SELECT count(*) FROM es_test.b");
  EXPECT_EQ(r->GetInt64(0, 0), 1);

  auto edited = kMigrations;
  edited[1].sql = "CREATE TABLE b (y int);";
  absl::Status s = ApplyMigrations(conn.get(), "es_test", edited);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("0002_second"), absl::string_view::npos) << s;
}

TEST(Migrations, ConcurrentStartsApplyEachOnce) {
  std::string db = FreshDatabase("migc");
  std::vector<std::thread> threads;
  std::atomic<int> total{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      auto conn = pg::Connection::Open(SharedCluster().Url(db));
      ASSERT_TRUE(conn.ok());
      int applied = 0;
      absl::Status s = ApplyMigrations(conn->get(), "es_test", kMigrations, &applied);
      EXPECT_TRUE(s.ok()) << s;
      total += applied;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(total.load(), 2);
}

TEST(Migrations, FailingMigrationLeavesNothing) {
  std::string db = FreshDatabase("migf");
  auto conn = Connect(db);
  std::vector<Migration> bad = {{1, "broken", "CREATE TABLE c (x int); SELECT 1/0;"}};
  absl::Status s = ApplyMigrations(conn.get(), "es_test", bad);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("0001_broken"), absl::string_view::npos) << s;
  auto r = conn->Exec("SELECT to_regclass('es_test.c') IS NULL");
  EXPECT_TRUE(r->GetBool(0, 0));
}

TEST(Migrations, ServiceMigrationsApply) {
  std::string db = FreshDatabase("svc");
  auto conn = Connect(db);
  EXPECT_TRUE(ApplyMigrations(conn.get(), "es_producer", ProducerMigrations()).ok());
  EXPECT_TRUE(ApplyMigrations(conn.get(), "es_consumer", ConsumerMigrations()).ok());
}

TEST(NamingSeries, GapFreeUnderConcurrencyAndRollback) {
  std::string db = FreshDatabase("series");
  {
    auto conn = Connect(db);
    ASSERT_TRUE(ApplyMigrations(conn.get(), "es_consumer", ConsumerMigrations()).ok());
  }
  auto policy = NamingPolicy::Parse("series:NOTE-.#####");
  ASSERT_TRUE(policy.ok());
  constexpr int kThreads = 6, kEach = 40;
  std::mutex mu;
  std::vector<std::string> committed;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto conn = pg::Connection::Open(SharedCluster().Url(db));
      ASSERT_TRUE(conn.ok());
      PgSeriesCounter counter(conn->get(), "es_consumer.series");
      for (int i = 0; i < kEach; ++i) {
        auto tx = pg::Transaction::Begin(conn->get());
        ASSERT_TRUE(tx.ok());
        auto name = policy->NewName(Value(), &counter);
        ASSERT_TRUE(name.ok()) << name.status();
        if ((i + t) % 3 == 0) continue;  // rolled back: the number returns
        ASSERT_TRUE((*tx)->Commit().ok());
        std::lock_guard<std::mutex> lock(mu);
        committed.push_back(*name);
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::string> unique(committed.begin(), committed.end());
  ASSERT_EQ(unique.size(), committed.size()) << "a series number was handed out twice";
  // Gap-free: exactly NOTE-00001 .. NOTE-<count>.
  int n = 0;
  for (const std::string& name : unique) {
    ++n;
    char expected[32];
    snprintf(expected, sizeof expected, "NOTE-%05d", n);
    EXPECT_EQ(name, expected);
  }
}

}  // namespace
}  // namespace eventstream::testing
