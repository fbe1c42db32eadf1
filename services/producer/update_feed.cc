#include "services/producer/update_feed.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libsync/expr.h"
#include "libsync/status_macros.h"
#include "libsync/subscription_condition.h"
#include "services/producer/document_reader.h"
#include "services/producer/link_store.h"
#include "services/producer/statement_count.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

std::string Quote(absl::string_view s) { return absl::StrCat("\"", s, "\""); }

// A PostgreSQL text[] literal: {"a","b"} with " and \ escaped.

absl::Status NotVisible(absl::string_view site, absl::string_view doctype,
                        absl::string_view name) {
  return absl::PermissionDeniedError(
      absl::StrCat("document ", Quote(name), " of DocType ", Quote(doctype),
                   " is not visible to site ", Quote(site)));
}

// Columns of update_log as FeedEntry reads them (EntryAt).
constexpr char kEntryColumns[] =
    "seq, doctype, docname, update_type, data::text, coalesce(origin, ''),"
    " to_char(created_at AT TIME ZONE 'UTC',"
    "         'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

FeedEntry EntryAt(const pg::Result& r, int i) {
  FeedEntry e;
  e.seq = r.GetInt64(i, 0);
  e.doctype = std::string(r.Get(i, 1));
  e.docname = std::string(r.Get(i, 2));
  e.update_type = std::string(r.Get(i, 3));
  e.data_json = r.GetOptional(i, 4);
  e.origin = std::string(r.Get(i, 5));
  e.created_at = std::string(r.Get(i, 6));
  return e;
}

std::optional<Value> ParseData(const FeedEntry& e) {
  if (!e.data_json) return std::nullopt;
  auto v = Value::ParseJson(*e.data_json);
  if (!v.ok()) return std::nullopt;
  return std::move(*v);
}

// {"seq", "doctype", "docname", "update_type", "data", "origin"}: the
// update_log jsonb a cmd: condition receives.
Value EntryJson(const FeedEntry& e) {
  Value v = Value::EmptyObject();
  v["seq"] = Value::Int(e.seq);
  v["doctype"] = Value::String(e.doctype);
  v["docname"] = Value::String(e.docname);
  v["update_type"] = Value::String(e.update_type);
  std::optional<Value> data = ParseData(e);
  v["data"] = data ? std::move(*data) : Value();
  v["origin"] = e.origin.empty() ? Value() : Value::String(e.origin);
  return v;
}

std::string OldName(const FeedEntry& e) {
  std::optional<Value> data = ParseData(e);
  if (!data) return "";
  const Value* old_name = data->Find("old_name");
  return old_name != nullptr && old_name->is_string() ? old_name->as_string()
                                                      : "";
}

}  // namespace

absl::StatusOr<UpdateFeed::Subscriptions> UpdateFeed::LoadSubscriptions(
    pg::Connection* conn, absl::string_view site, Subscriptions* boundaries) {
  auto r = conn->ExecPrepared(
      "es_feed_subs",
      "SELECT d.doctype, d.condition, d.producer_condition,"
      "  coalesce(d.status = 'approved' AND NOT d.unsubscribed, false) AS grants"
      " FROM es_producer.consumer c LEFT JOIN es_producer.consumer_doctype d"
      "   ON d.site = c.site"
      " WHERE c.site = $1",
      {site});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) {
    return absl::NotFoundError(absl::StrCat(
        "site ", Quote(site), " is not registered; call RegisterConsumer first"));
  }
  Subscriptions subs;
  for (int i = 0; i < r->rows(); ++i) {
    const DocTypeDef* def = config_->registry.Find(std::string(r->Get(i, "doctype")));
    if (def == nullptr || def->istable) continue;
    std::string producer_condition(r->Get(i, "producer_condition"));
    if (boundaries != nullptr && !producer_condition.empty()) {
      (*boundaries)[def->name] = Subscription{def, {producer_condition}};
    }
    if (!r->GetBool(i, r->ColumnIndex("grants"))) continue;
    Subscription& sub = subs[def->name];
    sub.def = def;
    for (const char* column : {"condition", "producer_condition"}) {
      if (!r->Get(i, column).empty()) sub.conditions.emplace_back(r->Get(i, column));
    }
    // Only a cmd: condition can be refused here; an expression's parse
    // errors are PassesConditions' to report.
    absl::string_view condition = r->Get(i, "condition");
    if (absl::StartsWith(condition, "cmd:")) {
      sub.refused = ConditionProblem(condition, &config_->condition_functions());
    }
  }
  return subs;
}

