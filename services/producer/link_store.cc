#include "services/producer/link_store.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "libsync/base/status_macros.h"

namespace eventstream {
namespace {

// {table}, {column} and {doctype_column} are quoted identifiers from the
// registry; $1 the target names, $2 the row limit, $3 the target DocType
// (Dynamic Link only).
// Each row is one link: the linking document and the name it links to.
constexpr char kParentLinkers[] =
    "SELECT t.name, t.{column}::text AS linked FROM {table} AS t"
    " WHERE t.{column}::text = ANY($1::text[]) LIMIT $2";
constexpr char kParentDynamicLinkers[] =
    "SELECT t.name, t.{column}::text AS linked FROM {table} AS t"
    " WHERE t.{column}::text = ANY($1::text[]) AND t.{doctype_column}::text = $3 LIMIT $2";
constexpr char kChildLinkers[] =
    "SELECT DISTINCT c.parenttype, c.parent, c.{column}::text AS linked FROM {table} AS c"
    " WHERE c.{column}::text = ANY($1::text[]) LIMIT $2";
constexpr char kChildDynamicLinkers[] =
    "SELECT DISTINCT c.parenttype, c.parent, c.{column}::text AS linked FROM {table} AS c"
    " WHERE c.{column}::text = ANY($1::text[]) AND c.{doctype_column}::text = $3"
    " LIMIT $2";

constexpr char kUndefinedTable[] = "42P01";

std::string Render(const char* query, const LinkField& f) {
  return absl::StrReplaceAll(
      query, {{"{table}", pg::QuoteIdentifier(f.holder->table)},
              {"{column}", pg::QuoteIdentifier(f.field->fieldname)},
              {"{doctype_column}", pg::QuoteIdentifier(f.field->options)}});
}

// Whether parent DocType `parent` has a Table field of child DocType `child`.
bool HoldsChild(const DocTypeRegistry& registry, const std::string& parent,
                const std::string& child) {
  const DocTypeDef* def = registry.Find(parent);
  if (def == nullptr || def->istable) return false;
  for (const FieldDef& f : def->fields) {
    if (f.is_table() && f.options == child) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::vector<LinkEdge>> FindLinkEdges(pg::Connection* conn,
                                                    const DocTypeRegistry& registry,
                                                    const std::string& doctype,
                                                    const std::vector<std::string>& names,
                                                    int limit) {
  std::vector<LinkEdge> out;
  if (limit <= 0) return out;  // no names: the same queries, finding nothing
  for (const LinkField& f : FieldsLinkingTo(registry, doctype)) {
    const bool child = f.holder->istable;
    const char* query = child ? (f.dynamic ? kChildDynamicLinkers : kChildLinkers)
                              : (f.dynamic ? kParentDynamicLinkers : kParentLinkers);
    pg::Params params = {pg::TextArray(names), std::to_string(limit)};
    if (f.dynamic) params.emplace_back(doctype);
    auto r = conn->Exec(Render(query, f), params);
    if (!r.ok() && pg::SqlStateOf(r.status()) == kUndefinedTable) continue;
    RETURN_IF_ERROR(r.status());
    for (int i = 0; i < r->rows(); ++i) {
      DocRef from = child ? DocRef{std::string(r->Get(i, "parenttype")),
                                   std::string(r->Get(i, "parent"))}
                          : DocRef{f.holder->name, std::string(r->Get(i, "name"))};
      if (child && !HoldsChild(registry, from.doctype, f.holder->name)) continue;
      out.push_back({std::move(from), std::string(r->Get(i, "linked"))});
    }
  }
  return out;
}

absl::StatusOr<std::vector<DocRef>> FindLinkers(pg::Connection* conn,
                                                const DocTypeRegistry& registry,
                                                const std::string& doctype,
                                                const std::vector<std::string>& names,
                                                int limit) {
  ASSIGN_OR_RETURN(std::vector<LinkEdge> edges,
                   FindLinkEdges(conn, registry, doctype, names, limit));
  std::set<DocRef> seen;
  std::vector<DocRef> out;
  for (LinkEdge& edge : edges) {
    if (seen.insert(edge.from).second) out.push_back(std::move(edge.from));
  }
  return out;
}

}  // namespace eventstream
