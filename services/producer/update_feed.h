// UpdateFeed: what a consumer may see of the Event Update Log and of the
// site's documents (docs/design.md "Producer / Notify / pull" and
// "Dependencies"; issue 3 items 4, 5 and 8).
//
// Visibility of a document to a consumer site: its DocType is approved for
// the site and not unsubscribed, and both the consumer's `condition` and the
// producer's `producer_condition` hold ("" holds always). A condition is an
// expression (libsync/config/expr.h) evaluated against the CURRENT document (read
// from the site's tables, document_reader.h), or `cmd:schema.fn`, called as
// `SELECT schema.fn(consumer_site, doc::jsonb, entry::jsonb)` (entry = the
// log entry as JSON {seq, doctype, docname, update_type, data, origin}, or
// null for GetDocument/FindDocuments) in a read-only transaction; NULL
// counts as false. A consumer's own cmd: condition runs only when its
// function is in producer.condition_functions
// (libsync/config/subscription_condition.h); otherwise nothing is visible. A condition
// that fails to parse or errors makes the document invisible; it is logged
// once per (site, DocType, condition) per process, and never fails the RPC.
//
// Pull(site, after_seq, limit, acknowledged_seq):
//  * Examines the next `limit` entries after after_seq (default 500, at most
//    5000) in seq order and returns the visible ones; next_after_seq is the
//    last seq examined, so invisible entries are skipped for good, and
//    `more` says whether entries beyond it exist.
//  * Bytes (issue 13 item 2; libsync/rules/batch_budget.h): the answer takes
//    entries while they fit budget.max_bytes, always the first; examining
//    stops before the entry that does not fit (next_after_seq is the seq
//    before it, and `more` is true). Data is read only for the entries
//    whose stored sizes so far stay below max_bytes, so a run of large
//    documents is read one answer at a time. A first entry that would go
//    past budget.max_message_bytes comes without its data
//    (data_omitted_bytes).
//  * Options::interrupted is asked before each entry; a non-OK answer (the
//    call was abandoned) ends the pull with that status, recording nothing.
//  * Never returns an entry whose origin is the caller's site (no echoes),
//    nor one logged for another site (update_log.for_site: initial syncs).
//  * Membership (libsync/rules/membership.h, docs/design.md "Membership"): for a
//    subscription with conditions, each entry is judged on the CURRENT
//    document against what the site holds (es_producer.holding plus the
//    pending changes up to after_seq): it goes as it is, becomes a SYNC of
//    the current document (move-in) or a REVOKE (move-out), or is skipped;
//    a Delete goes only to a holder. Without conditions every entry goes.
//  * Retention (retention.h, docs/design.md "Retention"): a site the valve
//    cut off (consumer.lost_through above its acknowledged position) is
//    answered FAILED_PRECONDITION "log trimmed: ..." (LogTrimmedError,
//    libsync/rules/retention_plan.h), checked after the window is read, recording
//    nothing, until it re-syncs with RestartSync(skip_trimmed). The same
//    statement reads the site's subscription rows: the window was read with
//    those the site's last pull read (kept in memory), and is read again
//    with the new ones if they changed.
//  * Writes (O(1) statements per pull, not one per entry; pull.cc): one
//    transaction that drops the pending holding changes beyond after_seq
//    (the site asks for those entries again), folds those up to the
//    acknowledged position (acknowledged_seq if given, never above
//    after_seq; else after_seq) into the holdings, records this answer's
//    changes as pending, and sets the site's acknowledged_seq and
//    last_pull_at. If the process dies before COMMIT nothing is recorded and
//    the repeated pull computes the same answer; a consumer that dies before
//    committing an answer gets the same SYNCs, REVOKEs and Deletes again.
//
// GetDocument / FindDocuments (dependencies; docs/design.md "What a
// consumer may see"): a document is readable by the caller when it is a
// grantor (its DocType is approved for the site and subscribed, and it
// passes both conditions now) or is reachable from a grantor through Link,
// child-row Link and Dynamic Link fields at any depth (libsync/model/link_graph.h).
// The producer's condition for the site on a DocType is a hard boundary: a
// document failing it is neither readable nor followed. Readability is
// decided by walking links backwards from the asked document, at most
// Options::reachability_budget documents (past it: not readable, logged
// once per site and DocType). GetDocument does the same work for a name
// whether or not a document has it (issue 13 item 9): the document's child
// tables are read, the conditions judged (a missing document as a stand-in
// with only its name) and the links to the name walked backwards in every
// case but a visible grantor, so its time does not tell an invisible
// document from a missing one. FindDocuments decides visibility in its
// query (find_documents.cc), so matching invisible documents runs the same
// statements as matching none; conditions without an SQL form fall back to
// judging each row (docs/design.md "What a consumer may see"). Anything
// unreadable is
// PERMISSION_DENIED with the same message whether or not the document
// exists ("document \"N\" of DocType \"D\" is not visible to site
// \"S\""): existence is not revealed. An unknown or child DocType is
// INVALID_ARGUMENT. With dependencies, GetDocument also returns the
// readable documents the document reaches (LinkClosure, Options::closure
// bounds).
//
// Thread-safe; each call takes its own pooled connection. Two pulls of the
// same site at once (a consumer pulls serially) may record consumer_document
// in either order; the worst outcome is one flip sent without its history,
// which the consumer repairs with GetDocument as above.
#ifndef EVENTSTREAM_SERVICES_PRODUCER_UPDATE_FEED_H_
#define EVENTSTREAM_SERVICES_PRODUCER_UPDATE_FEED_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "libsync/rules/batch_budget.h"
#include "libsync/config/condition_sql.h"
#include "libsync/config/config.h"
#include "libsync/model/link_graph.h"
#include "libsync/rules/membership.h"
#include "libsync/base/pg.h"
#include "libsync/base/pg_pool.h"
#include "libsync/base/value.h"
#include "services/producer/log_tail.h"