absl::StatusOr<UpdateFeed::Access> UpdateFeed::LoadAccess(pg::Connection* conn,
                                                         absl::string_view site) {
  Access access;
  ASSIGN_OR_RETURN(access.grants, LoadSubscriptions(conn, site, &access.boundaries));
  // The config's conditions hold even for DocTypes the site never asked for.
  const ConsumerSiteConfig* configured =
      config_->producer ? config_->producer->FindConsumer(std::string_view(site.data(), site.size()))
                        : nullptr;
  if (configured == nullptr) return access;
  for (const ConsumerDocTypeConfig& d : configured->doctypes) {
    const DocTypeDef* def = config_->registry.Find(d.doctype);
    if (def != nullptr && !d.condition.empty()) {
      access.boundaries[def->name] = Subscription{def, {d.condition}};
    }
  }
  return access;
}

void UpdateFeed::LogConditionError(absl::string_view site,
                                   absl::string_view doctype,
                                   const std::string& condition,
                                   const absl::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    if (!logged_.emplace(std::string(site), std::string(doctype), condition)
             .second) {
      return;
    }
  }
  spdlog::warn(
      "condition {} of site \"{}\" for DocType \"{}\" failed: {}; the "
      "documents it is evaluated for are not visible to that site (logged "
      "once)",
      condition, std::string(site), std::string(doctype),
      std::string(status.message()));
}

bool UpdateFeed::PassesConditions(pg::Connection* conn, absl::string_view site,
                                  absl::string_view doctype,
                                  const Subscription& sub, const Value& doc,
                                  const Value& entry) {
  if (!sub.refused.empty()) {
    LogConditionError(site, doctype, sub.conditions.front(),
                      absl::PermissionDeniedError(sub.refused));
    return false;
  }
  for (const std::string& condition : sub.conditions) {
    auto function = ParseConditionFunction(condition);
    if (!function.ok()) {
      LogConditionError(site, doctype, condition, function.status());
      return false;
    }
    if (function->has_value()) {
      // Read-only: the statement's own transaction is switched to read
      // only before the function runs (the materialized CTE is scanned
      // first), and PostgreSQL does not let it switch back.
      auto r = conn->Exec(
          absl::StrCat("WITH ro AS MATERIALIZED"
                       " (SELECT set_config('transaction_read_only', 'on', true))"
                       " SELECT ",
                       pg::QuoteQualified((*function)->schema, (*function)->function),
                       "($1::text, $2::jsonb, $3::jsonb) FROM ro"),
          {site, doc.ToJson(), entry.ToJson()});
      if (!r.ok()) {
        LogConditionError(site, doctype, condition, r.status());
        return false;
      }
      if (r->rows() != 1 || r->IsNull(0, 0) || !r->GetBool(0, 0)) return false;
      continue;
    }
    auto parsed = Condition::Parse(condition);
    if (!parsed.ok()) {
      LogConditionError(site, doctype, condition, parsed.status());
      return false;
    }
    auto result = parsed->Evaluate(doc);
    if (!result.ok()) {
      LogConditionError(site, doctype, condition, result.status());
      return false;
    }
    if (!*result) return false;
  }
  return true;
}

absl::StatusOr<std::vector<FeedEntry>> UpdateFeed::History(
    pg::Connection* conn, const std::string& doctype, std::string name,
    int64_t bound) {
  std::vector<std::vector<FeedEntry>> segments;  // newest first
  // A chain of renames longer than this is cut (the consumer then fetches
  // the document with GetDocument when an Update finds it missing).
  for (int hop = 0; hop < 32; ++hop) {
    auto r = conn->ExecPrepared(
        "es_feed_history",
        absl::StrCat("SELECT ", kEntryColumns,
                     " FROM es_producer.update_log"
                     " WHERE doctype = $1 AND docname = $2 AND seq < $3"
                     " ORDER BY seq"),
        {doctype, name, bound});
    if (!r.ok()) return r.status();
    std::vector<FeedEntry> rows;
    for (int i = 0; i < r->rows(); ++i) rows.push_back(EntryAt(*r, i));
    // The document's life under this name starts at its Create, at the
    // Rename that gave it this name, or after the name's last Delete.
    size_t start = 0;
    bool renamed_in = false;
    for (size_t i = rows.size(); i-- > 0;) {
      const std::string& type = rows[i].update_type;
      if (type == "Delete") {
        start = i + 1;
        break;
      }
      if (type == "Create" || type == "Rename") {
        start = i;
        renamed_in = type == "Rename";
        break;
      }
    }
    std::string old_name = renamed_in ? OldName(rows[start]) : "";
    int64_t rename_seq = renamed_in ? rows[start].seq : 0;
    segments.emplace_back(std::make_move_iterator(rows.begin() + start),
                          std::make_move_iterator(rows.end()));
    if (!renamed_in || old_name.empty() || old_name == name) break;
    name = std::move(old_name);
    bound = rename_seq;
  }
  std::vector<FeedEntry> out;
  for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
    for (FeedEntry& e : *it) out.push_back(std::move(e));
  }
  return out;
}

