// UpdateFeed::Pull (update_feed.h): a window of the log, judged for one
// consumer site with the membership planner (libsync/rules/membership.h), sized
// to the caller's byte budget (libsync/rules/batch_budget.h), and recorded in one
// transaction.
//
// Crash safety: the holdings an answer changes are recorded as pending,
// tagged with the seq of the entry that changed them, and become the
// consumer's only when it acknowledges that seq. A consumer that dies
// before committing asks again from its old position; the pending changes
// beyond it are dropped and the same answer (the same SYNCs and REVOKEs) is
// computed again. A producer that dies before COMMIT records nothing.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libsync/rules/batch_budget.h"
#include "libsync/base/status_macros.h"
#include "services/producer/document_reader.h"
#include "services/producer/update_feed.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

// The database's form of libsync/rules/log_window.h, for a position below the
// log tail. One more row than `limit`, to tell whether there is more. Entries of
// other DocTypes and of the caller's own origin are examined without their
// data, and data is read only while the stored sizes of the wanted entries
// before it stay below max_bytes (`read_data`): a run of large documents is
// read one answer at a time, not all at once.
constexpr pg::Query kWindow{
    "es_feed_pull_sized",
    "SELECT seq, doctype, docname, update_type,"
    "  CASE WHEN read_data THEN data::text END AS data, coalesce(origin, '') AS origin,"
    "  to_char(created_at AT TIME ZONE 'UTC',"
    "          'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at, wanted, read_data"
    " FROM (SELECT *, wanted AND coalesce(sum(CASE WHEN wanted THEN pg_column_size(data) END)"
    "         OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)"
    "         < $5 AS read_data"
    "       FROM (SELECT *, ((doctype = ANY($3::text[])"
    "                         AND origin IS DISTINCT FROM $4"
    "                         AND (for_site IS NULL OR for_site = $4))"
    "                        OR (for_site = $4 AND update_type = 'Revoke')) AS wanted"
    "             FROM es_producer.update_log WHERE seq > $1"
    "             ORDER BY seq LIMIT $2) AS e) AS f"
    " ORDER BY seq"};

// $2, $3: doctypes and names; held as of seq $4 (the newest pending change
// up to there, else the acknowledged holding).
constexpr pg::Query kHeld{
    "es_feed_held",
    "SELECT u.doctype, u.docname FROM unnest($2::text[], $3::text[]) AS u(doctype, docname)"
    " WHERE coalesce((SELECT c.held FROM es_producer.holding_change c"
    "                 WHERE c.site = $1 AND c.doctype = u.doctype AND c.docname = u.docname"
    "                   AND c.seq <= $4 ORDER BY c.seq DESC LIMIT 1),"
    "                EXISTS (SELECT 1 FROM es_producer.holding h WHERE h.site = $1"
    "                        AND h.doctype = u.doctype AND h.docname = u.docname))"};

constexpr pg::Query kAsyncCommit{"es_feed_async",
                                 "SELECT set_config('synchronous_commit', 'off', true)"};
// Pending changes of entries the consumer asks for again.
constexpr pg::Query kDropPending{
    "es_feed_drop_pending", "DELETE FROM es_producer.holding_change WHERE site = $1 AND seq > $2"};
// The changes up to the acknowledged seq become the consumer's holdings
// (the newest change of each document decides).
constexpr pg::Query kFold{
    "es_feed_fold",
    "WITH folded AS (DELETE FROM es_producer.holding_change WHERE site = $1 AND seq <= $2"
    "                RETURNING seq, doctype, docname, held),"
    " latest AS (SELECT DISTINCT ON (doctype, docname) doctype, docname, held FROM folded"
    "            ORDER BY doctype, docname, seq DESC),"
    " added AS (INSERT INTO es_producer.holding (site, doctype, docname)"
    "           SELECT $1, doctype, docname FROM latest WHERE held"
    "           ON CONFLICT DO NOTHING RETURNING 1)"
    " DELETE FROM es_producer.holding h USING latest l"
    " WHERE h.site = $1 AND h.doctype = l.doctype AND h.docname = l.docname AND NOT l.held"};
constexpr pg::Query kAddPending{
    "es_feed_add_pending",
    "INSERT INTO es_producer.holding_change (site, seq, doctype, docname, held)"
    " SELECT $1, u.seq::bigint, u.doctype, u.docname, u.held::boolean"
    " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])"
    "   AS u(seq, doctype, docname, held)"};
constexpr pg::Query kAcknowledge{
    "es_feed_ack",
    "UPDATE es_producer.consumer SET acknowledged_seq = $2, last_pull_at = now()"
    " WHERE site = $1"};

