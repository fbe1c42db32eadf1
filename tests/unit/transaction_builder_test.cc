#include "libsync/wal/transaction_builder.h"

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "libsync/rules/assembly_plan.h"
#include "tests/unit/pgoutput_bytes.h"
#include "tests/unit/raw_rows.h"

namespace eventstream::wal {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing_pgoutput::BeginBytes;
using testing_pgoutput::Bytes;
using testing_pgoutput::Col;
using testing_pgoutput::CommitBytes;
using testing_pgoutput::RelationBytes;
using testing_raw_rows::J;

constexpr uint32_t kMemo = 16384;

// tabMemo: (name text key, body text, idx int4, docstatus int2, modified
// timestamp, qty numeric, ok bool).
std::string MemoRelation(char identity = 'd') {
  return RelationBytes(kMemo, "public", "tabMemo", identity,
                       {{"name", 25, true}, {"body", 25}, {"idx", 23}, {"docstatus", 21},
                        {"modified", 1114}, {"qty", 1700}, {"ok", 16}});
}
const std::vector<std::string> kRow1 = {"M1", "hello \"world\"", "0", "0",
                                        "2026-11-23 10:00:00.5", "12345678901234567.123456789",
                                        "t"};
constexpr char kRow1Json[] =
    R"({"name": "M1", "body": "hello \"world\"", "idx": 0, "docstatus": 0,
        "modified": "2026-11-23T10:00:00.5", "qty": 12345678901234567.123456789, "ok": true})";

// Feeds `messages` (pgoutput bytes) and returns the transactions completed.
class Feed {
 public:
  absl::Status Add(const std::string& bytes) {
    absl::StatusOr<PgOutputMessage> m = DecodePgOutput(bytes);
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok()) return m.status();
    absl::StatusOr<std::optional<WalTransaction>> tx = builder.Add(*std::move(m));
    if (!tx.ok()) return tx.status();
    if (*tx) done.push_back(**std::move(tx));
    return absl::OkStatus();
  }
  void All(const std::vector<std::string>& messages) {
    for (const std::string& b : messages) ASSERT_TRUE(Add(b).ok()) << Add(b);
  }
  TransactionBuilder builder;
  std::vector<WalTransaction> done;
};

TEST(TransactionBuilderTest, TwoTransactionsInCommitOrder) {
  Feed f;
  f.All({MemoRelation(), BeginBytes(0x100, 700),
         Bytes('I').U32(kMemo).U8('N').Tuple(kRow1).str(), CommitBytes(0x100, 0x128),
         BeginBytes(0x200, 701),
         Bytes('D').U32(kMemo).U8('K')
             .Tuple({"M1", Bytes::kNull, Bytes::kNull, Bytes::kNull, Bytes::kNull,
                     Bytes::kNull, Bytes::kNull}).str(),
         CommitBytes(0x200, 0x228)});
  ASSERT_EQ(f.done.size(), 2u);
  const WalTransaction& a = f.done[0];
  EXPECT_EQ(a.xid, 700u);
  EXPECT_EQ(a.txid, "700");
  EXPECT_EQ(a.commit_lsn, 0x100u);
  EXPECT_EQ(a.end_lsn, 0x128u);
  EXPECT_FALSE(a.origin);
  ASSERT_EQ(a.changes.size(), 1u);
  EXPECT_EQ(a.changes[0].op, 'I');
  EXPECT_EQ(a.changes[0].table, "tabMemo");
  EXPECT_EQ(a.changes[0].schema, "public");
  EXPECT_FALSE(a.changes[0].old_row);
  EXPECT_EQ(J(*a.changes[0].new_row), J(kRow1Json));
  const WalTransaction& b = f.done[1];
  EXPECT_EQ(b.end_lsn, 0x228u);
  ASSERT_EQ(b.changes.size(), 1u);
  EXPECT_EQ(b.changes[0].op, 'D');
  EXPECT_TRUE(b.changes[0].old_is_key_only);
  EXPECT_EQ(J(*b.changes[0].old_row), J(R"({"name": "M1"})"));
  EXPECT_FALSE(b.changes[0].new_row);
  EXPECT_FALSE(f.builder.in_transaction());
}

TEST(TransactionBuilderTest, OriginNamesTheTransaction) {
  Feed f;
  f.All({MemoRelation(), BeginBytes(0x100, 700), Bytes('O').U64(0x55).Str("hq").str(),
         Bytes('I').U32(kMemo).U8('N').Tuple(kRow1).str(), CommitBytes(0x100, 0x128)});
  ASSERT_EQ(f.done.size(), 1u);
  EXPECT_EQ(f.done[0].origin, "hq");
}