namespace eventstream {

// One update_log entry as served.
struct FeedEntry {
  int64_t seq = 0;
  std::string doctype;
  std::string docname;
  std::string update_type;  // Create | Update | Cancel | Rename | Delete
  std::optional<std::string> data_json;  // absent for Delete
  std::string origin;                     // "" = local
  std::string created_at;                 // RFC 3339 UTC
  // > 0: data_json was left out to fit the caller's message limit; its size.
  int64_t data_omitted_bytes = 0;
};

// A document served to satisfy a dependency, with what it links to.
struct ServedDocument {
  std::string json;
  std::vector<std::string> dependencies_json;
  bool dependencies_truncated = false;
};

struct PullResult {
  std::vector<FeedEntry> entries;
  int64_t next_after_seq = 0;
  bool more = false;
  bool recorded = true;  // false: left unrecorded (Pull's may_skip_record)
};

class UpdateFeed {
 public:
  struct Options {
    int default_limit = 500;
    int max_limit = 5000;
    int default_find_limit = 100;
    int max_find_limit = 1000;
    // Documents judged while deciding whether one is readable.
    int reachability_budget = 1000;
    ClosureLimits closure;  // what GetDocument sends along
    // Asked between statements of long loops (Pull's entries, FindDocuments'
    // pages, the backward link walk): non-OK (DEADLINE_EXCEEDED, CANCELLED)
    // when the call the work is for was abandoned, which ends the work with
    // that status. Null = never. The producer passes CallScope::Interrupted
    // (services/common/call_guard.h).
    std::function<absl::Status()> interrupted;
    // Told how many database statements each GetDocument / FindDocuments
    // ran once it had its connection (also when it failed); null = not
    // told. The producer counts them on /metrics
    // (eventstream_producer_dependency_statements_total).
    std::function<void(int64_t statements)> on_statements;
    // Pulls read the log's newest entries from memory shared by all
    // consumers (log_tail.h); false: every pull reads the database.
    bool use_log_tail = true;
    LogTail::Options log_tail;
  };
  // `config` and `pool` must outlive the feed.
  UpdateFeed(const Config* config, pg::ConnectionPool* pool)
      : UpdateFeed(config, pool, Options()) {}
  UpdateFeed(const Config* config, pg::ConnectionPool* pool, Options options)
      : config_(config), pool_(pool), options_(options), tail_(options.log_tail) {}

