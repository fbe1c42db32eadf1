// UpdateFeed::FindDocuments (update_feed.h): visibility decided in the
// query, so the time a search takes does not grow with the documents the
// caller may not see (issue 13 item 9; docs/design.md "What a consumer may
// see").
//
// A page of matching rows comes from one query that also decides, in SQL,
// whether each row is blocked (left out by the query), a grantor (served),
// or a passage document (readable only through links). The passage
// documents of the page are then decided together by one batched backward
// walk (link_graph.h ReachableFromGrantors) whose linker and standing
// queries cover a whole level at once. Conditions without an SQL form
// (cmd: functions, child tables, ...) fall back to judging each row in C++
// (FindJudgedOneByOne, or Judge per linker): correct, but its time again
// grows with the invisible rows, as the design document says.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "libsync/input_rules.h"
#include "libsync/condition_sql.h"
#include "libsync/status_macros.h"
#include "services/producer/document_reader.h"
#include "services/producer/link_store.h"
#include "services/producer/statement_count.h"
#include "services/producer/update_feed.h"

namespace eventstream {
namespace {

// Rows per page when judging one by one; at most max(10 * limit, 2000)
// rows are looked at per call (one page when SQL decides).
constexpr int kPage = 200;
// A table lacks a column the registry lists: read fields out of the whole
// row instead (condition_sql.h RowRead).
constexpr char kUndefinedColumn[] = "42703";


// {open}, {grant}: StandingSql; $1 the names.
constexpr char kStandingsSql[] =
    "SELECT t.name, ({open}) AS open, ({grant}) AS grant FROM {table} AS t"
    " WHERE t.name = ANY($1::text[])";
// {where}: the filters over $1..$n; $n+1 the last name of the previous page.
constexpr char kPageSql[] =
    "SELECT t.name, ({grant}) AS grant FROM {table} AS t"
    " WHERE {where} AND t.name > ${last} AND ({open}) ORDER BY t.name LIMIT {page}";


}  // namespace

std::optional<UpdateFeed::StandingSql> UpdateFeed::StandingInSql(absl::string_view site,
                                                                 const Access& access,
                                                                 const DocTypeDef& def,
                                                                 int first_param, RowRead read) {
  StandingSql out{"TRUE", "FALSE", {}};
  auto add = [&](const std::vector<std::string>& conditions, std::string* sql) {
    auto translated = ConditionsToSql(conditions, def, RowSql{"t", read},
                                      first_param + static_cast<int>(out.params.size()));
    if (!translated.ok()) return false;
    *sql = std::move(translated->sql);
    for (std::string& p : translated->params) out.params.push_back(std::move(p));
    return true;
  };
  auto boundary = access.boundaries.find(def.name);
  if (boundary != access.boundaries.end() && !add(boundary->second.conditions, &out.open)) {
    return std::nullopt;
  }
  auto grant = access.grants.find(def.name);
  if (grant == access.grants.end()) return out;
  if (!grant->second.refused.empty()) {
    LogConditionError(site, def.name, grant->second.conditions.front(),
                      absl::PermissionDeniedError(grant->second.refused));
    return out;  // such a subscription shows nothing
  }
  if (!add(grant->second.conditions, &out.grant)) return std::nullopt;
  return out;
}

absl::StatusOr<std::map<std::string, Standing>> UpdateFeed::Standings(
    pg::Connection* conn, absl::string_view site, const Access& access, const DocTypeDef& def,
    const std::vector<std::string>& names) {
  std::map<std::string, Standing> out;
  auto run = [&](RowRead read) -> absl::StatusOr<std::optional<pg::Result>> {
    std::optional<StandingSql> sql = StandingInSql(site, access, def, 2, read);
    if (!sql) return std::optional<pg::Result>();
    pg::Params params = {pg::TextArray(names)};
    params.insert(params.end(), sql->params.begin(), sql->params.end());
    ASSIGN_OR_RETURN(pg::Result r, conn->Exec(absl::StrReplaceAll(kStandingsSql,
                                                     {{"{open}", sql->open},
                                                      {"{grant}", sql->grant},
                                                      {"{table}", pg::QuoteIdentifier(def.table)}}),
                                              params));
    return std::optional<pg::Result>(std::move(r));
  };
  absl::StatusOr<std::optional<pg::Result>> r = run(RowRead::kByColumn);
  if (!r.ok() && pg::SqlStateOf(r.status()) == kUndefinedColumn) r = run(RowRead::kWholeRow);
  RETURN_IF_ERROR(r.status());
  if (!r->has_value()) {
    for (const std::string& name : names) {
      ASSIGN_OR_RETURN(Standing standing, Judge(conn, site, access, {def.name, name}, nullptr));
      if (standing != Standing::kMissing) out[name] = standing;
    }
    return out;
  }
  const pg::Result& rows = **r;
  for (int i = 0; i < rows.rows(); ++i) {
    const bool open = rows.Get(i, "open") == "t";
    const bool grants = rows.Get(i, "grant") == "t";
    out[std::string(rows.Get(i, "name"))] =
        !open ? Standing::kBlocked : (grants ? Standing::kGrantor : Standing::kPassage);
  }
  return out;
}

absl::StatusOr<std::set<std::string>> UpdateFeed::ReachableAmong(
    pg::Connection* conn, absl::string_view site, const Access& access, const DocTypeDef& def,
    const std::vector<std::string>& names) {
  std::set<std::string> out;
  if (names.empty()) {
    // The first level's queries all the same, so whether the page held
    // passage documents (invisible matches, most often) does not show.
    RETURN_IF_ERROR(FindLinkEdges(conn, config_->registry, def.name, {}, 1).status());
    return out;
  }
  BatchReverseWalk walk;
  walk.linkers = [&](const std::string& doctype, const std::vector<std::string>& level,
                     int limit) -> absl::StatusOr<std::vector<LinkEdge>> {
    RETURN_IF_ERROR(Interrupted());  // a long walk for an abandoned call stops
    return FindLinkEdges(conn, config_->registry, doctype, level, limit);
  };
  walk.standings = [&](const std::string& doctype, const std::vector<std::string>& level) {
    return Standings(conn, site, access, *config_->registry.Find(doctype), level);
  };
  std::vector<DocRef> targets;
  for (const std::string& name : names) targets.push_back({def.name, name});
  ASSIGN_OR_RETURN(BatchReachability reach,
                   ReachableFromGrantors(targets, walk, options_.reachability_budget));
  if (reach.out_of_budget) {
    LogConditionError(site, def.name, "(dependency access)",
                      absl::ResourceExhaustedError(absl::StrCat(
                          "deciding which found documents are reachable through links from "
                          "ones the site may see took more than ",
                          options_.reachability_budget,
                          " documents; the rest are treated as not reachable")));
  }
  for (const DocRef& ref : reach.readable) out.insert(ref.name);
  return out;
}

absl::StatusOr<std::vector<std::string>> UpdateFeed::FindDecidedInSql(
    pg::Connection* conn, absl::string_view site, const Access& access, const FindQuery& query,
    const StandingSql& standing) {
  const int max_scanned = std::max(10 * query.limit, 2000);
  const std::string sql = absl::StrReplaceAll(
      kPageSql, {{"{open}", standing.open},
                 {"{grant}", standing.grant},
                 {"{table}", pg::QuoteIdentifier(query.def->table)},
                 {"{where}", query.where},
                 {"{last}", std::to_string(query.params.size() + 1)},
                 {"{page}", std::to_string(max_scanned)}});
  // One page: the rows a call may look at, blocked ones already left out.
  RETURN_IF_ERROR(Interrupted());
  pg::Params params = query.params;
  params.emplace_back("");  // "" sorts before every name
  params.insert(params.end(), standing.params.begin(), standing.params.end());
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(sql, params));
  std::vector<std::string> passages;
  for (int i = 0; i < r.rows(); ++i) {
    if (r.Get(i, "grant") != "t") passages.emplace_back(r.Get(i, "name"));
  }
  ASSIGN_OR_RETURN(std::set<std::string> reachable,
                   ReachableAmong(conn, site, access, *query.def, passages));
  std::vector<std::string> out;
  for (int i = 0; i < r.rows() && static_cast<int>(out.size()) < query.limit; ++i) {
    const std::string name(r.Get(i, "name"));
    if (r.Get(i, "grant") != "t" && reachable.count(name) == 0) continue;
    ASSIGN_OR_RETURN(std::optional<Value> doc,
                     ReadDocument(conn, config_->registry, *query.def, name));
    if (doc) out.push_back(doc->ToJson());
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> UpdateFeed::FindJudgedOneByOne(
    pg::Connection* conn, absl::string_view site, const Access& access, const FindQuery& query) {
  // Bounded so a filter matching mostly invisible rows cannot make one call
  // scan the whole table.
  const int max_scanned = std::max(10 * query.limit, 2000);
  const std::string sql = absl::StrCat(
      "SELECT t.name FROM ", pg::QuoteIdentifier(query.def->table), " AS t WHERE ", query.where,
      " AND t.name > $", query.params.size() + 1, " ORDER BY t.name LIMIT ", kPage);
  std::vector<std::string> out;
  std::string last;
  int scanned = 0;
  while (static_cast<int>(out.size()) < query.limit && scanned < max_scanned) {
    RETURN_IF_ERROR(Interrupted());
    pg::Params page = query.params;
    page.emplace_back(last);
    ASSIGN_OR_RETURN(pg::Result r, conn->Exec(sql, page));
    for (int i = 0; i < r.rows() && static_cast<int>(out.size()) < query.limit; ++i) {
      ++scanned;
      last = std::string(r.Get(i, "name"));
      ASSIGN_OR_RETURN(std::optional<Value> doc,
                       Readable(conn, site, access, *query.def, last, /*same_work=*/false));
      if (doc) out.push_back(doc->ToJson());
    }
    if (r.rows() < kPage) break;
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> UpdateFeed::FindDocuments(
    absl::string_view site, absl::string_view doctype,
    const std::map<std::string, std::string>& filters, int limit) {
  FindQuery query;
  ASSIGN_OR_RETURN(query.def, ServedDocType(doctype));
  query.limit = std::min(limit <= 0 ? options_.default_find_limit : limit,
                         options_.max_find_limit);
  query.where = "TRUE";
  for (const auto& [field, value] : filters) {
    const FieldDef* f = query.def->FindField(field);
    if (f != nullptr ? f->is_table() : !IsStandardColumn(field, false)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "filters: ", Quoted(field), " is not a field of DocType ", Quoted(doctype),
          f != nullptr ? " that has a column (it is a Table)" : ""));
    }
    query.params.emplace_back(value);
    absl::StrAppend(&query.where, " AND t.", pg::QuoteIdentifier(field), "::text = $",
                    query.params.size());
  }
  ASSIGN_OR_RETURN(auto lease, pool_->Acquire());
  pg::Connection* conn = lease.get();
  StatementCount count(conn, &options_.on_statements);
  ASSIGN_OR_RETURN(Access access, LoadAccess(conn, site));
  const int first_param = static_cast<int>(query.params.size()) + 2;
  for (RowRead read : {RowRead::kByColumn, RowRead::kWholeRow}) {
    std::optional<StandingSql> standing =
        StandingInSql(site, access, *query.def, first_param, read);
    if (!standing) break;
    auto found = FindDecidedInSql(conn, site, access, query, *standing);
    if (found.ok() || pg::SqlStateOf(found.status()) != kUndefinedColumn) return found;
  }
  return FindJudgedOneByOne(conn, site, access, query);
}

}  // namespace eventstream