TEST(TransactionBuilderTest, FullOldRowFillsUnchangedToast) {
  Feed f;
  std::vector<std::string> new_row = kRow1;
  new_row[1] = Bytes::kToast;  // body unchanged, TOASTed
  new_row[2] = "1";
  f.All({MemoRelation('f'), BeginBytes(0x100, 700),
         Bytes('U').U32(kMemo).U8('O').Tuple(kRow1).U8('N').Tuple(new_row).str(),
         CommitBytes(0x100, 0x128)});
  ASSERT_EQ(f.done.size(), 1u);
  const WalRowChange& c = f.done[0].changes[0];
  EXPECT_EQ(c.op, 'U');
  EXPECT_FALSE(c.old_is_key_only);
  EXPECT_EQ(J(*c.old_row), J(kRow1Json));
  Value expected = J(kRow1Json);
  expected["idx"] = Value::Int(1);
  EXPECT_EQ(J(*c.new_row), expected);
  EXPECT_TRUE(c.missing_columns.empty());
}

TEST(TransactionBuilderTest, UnchangedToastWithoutOldRowIsMissing) {
  Feed f;
  std::vector<std::string> new_row = kRow1;
  new_row[1] = Bytes::kToast;
  f.All({MemoRelation(), BeginBytes(0x100, 700),
         Bytes('U').U32(kMemo).U8('N').Tuple(new_row).str(), CommitBytes(0x100, 0x128)});
  const WalRowChange& c = f.done.at(0).changes.at(0);
  EXPECT_FALSE(c.old_row);
  EXPECT_EQ(J(*c.new_row).Find("body"), nullptr);
  EXPECT_THAT(c.missing_columns, ElementsAre("body"));
}

TEST(TransactionBuilderTest, KeyOnlyOldRowOfAnUpdate) {
  Feed f;
  std::vector<std::string> key = {"M0", Bytes::kNull, Bytes::kNull, Bytes::kNull,
                                  Bytes::kNull, Bytes::kNull, Bytes::kNull};
  f.All({MemoRelation(), BeginBytes(0x100, 700),
         Bytes('U').U32(kMemo).U8('K').Tuple(key).U8('N').Tuple(kRow1).str(),
         CommitBytes(0x100, 0x128)});
  const WalRowChange& c = f.done.at(0).changes.at(0);
  EXPECT_TRUE(c.old_is_key_only);
  EXPECT_EQ(J(*c.old_row), J(R"({"name": "M0"})"));
}

TEST(TransactionBuilderTest, TruncateAndMessages) {
  Feed f;
  f.All({MemoRelation(), Bytes('M').U8(0).U64(1).Str("p").U32(1).Raw("x").str(),
         BeginBytes(0x100, 700), Bytes('T').U32(1).U8(0).U32(kMemo).str(),
         Bytes('M').U8(1).U64(2).Str("es").U32(2).Raw("hi").str(), CommitBytes(0x100, 0x128)});
  ASSERT_EQ(f.done.size(), 1u);
  EXPECT_THAT(f.done[0].truncated, ElementsAre("public.tabMemo"));
  ASSERT_EQ(f.done[0].messages.size(), 1u);
  EXPECT_EQ(f.done[0].messages[0].content, "hi");
}

TEST(TransactionBuilderTest, MessagesOutOfPlaceAreErrors) {
  const std::string insert = Bytes('I').U32(kMemo).U8('N').Tuple(kRow1).str();
  {
    Feed f;
    EXPECT_THAT(f.Add(insert).message(), HasSubstr("outside a transaction"));
  }
  {
    Feed f;
    f.All({BeginBytes(0x100, 700)});
    EXPECT_THAT(f.Add(insert).message(), HasSubstr("before its Relation message"));
    EXPECT_FALSE(f.builder.in_transaction());  // reset: the caller restarts
  }
  {
    Feed f;
    f.All({MemoRelation(), BeginBytes(0x100, 700)});
    EXPECT_THAT(f.Add(BeginBytes(0x100, 701)).message(), HasSubstr("Begin inside"));
  }
  {
    Feed f;
    EXPECT_THAT(f.Add(CommitBytes(1, 2)).message(), HasSubstr("Commit outside"));
    EXPECT_THAT(f.Add(Bytes('O').U64(1).Str("hq").str()).message(),
                HasSubstr("Origin outside"));
  }
  {
    Feed f;
    f.All({MemoRelation(), BeginBytes(0x100, 700)});
    EXPECT_THAT(f.Add(Bytes('I').U32(kMemo).U8('N').Tuple({"M1"}).str()).message(),
                HasSubstr("has 1 columns, its Relation message 7"));
  }
}

