#include "services/producer/update_feed.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libsync/base/input_rules.h"
#include "libsync/config/expr.h"
#include "libsync/base/status_macros.h"
#include "libsync/config/subscription_condition.h"
#include "libsync/rules/retention_plan.h"
#include "services/producer/document_reader.h"
#include "services/producer/link_store.h"
#include "services/producer/statement_count.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

// The site's subscriptions (no rows: the site is not registered; one row of
// NULLs: registered without DocTypes), in DocType order so that two reads
// of the same rows compare equal (RowsText).
#define ES_FEED_SUBSCRIPTIONS                                                  \
  "SELECT d.doctype, d.condition, d.producer_condition,"                       \
  "  coalesce(d.status = 'approved' AND NOT d.unsubscribed, false) AS grants"
#define ES_FEED_SUBSCRIPTIONS_FROM                                             \
  " FROM es_producer.consumer c LEFT JOIN es_producer.consumer_doctype d"      \
  "   ON d.site = c.site"                                                      \
  " WHERE c.site = $1 ORDER BY d.doctype"
constexpr pg::Query kFeedSubscriptions{
    "es_feed_subs", ES_FEED_SUBSCRIPTIONS ES_FEED_SUBSCRIPTIONS_FROM};
// The same rows with the site's retention cut-off below its position $2
// (docs/design.md "Retention") and the first seq kept, in every row: what a
// pull asks after reading its window (pull.cc), in one round trip.
constexpr pg::Query kFeedSubscriptionsCutOff{
    "es_feed_subs_cut_off",
    ES_FEED_SUBSCRIPTIONS ","
    "  coalesce(c.lost_through > $2, false) AS cut_off,"
    "  coalesce(c.lost_through, 0) AS lost_through,"
    "  CASE WHEN c.lost_through > $2"
    "    THEN coalesce((SELECT min(seq) FROM es_producer.update_log), 0) END AS first_kept"
    ES_FEED_SUBSCRIPTIONS_FROM};
#undef ES_FEED_SUBSCRIPTIONS
#undef ES_FEED_SUBSCRIPTIONS_FROM

absl::Status Registered(const pg::Result& r, absl::string_view site) {
  if (r.rows() > 0) return absl::OkStatus();
  return absl::NotFoundError(
      absl::StrCat("site ", Quoted(site), " is not registered; call RegisterConsumer first"));
}

// The subscription columns of every row, to tell whether they changed.
std::string RowsText(const pg::Result& r) {
  std::string text;
  for (int i = 0; i < r.rows(); ++i) {
    for (const char* column : {"doctype", "condition", "producer_condition", "grants"}) {
      const absl::string_view v = r.Get(i, column);
      absl::StrAppend(&text, r.IsNull(i, column) ? -1 : static_cast<int64_t>(v.size()), ":", v);
    }
  }
  return text;
}

absl::Status NotVisible(absl::string_view site, absl::string_view doctype,
                        absl::string_view name) {
  return absl::PermissionDeniedError(
      absl::StrCat("document ", Quoted(name), " of DocType ", Quoted(doctype),
                   " is not visible to site ", Quoted(site)));
}

}  // namespace

absl::StatusOr<UpdateFeed::Subscriptions> UpdateFeed::LoadSubscriptions(
    pg::Connection* conn, absl::string_view site, Subscriptions* boundaries) {
  ASSIGN_OR_RETURN(pg::Result r, conn->ExecPrepared(kFeedSubscriptions, {site}));
  RETURN_IF_ERROR(Registered(r, site));
  return SubscriptionsFromRows(r, boundaries);
}

