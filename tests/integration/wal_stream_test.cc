// WAL capture's foundation against a real cluster (wal_level=logical): a
// ReplicationStream reading pgoutput, decoded (pgoutput.h) and folded into
// transactions (transaction_builder.h).
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "libsync/base/pg.h"
#include "libsync/base/value.h"
#include "libsync/wal/pgoutput.h"
#include "libsync/wal/replication_stream.h"
#include "libsync/wal/transaction_builder.h"
#include "tests/support/pg_cluster.h"

namespace eventstream::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using wal::ReplicationOptions;
using wal::ReplicationStream;
using wal::WalTransaction;

// The cluster of this binary: logical decoding on, and a short
// wal_sender_timeout so a client that did not answer keepalives would be cut.
std::unique_ptr<PgCluster>& WalClusterSlot() {
  static auto* slot = new std::unique_ptr<PgCluster>();
  return *slot;
}
class WalClusterEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { WalClusterSlot().reset(); }
};
const auto* const kRegistered = ::testing::AddGlobalTestEnvironment(new WalClusterEnvironment);

PgCluster& WalCluster() {
  auto& slot = WalClusterSlot();
  if (!slot) {
    auto started = PgCluster::Start("-c wal_level=logical -c wal_sender_timeout=2s");
    if (!started.ok()) {
      fprintf(stderr, "cannot start PostgreSQL: %s\n", std::string(started.status().message()).c_str());
      std::abort();
    }
    slot = std::move(*started);
  }
  return *slot;
}

Value J(const std::string& text) {
  absl::StatusOr<Value> v = Value::ParseJson(text);
  EXPECT_TRUE(v.ok()) << text << ": " << v.status();
  return v.ok() ? *v : Value();
}

constexpr char kSchema[] = R"sql(
  CREATE TABLE "tabNote" (
    name text PRIMARY KEY, title varchar(140), idx int, big bigint,
    qty numeric(30,9), ok boolean, modified timestamp(6), seen timestamptz,
    due date, data jsonb, raw json, note text);
  CREATE PUBLICATION es_pub FOR TABLE "tabNote";
)sql";

// A fresh database with kSchema, a connection to it and a stream on `slot`.
class WalStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    db_ = absl::StrCat("wal_", ++counter);
    ASSERT_TRUE(WalCluster().CreateDatabase(db_).ok());
    conn_ = Connect();
    ASSERT_TRUE(conn_->ExecScript(kSchema).ok());
  }
  std::unique_ptr<pg::Connection> Connect() {
    auto conn = pg::Connection::Open(WalCluster().Url(db_));
    EXPECT_TRUE(conn.ok()) << conn.status();
    return conn.ok() ? std::move(*conn) : nullptr;
  }
  ReplicationOptions Options(const std::string& publication = "es_pub") {
    ReplicationOptions o;
    o.conninfo = WalCluster().Url(db_);
    o.slot = absl::StrCat("es_slot_", db_);
    o.publications = {publication};
    return o;
  }
  std::unique_ptr<ReplicationStream> Open(const ReplicationOptions& options) {
    auto stream = ReplicationStream::Start(options);
    EXPECT_TRUE(stream.ok()) << stream.status();
    return stream.ok() ? std::move(*stream) : nullptr;
  }
  void Sql(const std::string& sql) { ASSERT_TRUE(conn_->ExecScript(sql).ok()) << sql; }
  std::string ToJsonb(const std::string& name) {
    auto r = conn_->Exec(R"(SELECT to_jsonb(t)::text AS j FROM "tabNote" t WHERE name = $1)",
                         {name});
    EXPECT_TRUE(r.ok() && r->rows() == 1) << r.status();
    return r.ok() && r->rows() == 1 ? std::string(r->Get(0, "j")) : "null";
  }

  // Reads until `n` transactions came or `timeout` passed.
  std::vector<WalTransaction> Read(ReplicationStream* stream, size_t n,
                                   absl::Duration timeout = absl::Seconds(20)) {
    wal::TransactionBuilder builder;
    std::vector<WalTransaction> out;
    const absl::Time deadline = absl::Now() + timeout;
    while (out.size() < n && absl::Now() < deadline) {
      auto message = stream->Next(absl::Milliseconds(100));
      EXPECT_TRUE(message.ok()) << message.status();
      if (!message.ok()) break;
      if (!*message) continue;
      auto decoded = wal::DecodePgOutput((*message)->payload);
      EXPECT_TRUE(decoded.ok()) << decoded.status();
      if (!decoded.ok()) break;
      auto tx = builder.Add(*std::move(decoded));
      EXPECT_TRUE(tx.ok()) << tx.status();
      if (tx.ok() && *tx) out.push_back(**std::move(tx));
    }
    return out;
  }

  // A stream opened, kInsertTwo and kUpdateDelete written, both read.
  void WriteAndReadTwo(std::unique_ptr<ReplicationStream>* stream,
                       std::vector<WalTransaction>* txs);

  std::string db_;
  std::unique_ptr<pg::Connection> conn_;
};