absl::Status UpdateFeed::Interrupted() const {
  return options_.interrupted ? options_.interrupted() : absl::OkStatus();
}

absl::StatusOr<PullResult> UpdateFeed::Pull(absl::string_view site,
                                            int64_t after_seq, int limit,
                                            std::optional<int64_t> acknowledged_seq,
                                            const ByteBudget& budget) {
  if (after_seq < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("after_seq: must be >= 0, got ", after_seq));
  }
  // What the consumer has committed: never more than after_seq.
  const int64_t acknowledged =
      acknowledged_seq ? std::max<int64_t>(0, std::min(*acknowledged_seq, after_seq)) : after_seq;
  if (limit <= 0) limit = options_.default_limit;
  limit = std::min(limit, options_.max_limit);
  auto lease = pool_->Acquire();
  if (!lease.ok()) return lease.status();
  pg::Connection* conn = lease->get();
  auto subs = LoadSubscriptions(conn, site);
  if (!subs.ok()) return subs.status();
  std::vector<std::string> doctypes;
  for (const auto& [doctype, sub] : *subs) doctypes.push_back(doctype);

  // One more than `limit`, to tell whether there is more. Entries of other
  // DocTypes and of the caller's own origin are examined without their data,
  // and data is read only while the stored sizes of the wanted entries
  // before it stay below max_bytes (`read_data`): a run of large documents is
  // read one answer at a time, not all at once.
  auto rows = conn->ExecPrepared(
      "es_feed_pull_sized",
      "SELECT seq, doctype, docname, update_type,"
      "  CASE WHEN read_data THEN data::text END AS data, coalesce(origin, ''),"
      "  to_char(created_at AT TIME ZONE 'UTC',"
      "          'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), wanted, read_data"
      " FROM (SELECT *, wanted AND coalesce(sum(CASE WHEN wanted THEN pg_column_size(data) END)"
      "         OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)"
      "         < $5 AS read_data"
      "       FROM (SELECT *, (doctype = ANY($3::text[])"
      "                        AND origin IS DISTINCT FROM $4) AS wanted"
      "             FROM es_producer.update_log WHERE seq > $1"
      "             ORDER BY seq LIMIT $2) AS e) AS f"
      " ORDER BY seq",
      {after_seq, limit + 1, pg::TextArray(doctypes), site, budget.max_bytes});
  if (!rows.ok()) return rows.status();
  PullResult result;
  result.next_after_seq = after_seq;
  int examined = std::min(rows->rows(), limit);
  result.more = rows->rows() > limit;
  std::vector<FeedEntry> wanted;
  std::vector<int64_t> examined_seqs;  // ascending
  for (int i = 0; i < examined; ++i) {
    const bool is_wanted = rows->GetBool(i, rows->ColumnIndex("wanted"));
    if (is_wanted && !rows->GetBool(i, rows->ColumnIndex("read_data"))) {
      result.more = true;  // its data was not read: the next pull starts here
      break;
    }
    result.next_after_seq = rows->GetInt64(i, 0);
    examined_seqs.push_back(result.next_after_seq);
    if (is_wanted) wanted.push_back(EntryAt(*rows, i));
  }

  // Which of the documents concerned the site was sent before, and since
  // when entries of them were withheld.
  std::map<DocKey, std::optional<int64_t>> initial;  // -> hidden_from
  if (!wanted.empty()) {
    std::vector<std::string> kd, kn;
    for (const FeedEntry& e : wanted) {
      kd.push_back(e.doctype);
      kn.push_back(e.docname);
      if (e.update_type == "Rename") {
        kd.push_back(e.doctype);
        kn.push_back(OldName(e));
      }
    }
    auto known = conn->ExecPrepared(
        "es_feed_known",
        "SELECT DISTINCT cd.doctype, cd.docname, cd.hidden_from"
        " FROM es_producer.consumer_document cd"
        " JOIN unnest($2::text[], $3::text[]) AS u(doctype, docname)"
        "   ON cd.doctype = u.doctype AND cd.docname = u.docname"
        " WHERE cd.site = $1",
        {site, pg::TextArray(kd), pg::TextArray(kn)});
    if (!known.ok()) return known.status();
    for (int i = 0; i < known->rows(); ++i) {
      std::optional<int64_t> hidden_from;
      if (!known->IsNull(i, 2)) hidden_from = known->GetInt64(i, 2);
      initial.emplace(DocKey(std::string(known->Get(i, 0)),
                             std::string(known->Get(i, 1))),
                      hidden_from);
    }
  }
  // The same, as of the entry being looked at.
  std::map<DocKey, std::optional<int64_t>> state = initial;
  std::set<int64_t> sent_seqs;
  std::map<DocKey, std::optional<Value>> current;  // documents read
  // Documents whose Delete this pull sent -> its seq. Their records stay
  // (marked) until the consumer acknowledges past the Delete: a consumer
  // that dies before committing the Delete pulls it again.
  std::map<DocKey, int64_t> deleted;
  std::set<DocKey> sent_keys;  // documents this pull sent an entry of

  // A Rename moves the record to the new name, sent or not.
  auto follow_rename = [&](const FeedEntry& e) {
    if (e.update_type != "Rename") return;
    auto old = state.find({e.doctype, OldName(e)});
    if (old == state.end()) return;
    std::optional<int64_t> hidden_from = old->second;
    state.erase(old);
    state[{e.doctype, e.docname}] = hidden_from;
  };
  auto send = [&](FeedEntry e) {
    sent_seqs.insert(e.seq);
    follow_rename(e);
    state[{e.doctype, e.docname}] = std::nullopt;
    sent_keys.insert({e.doctype, e.docname});
    if (e.update_type == "Delete") {
      deleted[{e.doctype, e.docname}] = e.seq;
    } else {
      deleted.erase({e.doctype, e.docname});
    }
    result.entries.push_back(std::move(e));
  };
  // The entries of the document `e` concerns that come before `e`, from seq
  // `from` on, which this pull did not send yet.
  auto history_of = [&](const FeedEntry& e,
                        int64_t from) -> absl::StatusOr<std::vector<FeedEntry>> {
    std::string name = e.update_type == "Rename" ? OldName(e) : e.docname;
    ASSIGN_OR_RETURN(std::vector<FeedEntry> history, History(conn, e.doctype, name, e.seq));
    std::vector<FeedEntry> out;
    for (FeedEntry& h : history) {
      if (h.seq < from || h.origin == site || sent_seqs.count(h.seq)) continue;
      out.push_back(std::move(h));
    }
    return out;
  };
  // What `e` makes this pull send (a unit: e, after the history a flip
  // sends first), possibly nothing. Records an invisible entry's effect on
  // `state` itself; sends nothing.
  auto unit_of = [&](FeedEntry& e) -> absl::StatusOr<std::vector<FeedEntry>> {
    std::vector<FeedEntry> unit;
    const Subscription& sub = subs->find(e.doctype)->second;
    DocKey key{e.doctype, e.docname};
    if (e.update_type == "Delete") {
      // Only to a consumer that has the document.
      if (state.count(key)) unit.push_back(std::move(e));
      return unit;
    }
    if (sub.conditions.empty()) {
      unit.push_back(std::move(e));
      return unit;
    }
    // The record of the document as the consumer knows it: under the old
    // name for a Rename.
    DocKey known_key =
        e.update_type == "Rename" ? DocKey(e.doctype, OldName(e)) : key;
    auto known = state.find(known_key);
    bool is_known = known != state.end();
    // Seqs start at 1: 0 = nothing withheld.
    int64_t hidden_from = is_known && known->second ? *known->second : 0;

    auto it = current.find(key);
    if (it == current.end()) {
      ASSIGN_OR_RETURN(std::optional<Value> doc,
                       ReadDocument(conn, config_->registry, *sub.def, e.docname));
      it = current.emplace(key, std::move(doc)).first;
    }
    std::optional<Value> doc = it->second;
    if (!doc && e.update_type == "Create") doc = ParseData(e);
    bool visible =
        doc ? PassesConditions(conn, site, e.doctype, sub, *doc, EntryJson(e))
            : is_known;  // gone since (deleted or renamed): only if it has it
    if (!visible) {
      follow_rename(e);
      if (is_known) {
        std::optional<int64_t>& rec = state[key];  // moved by a Rename
        if (!rec) rec = e.seq;
      }
      return unit;
    }
    // Access flipped: first the document's earlier entries it lacks (all of
    // them for a document it never had, the withheld ones otherwise).
    if (!is_known && e.update_type != "Create") {
      ASSIGN_OR_RETURN(unit, history_of(e, 0));
    } else if (is_known && hidden_from > 0) {
      ASSIGN_OR_RETURN(unit, history_of(e, hidden_from));
    }
    unit.push_back(std::move(e));
    return unit;
  };

  int64_t used = 0;  // bytes of the answer so far (batch_budget.h)
  for (FeedEntry& e : wanted) {
    RETURN_IF_ERROR(Interrupted());
    const int64_t seq = e.seq;
    ASSIGN_OR_RETURN(std::vector<FeedEntry> unit, unit_of(e));
    if (unit.empty()) continue;
    std::vector<EntrySize> sizes;
    for (const FeedEntry& u : unit) {
      sizes.push_back(EntryBytes(u.doctype, u.docname, u.origin, u.created_at,
                                 u.data_json ? static_cast<int64_t>(u.data_json->size()) : 0));
    }
    UnitFit fit = FitUnit(budget, used, result.entries.empty(), sizes);
    if (!fit.take) {
      // The answer ends before this entry: it is examined again next time.
      auto before = std::lower_bound(examined_seqs.begin(), examined_seqs.end(), seq);
      result.next_after_seq = before == examined_seqs.begin() ? after_seq : *std::prev(before);
      result.more = true;
      break;
    }
    used += fit.bytes;
    for (size_t i = 0; i < unit.size(); ++i) {
      if (fit.omit_data[i]) {
        unit[i].data_omitted_bytes = static_cast<int64_t>(unit[i].data_json->size());
        unit[i].data_json.reset();
        spdlog::warn("site \"{}\": entry {} ({} of {} \"{}\") is {} bytes, more than the "
                     "caller accepts in one answer ({} bytes); sent without its data",
                     std::string(site), unit[i].seq, unit[i].update_type, unit[i].doctype,
                     unit[i].docname, unit[i].data_omitted_bytes, budget.max_message_bytes);
      }
      send(std::move(unit[i]));
    }
  }

  // Record what was sent and the acknowledged position: one transaction,
  // O(1) statements. Dying before COMMIT records nothing (see header).
  std::vector<std::string> up_d, up_n, up_h, up_x, del_d, del_n;
  for (const auto& [k, hidden_from] : state) {
    auto before = initial.find(k);
    auto gone = deleted.find(k);
    // A sent document's record is rewritten even if unchanged: that sets or
    // clears its deleted_seq mark.
    if (before != initial.end() && before->second == hidden_from &&
        !sent_keys.count(k)) {
      continue;
    }
    up_d.push_back(k.first);
    up_n.push_back(k.second);
    up_h.push_back(hidden_from ? std::to_string(*hidden_from) : "");
    up_x.push_back(gone != deleted.end() ? std::to_string(gone->second) : "");
  }
  for (const auto& [k, hidden_from] : initial) {
    if (!state.count(k)) {
      del_d.push_back(k.first);
      del_n.push_back(k.second);
    }
  }
  auto tx = pg::Transaction::Begin(conn);
  if (!tx.ok()) return tx.status();
  if (up_d.empty() && del_d.empty()) {
    // Nothing sent changed: only the acknowledgement (lag metrics) and
    // dropping records of applied Deletes, both harmless to lose in a
    // server crash (the next pull writes them again). No fsync for it:
    // this is the pull a consumer makes right after every batch.
    auto quick = conn->ExecPrepared("es_feed_async",
                                    "SELECT set_config('synchronous_commit', 'off', true)");
    if (!quick.ok()) return quick.status();
  }
  if (!up_d.empty()) {
    auto r = conn->ExecPrepared(
        "es_feed_upsert",
        "INSERT INTO es_producer.consumer_document"
        "   (site, doctype, docname, hidden_from, deleted_seq)"
        " SELECT $1, u.doctype, u.docname, nullif(u.hidden_from, '')::bigint,"
        "        nullif(u.deleted_seq, '')::bigint"
        " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])"
        "   AS u(doctype, docname, hidden_from, deleted_seq)"
        " ON CONFLICT (site, doctype, docname)"
        " DO UPDATE SET hidden_from = EXCLUDED.hidden_from,"
        "               deleted_seq = EXCLUDED.deleted_seq",
        {site, pg::TextArray(up_d), pg::TextArray(up_n), pg::TextArray(up_h), pg::TextArray(up_x)});
    if (!r.ok()) return r.status();
  }
  if (!del_d.empty()) {
    auto r = conn->ExecPrepared(
        "es_feed_del",
        "DELETE FROM es_producer.consumer_document cd"
        " USING unnest($2::text[], $3::text[]) AS u(doctype, docname)"
        " WHERE cd.site = $1 AND cd.doctype = u.doctype"
        "   AND cd.docname = u.docname",
        {site, pg::TextArray(del_d), pg::TextArray(del_n)});
    if (!r.ok()) return r.status();
  }
  // The consumer committed everything up to `acknowledged`, so the Deletes
  // up to there were applied: their records can go.
  auto applied_deletes = conn->ExecPrepared(
      "es_feed_forget_deleted",
      "DELETE FROM es_producer.consumer_document"
      " WHERE site = $1 AND deleted_seq <= $2",
      {site, acknowledged});
  if (!applied_deletes.ok()) return applied_deletes.status();
  auto ack = conn->ExecPrepared(
      "es_feed_ack",
      "UPDATE es_producer.consumer SET acknowledged_seq = $2,"
      " last_pull_at = now() WHERE site = $1",
      {site, acknowledged});
  if (!ack.ok()) return ack.status();
  if (absl::Status s = (*tx)->Commit(); !s.ok()) return s;
  return result;
}

