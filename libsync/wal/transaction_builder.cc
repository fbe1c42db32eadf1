#include "libsync/wal/transaction_builder.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "libsync/base/status_macros.h"
#include "libsync/base/value.h"

namespace eventstream::wal {
namespace {

// Builtin type oids (pg_type.dat).
constexpr uint32_t kBoolOid = 16, kInt8Oid = 20, kInt2Oid = 21, kInt4Oid = 23,
                   kJsonOid = 114, kFloat4Oid = 700, kFloat8Oid = 701,
                   kTimestampOid = 1114, kTimestampTzOid = 1184, kNumericOid = 1700,
                   kJsonbOid = 3802;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// "2026-11-23 10:00:00.5" -> "2026-11-23T10:00:00.5" (ISO DateStyle's
// separator to ISO 8601's); "infinity" and the like stay.
std::string IsoTimestamp(std::string_view text) {
  std::string out(text);
  if (out.size() > 10 && out[10] == ' ' && IsDigit(out[0])) out[10] = 'T';
  return out;
}

// Also "+01" / "-05" at the end -> "+01:00" / "-05:00", as to_jsonb writes
// the offset.
std::string IsoTimestampTz(std::string_view text) {
  std::string out = IsoTimestamp(text);
  const size_t n = out.size();
  if (n > 13 && out[10] == 'T' && (out[n - 3] == '+' || out[n - 3] == '-') &&
      IsDigit(out[n - 2]) && IsDigit(out[n - 1])) {
    out += ":00";
  }
  return out;
}

Value ColumnValue(JsonKind kind, std::string_view text) {
  switch (kind) {
    case JsonKind::kNumber:
      if (Value::IsNumberText(text)) return Value::Number(std::string(text));
      return Value::String(std::string(text));  // NaN, Infinity
    case JsonKind::kBool:
      return Value::Bool(text == "t");
    case JsonKind::kJson: {
      absl::StatusOr<Value> v = Value::ParseJson(text);
      if (v.ok()) return *std::move(v);
      return Value::String(std::string(text));  // see the header
    }
    case JsonKind::kTimestamp:
      return Value::String(IsoTimestamp(text));
    case JsonKind::kTimestampTz:
      return Value::String(IsoTimestampTz(text));
    case JsonKind::kString:
      break;
  }
  return Value::String(std::string(text));
}

const char* OpName(char op) {
  return op == 'I' ? "insert" : op == 'U' ? "update" : "delete";
}

}  // namespace

JsonKind JsonKindOf(uint32_t type_oid) {
  switch (type_oid) {
    case kBoolOid:
      return JsonKind::kBool;
    case kInt2Oid:
    case kInt4Oid:
    case kInt8Oid:
    case kFloat4Oid:
    case kFloat8Oid:
    case kNumericOid:
      return JsonKind::kNumber;
    case kJsonOid:
    case kJsonbOid:
      return JsonKind::kJson;
    case kTimestampOid:
      return JsonKind::kTimestamp;
    case kTimestampTzOid:
      return JsonKind::kTimestampTz;
    default:
      return JsonKind::kString;
  }
}

std::string ColumnJson(JsonKind kind, std::string_view text) {
  return ColumnValue(kind, text).ToJson();
}

const RelationInfo* TransactionBuilder::FindRelation(uint32_t relid) const {
  auto it = relations_.find(relid);
  return it == relations_.end() ? nullptr : &it->second;
}

JsonKind TransactionBuilder::KindOf(uint32_t type_oid) const {
  auto it = kinds_.find(type_oid);
  return it == kinds_.end() ? JsonKindOf(type_oid) : it->second;
}

absl::StatusOr<std::string> TransactionBuilder::RowJson(
    const RelationInfo& rel, const TupleData& tuple, bool key_only, const TupleData* fill,
    std::vector<std::string>* missing) const {
  if (tuple.size() != rel.columns.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a tuple of ", rel.schema, ".", rel.table, " has ", tuple.size(),
                     " columns, its Relation message ", rel.columns.size()));
  }
  Value::Object row;
  for (size_t i = 0; i < tuple.size(); ++i) {
    const RelationColumn& col = rel.columns[i];
    if (key_only && !col.key) continue;
    const TupleColumn* c = &tuple[i];
    if (c->kind == TupleColumn::Kind::kUnchangedToast && fill != nullptr &&
        (*fill)[i].kind != TupleColumn::Kind::kUnchangedToast) {
      c = &(*fill)[i];  // unchanged: the old row's value
    }
    switch (c->kind) {
      case TupleColumn::Kind::kNull:
        row.emplace(col.name, Value::Null());
        break;
      case TupleColumn::Kind::kUnchangedToast:
        if (missing != nullptr) missing->push_back(col.name);
        break;
      case TupleColumn::Kind::kText:
        row.emplace(col.name, ColumnValue(KindOf(col.type_oid), c->text));
        break;
    }
  }
  return Value::FromObject(std::move(row)).ToJson();
}