std::vector<std::string> Ops(const WalTransaction& tx) {
  std::vector<std::string> out;
  for (const auto& c : tx.changes) {
    const std::string& row = c.new_row ? *c.new_row : *c.old_row;
    out.push_back(absl::StrCat(std::string(1, c.op), ":", J(row).Find("name")->as_string()));
  }
  return out;
}

constexpr char kInsertTwo[] = R"sql(
  BEGIN;
  INSERT INTO "tabNote" VALUES ('N1', 'first "one"', 1, 9223372036854775807,
    12345678901234567.123456789, true, '2026-11-23 10:00:00.5', '2026-11-23 10:00:00+02',
    '2026-11-23', '{"b": [1, 2.50], "a": null}', '{"x": 1.0}', NULL);
  INSERT INTO "tabNote" (name, title, qty) VALUES ('N2', 'second', -0.5);
  COMMIT;
)sql";
constexpr char kUpdateDelete[] = R"sql(
  BEGIN;
  UPDATE "tabNote" SET title = 'changed', ok = false WHERE name = 'N1';
  DELETE FROM "tabNote" WHERE name = 'N2';
  COMMIT;
)sql";

TEST_F(WalStreamTest, TwoTransactionsDecodedInCommitOrderLikeToJsonb) {
  auto stream = Open(Options());
  ASSERT_TRUE(stream);
  EXPECT_TRUE(stream->created_slot());
  Sql(kInsertTwo);
  const std::string n1 = ToJsonb("N1"), n2 = ToJsonb("N2");
  Sql(kUpdateDelete);
  const std::string n1_changed = ToJsonb("N1");
  std::vector<WalTransaction> txs = Read(stream.get(), 2);
  ASSERT_EQ(txs.size(), 2u);
  EXPECT_THAT(Ops(txs[0]), ElementsAre("I:N1", "I:N2"));
  EXPECT_THAT(Ops(txs[1]), ElementsAre("U:N1", "D:N2"));
  EXPECT_LT(txs[0].end_lsn, txs[1].end_lsn);
  EXPECT_NE(txs[0].xid, txs[1].xid);
  // The rows read as the trigger's to_jsonb(NEW) would.
  EXPECT_EQ(J(*txs[0].changes[0].new_row), J(n1));
  EXPECT_EQ(J(*txs[0].changes[1].new_row), J(n2));
  EXPECT_EQ(J(*txs[1].changes[0].new_row), J(n1_changed));
  // Default replica identity: no old row on update, the key on delete.
  EXPECT_FALSE(txs[1].changes[0].old_row);
  EXPECT_EQ(J(*txs[1].changes[1].old_row), J(R"({"name": "N2"})"));
  EXPECT_TRUE(txs[1].changes[1].old_is_key_only);
}