FeedEntry EntryAt(const pg::Result& r, int i) {
  FeedEntry e;
  e.seq = r.GetInt64(i, r.ColumnIndex("seq"));
  e.doctype = std::string(r.Get(i, "doctype"));
  e.docname = std::string(r.Get(i, "docname"));
  e.update_type = std::string(r.Get(i, "update_type"));
  e.data_json = r.GetOptional(i, r.ColumnIndex("data"));
  e.origin = std::string(r.Get(i, "origin"));
  e.created_at = std::string(r.Get(i, "created_at"));
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
  return old_name != nullptr && old_name->is_string() ? old_name->as_string() : "";
}

// The entry a planner step sends in place of `e` (membership.h).
FeedEntry Replacement(const FeedEntry& e, const MembershipPlan::Step& step,
                      const std::map<DocKey, std::optional<Value>>& current) {
  FeedEntry out = e;
  out.docname = step.name;
  if (step.verdict == Verdict::kSync) {
    out.update_type = "Sync";
    out.data_json = current.at({e.doctype, step.name})->ToJson();
  } else {
    out.update_type = "Revoke";
    Value data = Value::EmptyObject();
    data["reason"] = Value::String("no longer passes the conditions");
    out.data_json = data.ToJson();
  }
  return out;
}

}  // namespace

absl::StatusOr<std::optional<UpdateFeed::PullWindow>> UpdateFeed::ReadWindowFromTail(
    pg::Connection* conn, absl::string_view site, const Subscriptions& subs, int64_t after_seq,
    int limit, const ByteBudget& budget, int64_t known_log_end) {
  std::set<std::string, std::less<>> doctypes;
  for (const auto& [doctype, sub] : subs) doctypes.insert(doctype);
  ASSIGN_OR_RETURN(std::optional<LogTail::Window> tail,
                   tail_.Read(conn, after_seq,
                              WindowAsk{site, &doctypes, limit, budget.max_bytes},
                              known_log_end));
  if (!tail) return std::nullopt;
  PullWindow w;
  w.next_after_seq = tail->examined.empty() ? after_seq : tail->examined.back();
  w.examined_seqs = std::move(tail->examined);
  w.more = tail->more;
  for (const auto& r : tail->wanted) {
    w.wanted.push_back(FeedEntry{r->seq, r->doctype, r->docname, r->update_type, r->data,
                                 r->origin, r->created_at});
  }
  return w;
}

absl::StatusOr<UpdateFeed::PullWindow> UpdateFeed::ReadWindow(pg::Connection* conn,
                                                              absl::string_view site,
                                                              const Subscriptions& subs,
                                                              int64_t after_seq, int limit,
                                                              const ByteBudget& budget,
                                                              int64_t known_log_end) {
  if (options_.use_log_tail) {
    ASSIGN_OR_RETURN(std::optional<PullWindow> w, ReadWindowFromTail(conn, site, subs, after_seq,
                                                                      limit, budget,
                                                                      known_log_end));
    if (w) return std::move(*w);
  }
  std::vector<std::string> doctypes;
  for (const auto& [doctype, sub] : subs) doctypes.push_back(doctype);
  ASSIGN_OR_RETURN(pg::Result rows,
                   conn->ExecPrepared(kWindow, {after_seq, limit + 1, pg::TextArray(doctypes),
                                                site, budget.max_bytes}));
  PullWindow w;
  w.next_after_seq = after_seq;
  const int examined = std::min(rows.rows(), limit);
  w.more = rows.rows() > limit;
  for (int i = 0; i < examined; ++i) {
    const bool wanted = rows.GetBool(i, rows.ColumnIndex("wanted"));
    if (wanted && !rows.GetBool(i, rows.ColumnIndex("read_data"))) {
      w.more = true;  // its data was not read: the next pull starts here
      break;
    }
    w.next_after_seq = rows.GetInt64(i, rows.ColumnIndex("seq"));
    w.examined_seqs.push_back(w.next_after_seq);
    if (wanted) w.wanted.push_back(EntryAt(rows, i));
  }
  return w;
}

absl::StatusOr<std::set<DocKey>> UpdateFeed::LoadHoldings(pg::Connection* conn,
                                                          absl::string_view site,
                                                          int64_t after_seq,
                                                          const std::vector<DocKey>& keys) {
  std::set<DocKey> held;
  if (keys.empty()) return held;
  std::vector<std::string> doctypes, names;
  for (const DocKey& k : keys) {
    doctypes.push_back(k.first);
    names.push_back(k.second);
  }
  ASSIGN_OR_RETURN(pg::Result r,
                   conn->ExecPrepared(kHeld, {site, pg::TextArray(doctypes),
                                              pg::TextArray(names), after_seq}));
  for (int i = 0; i < r.rows(); ++i) {
    held.emplace(std::string(r.Get(i, "doctype")), std::string(r.Get(i, "docname")));
  }
  return held;
}

