#include "libsync/wal/pgoutput.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/pgoutput_bytes.h"

namespace eventstream::wal {
namespace {

using ::testing::HasSubstr;
using testing_pgoutput::BeginBytes;
using testing_pgoutput::Bytes;
using testing_pgoutput::Col;
using testing_pgoutput::CommitBytes;
using testing_pgoutput::RelationBytes;

template <typename T>
T DecodeAs(const std::string& bytes) {
  absl::StatusOr<PgOutputMessage> m = DecodePgOutput(bytes);
  EXPECT_TRUE(m.ok()) << m.status();
  if (!m.ok()) return T{};
  const T* t = std::get_if<T>(&*m);
  EXPECT_NE(t, nullptr) << "decoded as variant index " << m->index();
  return t ? *t : T{};
}

// One of every message type, well formed.
std::vector<std::string> AllMessages() {
  return {
      BeginBytes(0x16B374D848, 733),
      CommitBytes(0x16B374D848, 0x16B374D878),
      Bytes('O').U64(0x10).Str("hq").str(),
      RelationBytes(16384, "public", "tabNote", 'f',
                    {{"name", 25, true}, {"qty", 1700}, {"ok", 16}}),
      Bytes('Y').U32(70000).Str("public").Str("money2").str(),
      Bytes('I').U32(16384).U8('N').Tuple({"N1", "1.50", "t"}).str(),
      Bytes('U').U32(16384).U8('O').Tuple({"N1", "1", "f"}).U8('N')
          .Tuple({"N1", Bytes::kNull, Bytes::kToast}).str(),
      Bytes('U').U32(16384).U8('N').Tuple({"N1", "2", "t"}).str(),
      Bytes('D').U32(16384).U8('K').Tuple({"N1", Bytes::kNull, Bytes::kNull}).str(),
      Bytes('T').U32(2).U8(1).U32(16384).U32(16390).str(),
      Bytes('M').U8(1).U64(0x20).Str("es").U32(3).Raw("abc").str(),
  };
}

TEST(PgOutputTest, Begin) {
  auto m = DecodeAs<BeginMessage>(BeginBytes(0x16B374D848, 733));
  EXPECT_EQ(m.final_lsn, 0x16B374D848u);
  EXPECT_EQ(m.commit_time_us, 12345);
  EXPECT_EQ(m.xid, 733u);
}

TEST(PgOutputTest, Commit) {
  auto m = DecodeAs<CommitMessage>(CommitBytes(0x100, 0x1a8));
  EXPECT_EQ(m.commit_lsn, 0x100u);
  EXPECT_EQ(m.end_lsn, 0x1a8u);
  EXPECT_EQ(m.commit_time_us, 12345);
}

TEST(PgOutputTest, Origin) {
  auto m = DecodeAs<OriginMessage>(Bytes('O').U64(0x10).Str("hq").str());
  EXPECT_EQ(m.origin_commit_lsn, 0x10u);
  EXPECT_EQ(m.name, "hq");
}

TEST(PgOutputTest, Relation) {
  auto m = DecodeAs<RelationMessage>(
      RelationBytes(16384, "public", "tabNote", 'f', {{"name", 25, true}, {"qty", 1700}}));
  EXPECT_EQ(m.relid, 16384u);
  EXPECT_EQ(m.schema, "public");
  EXPECT_EQ(m.table, "tabNote");
  EXPECT_EQ(m.replica_identity, 'f');
  ASSERT_EQ(m.columns.size(), 2u);
  EXPECT_TRUE(m.columns[0].key);
  EXPECT_EQ(m.columns[0].name, "name");
  EXPECT_EQ(m.columns[0].type_oid, 25u);
  EXPECT_EQ(m.columns[0].type_modifier, -1);
  EXPECT_FALSE(m.columns[1].key);
  EXPECT_EQ(m.columns[1].type_oid, 1700u);
}

TEST(PgOutputTest, Type) {
  auto m = DecodeAs<TypeMessage>(Bytes('Y').U32(70000).Str("public").Str("money2").str());
  EXPECT_EQ(m.oid, 70000u);
  EXPECT_EQ(m.schema, "public");
  EXPECT_EQ(m.name, "money2");
}

TEST(PgOutputTest, InsertWithNullUnchangedAndTextColumns) {
  auto m = DecodeAs<InsertMessage>(
      Bytes('I').U32(7).U8('N').Tuple({"héllo", Bytes::kNull, Bytes::kToast, ""}).str());
  EXPECT_EQ(m.relid, 7u);
  ASSERT_EQ(m.new_tuple.size(), 4u);
  EXPECT_EQ(m.new_tuple[0].kind, TupleColumn::Kind::kText);
  EXPECT_EQ(m.new_tuple[0].text, "héllo");
  EXPECT_EQ(m.new_tuple[1].kind, TupleColumn::Kind::kNull);
  EXPECT_EQ(m.new_tuple[2].kind, TupleColumn::Kind::kUnchangedToast);
  EXPECT_EQ(m.new_tuple[3].kind, TupleColumn::Kind::kText);
  EXPECT_EQ(m.new_tuple[3].text, "");
}

TEST(PgOutputTest, UpdateWithAndWithoutOldTuple) {
  auto full = DecodeAs<UpdateMessage>(
      Bytes('U').U32(7).U8('O').Tuple({"a", "1"}).U8('N').Tuple({"a", "2"}).str());
  EXPECT_EQ(full.old_kind, 'O');
  EXPECT_EQ(full.old_tuple[1].text, "1");
  EXPECT_EQ(full.new_tuple[1].text, "2");
  auto key = DecodeAs<UpdateMessage>(
      Bytes('U').U32(7).U8('K').Tuple({"a", Bytes::kNull}).U8('N').Tuple({"b", "2"}).str());
  EXPECT_EQ(key.old_kind, 'K');
  EXPECT_EQ(key.new_tuple[0].text, "b");
  auto none = DecodeAs<UpdateMessage>(Bytes('U').U32(7).U8('N').Tuple({"a", "3"}).str());
  EXPECT_EQ(none.old_kind, 0);
  EXPECT_TRUE(none.old_tuple.empty());
  EXPECT_EQ(none.new_tuple[1].text, "3");
}

TEST(PgOutputTest, Delete) {
  auto m = DecodeAs<DeleteMessage>(Bytes('D').U32(7).U8('O').Tuple({"a", "1"}).str());
  EXPECT_EQ(m.old_kind, 'O');
  EXPECT_EQ(m.old_tuple.size(), 2u);
  EXPECT_FALSE(DecodePgOutput(Bytes('D').U32(7).U8('N').Tuple({"a"}).str()).ok());
}

TEST(PgOutputTest, Truncate) {
  auto m = DecodeAs<TruncateMessage>(Bytes('T').U32(2).U8(3).U32(10).U32(11).str());
  EXPECT_EQ(m.options, 3);
  EXPECT_EQ(m.relids, (std::vector<uint32_t>{10, 11}));
}

TEST(PgOutputTest, LogicalMessage) {
  auto m = DecodeAs<LogicalMessage>(
      Bytes('M').U8(1).U64(0x20).Str("es").U32(4).Raw(std::string("a\0b\n", 4)).str());
  EXPECT_TRUE(m.transactional);
  EXPECT_EQ(m.lsn, 0x20u);
  EXPECT_EQ(m.prefix, "es");
  EXPECT_EQ(m.content, std::string("a\0b\n", 4));
}

TEST(PgOutputTest, IntegersAreBigEndian) {
  auto m = DecodeAs<BeginMessage>(
      Bytes('B').U64(0x0102030405060708).U64(0xfffffffffffffffe).U32(0x8000000a).str());
  EXPECT_EQ(m.final_lsn, 0x0102030405060708u);
  EXPECT_EQ(m.commit_time_us, -2);
  EXPECT_EQ(m.xid, 0x8000000au);
}

TEST(PgOutputTest, TruncationAtEveryOffsetIsAnError) {
  for (const std::string& bytes : AllMessages()) {
    ASSERT_TRUE(DecodePgOutput(bytes).ok()) << DecodePgOutput(bytes).status();
    for (size_t n = 0; n < bytes.size(); ++n) {
      EXPECT_FALSE(DecodePgOutput(bytes.substr(0, n)).ok())
          << "message '" << bytes[0] << "' cut to " << n << " of " << bytes.size();
    }
  }
}

// Any byte changed to any value: an error or a message, never a crash or a
// read past the input (run under ASan to see the latter).
TEST(PgOutputTest, CorruptedBytesNeverCrash) {
  for (const std::string& bytes : AllMessages()) {
    for (size_t i = 0; i < bytes.size(); ++i) {
      for (int v : {0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, int{'n'}, int{'t'}, int{'u'}, int{'K'}, int{'O'}, int{'N'}}) {
        std::string corrupt = bytes;
        corrupt[i] = static_cast<char>(v);
        (void)DecodePgOutput(corrupt);
        (void)DecodeCopyData(corrupt);
      }
    }
  }
}

TEST(PgOutputTest, TrailingBytesAreAnError) {
  for (const std::string& bytes : AllMessages()) {
    absl::StatusOr<PgOutputMessage> m = DecodePgOutput(bytes + "x");
    ASSERT_FALSE(m.ok()) << "message '" << bytes[0] << "'";
    EXPECT_THAT(m.status().message(), HasSubstr("trailing"));
  }
}

TEST(PgOutputTest, ErrorsNameTheProblem) {
  EXPECT_THAT(DecodePgOutput("").status().message(), HasSubstr("empty"));
  EXPECT_THAT(DecodePgOutput("Z").status().message(), HasSubstr("unknown message type 0x5a"));
  auto cut = DecodePgOutput(Bytes('I').U32(7).U8('N').U16(1).U8('t').U32(100).Raw("ab").str());
  EXPECT_THAT(cut.status().message(), HasSubstr("pgoutput Insert: truncated at column text"));
  auto negative = DecodePgOutput(Bytes('I').U32(7).U8('N').U16(1).U8('t').U32(0xffffffff).str());
  EXPECT_THAT(negative.status().message(), HasSubstr("negative length"));
  auto binary = DecodePgOutput(Bytes('I').U32(7).U8('N').U16(1).U8('b').U32(0).str());
  EXPECT_THAT(binary.status().message(), HasSubstr("binary"));
  auto no_nul = DecodePgOutput(Bytes('O').U64(1).Raw("hq").str());
  EXPECT_THAT(no_nul.status().message(), HasSubstr("origin name: no terminating NUL"));
  // A huge announced count is refused without reading or reserving it.
  auto huge = DecodePgOutput(Bytes('T').U32(0x7fffffff).U8(0).U32(1).str());
  EXPECT_THAT(huge.status().message(), HasSubstr("truncated"));
  auto negative_count = DecodePgOutput(Bytes('I').U32(7).U8('N').U16(0xffff).str());
  EXPECT_THAT(negative_count.status().message(), HasSubstr("negative column count"));
}

TEST(CopyDataTest, XLogData) {
  std::string bytes = Bytes('w').U64(0x100).U64(0x200).U64(99).Raw("Bpayload").str();
  absl::StatusOr<CopyMessage> m = DecodeCopyData(bytes);
  ASSERT_TRUE(m.ok()) << m.status();
  const auto& x = std::get<XLogData>(*m);
  EXPECT_EQ(x.start, 0x100u);
  EXPECT_EQ(x.end, 0x200u);
  EXPECT_EQ(x.send_time_us, 99);
  EXPECT_EQ(x.payload, "Bpayload");
  for (size_t n = 0; n < 25; ++n) EXPECT_FALSE(DecodeCopyData(bytes.substr(0, n)).ok()) << n;
}

TEST(CopyDataTest, Keepalive) {
  std::string bytes = Bytes('k').U64(0x300).U64(7).U8(1).str();
  absl::StatusOr<CopyMessage> m = DecodeCopyData(bytes);
  ASSERT_TRUE(m.ok()) << m.status();
  const auto& k = std::get<PrimaryKeepalive>(*m);
  EXPECT_EQ(k.end, 0x300u);
  EXPECT_EQ(k.send_time_us, 7);
  EXPECT_TRUE(k.reply_requested);
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_FALSE(DecodeCopyData(bytes.substr(0, n)).ok()) << n;
  EXPECT_FALSE(DecodeCopyData(bytes + "x").ok());
  EXPECT_THAT(DecodeCopyData("q").status().message(), HasSubstr("unknown message type"));
}

TEST(CopyDataTest, StandbyStatusUpdate) {
  StandbyStatus s{0x0102030405060708, 0x10, 0x20, -1, true};
  std::string expected =
      Bytes('r').U64(0x0102030405060708).U64(0x10).U64(0x20).U64(0xffffffffffffffff).U8(1).str();
  EXPECT_EQ(EncodeStandbyStatus(s), expected);
  EXPECT_EQ(EncodeStandbyStatus(StandbyStatus{}).size(), 34u);
}

TEST(LsnTest, FormatAndParse) {
  EXPECT_EQ(FormatLsn(0x16B374D848), "16/B374D848");
  EXPECT_EQ(FormatLsn(0), "0/0");
  EXPECT_EQ(*ParseLsn("16/B374D848"), 0x16B374D848u);
  EXPECT_EQ(*ParseLsn("16/b374d848"), 0x16B374D848u);
  EXPECT_EQ(*ParseLsn("FFFFFFFF/FFFFFFFF"), 0xffffffffffffffffu);
  for (const char* bad : {"", "/", "1/", "/1", "16B374D848", "1/123456789", "g/1", "1/2/3"})
    EXPECT_FALSE(ParseLsn(bad).ok()) << bad;
  for (Lsn l : {Lsn{0}, Lsn{1}, Lsn{0x16B374D848}, ~Lsn{0}}) EXPECT_EQ(*ParseLsn(FormatLsn(l)), l);
}

TEST(PgTimeTest, Epoch) {
  EXPECT_EQ(FromPgTime(0), absl::FromUnixSeconds(946684800));
  EXPECT_EQ(ToPgTime(absl::FromUnixSeconds(946684801)), 1000000);
}

}  // namespace
}  // namespace eventstream::wal