absl::StatusOr<const DocTypeDef*> UpdateFeed::ServedDocType(
    absl::string_view doctype) const {
  if (doctype.empty()) return absl::InvalidArgumentError("doctype: required");
  const DocTypeDef* def =
      config_->registry.Find(std::string_view(doctype.data(), doctype.size()));
  if (def == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown DocType ", Quote(doctype),
        ": this producer's config (doctypes:) does not define it"));
  }
  if (def->istable) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DocType ", Quote(doctype),
        " is a child table; its rows come inside their parent documents"));
  }
  return def;
}

absl::StatusOr<Standing> UpdateFeed::Judge(pg::Connection* conn,
                                           absl::string_view site,
                                           const Access& access,
                                           const DocRef& ref, const Value* doc) {
  const DocTypeDef* def = config_->registry.Find(ref.doctype);
  if (def == nullptr || def->istable) return Standing::kMissing;
  auto grant = access.grants.find(ref.doctype);
  auto boundary = access.boundaries.find(ref.doctype);
  const bool grants = grant != access.grants.end();
  const bool bounded = boundary != access.boundaries.end();
  if (!bounded && (!grants || grant->second.conditions.empty())) {
    return grants ? Standing::kGrantor : Standing::kPassage;
  }
  std::optional<Value> read;
  if (doc == nullptr) {
    ASSIGN_OR_RETURN(read, ReadDocument(conn, config_->registry, *def, ref.name));
    if (!read) return Standing::kMissing;
    doc = &*read;
  }
  if (bounded &&
      !PassesConditions(conn, site, ref.doctype, boundary->second, *doc, Value())) {
    return Standing::kBlocked;
  }
  if (grants && PassesConditions(conn, site, ref.doctype, grant->second, *doc, Value())) {
    return Standing::kGrantor;
  }
  return Standing::kPassage;
}

