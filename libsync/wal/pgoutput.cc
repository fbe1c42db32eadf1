#include "libsync/wal/pgoutput.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "libsync/base/status_macros.h"

namespace eventstream::wal {
namespace {

// 2000-01-01 00:00:00 UTC, PostgreSQL's epoch, in Unix seconds.
constexpr int64_t kPgEpochUnixSeconds = 946684800;

// Bounds-checked big-endian reads over one message; every failure names the
// message (`what`) and the field.
class Reader {
 public:
  Reader(std::string_view data, const char* what) : data_(data), what_(what) {}

  absl::StatusOr<uint64_t> Int(int bytes, const char* field) {
    RETURN_IF_ERROR(Need(bytes, field));
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(data_[pos_ + i]);
    pos_ += bytes;
    return v;
  }
  absl::StatusOr<uint8_t> U8(const char* field) { return Narrow<uint8_t>(1, field); }
  absl::StatusOr<int16_t> I16(const char* field) { return Narrow<int16_t>(2, field); }
  absl::StatusOr<uint32_t> U32(const char* field) { return Narrow<uint32_t>(4, field); }
  absl::StatusOr<int32_t> I32(const char* field) { return Narrow<int32_t>(4, field); }
  absl::StatusOr<uint64_t> U64(const char* field) { return Int(8, field); }
  absl::StatusOr<int64_t> I64(const char* field) { return Narrow<int64_t>(8, field); }

