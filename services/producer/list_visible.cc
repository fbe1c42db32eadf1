// UpdateFeed::ListVisible (update_feed.h): the documents a consumer's
// subscription selects, a page at a time, for the consumer's Resnapshot
// (docs/design.md "Membership"). The conditions are decided in the page
// query when they have an SQL form (condition_sql.h); otherwise each row is
// judged in C++ (slower: its time grows with the rows the site may not see).
// Only names of documents the site may see leave this file, so paging does
// not reveal invisible ones.
#include <utility>

#include "absl/strings/str_replace.h"
#include "libsync/base/status_macros.h"
#include "services/producer/document_reader.h"
#include "services/producer/update_feed.h"

namespace eventstream {
namespace {

// {open}, {grant}: StandingSql over `t`; $1 after_name, $2 limit.
constexpr char kVisiblePageSql[] =
    "SELECT t.name FROM {table} AS t WHERE t.name > $1 AND ({open}) AND ({grant})"
    " ORDER BY t.name LIMIT $2";
// Judged one by one: the next rows after $1.
constexpr char kNextRowsSql[] =
    "SELECT t.name FROM {table} AS t WHERE t.name > $1 ORDER BY t.name LIMIT $2";
constexpr int kJudgedPage = 200;
constexpr char kUndefinedColumn[] = "42703";

}  // namespace

absl::StatusOr<std::optional<std::vector<std::string>>> UpdateFeed::VisibleInSql(
    pg::Connection* conn, absl::string_view site, const Access& access, const DocTypeDef& def,
    absl::string_view after_name, int limit, RowRead read) {
  std::optional<StandingSql> standing = StandingInSql(site, access, def, 3, read);
  if (!standing) return std::optional<std::vector<std::string>>();
  pg::Params params = {std::string(after_name), limit};
  params.insert(params.end(), standing->params.begin(), standing->params.end());
  absl::StatusOr<pg::Result> r = conn->Exec(
      absl::StrReplaceAll(kVisiblePageSql, {{"{open}", standing->open},
                                            {"{grant}", standing->grant},
                                            {"{table}", pg::QuoteIdentifier(def.table)}}),
      params);
  if (!r.ok() && pg::SqlStateOf(r.status()) == kUndefinedColumn) {
    return std::optional<std::vector<std::string>>();
  }
  RETURN_IF_ERROR(r.status());
  std::vector<std::string> names;
  for (int i = 0; i < r->rows(); ++i) names.emplace_back(r->Get(i, "name"));
  return std::optional<std::vector<std::string>>(std::move(names));
}

absl::StatusOr<std::vector<std::string>> UpdateFeed::VisibleJudged(
    pg::Connection* conn, absl::string_view site, const Access& access, const DocTypeDef& def,
    absl::string_view after_name, int limit) {
  const std::string sql =
      absl::StrReplaceAll(kNextRowsSql, {{"{table}", pg::QuoteIdentifier(def.table)}});
  std::vector<std::string> names;
  std::string last(after_name);
  while (static_cast<int>(names.size()) < limit) {
    RETURN_IF_ERROR(Interrupted());
    ASSIGN_OR_RETURN(pg::Result r, conn->Exec(sql, {last, kJudgedPage}));
    for (int i = 0; i < r.rows() && static_cast<int>(names.size()) < limit; ++i) {
      last = std::string(r.Get(i, "name"));
      ASSIGN_OR_RETURN(Standing standing, Judge(conn, site, access, {def.name, last}, nullptr));
      if (standing == Standing::kGrantor) names.push_back(last);
    }
    if (r.rows() < kJudgedPage) break;
  }
  return names;
}

absl::StatusOr<UpdateFeed::VisiblePage> UpdateFeed::ListVisible(absl::string_view site,
                                                                absl::string_view doctype,
                                                                absl::string_view after_name,
                                                                int limit, bool names_only) {
  ASSIGN_OR_RETURN(const DocTypeDef* def, ServedDocType(doctype));
  limit = std::min(limit <= 0 ? options_.default_find_limit : limit, options_.max_find_limit);
  ASSIGN_OR_RETURN(auto lease, pool_->Acquire());
  pg::Connection* conn = lease.get();
  ASSIGN_OR_RETURN(Access access, LoadAccess(conn, site));
  std::optional<std::vector<std::string>> names;
  for (RowRead read : {RowRead::kByColumn, RowRead::kWholeRow}) {
    ASSIGN_OR_RETURN(names, VisibleInSql(conn, site, access, *def, after_name, limit, read));
    if (names) break;
  }
  if (!names) {
    ASSIGN_OR_RETURN(names, VisibleJudged(conn, site, access, *def, after_name, limit));
  }
  VisiblePage page;
  if (static_cast<int>(names->size()) == limit) page.next_after_name = names->back();
  if (names_only) {
    page.names = *std::move(names);
    return page;
  }
  // One statement per table for the page; a document that changed away or
  // cannot be represented meanwhile is left out (document_reader.h).
  ASSIGN_OR_RETURN(auto docs, ReadDocuments(conn, config_->registry, *def, *names));
  for (const std::string& name : *names) {
    auto it = docs.find(name);
    if (it == docs.end()) continue;
    page.names.push_back(name);
    page.documents.push_back(it->second.ToJson());
  }
  return page;
}

}  // namespace eventstream
