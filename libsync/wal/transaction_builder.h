// TransactionBuilder: decoded pgoutput messages (pgoutput.h) folded into
// whole committed transactions whose row changes read like the capture
// trigger's raw rows, so the assembly planner (rules/assembly_plan.h) can
// take them through ToRawChangeText.
//
// Contract (pure):
//  * Add() takes the messages of one stream in order. Begin opens a
//    transaction, Origin names its origin, Insert/Update/Delete/Truncate and
//    transactional Messages join it, Commit returns it whole. Relation and
//    Type messages update the metadata kept across transactions. A
//    non-transactional Message outside a transaction is dropped. A message
//    out of place (a change outside Begin..Commit, a second Begin, a change
//    of an unknown relation, a tuple whose column count differs from its
//    Relation) is an error; the builder is then reset to "between
//    transactions" and the caller restarts the stream.
//  * Rows are JSON object text {column: value}, built from the text values
//    so that Value::ParseJson gives what it gives for to_jsonb(row) (the
//    trigger's form) for text/varchar/char, int2/4/8, numeric, bool, date,
//    timestamp, timestamptz, json/jsonb, uuid and NULL, provided the stream
//    runs with DateStyle ISO (replication_stream.h sets it).
//  What differs from to_jsonb:
//  * An unchanged TOASTed column ('u') of an update's new row is copied from
//    the old row when the old row carries it (REPLICA IDENTITY FULL);
//    otherwise it is absent from the JSON and named in `missing_columns`:
//    the caller fetches it or runs the table with REPLICA IDENTITY FULL.
//  * Without REPLICA IDENTITY FULL an update has no old row (or, when the
//    key changed, only the key's columns: `old_is_key_only`), and a delete's
//    old row holds only the key's columns. The trigger always had the whole
//    old row.
//  * timestamptz is in the walsender's TimeZone, not the writer's (the same
//    instant, written with another offset).
//  * float4/float8 in exponent form ("1e+20") stay as written; to_jsonb
//    expands them (100000000000000000000). Arrays and composite values stay
//    their PostgreSQL text ("{1,2}") as a JSON string; to_jsonb makes JSON
//    arrays and objects. Domains read as strings unless SetJsonKind names
//    their base type's kind (pgoutput sends only the domain's oid).
//  * A json value that Value::ParseJson refuses (duplicate keys, nesting
//    deeper than value.h reads) is kept as a JSON string of its text.
//
// Tests: tests/unit/transaction_builder_test.cc.
#ifndef EVENTSTREAM_LIBSYNC_WAL_TRANSACTION_BUILDER_H_
#define EVENTSTREAM_LIBSYNC_WAL_TRANSACTION_BUILDER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "libsync/rules/assembly_plan.h"
#include "libsync/wal/pgoutput.h"

namespace eventstream::wal {

// How a column's text becomes JSON.
enum class JsonKind {
  kString,       // a JSON string of the text
  kNumber,       // the text as a JSON number (a string if it is not one: NaN)
  kBool,         // 't' / 'f'
  kJson,         // the text is JSON: embedded
  kTimestamp,    // "2026-11-23 10:00:00.5" -> "2026-11-23T10:00:00.5"
  kTimestampTz,  // also "+01" -> "+01:00"
};
// The kind of a builtin type oid (kString for anything not listed above).
JsonKind JsonKindOf(uint32_t type_oid);
// `text` of a column of `kind` as to_jsonb would write it (JSON text).
std::string ColumnJson(JsonKind kind, std::string_view text);

struct RelationInfo {
  std::string schema;
  std::string table;
  char replica_identity = 'd';
  std::vector<RelationColumn> columns;
};

struct WalRowChange {
  uint32_t relid = 0;
  std::string schema;
  std::string table;
  char op = 'I';  // 'I', 'U' or 'D'
  std::optional<std::string> old_row;  // JSON object text; nullopt: none sent
  std::optional<std::string> new_row;
  bool old_is_key_only = false;  // old_row has the replica identity key only
  // Unchanged TOAST columns of new_row that could not be filled (see above).
  std::vector<std::string> missing_columns;
};

struct WalTransaction {
  uint32_t xid = 0;
  // xid as decimal text (RawChangeText's txid): 32 bits, without the epoch
  // pg_current_xact_id() has.
  std::string txid;
  Lsn commit_lsn = 0;
  Lsn end_lsn = 0;  // confirm this once the transaction's entries committed
  int64_t commit_time_us = 0;
  std::optional<std::string> origin;  // the Origin message's name
  std::vector<WalRowChange> changes;  // in WAL order
  std::vector<std::string> truncated;  // "schema.table" of each TRUNCATE
  std::vector<LogicalMessage> messages;  // transactional ones
};

class TransactionBuilder {
 public:
  // One message; a whole transaction when it is a Commit, else nullopt.
  absl::StatusOr<std::optional<WalTransaction>> Add(PgOutputMessage message);

  // Overrides JsonKindOf for `type_oid` (a domain over numeric, say).
  void SetJsonKind(uint32_t type_oid, JsonKind kind) { kinds_[type_oid] = kind; }
  const RelationInfo* FindRelation(uint32_t relid) const;
  bool in_transaction() const { return open_.has_value(); }
  // Drops a transaction that is open: call it when the stream restarts (the
  // server sends that transaction again, whole, from its Begin).
  void Reset() { open_.reset(); }

 private:
  absl::Status Apply(PgOutputMessage& message);
  absl::Status AddChange(uint32_t relid, char op, char old_kind, TupleData* old_tuple,
                         TupleData* new_tuple);
  absl::Status AddTruncate(const TruncateMessage& m);
  JsonKind KindOf(uint32_t type_oid) const;
  // The tuple as JSON object text; `key_only` keeps the key columns; `fill`
  // (the old row's values) replaces unchanged TOAST columns where present.
  absl::StatusOr<std::string> RowJson(const RelationInfo& rel, const TupleData& tuple,
                                      bool key_only, const TupleData* fill,
                                      std::vector<std::string>* missing) const;

  std::map<uint32_t, RelationInfo> relations_;
  std::map<uint32_t, JsonKind> kinds_;
  std::optional<WalTransaction> open_;
  std::optional<WalTransaction> done_;  // set by Commit, returned by Add
};

// Change `c` of `tx` as the assembly planner's raw row: `doctype` is the
// DocType whose table it is (the caller's registry knows), `id` its capture
// order. Views into `tx` and `c`, which must outlive the result.
RawChangeText ToRawChangeText(const WalTransaction& tx, const WalRowChange& c,
                              std::string_view doctype, int64_t id);

}  // namespace eventstream::wal

#endif  // EVENTSTREAM_LIBSYNC_WAL_TRANSACTION_BUILDER_H_