absl::StatusOr<std::vector<MemberEntry>> UpdateFeed::JudgeEntries(
    pg::Connection* conn, absl::string_view site, const Subscriptions& subs,
    const std::vector<FeedEntry>& wanted, std::map<DocKey, std::optional<Value>>* current) {
  // The current documents the conditions need, read with one statement per
  // table (and DocType) for the whole window.
  std::map<std::string, std::vector<std::string>> to_read;  // doctype -> names
  for (const FeedEntry& e : wanted) {
    auto found = subs.find(e.doctype);
    if (found == subs.end() || found->second.conditions.empty() ||
        e.update_type == "Delete" || e.update_type == "Revoke" ||
        !current->emplace(DocKey{e.doctype, e.docname}, std::nullopt).second) {
      continue;
    }
    to_read[e.doctype].push_back(e.docname);
  }
  for (const auto& [doctype, names] : to_read) {
    ASSIGN_OR_RETURN(auto docs, ReadDocuments(conn, config_->registry,
                                              *subs.find(doctype)->second.def, names));
    for (auto& [name, doc] : docs) (*current)[{doctype, name}] = std::move(doc);
  }
  std::vector<MemberEntry> out;
  for (const FeedEntry& e : wanted) {
    RETURN_IF_ERROR(Interrupted());
    auto found = subs.find(e.doctype);
    if (found == subs.end() || e.update_type == "Revoke") {
      // A Revoke of a subscription that ended (initial_sync.h): it goes.
      out.push_back(MemberEntry{e.seq, e.doctype, e.docname, e.update_type, "", true,
                                std::nullopt});
      continue;
    }
    const Subscription& sub = found->second;
    MemberEntry m{e.seq, e.doctype, e.docname, e.update_type, "", !sub.conditions.empty(),
                  std::nullopt};
    if (e.update_type == "Rename") m.old_name = OldName(e);
    if (m.tracked && e.update_type != "Delete") {
      const std::optional<Value>& doc = current->at({e.doctype, e.docname});
      if (doc) m.passes = PassesConditions(conn, site, e.doctype, sub, *doc, EntryJson(e));
    }
    out.push_back(std::move(m));
  }
  return out;
}

absl::Status UpdateFeed::RecordPull(pg::Connection* conn, absl::string_view site,
                                    int64_t after_seq, int64_t acknowledged,
                                    const std::vector<HoldingChange>& changes) {
  // Every statement is deferred: the transaction is one round trip with
  // its COMMIT (a failure names its statement and rolls everything back).
  ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn));
  if (changes.empty()) {
    // Nothing new to hold: the acknowledgement (lag metrics) and the fold
    // are harmless to lose in a server crash (the next pull does them
    // again). No fsync for it: this is the pull a consumer makes right
    // after every batch.
    RETURN_IF_ERROR(conn->ExecPreparedDeferred(kAsyncCommit));
  }
  RETURN_IF_ERROR(conn->ExecPreparedDeferred(kDropPending, {site, after_seq}));
  RETURN_IF_ERROR(conn->ExecPreparedDeferred(kFold, {site, acknowledged}));
  if (!changes.empty()) {
    std::vector<std::string> seqs, doctypes, names, held;
    for (const HoldingChange& c : changes) {
      seqs.push_back(std::to_string(c.seq));
      doctypes.push_back(c.doc.first);
      names.push_back(c.doc.second);
      held.push_back(c.held ? "true" : "false");
    }
    RETURN_IF_ERROR(conn->ExecPreparedDeferred(
        kAddPending, {site, pg::TextArray(seqs), pg::TextArray(doctypes), pg::TextArray(names),
                      pg::TextArray(held)}));
  }
  RETURN_IF_ERROR(conn->ExecPreparedDeferred(kAcknowledge, {site, acknowledged}));
  return tx->Commit();
}

absl::StatusOr<UpdateFeed::PullWindow> UpdateFeed::ReadCheckedWindow(
    pg::Connection* conn, absl::string_view site, int64_t after_seq, int limit,
    int64_t acknowledged, const ByteBudget& budget, int64_t known_log_end,
    std::shared_ptr<const SiteSubscriptions>* known) {
  *known = KnownSubscriptions(site);
  if (*known == nullptr) {
    ASSIGN_OR_RETURN(*known, ReadSiteSubscriptions(conn, site));
  }
  for (int pass = 0;; ++pass) {
    ASSIGN_OR_RETURN(PullWindow window, ReadWindow(conn, site, (*known)->subs, after_seq,
                                                   limit, budget, known_log_end));
    // Asked after the window was read: retention records the cut-off before
    // it deletes anything, so a window that missed trimmed entries is
    // refused; and a window read with subscriptions that changed since is
    // read again with the new ones (a second change meanwhile counts from
    // the next pull, as one during any read would).
    ASSIGN_OR_RETURN(auto now, CheckSiteSubscriptions(conn, site, acknowledged, *known));
    if (now == *known || pass == 1) return window;
    *known = std::move(now);
  }
}