namespace {

// What the conditions judge for a name with no document (Readable): the
// document's shape with nothing in it but its name.
Value StandIn(const DocTypeDef& def, absl::string_view name) {
  Value doc = Value::EmptyObject();
  doc["name"] = Value::String(std::string(name));
  doc["doctype"] = Value::String(def.name);
  for (const FieldDef& field : def.fields) {
    if (field.is_table()) doc[field.fieldname] = Value::EmptyArray();
  }
  return doc;
}


}  // namespace

absl::StatusOr<std::optional<Value>> UpdateFeed::Readable(
    pg::Connection* conn, absl::string_view site, const Access& access,
    const DocTypeDef& def, absl::string_view name, bool same_work) {
  // With same_work, the same work whether `name` exists or not (issue 13
  // item 9): its child tables are read, the conditions judged (on a
  // stand-in) and the links walked backwards all the same; only a visible
  // document ends early.
  ASSIGN_OR_RETURN(std::optional<Value> doc,
                   ReadDocument(conn, config_->registry, def, name, same_work));
  if (!doc && !same_work) return doc;
  const Value judged = doc ? *doc : StandIn(def, name);
  const DocRef target{def.name, std::string(name)};
  ASSIGN_OR_RETURN(Standing standing, Judge(conn, site, access, target, &judged));
  if (doc && standing == Standing::kGrantor) return doc;
  if (!same_work && standing != Standing::kPassage) return std::optional<Value>();
  ReverseWalk walk;
  walk.linkers = [&](const std::string& doctype, const std::vector<std::string>& names,
                     int limit) -> absl::StatusOr<std::vector<DocRef>> {
    RETURN_IF_ERROR(Interrupted());  // a long walk for an abandoned call stops
    return FindLinkers(conn, config_->registry, doctype, names, limit);
  };
  walk.standing = [&](const DocRef& ref) -> absl::StatusOr<Standing> {
    // The asked name is walked from whatever it is (a missing, blocked or
    // granting name as much as a passage); its standing decides below.
    if (ref == target) return Standing::kPassage;
    return Judge(conn, site, access, ref, nullptr);
  };
  ASSIGN_OR_RETURN(Reachability reach,
                   ReachableFromGrantor(target, walk, options_.reachability_budget));
  if (reach.out_of_budget && doc && standing == Standing::kPassage) {
    LogConditionError(site, def.name, "(dependency access)",
                      absl::ResourceExhaustedError(absl::StrCat(
                          "deciding whether a document is reachable through links from one "
                          "the site may see took more than ",
                          options_.reachability_budget,
                          " documents; treated as not reachable")));
  }
  if (!doc || standing != Standing::kPassage || !reach.readable) {
    return std::optional<Value>();
  }
  return doc;
}