TEST(TransactionBuilderTest, ResetDropsAnOpenTransaction) {
  Feed f;
  f.All({MemoRelation(), BeginBytes(0x100, 700),
         Bytes('I').U32(kMemo).U8('N').Tuple(kRow1).str()});
  EXPECT_TRUE(f.builder.in_transaction());
  f.builder.Reset();  // the stream restarted: the transaction comes again
  f.All({BeginBytes(0x100, 700), Bytes('I').U32(kMemo).U8('N').Tuple(kRow1).str(),
         CommitBytes(0x100, 0x128)});
  ASSERT_EQ(f.done.size(), 1u);
  EXPECT_EQ(f.done[0].changes.size(), 1u);
}

TEST(TransactionBuilderTest, RelationMetadataIsReplaced) {
  Feed f;
  f.All({MemoRelation(), RelationBytes(kMemo, "public", "tabMemo", 'f', {{"name", 25, true}})});
  const RelationInfo* rel = f.builder.FindRelation(kMemo);
  ASSERT_NE(rel, nullptr);
  EXPECT_EQ(rel->replica_identity, 'f');
  EXPECT_EQ(rel->columns.size(), 1u);
  EXPECT_EQ(f.builder.FindRelation(1), nullptr);
}

TEST(ColumnJsonTest, LikeToJsonb) {
  EXPECT_EQ(ColumnJson(JsonKindOf(23), "42"), "42");
  EXPECT_EQ(ColumnJson(JsonKindOf(20), "-9223372036854775808"), "-9223372036854775808");
  EXPECT_EQ(ColumnJson(JsonKindOf(1700), "1.500000000"), "1.500000000");
  EXPECT_EQ(ColumnJson(JsonKindOf(1700), "NaN"), "\"NaN\"");
  EXPECT_EQ(ColumnJson(JsonKindOf(701), "Infinity"), "\"Infinity\"");
  EXPECT_EQ(ColumnJson(JsonKindOf(16), "t"), "true");
  EXPECT_EQ(ColumnJson(JsonKindOf(16), "f"), "false");
  EXPECT_EQ(ColumnJson(JsonKindOf(25), "a\"b\\c\n"), R"("a\"b\\c\n")");
  EXPECT_EQ(ColumnJson(JsonKindOf(1043), "12"), "\"12\"");  // varchar stays text
  EXPECT_EQ(ColumnJson(JsonKindOf(1082), "2026-11-23"), "\"2026-11-23\"");
  EXPECT_EQ(ColumnJson(JsonKindOf(1114), "2026-11-23 10:00:00"), "\"2026-11-23T10:00:00\"");
  EXPECT_EQ(ColumnJson(JsonKindOf(1114), "infinity"), "\"infinity\"");
  EXPECT_EQ(ColumnJson(JsonKindOf(1184), "2026-11-23 10:00:00.25+00"),
            "\"2026-11-23T10:00:00.25+00:00\"");
  EXPECT_EQ(ColumnJson(JsonKindOf(1184), "2026-11-23 10:00:00-05:30"),
            "\"2026-11-23T10:00:00-05:30\"");
  EXPECT_EQ(ColumnJson(JsonKindOf(3802), R"({"b": [1, 2.50], "a": null})"),
            R"({"a":null,"b":[1,2.50]})");
  EXPECT_EQ(ColumnJson(JsonKindOf(114), R"({"a": 1, "a": 2})"), R"("{\"a\": 1, \"a\": 2}")");
  EXPECT_EQ(ColumnJson(JsonKindOf(2950), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"");
}

TEST(ColumnJsonTest, SetJsonKindForADomain) {
  Feed f;
  f.builder.SetJsonKind(90000, JsonKind::kNumber);
  f.All({RelationBytes(kMemo, "public", "tabMemo", 'd', {{"name", 25, true}, {"amount", 90000}}),
         BeginBytes(0x100, 700), Bytes('I').U32(kMemo).U8('N').Tuple({"M1", "10.5"}).str(),
         CommitBytes(0x100, 0x128)});
  EXPECT_EQ(J(*f.done.at(0).changes.at(0).new_row), J(R"({"name": "M1", "amount": 10.5})"));
}

// The WAL's transaction reaches the assembly planner as the trigger's would.
TEST(TransactionBuilderTest, FeedsTheAssemblyPlanner) {
  Feed f;
  f.All({RelationBytes(kMemo, "public", "tabMemo", 'd',
                       {{"name", 25, true}, {"body", 25}, {"docstatus", 21}, {"idx", 23},
                        {"site_secret", 25}}),
         BeginBytes(0x100, 700), Bytes('O').U64(1).Str("hq").str(),
         Bytes('I').U32(kMemo).U8('N').Tuple({"M1", "hi", "0", "0", "x"}).str(),
         CommitBytes(0x100, 0x128)});
  const WalTransaction& tx = f.done.at(0);
  DocTypeRegistry registry = testing_raw_rows::NoteRegistry();
  RawChange c = ParseRawChange(registry, ToRawChangeText(tx, tx.changes[0], "Memo", 1));
  EXPECT_EQ(c.txid, "700");
  EXPECT_EQ(c.op, 'I');
  EXPECT_EQ(c.origin, "hq");
  EXPECT_TRUE(c.unreadable.empty());
  EXPECT_EQ(*c.new_row, J(R"({"name": "M1", "body": "hi", "docstatus": 0, "idx": 0})"));
  TxRows rows{tx.txid, 1, {c}};
  std::optional<std::vector<LogEntry>> entries = BuildWhole(registry, rows);
  ASSERT_TRUE(entries);
  EXPECT_THAT(testing_raw_rows::Kinds(*entries), ElementsAre("Create:M1"));
}

// Throughput of the pure path (decode; decode + fold into transactions with
// JSON rows), on Frappe-like rows: a 12-column tabMemo-like table, 100 rows
// per transaction. Disabled by default; run with
//   unit_tests --gtest_also_run_disabled_tests --gtest_filter='*Throughput*'
TEST(WalThroughputTest, DISABLED_DecodeAndBuild) {
  const std::vector<Col> cols = {
      {"name", 25, true}, {"creation", 1114}, {"modified", 1114}, {"modified_by", 1043},
      {"owner", 1043},    {"docstatus", 21},  {"idx", 23},        {"title", 1043},
      {"amount", 1700},   {"qty", 23},        {"notes", 25},      {"data", 3802}};
  std::vector<std::string> stream = {RelationBytes(kMemo, "public", "tabMemo", 'd', cols)};
  constexpr int kTx = 2000, kRowsPerTx = 100;
  size_t bytes = 0;
  for (int t = 0; t < kTx; ++t) {
    stream.push_back(BeginBytes(0x100 + t, 1000 + t));
    for (int r = 0; r < kRowsPerTx; ++r) {
      const std::string name = "MEMO-" + std::to_string(t * kRowsPerTx + r);
      stream.push_back(Bytes('I').U32(kMemo).U8('N')
                           .Tuple({name, "2026-11-23 10:00:00.123456", "2026-11-23 10:00:00.123456",
                                   "admin@example.com", "admin@example.com", "0",
                                   std::to_string(r), "A memo about something",
                                   "12345.678900000", "7", "Some longer free text of the memo, "
                                   "a sentence or two as users write them.",
                                   R"({"k": "v", "n": 1})"})
                           .str());
    }
    stream.push_back(CommitBytes(0x100 + t, 0x101 + t));
  }
  for (const std::string& m : stream) bytes += m.size();
  const double mb = bytes / 1e6, rows = double(kTx) * kRowsPerTx;

  auto start = std::chrono::steady_clock::now();
  size_t decoded = 0;
  for (const std::string& m : stream) decoded += DecodePgOutput(m).ok();
  const double decode_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(decoded, stream.size());

  start = std::chrono::steady_clock::now();
  TransactionBuilder builder;
  size_t txs = 0;
  for (const std::string& m : stream) {
    auto tx = builder.Add(*DecodePgOutput(m));
    ASSERT_TRUE(tx.ok());
    txs += tx->has_value();
  }
  const double build_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(txs, size_t{kTx});
  std::printf("pgoutput: %.1f MB, %.0f rows\n", mb, rows);
  std::printf("decode only:     %.3f s  %.0f MB/s  %.0f rows/s\n", decode_s, mb / decode_s,
              rows / decode_s);
  std::printf("decode + build:  %.3f s  %.0f MB/s  %.0f rows/s\n", build_s, mb / build_s,
              rows / build_s);
}

}  // namespace
}  // namespace eventstream::wal