absl::Status TransactionBuilder::AddChange(uint32_t relid, char op, char old_kind,
                                           TupleData* old_tuple, TupleData* new_tuple) {
  if (!open_) {
    return absl::FailedPreconditionError(
        absl::StrCat("an ", OpName(op), " outside a transaction"));
  }
  const RelationInfo* rel = FindRelation(relid);
  if (rel == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("an ", OpName(op), " of relation ", relid, " before its Relation message"));
  }
  WalRowChange c;
  c.relid = relid;
  c.schema = rel->schema;
  c.table = rel->table;
  c.op = op;
  c.old_is_key_only = old_kind == 'K';
  // A full old row ('O') fills the new row's unchanged TOAST columns.
  const TupleData* fill = old_kind == 'O' ? old_tuple : nullptr;
  if (old_kind != 0) {
    ASSIGN_OR_RETURN(c.old_row, RowJson(*rel, *old_tuple, c.old_is_key_only, nullptr, nullptr));
  }
  if (new_tuple != nullptr) {
    ASSIGN_OR_RETURN(c.new_row, RowJson(*rel, *new_tuple, false, fill, &c.missing_columns));
  }
  open_->changes.push_back(std::move(c));
  return absl::OkStatus();
}

absl::Status TransactionBuilder::AddTruncate(const TruncateMessage& m) {
  if (!open_) return absl::FailedPreconditionError("a truncate outside a transaction");
  for (uint32_t relid : m.relids) {
    const RelationInfo* rel = FindRelation(relid);
    if (rel == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("a truncate of relation ", relid, " before its Relation message"));
    }
    open_->truncated.push_back(absl::StrCat(rel->schema, ".", rel->table));
  }
  return absl::OkStatus();
}

absl::Status TransactionBuilder::Apply(PgOutputMessage& message) {
  if (auto* m = std::get_if<BeginMessage>(&message)) {
    if (open_) return absl::FailedPreconditionError("a Begin inside a transaction");
    open_.emplace();
    open_->xid = m->xid;
    open_->txid = absl::StrCat(m->xid);
    open_->commit_lsn = m->final_lsn;
    open_->commit_time_us = m->commit_time_us;
  } else if (auto* m = std::get_if<CommitMessage>(&message)) {
    if (!open_) return absl::FailedPreconditionError("a Commit outside a transaction");
    open_->commit_lsn = m->commit_lsn;
    open_->end_lsn = m->end_lsn;
    open_->commit_time_us = m->commit_time_us;
    done_ = std::move(open_);
    open_.reset();
  } else if (auto* m = std::get_if<OriginMessage>(&message)) {
    if (!open_) return absl::FailedPreconditionError("an Origin outside a transaction");
    open_->origin = std::move(m->name);
  } else if (auto* m = std::get_if<RelationMessage>(&message)) {
    relations_[m->relid] = RelationInfo{std::move(m->schema), std::move(m->table),
                                        m->replica_identity, std::move(m->columns)};
  } else if (std::holds_alternative<TypeMessage>(message)) {
    // Only its oid matters, and only through SetJsonKind.
  } else if (auto* m = std::get_if<InsertMessage>(&message)) {
    return AddChange(m->relid, 'I', 0, nullptr, &m->new_tuple);
  } else if (auto* m = std::get_if<UpdateMessage>(&message)) {
    return AddChange(m->relid, 'U', m->old_kind, &m->old_tuple, &m->new_tuple);
  } else if (auto* m = std::get_if<DeleteMessage>(&message)) {
    return AddChange(m->relid, 'D', m->old_kind, &m->old_tuple, nullptr);
  } else if (auto* m = std::get_if<TruncateMessage>(&message)) {
    return AddTruncate(*m);
  } else if (auto* m = std::get_if<LogicalMessage>(&message)) {
    if (m->transactional && !open_)
      return absl::FailedPreconditionError("a transactional Message outside a transaction");
    if (m->transactional) open_->messages.push_back(std::move(*m));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<WalTransaction>> TransactionBuilder::Add(PgOutputMessage message) {
  if (absl::Status s = Apply(message); !s.ok()) {
    open_.reset();  // the caller restarts the stream from its confirmed LSN
    return s;
  }
  std::optional<WalTransaction> done = std::move(done_);
  done_.reset();
  return done;
}

RawChangeText ToRawChangeText(const WalTransaction& tx, const WalRowChange& c,
                              std::string_view doctype, int64_t id) {
  RawChangeText t;
  t.id = id;
  t.txid = tx.txid;
  t.doctype = doctype;
  t.op = std::string_view(&c.op, 1);
  if (c.old_row) t.old_row = *c.old_row;
  if (c.new_row) t.new_row = *c.new_row;
  if (tx.origin) t.origin = *tx.origin;
  return t;
}

}  // namespace eventstream::wal