absl::StatusOr<PullResult> UpdateFeed::Pull(absl::string_view site, int64_t after_seq, int limit,
                                            std::optional<int64_t> acknowledged_seq,
                                            const ByteBudget& budget,
                                            int64_t known_log_end, bool may_skip_record) {
  if (after_seq < 0) {
    return absl::InvalidArgumentError(absl::StrCat("after_seq: must be >= 0, got ", after_seq));
  }
  // What the consumer has committed: never more than after_seq.
  const int64_t acknowledged =
      acknowledged_seq ? std::max<int64_t>(0, std::min(*acknowledged_seq, after_seq)) : after_seq;
  limit = std::min(limit <= 0 ? options_.default_limit : limit, options_.max_limit);
  ASSIGN_OR_RETURN(auto lease, pool_->Acquire());
  pg::Connection* conn = lease.get();
  std::shared_ptr<const SiteSubscriptions> known;
  ASSIGN_OR_RETURN(PullWindow window, ReadCheckedWindow(conn, site, after_seq, limit,
                                                        acknowledged, budget, known_log_end,
                                                        &known));
  const Subscriptions& subs = known->subs;
  std::map<DocKey, std::optional<Value>> current;  // documents read
  ASSIGN_OR_RETURN(std::vector<MemberEntry> judged,
                   JudgeEntries(conn, site, subs, window.wanted, &current));
  std::vector<DocKey> keys;
  for (const MemberEntry& m : judged) {
    if (!m.tracked) continue;
    keys.emplace_back(m.doctype, m.docname);
    if (!m.old_name.empty()) keys.emplace_back(m.doctype, m.old_name);
  }
  ASSIGN_OR_RETURN(std::set<DocKey> held, LoadHoldings(conn, site, after_seq, keys));
  const MembershipPlan plan = PlanMembership(judged, held);

  PullResult result;
  result.next_after_seq = window.next_after_seq;
  result.more = window.more;
  int64_t used = 0;  // bytes of the answer so far (batch_budget.h)
  for (size_t i = 0; i < window.wanted.size(); ++i) {
    const MembershipPlan::Step& step = plan.steps[i];
    if (step.verdict == Verdict::kSkip) continue;
    FeedEntry e = step.verdict == Verdict::kSend ? std::move(window.wanted[i])
                                                 : Replacement(window.wanted[i], step, current);
    const int64_t size = e.data_json ? static_cast<int64_t>(e.data_json->size()) : 0;
    UnitFit fit = FitUnit(budget, used, result.entries.empty(),
                          {EntryBytes(e.doctype, e.docname, e.origin, e.created_at, size)});
    if (!fit.take) {
      // The answer ends before this entry: it is examined again next time.
      auto before = std::lower_bound(window.examined_seqs.begin(), window.examined_seqs.end(),
                                     e.seq);
      result.next_after_seq =
          before == window.examined_seqs.begin() ? after_seq : *std::prev(before);
      result.more = true;
      break;
    }
    used += fit.bytes;
    if (fit.omit_data[0]) {
      e.data_omitted_bytes = size;
      e.data_json.reset();
      spdlog::warn("site \"{}\": entry {} ({} of {} \"{}\") is {} bytes, more than the caller "
                   "accepts in one answer ({} bytes); sent without its data",
                   std::string(site), e.seq, e.update_type, e.doctype, e.docname, size,
                   budget.max_message_bytes);
    }
    result.entries.push_back(std::move(e));
  }
  std::vector<HoldingChange> changes;
  for (const HoldingChange& c : plan.changes) {
    if (c.seq <= result.next_after_seq) changes.push_back(c);
  }
  if (may_skip_record && changes.empty() && result.next_after_seq > after_seq &&
      !(ack_waiter_.awaited && ack_waiter_.awaited(site, acknowledged))) {
    result.recorded = false;
    return result;
  }
  RETURN_IF_ERROR(RecordPull(conn, site, after_seq, acknowledged, changes));
  if (ack_waiter_.recorded) ack_waiter_.recorded(site, acknowledged);
  return result;
}

}  // namespace eventstream