TEST_F(WalStreamTest, CommitOrderNotStartOrder) {
  auto stream = Open(Options());
  ASSERT_TRUE(stream);
  auto other = Connect();
  Sql(R"(BEGIN; INSERT INTO "tabNote" (name) VALUES ('first-begun');)");
  ASSERT_TRUE(other->ExecScript(R"(INSERT INTO "tabNote" (name) VALUES ('first-committed'))").ok());
  Sql("COMMIT");
  std::vector<WalTransaction> txs = Read(stream.get(), 2);
  ASSERT_EQ(txs.size(), 2u);
  EXPECT_THAT(Ops(txs[0]), ElementsAre("I:first-committed"));
  EXPECT_THAT(Ops(txs[1]), ElementsAre("I:first-begun"));
}

TEST_F(WalStreamTest, ReplicaIdentityFullGivesTheOldRow) {
  Sql(R"(ALTER TABLE "tabNote" REPLICA IDENTITY FULL)");
  auto stream = Open(Options());
  ASSERT_TRUE(stream);
  Sql(kInsertTwo);
  const std::string n1 = ToJsonb("N1"), n2 = ToJsonb("N2");
  Sql(kUpdateDelete);
  std::vector<WalTransaction> txs = Read(stream.get(), 2);
  ASSERT_EQ(txs.size(), 2u);
  const auto& update = txs[1].changes[0];
  ASSERT_TRUE(update.old_row);
  EXPECT_FALSE(update.old_is_key_only);
  EXPECT_EQ(J(*update.old_row), J(n1));
  EXPECT_EQ(J(*txs[1].changes[1].old_row), J(n2));
}

// An update that leaves a TOASTed column alone does not carry it: absent and
// named, unless REPLICA IDENTITY FULL puts the whole old row in the WAL.
TEST_F(WalStreamTest, UnchangedToastColumns) {
  auto stream = Open(Options());
  ASSERT_TRUE(stream);
  Sql(R"(INSERT INTO "tabNote" (name, note) VALUES
         ('big', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i)))");
  Sql(R"(UPDATE "tabNote" SET title = 'a' WHERE name = 'big')");
  Sql(R"(ALTER TABLE "tabNote" REPLICA IDENTITY FULL)");
  Sql(R"(UPDATE "tabNote" SET title = 'b' WHERE name = 'big')");
  const std::string after = ToJsonb("big");
  std::vector<WalTransaction> txs = Read(stream.get(), 3);
  ASSERT_EQ(txs.size(), 3u);
  const auto& plain = txs[1].changes.at(0);
  EXPECT_THAT(plain.missing_columns, ElementsAre("note"));
  EXPECT_EQ(J(*plain.new_row).Find("note"), nullptr);
  const auto& full = txs[2].changes.at(0);
  EXPECT_TRUE(full.missing_columns.empty());
  EXPECT_EQ(J(*full.new_row), J(after));
  EXPECT_EQ(J(*full.new_row).Find("note")->as_string().size(), 12800u);
}

void WalStreamTest::WriteAndReadTwo(std::unique_ptr<ReplicationStream>* stream,
                                    std::vector<WalTransaction>* txs) {
  *stream = Open(Options());
  ASSERT_TRUE(*stream);
  Sql(kInsertTwo);
  Sql(kUpdateDelete);
  *txs = Read(stream->get(), 2);
  ASSERT_EQ(txs->size(), 2u);
}

TEST_F(WalStreamTest, UnconfirmedTransactionsComeAgainAfterARestart) {
  std::unique_ptr<ReplicationStream> stream;
  std::vector<WalTransaction> first;
  ASSERT_NO_FATAL_FAILURE(WriteAndReadTwo(&stream, &first));
  stream.reset();  // killed without confirming anything

  stream = Open(Options());
  ASSERT_TRUE(stream);
  EXPECT_FALSE(stream->created_slot());
  std::vector<WalTransaction> again = Read(stream.get(), 2);
  ASSERT_EQ(again.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(again[i].xid, first[i].xid);
    EXPECT_EQ(again[i].end_lsn, first[i].end_lsn);
    EXPECT_EQ(Ops(again[i]), Ops(first[i]));
  }
}