  // A NUL-terminated string.
  absl::StatusOr<std::string> CString(const char* field) {
    const void* nul = pos_ < data_.size()
                          ? std::memchr(data_.data() + pos_, '\0', data_.size() - pos_)
                          : nullptr;
    if (nul == nullptr) return Error(absl::StrCat(field, ": no terminating NUL"));
    size_t end = static_cast<const char*>(nul) - data_.data();
    std::string s(data_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return s;
  }
  absl::StatusOr<std::string_view> Bytes(int64_t n, const char* field) {
    if (n < 0) return Error(absl::StrCat(field, ": negative length ", n));
    RETURN_IF_ERROR(Need(static_cast<uint64_t>(n), field));
    std::string_view s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  absl::Status End() {
    if (pos_ == data_.size()) return absl::OkStatus();
    return Error(absl::StrCat(data_.size() - pos_, " trailing bytes"));
  }
  size_t remaining() const { return data_.size() - pos_; }
  absl::Status Error(std::string_view message) const {
    return absl::InvalidArgumentError(absl::StrCat(what_, ": ", std::string(message)));
  }

 private:
  template <typename T>
  absl::StatusOr<T> Narrow(int bytes, const char* field) {
    ASSIGN_OR_RETURN(uint64_t v, Int(bytes, field));
    return static_cast<T>(v);
  }
  absl::Status Need(uint64_t n, const char* field) {
    if (n <= data_.size() - pos_) return absl::OkStatus();
    return Error(absl::StrCat("truncated at ", field, " (needs ", n, " bytes at offset ",
                              pos_, ", ", data_.size() - pos_, " left)"));
  }
  std::string_view data_;
  const char* what_;
  size_t pos_ = 0;
};

absl::StatusOr<TupleColumn> ReadColumn(Reader& r) {
  TupleColumn c;
  ASSIGN_OR_RETURN(uint8_t kind, r.U8("column kind"));
  switch (kind) {
    case 'n':
      c.kind = TupleColumn::Kind::kNull;
      return c;
    case 'u':
      c.kind = TupleColumn::Kind::kUnchangedToast;
      return c;
    case 't': {
      c.kind = TupleColumn::Kind::kText;
      ASSIGN_OR_RETURN(int32_t len, r.I32("column length"));
      ASSIGN_OR_RETURN(std::string_view text, r.Bytes(len, "column text"));
      c.text = std::string(text);
      return c;
    }
    case 'b':
      return r.Error("binary column data (the `binary` option) is not supported");
    default:
      return r.Error(absl::StrFormat("unknown column kind 0x%02x", kind));
  }
}

absl::StatusOr<TupleData> ReadTuple(Reader& r) {
  ASSIGN_OR_RETURN(int16_t n, r.I16("column count"));
  if (n < 0) return r.Error(absl::StrCat("negative column count ", n));
  TupleData tuple;
  // Each column takes at least one byte: never reserve more than is there.
  tuple.reserve(std::min<size_t>(n, r.remaining()));
  for (int i = 0; i < n; ++i) {
    ASSIGN_OR_RETURN(TupleColumn c, ReadColumn(r));
    tuple.push_back(std::move(c));
  }
  return tuple;
}

// 'N' + tuple.
absl::StatusOr<TupleData> ReadNewTuple(Reader& r) {
  ASSIGN_OR_RETURN(uint8_t tag, r.U8("tuple tag"));
  if (tag != 'N') return r.Error(absl::StrFormat("expected 'N', got 0x%02x", tag));
  return ReadTuple(r);
}

absl::StatusOr<PgOutputMessage> ReadBegin(Reader& r) {
  BeginMessage m;
  ASSIGN_OR_RETURN(m.final_lsn, r.U64("final LSN"));
  ASSIGN_OR_RETURN(m.commit_time_us, r.I64("commit time"));
  ASSIGN_OR_RETURN(m.xid, r.U32("xid"));
  return m;
}

absl::StatusOr<PgOutputMessage> ReadCommit(Reader& r) {
  CommitMessage m;
  ASSIGN_OR_RETURN(m.flags, r.U8("flags"));
  ASSIGN_OR_RETURN(m.commit_lsn, r.U64("commit LSN"));
  ASSIGN_OR_RETURN(m.end_lsn, r.U64("end LSN"));
  ASSIGN_OR_RETURN(m.commit_time_us, r.I64("commit time"));
  return m;
}

absl::StatusOr<PgOutputMessage> ReadOrigin(Reader& r) {
  OriginMessage m;
  ASSIGN_OR_RETURN(m.origin_commit_lsn, r.U64("origin commit LSN"));
  ASSIGN_OR_RETURN(m.name, r.CString("origin name"));
  return m;
}

absl::StatusOr<PgOutputMessage> ReadRelation(Reader& r) {
  RelationMessage m;
  ASSIGN_OR_RETURN(m.relid, r.U32("relation id"));
  ASSIGN_OR_RETURN(m.schema, r.CString("namespace"));
  ASSIGN_OR_RETURN(m.table, r.CString("relation name"));
  ASSIGN_OR_RETURN(uint8_t identity, r.U8("replica identity"));
  m.replica_identity = static_cast<char>(identity);
  ASSIGN_OR_RETURN(int16_t n, r.I16("column count"));
  if (n < 0) return r.Error(absl::StrCat("negative column count ", n));
  for (int i = 0; i < n; ++i) {
    RelationColumn c;
    ASSIGN_OR_RETURN(uint8_t flags, r.U8("column flags"));
    c.key = (flags & 1) != 0;
    ASSIGN_OR_RETURN(c.name, r.CString("column name"));
    ASSIGN_OR_RETURN(c.type_oid, r.U32("column type"));
    ASSIGN_OR_RETURN(c.type_modifier, r.I32("column type modifier"));
    m.columns.push_back(std::move(c));
  }
  return m;
}

absl::StatusOr<PgOutputMessage> ReadType(Reader& r) {
  TypeMessage m;
  ASSIGN_OR_RETURN(m.oid, r.U32("type oid"));
  ASSIGN_OR_RETURN(m.schema, r.CString("namespace"));
  ASSIGN_OR_RETURN(m.name, r.CString("type name"));
  return m;
}

absl::StatusOr<PgOutputMessage> ReadInsert(Reader& r) {
  InsertMessage m;
  ASSIGN_OR_RETURN(m.relid, r.U32("relation id"));
  ASSIGN_OR_RETURN(m.new_tuple, ReadNewTuple(r));
  return m;
}

absl::StatusOr<PgOutputMessage> ReadUpdate(Reader& r) {
  UpdateMessage m;
  ASSIGN_OR_RETURN(m.relid, r.U32("relation id"));
  ASSIGN_OR_RETURN(uint8_t tag, r.U8("tuple tag"));
  if (tag == 'K' || tag == 'O') {
    m.old_kind = static_cast<char>(tag);
    ASSIGN_OR_RETURN(m.old_tuple, ReadTuple(r));
    ASSIGN_OR_RETURN(m.new_tuple, ReadNewTuple(r));
    return m;
  }
  if (tag != 'N') return r.Error(absl::StrFormat("expected 'K', 'O' or 'N', got 0x%02x", tag));
  ASSIGN_OR_RETURN(m.new_tuple, ReadTuple(r));
  return m;
}

absl::StatusOr<PgOutputMessage> ReadDelete(Reader& r) {
  DeleteMessage m;
  ASSIGN_OR_RETURN(m.relid, r.U32("relation id"));
  ASSIGN_OR_RETURN(uint8_t tag, r.U8("tuple tag"));
  if (tag != 'K' && tag != 'O')
    return r.Error(absl::StrFormat("expected 'K' or 'O', got 0x%02x", tag));
  m.old_kind = static_cast<char>(tag);
  ASSIGN_OR_RETURN(m.old_tuple, ReadTuple(r));
  return m;
}

absl::StatusOr<PgOutputMessage> ReadTruncate(Reader& r) {
  TruncateMessage m;
  ASSIGN_OR_RETURN(int32_t n, r.I32("relation count"));
  if (n < 0) return r.Error(absl::StrCat("negative relation count ", n));
  ASSIGN_OR_RETURN(m.options, r.U8("options"));
  if (static_cast<uint64_t>(n) * 4 > r.remaining())
    return r.Error(absl::StrCat("truncated at relation ids (", n, " announced)"));
  for (int i = 0; i < n; ++i) {
    ASSIGN_OR_RETURN(uint32_t relid, r.U32("relation id"));
    m.relids.push_back(relid);
  }
  return m;
}

absl::StatusOr<PgOutputMessage> ReadMessage(Reader& r) {
  LogicalMessage m;
  ASSIGN_OR_RETURN(uint8_t flags, r.U8("flags"));
  m.transactional = (flags & 1) != 0;
  ASSIGN_OR_RETURN(m.lsn, r.U64("message LSN"));
  ASSIGN_OR_RETURN(m.prefix, r.CString("prefix"));
  ASSIGN_OR_RETURN(int32_t len, r.I32("content length"));
  ASSIGN_OR_RETURN(std::string_view content, r.Bytes(len, "content"));
  m.content = std::string(content);
  return m;
}

using MessageReader = absl::StatusOr<PgOutputMessage> (*)(Reader&);

// The message's name (for errors) and its reader; nullptr if unknown.
std::pair<const char*, MessageReader> ReaderFor(char type) {
  switch (type) {
    case 'B': return {"pgoutput Begin", ReadBegin};
    case 'C': return {"pgoutput Commit", ReadCommit};
    case 'O': return {"pgoutput Origin", ReadOrigin};
    case 'R': return {"pgoutput Relation", ReadRelation};
    case 'Y': return {"pgoutput Type", ReadType};
    case 'I': return {"pgoutput Insert", ReadInsert};
    case 'U': return {"pgoutput Update", ReadUpdate};
    case 'D': return {"pgoutput Delete", ReadDelete};
    case 'T': return {"pgoutput Truncate", ReadTruncate};
    case 'M': return {"pgoutput Message", ReadMessage};
    default: return {nullptr, nullptr};
  }
}

void AppendInt(uint64_t v, int bytes, std::string* out) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

}  // namespace

std::string FormatLsn(Lsn lsn) {
  return absl::StrFormat("%X/%X", static_cast<uint32_t>(lsn >> 32),
                         static_cast<uint32_t>(lsn));
}

absl::StatusOr<Lsn> ParseLsn(std::string_view text) {
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat("not an LSN: \"", std::string(text), "\""));
  };
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return bad();
  Lsn parts[2] = {0, 0};
  std::string_view halves[2] = {text.substr(0, slash), text.substr(slash + 1)};
  for (int i = 0; i < 2; ++i) {
    if (halves[i].empty() || halves[i].size() > 8) return bad();
    for (char c : halves[i]) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return bad();
      int d = absl::ascii_isdigit(static_cast<unsigned char>(c))
                  ? c - '0'
                  : absl::ascii_tolower(static_cast<unsigned char>(c)) - 'a' + 10;
      parts[i] = parts[i] * 16 + d;
    }
  }
  return (parts[0] << 32) | parts[1];
}