  // NOT_FOUND when `site` never registered; INVALID_ARGUMENT for a negative
  // after_seq.
  // `known_log_end`: the log's end as the caller knows it (a stream, from
  // StreamHub; 0 = unknown). An answer without `more` then covers the log up
  // to there, not necessarily every entry committed before the call
  // (log_tail.h): the caller learns of later entries itself.
  // `may_skip_record`: an answer that moves and changes no holding records
  // nothing (`recorded` false; a stream records its acknowledgment on a
  // later pull, libsync/rules/stream_flow.h MaySkipAckRecord), unless the
  // acknowledgment is awaited (SetAckWaiter).
  absl::StatusOr<PullResult> Pull(absl::string_view site, int64_t after_seq,
                                  int limit,
                                  std::optional<int64_t> acknowledged_seq = std::nullopt,
                                  const ByteBudget& budget = ByteBudget(),
                                  int64_t known_log_end = 0, bool may_skip_record = false);
  // The document as JSON text (document_reader.h shape) and, with
  // `with_dependencies`, the readable documents it links to at any depth.
  absl::StatusOr<ServedDocument> GetDocument(absl::string_view site,
                                             absl::string_view doctype,
                                             absl::string_view name,
                                             bool with_dependencies = false);
  // Documents of `doctype` whose fields equal the filters (compared in
  // PostgreSQL's text form), ordered by name, invisible ones left out.
  // INVALID_ARGUMENT naming an unknown DocType or filter field.
  absl::StatusOr<std::vector<std::string>> FindDocuments(
      absl::string_view site, absl::string_view doctype,
      const std::map<std::string, std::string>& filters, int limit);

  // ListVisibleDocuments (list_visible.cc): the documents of `doctype` the
  // site's subscription selects now (grantors: approved, subscribed, passing
  // both conditions), names greater than `after_name`, in name order, at most
  // `limit`. `names[i]` is the name of `documents[i]` (JSON); with
  // `names_only` no document is read and `documents` stays empty.
  struct VisiblePage {
    std::vector<std::string> names;
    std::vector<std::string> documents;
    std::string next_after_name;  // "" = no more; else the page's last name
  };
  // The log tail pulls read from (log_tail.h); null when not used.
  LogTail* tail() { return options_.use_log_tail ? &tail_ : nullptr; }
  // Acknowledgments someone waits for (the producer's initial sync writer,
  // initial_sync.h Awaits / Unblocks): a pull records one `awaited` says is
  // waited for even when it may skip recording, and tells `recorded` each
  // acknowledgment it recorded, after its commit. Set before the first pull;
  // both run on the pulling thread and must not block.
  struct AckWaiter {
    std::function<bool(absl::string_view site, int64_t acknowledged)> awaited;
    std::function<void(absl::string_view site, int64_t acknowledged)> recorded;
  };
  void SetAckWaiter(AckWaiter waiter) { ack_waiter_ = std::move(waiter); }

  absl::StatusOr<VisiblePage> ListVisible(absl::string_view site, absl::string_view doctype,
                                          absl::string_view after_name, int limit,
                                          bool names_only = false);

 private:
  struct Subscription {
    const DocTypeDef* def = nullptr;
    std::vector<std::string> conditions;  // the non-empty ones
    // Why the consumer's own condition may not run (a cmd: function not in
    // producer.condition_functions, e.g. after a config change); "" = it
    // may. Such a subscription shows nothing.
    std::string refused;
  };
  using Subscriptions = std::map<std::string, Subscription, std::less<>>;
  // What decides readability for one site: its grants (approved,
  // subscribed DocTypes) and the producer's conditions for it on any
  // DocType whatever the status (as one-condition Subscriptions).
  struct Access {
    Subscriptions grants;
    Subscriptions boundaries;
  };

  // The site's approved, subscribed parent DocTypes; NOT_FOUND naming the
  // site when it never registered. `boundaries`, when given, receives the
  // producer's conditions for the site (see Access).
  absl::StatusOr<Subscriptions> LoadSubscriptions(pg::Connection* conn,
                                                  absl::string_view site,
                                                  Subscriptions* boundaries = nullptr);
  absl::StatusOr<Access> LoadAccess(pg::Connection* conn, absl::string_view site);
  // The grants among the subscription rows `r` (kFeedSubscriptions' columns).
  Subscriptions SubscriptionsFromRows(const pg::Result& r, Subscriptions* boundaries) const;