TEST_F(WalStreamTest, AConfirmedTransactionDoesNotComeAgain) {
  std::unique_ptr<ReplicationStream> stream;
  std::vector<WalTransaction> first;
  ASSERT_NO_FATAL_FAILURE(WriteAndReadTwo(&stream, &first));
  ASSERT_TRUE(stream->Confirm(first[0].end_lsn).ok());
  EXPECT_EQ(stream->confirmed(), first[0].end_lsn);
  stream.reset();

  stream = Open(Options());
  ASSERT_TRUE(stream);
  std::vector<WalTransaction> rest = Read(stream.get(), 2, absl::Seconds(3));
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].xid, first[1].xid);
  EXPECT_THAT(Ops(rest[0]), ElementsAre("U:N1", "D:N2"));
  auto slot = conn_->Exec(
      "SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1",
      {Options().slot});
  ASSERT_TRUE(slot.ok() && slot->rows() == 1) << slot.status();
  EXPECT_EQ(slot->Get(0, "lsn"), wal::FormatLsn(first[0].end_lsn));
}

TEST_F(WalStreamTest, ReplicationOriginNamesTheTransaction) {
  auto stream = Open(Options());
  ASSERT_TRUE(stream);
  Sql("SELECT pg_replication_origin_create('hq')");
  auto replayer = Connect();
  // Separate statements: one script would be one transaction, reset before
  // its commit (the commit record carries the session's origin).
  for (const char* sql : {"SELECT pg_replication_origin_session_setup('hq')",
                          R"(INSERT INTO "tabNote" (name) VALUES ('from-hq'))",
                          "SELECT pg_replication_origin_session_reset()"}) {
    ASSERT_TRUE(replayer->ExecScript(sql).ok()) << sql;
  }
  Sql(R"(INSERT INTO "tabNote" (name) VALUES ('local'))");
  std::vector<WalTransaction> txs = Read(stream.get(), 2);
  ASSERT_EQ(txs.size(), 2u);
  EXPECT_THAT(Ops(txs[0]), ElementsAre("I:from-hq"));
  EXPECT_EQ(txs[0].origin, "hq");
  EXPECT_FALSE(txs[1].origin);
}

TEST_F(WalStreamTest, KeepalivesAreAnsweredWhileIdle) {
  auto stream = Open(Options());
  ASSERT_TRUE(stream);
  // Longer than wal_sender_timeout (2 s): the server asks for a reply and
  // would cut a client that did not give one.
  const absl::Time until = absl::Now() + absl::Seconds(4);
  while (absl::Now() < until) {
    auto message = stream->Next(absl::Milliseconds(200));
    ASSERT_TRUE(message.ok()) << message.status();
    EXPECT_FALSE(*message);
  }
  EXPECT_GT(stream->server_end(), 0u);
  Sql(R"(INSERT INTO "tabNote" (name) VALUES ('after-idle'))");
  std::vector<WalTransaction> txs = Read(stream.get(), 1);
  ASSERT_EQ(txs.size(), 1u);
  EXPECT_THAT(Ops(txs[0]), ElementsAre("I:after-idle"));
}

TEST_F(WalStreamTest, ErrorsCarryTheServersMessage) {
  ReplicationOptions bad_name = Options();
  bad_name.slot = "Bad-Name";
  EXPECT_EQ(ReplicationStream::Start(bad_name).status().code(),
            absl::StatusCode::kInvalidArgument);

  auto stream = Open(Options("no_such_pub"));
  ASSERT_TRUE(stream);
  Sql(R"(INSERT INTO "tabNote" (name) VALUES ('x'))");
  absl::Status error;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (error.ok() && absl::Now() < deadline) error = stream->Next(absl::Milliseconds(100)).status();
  EXPECT_THAT(error.message(), HasSubstr("publication \"no_such_pub\" does not exist"));
}

}  // namespace
}  // namespace eventstream::testing