absl::Status UpdateFeed::AddDependencies(pg::Connection* conn, absl::string_view site,
                                         const Access& access, const DocTypeDef& def,
                                         const Value& doc, ServedDocument* out) {
  // Everything `doc` reaches is readable when `doc` is, except what the
  // producer's conditions block (and what lies only beyond it).
  auto read = [&](const DocRef& ref) -> absl::StatusOr<std::optional<Value>> {
    ASSIGN_OR_RETURN(std::optional<Value> dep,
                     ReadDocument(conn, config_->registry,
                                  *config_->registry.Find(ref.doctype), ref.name));
    if (!dep) return dep;
    ASSIGN_OR_RETURN(Standing standing, Judge(conn, site, access, ref, &*dep));
    if (standing == Standing::kBlocked) return std::optional<Value>();
    return dep;
  };
  ASSIGN_OR_RETURN(Closure closure,
                   LinkClosure(config_->registry, def, doc, read, options_.closure));
  for (const Value& d : closure.documents) out->dependencies_json.push_back(d.ToJson());
  out->dependencies_truncated = closure.truncated;
  return absl::OkStatus();
}

absl::StatusOr<ServedDocument> UpdateFeed::GetDocument(absl::string_view site,
                                                       absl::string_view doctype,
                                                       absl::string_view name,
                                                       bool with_dependencies) {
  ASSIGN_OR_RETURN(const DocTypeDef* def, ServedDocType(doctype));
  if (name.empty()) return absl::InvalidArgumentError("name: required");
  ASSIGN_OR_RETURN(auto lease, pool_->Acquire());
  pg::Connection* conn = lease.get();
  StatementCount count(conn, &options_.on_statements);
  ASSIGN_OR_RETURN(Access access, LoadAccess(conn, site));
  ASSIGN_OR_RETURN(std::optional<Value> doc,
                   Readable(conn, site, access, *def, name, /*same_work=*/true));
  if (!doc) return NotVisible(site, doctype, name);
  ServedDocument out;
  out.json = doc->ToJson();
  if (with_dependencies) {
    RETURN_IF_ERROR(AddDependencies(conn, site, access, *def, *doc, &out));
  }
  return out;
}

}  // namespace eventstream