absl::Time FromPgTime(int64_t pg_time_us) {
  return absl::FromUnixSeconds(kPgEpochUnixSeconds) + absl::Microseconds(pg_time_us);
}

int64_t ToPgTime(absl::Time t) {
  return absl::ToInt64Microseconds(t - absl::FromUnixSeconds(kPgEpochUnixSeconds));
}

absl::StatusOr<PgOutputMessage> DecodePgOutput(std::string_view payload) {
  if (payload.empty()) return absl::InvalidArgumentError("pgoutput: empty message");
  auto [what, read] = ReaderFor(payload[0]);
  if (read == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("pgoutput: unknown message type 0x%02x", payload[0]));
  }
  Reader r(payload.substr(1), what);
  ASSIGN_OR_RETURN(PgOutputMessage m, read(r));
  RETURN_IF_ERROR(r.End());
  return m;
}

absl::StatusOr<CopyMessage> DecodeCopyData(std::string_view data) {
  if (data.empty()) return absl::InvalidArgumentError("CopyData: empty message");
  if (data[0] == 'w') {
    Reader r(data.substr(1), "XLogData");
    XLogData x;
    ASSIGN_OR_RETURN(x.start, r.U64("start LSN"));
    ASSIGN_OR_RETURN(x.end, r.U64("end LSN"));
    ASSIGN_OR_RETURN(x.send_time_us, r.I64("send time"));
    x.payload = data.substr(1 + 24);
    return x;
  }
  if (data[0] == 'k') {
    Reader r(data.substr(1), "primary keepalive");
    PrimaryKeepalive k;
    ASSIGN_OR_RETURN(k.end, r.U64("end LSN"));
    ASSIGN_OR_RETURN(k.send_time_us, r.I64("send time"));
    ASSIGN_OR_RETURN(uint8_t reply, r.U8("reply flag"));
    k.reply_requested = reply != 0;
    RETURN_IF_ERROR(r.End());
    return k;
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("CopyData: unknown message type 0x%02x", data[0]));
}

std::string EncodeStandbyStatus(const StandbyStatus& status) {
  std::string out = "r";
  AppendInt(status.written, 8, &out);
  AppendInt(status.flushed, 8, &out);
  AppendInt(status.applied, 8, &out);
  AppendInt(static_cast<uint64_t>(status.time_us), 8, &out);
  out.push_back(status.reply_requested ? 1 : 0);
  return out;
}

}  // namespace eventstream::wal