  // Pull's subscriptions (pull.cc): what the site's last pull read, kept with
  // the rows' text, and checked again after each window is read by the
  // statement that asks the retention cut-off (one round trip for both).
  struct SiteSubscriptions {
    Subscriptions subs;
    std::string rows;  // RowsText (update_feed.cc)
  };
  // What the site's last pull read (null: none since the process started).
  std::shared_ptr<const SiteSubscriptions> KnownSubscriptions(absl::string_view site);
  // Read now (NOT_FOUND naming an unregistered site), and remembered.
  absl::StatusOr<std::shared_ptr<const SiteSubscriptions>> ReadSiteSubscriptions(
      pg::Connection* conn, absl::string_view site);
  // After a window read with `used`: LogTrimmedError when the retention valve
  // cut the site off below `acknowledged`; else `used` itself when the rows
  // are unchanged, or the new ones (remembered).
  absl::StatusOr<std::shared_ptr<const SiteSubscriptions>> CheckSiteSubscriptions(
      pg::Connection* conn, absl::string_view site, int64_t acknowledged,
      std::shared_ptr<const SiteSubscriptions> used);
  // Keeps `r` (with its RowsText `rows`) as the site's last read.
  std::shared_ptr<const SiteSubscriptions> Remember(absl::string_view site,
                                                    const pg::Result& r, std::string rows);
  // Whether `doc` passes every condition of `sub` (see file comment).
  bool PassesConditions(pg::Connection* conn, absl::string_view site,
                        absl::string_view doctype, const Subscription& sub,
                        const Value& doc, const Value& entry);
  void LogConditionError(absl::string_view site, absl::string_view doctype,
                         const std::string& condition,
                         const absl::Status& status);
  // Pull (pull.cc): the entries examined, the wanted ones among them.
  struct PullWindow {
    std::vector<FeedEntry> wanted;
    std::vector<int64_t> examined_seqs;  // ascending
    int64_t next_after_seq = 0;
    bool more = false;
  };
  absl::StatusOr<PullWindow> ReadWindow(pg::Connection* conn, absl::string_view site,
                                        const Subscriptions& subs, int64_t after_seq,
                                        int limit, const ByteBudget& budget,
                                        int64_t known_log_end);
  // Pull's window: read with the subscriptions the site's last pull read
  // (`*known` then holds those the window was read with), checked after the
  // read, and read once more when they changed.
  absl::StatusOr<PullWindow> ReadCheckedWindow(pg::Connection* conn, absl::string_view site,
                                               int64_t after_seq, int limit,
                                               int64_t acknowledged, const ByteBudget& budget,
                                               int64_t known_log_end,
                                               std::shared_ptr<const SiteSubscriptions>* known);
  // The same window from the log tail; nullopt when `after_seq` is below it.
  absl::StatusOr<std::optional<PullWindow>> ReadWindowFromTail(
      pg::Connection* conn, absl::string_view site, const Subscriptions& subs,
      int64_t after_seq, int limit, const ByteBudget& budget, int64_t known_log_end);
  // The documents among `keys` the site holds as of `after_seq`: acknowledged
  // holdings with the pending changes up to there (membership.h).
  absl::StatusOr<std::set<DocKey>> LoadHoldings(pg::Connection* conn, absl::string_view site,
                                                int64_t after_seq,
                                                const std::vector<DocKey>& keys);
  // `wanted` for the membership planner: conditions judged on the current
  // documents, which are left in `current` (nullopt: gone).
  absl::StatusOr<std::vector<MemberEntry>> JudgeEntries(
      pg::Connection* conn, absl::string_view site, const Subscriptions& subs,
      const std::vector<FeedEntry>& wanted, std::map<DocKey, std::optional<Value>>* current);
  // One transaction: pending holding changes beyond `after_seq` replaced by
  // `changes`, those up to `acknowledged` folded into the holdings, and the
  // acknowledged position. Dying before COMMIT records nothing.
  absl::Status RecordPull(pg::Connection* conn, absl::string_view site, int64_t after_seq,
                          int64_t acknowledged, const std::vector<HoldingChange>& changes);
  // How `ref` stands for the site (link_graph.h); `doc` is the document
  // when already read (else it is read only when a condition needs it, and
  // the caller knows the document exists).
  absl::StatusOr<Standing> Judge(pg::Connection* conn, absl::string_view site,
                                 const Access& access, const DocRef& ref,
                                 const Value* doc);
  // The document if the site may read it, else nullopt (also when missing).
  // With `same_work`, the work does not depend on whether `name` exists or
  // why it is not readable (GetDocument, see file comment); without it
  // (FindDocuments, whose names exist), a blocked or missing name ends
  // early.
  absl::StatusOr<std::optional<Value>> Readable(pg::Connection* conn,
                                                absl::string_view site,
                                                const Access& access,
                                                const DocTypeDef& def,
                                                absl::string_view name, bool same_work);
  // The readable documents `doc` reaches (GetDocument with dependencies).
  absl::Status AddDependencies(pg::Connection* conn, absl::string_view site,
                               const Access& access, const DocTypeDef& def,
                               const Value& doc, ServedDocument* out);
  absl::StatusOr<const DocTypeDef*> ServedDocType(absl::string_view doctype) const;

