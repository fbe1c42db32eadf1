// pgoutput: the bytes of PostgreSQL's logical replication stream, decoded.
//
// Contract (pure: no I/O, no allocation beyond the decoded values):
//  * DecodePgOutput: one XLogData payload of the pgoutput plugin, protocol
//    version 1 (PostgreSQL 15; no streamed or two-phase messages), into a
//    PgOutputMessage. Text tuple columns only ('n' null, 'u' unchanged TOAST,
//    't' text); 'b' (the `binary` option) is refused.
//  * DecodeCopyData: one CopyData message of START_REPLICATION's COPY BOTH
//    stream: XLogData ('w') or primary keepalive ('k').
//  * EncodeStandbyStatus: the standby status update ('r') a client sends.
//  * Malformed or truncated input is an InvalidArgument status naming the
//    message and what was missing; a decoder never reads past its input and
//    never aborts. Trailing bytes after a message are an error too.
//  * Integers are big-endian (network order) as on the wire. Times are
//    PostgreSQL's: microseconds since 2000-01-01 00:00 UTC.
//
// Tests: tests/unit/pgoutput_test.cc.
#ifndef EVENTSTREAM_LIBSYNC_WAL_PGOUTPUT_H_
#define EVENTSTREAM_LIBSYNC_WAL_PGOUTPUT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace eventstream::wal {

// A WAL position (XLogRecPtr). 0 is "invalid" / "none".
using Lsn = uint64_t;

// "16/B374D848": the high and low 32 bits in upper-case hex.
std::string FormatLsn(Lsn lsn);
// The inverse (either case, 1..8 hex digits on each side).
absl::StatusOr<Lsn> ParseLsn(std::string_view text);

// PostgreSQL timestamps (µs since 2000-01-01 UTC) <-> absl::Time.
absl::Time FromPgTime(int64_t pg_time_us);
int64_t ToPgTime(absl::Time t);

// ---- pgoutput messages ------------------------------------------------------

struct BeginMessage {  // 'B'
  Lsn final_lsn = 0;   // the LSN of the transaction's commit record
  int64_t commit_time_us = 0;
  uint32_t xid = 0;
};

struct CommitMessage {  // 'C'
  uint8_t flags = 0;
  Lsn commit_lsn = 0;  // the commit record
  Lsn end_lsn = 0;     // just past it: what a client confirms when done
  int64_t commit_time_us = 0;
};

struct OriginMessage {  // 'O': the transaction was replayed from `name`
  Lsn origin_commit_lsn = 0;
  std::string name;
};

struct RelationColumn {
  bool key = false;  // part of the replica identity
  std::string name;
  uint32_t type_oid = 0;
  int32_t type_modifier = -1;
};

struct RelationMessage {  // 'R': sent before a relation's first change
  uint32_t relid = 0;
  std::string schema;  // "" for pg_catalog
  std::string table;
  char replica_identity = 'd';  // pg_class.relreplident: d, n, f, i
  std::vector<RelationColumn> columns;
};

struct TypeMessage {  // 'Y': a non-builtin type a relation uses
  uint32_t oid = 0;
  std::string schema;
  std::string name;
};

struct TupleColumn {
  enum class Kind : char { kNull = 'n', kUnchangedToast = 'u', kText = 't' };
  Kind kind = Kind::kNull;
  std::string text;  // kText only: the type's output function's text
};
using TupleData = std::vector<TupleColumn>;

struct InsertMessage {  // 'I'
  uint32_t relid = 0;
  TupleData new_tuple;
};

struct UpdateMessage {  // 'U'
  uint32_t relid = 0;
  // 0: no old tuple; 'K': the replica identity key's columns (others null);
  // 'O': the whole old row (REPLICA IDENTITY FULL).
  char old_kind = 0;
  TupleData old_tuple;
  TupleData new_tuple;
};

struct DeleteMessage {  // 'D'
  uint32_t relid = 0;
  char old_kind = 'K';  // 'K' or 'O' as for UpdateMessage
  TupleData old_tuple;
};

struct TruncateMessage {  // 'T'
  uint8_t options = 0;  // 1: CASCADE, 2: RESTART IDENTITY
  std::vector<uint32_t> relids;
};

struct LogicalMessage {  // 'M': pg_logical_emit_message()
  bool transactional = false;
  Lsn lsn = 0;
  std::string prefix;
  std::string content;
};

using PgOutputMessage =
    std::variant<BeginMessage, CommitMessage, OriginMessage, RelationMessage, TypeMessage,
                 InsertMessage, UpdateMessage, DeleteMessage, TruncateMessage, LogicalMessage>;

absl::StatusOr<PgOutputMessage> DecodePgOutput(std::string_view payload);

// ---- the replication stream's CopyData framing -------------------------------

struct XLogData {  // 'w'
  Lsn start = 0;   // where the payload's WAL starts
  Lsn end = 0;     // the server's current end of WAL
  int64_t send_time_us = 0;
  std::string_view payload;  // a view into the decoded buffer
};

struct PrimaryKeepalive {  // 'k'
  Lsn end = 0;
  int64_t send_time_us = 0;
  bool reply_requested = false;  // answer at once or be disconnected
};

using CopyMessage = std::variant<XLogData, PrimaryKeepalive>;

absl::StatusOr<CopyMessage> DecodeCopyData(std::string_view data);

struct StandbyStatus {  // 'r'
  Lsn written = 0;  // received
  Lsn flushed = 0;  // durable on our side: the slot may move past it
  Lsn applied = 0;
  int64_t time_us = 0;
  bool reply_requested = false;
};

std::string EncodeStandbyStatus(const StandbyStatus& status);

}  // namespace eventstream::wal

#endif  // EVENTSTREAM_LIBSYNC_WAL_PGOUTPUT_H_