UpdateFeed::Subscriptions UpdateFeed::SubscriptionsFromRows(const pg::Result& r,
                                                            Subscriptions* boundaries) const {
  Subscriptions subs;
  for (int i = 0; i < r.rows(); ++i) {
    const DocTypeDef* def = config_->registry.Find(std::string(r.Get(i, "doctype")));
    if (def == nullptr || def->istable) continue;
    std::string producer_condition(r.Get(i, "producer_condition"));
    if (boundaries != nullptr && !producer_condition.empty()) {
      (*boundaries)[def->name] = Subscription{def, {producer_condition}};
    }
    if (!r.GetBool(i, "grants")) continue;
    Subscription& sub = subs[def->name];
    sub.def = def;
    for (const char* column : {"condition", "producer_condition"}) {
      if (!r.Get(i, column).empty()) sub.conditions.emplace_back(r.Get(i, column));
    }
    // Only a cmd: condition can be refused here; an expression's parse
    // errors are PassesConditions' to report.
    absl::string_view condition = r.Get(i, "condition");
    if (absl::StartsWith(condition, "cmd:")) {
      sub.refused = ConditionProblem(condition, &config_->condition_functions());
    }
  }
  return subs;
}

std::shared_ptr<const UpdateFeed::SiteSubscriptions> UpdateFeed::KnownSubscriptions(
    absl::string_view site) {
  absl::MutexLock lock(&mu_);
  auto found = known_subscriptions_.find(site);
  return found == known_subscriptions_.end() ? nullptr : found->second;
}

std::shared_ptr<const UpdateFeed::SiteSubscriptions> UpdateFeed::Remember(
    absl::string_view site, const pg::Result& r, std::string rows) {
  auto read = std::make_shared<const SiteSubscriptions>(
      SiteSubscriptions{SubscriptionsFromRows(r, nullptr), std::move(rows)});
  absl::MutexLock lock(&mu_);
  known_subscriptions_[std::string(site)] = read;
  return read;
}

absl::StatusOr<std::shared_ptr<const UpdateFeed::SiteSubscriptions>>
UpdateFeed::ReadSiteSubscriptions(pg::Connection* conn, absl::string_view site) {
  ASSIGN_OR_RETURN(pg::Result r, conn->ExecPrepared(kFeedSubscriptions, {site}));
  RETURN_IF_ERROR(Registered(r, site));
  return Remember(site, r, RowsText(r));
}

absl::StatusOr<std::shared_ptr<const UpdateFeed::SiteSubscriptions>>
UpdateFeed::CheckSiteSubscriptions(pg::Connection* conn, absl::string_view site,
                                   int64_t acknowledged,
                                   std::shared_ptr<const SiteSubscriptions> used) {
  ASSIGN_OR_RETURN(pg::Result r,
                   conn->ExecPrepared(kFeedSubscriptionsCutOff, {site, acknowledged}));
  RETURN_IF_ERROR(Registered(r, site));
  if (r.GetBool(0, "cut_off")) {
    return LogTrimmedError(std::string(site), acknowledged,
                           r.GetInt64(0, r.ColumnIndex("lost_through")),
                           r.GetInt64(0, r.ColumnIndex("first_kept")));
  }
  std::string rows = RowsText(r);
  if (used != nullptr && used->rows == rows) return used;
  return Remember(site, r, std::move(rows));
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
                       "($1::text, $2::jsonb, $3::jsonb) AS passes FROM ro"),
          {site, doc.ToJson(), entry.ToJson()});
      if (!r.ok()) {
        LogConditionError(site, doctype, condition, r.status());
        return false;
      }
      if (r->rows() != 1 || r->IsNull(0, "passes") || !r->GetBool(0, "passes")) {
        return false;
      }
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


absl::Status UpdateFeed::Interrupted() const {
  return options_.interrupted ? options_.interrupted() : absl::OkStatus();
}


absl::StatusOr<const DocTypeDef*> UpdateFeed::ServedDocType(
    absl::string_view doctype) const {
  if (doctype.empty()) return absl::InvalidArgumentError("doctype: required");
  const DocTypeDef* def =
      config_->registry.Find(std::string_view(doctype.data(), doctype.size()));
  if (def == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown DocType ", Quoted(doctype),
        ": this producer's config (doctypes:) does not define it"));
  }
  if (def->istable) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DocType ", Quoted(doctype),
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