  // FindDocuments (find_documents.cc). How a row `t` of `def`'s table
  // stands for the site, decided by SQL (libsync/config/condition_sql.h): `open`
  // (not blocked) and `grant` are boolean expressions with `params` from
  // $first_param; nullopt when a condition has no SQL form (cmd:, ...).
  struct StandingSql {
    std::string open;
    std::string grant;
    std::vector<std::string> params;
  };
  std::optional<StandingSql> StandingInSql(absl::string_view site, const Access& access,
                                           const DocTypeDef& def, int first_param,
                                           RowRead read);
  // How each of `names` (of `def`) stands; missing names are left out. One
  // query when StandingInSql has an answer, else Judge per name.
  absl::StatusOr<std::map<std::string, Standing>> Standings(
      pg::Connection* conn, absl::string_view site, const Access& access,
      const DocTypeDef& def, const std::vector<std::string>& names);
  // ListVisible's names: by SQL (nullopt: a condition has no SQL form for
  // `read`, or the table lacks a column it reads), else judged one by one.
  absl::StatusOr<std::optional<std::vector<std::string>>> VisibleInSql(
      pg::Connection* conn, absl::string_view site, const Access& access, const DocTypeDef& def,
      absl::string_view after_name, int limit, RowRead read);
  absl::StatusOr<std::vector<std::string>> VisibleJudged(pg::Connection* conn,
                                                         absl::string_view site,
                                                         const Access& access,
                                                         const DocTypeDef& def,
                                                         absl::string_view after_name, int limit);
  // A page's names in order: "" for one not readable, else its JSON.
  struct FindQuery {
    const DocTypeDef* def = nullptr;
    std::string where;  // over `t`, with filter parameters $1..$n
    pg::Params params;
    int limit = 0;
  };
  absl::StatusOr<std::vector<std::string>> FindDecidedInSql(pg::Connection* conn,
                                                            absl::string_view site,
                                                            const Access& access,
                                                            const FindQuery& query,
                                                            const StandingSql& standing);
  absl::StatusOr<std::vector<std::string>> FindJudgedOneByOne(pg::Connection* conn,
                                                              absl::string_view site,
                                                              const Access& access,
                                                              const FindQuery& query);
  // The documents among `names` (passage documents of `def`) that a grantor
  // reaches: one batched backward walk (link_graph.h ReachableFromGrantors).
  absl::StatusOr<std::set<std::string>> ReachableAmong(pg::Connection* conn,
                                                       absl::string_view site,
                                                       const Access& access,
                                                       const DocTypeDef& def,
                                                       const std::vector<std::string>& names);
  // Options::interrupted, or OK without one.
  absl::Status Interrupted() const;

  const Config* config_;
  pg::ConnectionPool* pool_;
  Options options_;
  LogTail tail_;
  AckWaiter ack_waiter_;  // set before serving
  absl::Mutex mu_;
  std::set<std::tuple<std::string, std::string, std::string>> logged_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<const SiteSubscriptions>, std::less<>>
      known_subscriptions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_UPDATE_FEED_H_
