// Test helper for the WAL decoder tests (pgoutput_test, transaction_builder_
// test): pgoutput and CopyData messages built by hand, big-endian, the way a
// walsender writes them.
#ifndef EVENTSTREAM_TESTS_UNIT_PGOUTPUT_BYTES_H_
#define EVENTSTREAM_TESTS_UNIT_PGOUTPUT_BYTES_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace eventstream::testing_pgoutput {

class Bytes {
 public:
  explicit Bytes(char type) { out_.push_back(type); }
  Bytes& U8(uint8_t v) { return Int(v, 1); }
  Bytes& U16(uint16_t v) { return Int(v, 2); }
  Bytes& U32(uint32_t v) { return Int(v, 4); }
  Bytes& U64(uint64_t v) { return Int(v, 8); }
  Bytes& Str(const std::string& s) {  // NUL-terminated
    out_ += s;
    out_.push_back('\0');
    return *this;
  }
  Bytes& Raw(const std::string& s) {
    out_ += s;
    return *this;
  }
  // TupleData: each column "\x01" null, "\x02" unchanged TOAST, else text.
  Bytes& Tuple(const std::vector<std::string>& columns) {
    U16(static_cast<uint16_t>(columns.size()));
    for (const std::string& c : columns) {
      if (c == kNull) {
        U8('n');
      } else if (c == kToast) {
        U8('u');
      } else {
        U8('t').U32(static_cast<uint32_t>(c.size())).Raw(c);
      }
    }
    return *this;
  }
  const std::string& str() const { return out_; }

  static inline const std::string kNull = "\x01";
  static inline const std::string kToast = "\x02";

 private:
  Bytes& Int(uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    return *this;
  }
  std::string out_;
};

// A Relation message: columns as (name, type oid, key?).
struct Col {
  std::string name;
  uint32_t oid;
  bool key = false;
};
inline std::string RelationBytes(uint32_t relid, const std::string& schema,
                                 const std::string& table, char identity,
                                 const std::vector<Col>& cols) {
  Bytes b('R');
  b.U32(relid).Str(schema).Str(table).U8(identity).U16(static_cast<uint16_t>(cols.size()));
  for (const Col& c : cols) b.U8(c.key ? 1 : 0).Str(c.name).U32(c.oid).U32(0xffffffff);
  return b.str();
}

inline std::string BeginBytes(uint64_t final_lsn, uint32_t xid) {
  return Bytes('B').U64(final_lsn).U64(12345).U32(xid).str();
}
inline std::string CommitBytes(uint64_t commit_lsn, uint64_t end_lsn) {
  return Bytes('C').U8(0).U64(commit_lsn).U64(end_lsn).U64(12345).str();
}

}  // namespace eventstream::testing_pgoutput

#endif  // EVENTSTREAM_TESTS_UNIT_PGOUTPUT_BYTES_H_
