// Document Type Mapping: translate a producer's DocType into a local one.
//
// A mapping (from the consumer config's `mappings:`) renames fields of a
// remote document into a local DocType, field by field. `Child Table` field
// mappings translate each child row through another mapping; `Document`
// field mappings replace the value with the name of a local document built
// from a remote one (found with `remote_value_filters`, see below) through a
// DocumentFetcher, which the consumer implements with a producer call.
// Fields without a rule are dropped; a rule's `default_value` fills a field
// the remote document leaves empty (missing, null or "").
//
// A Document rule applies only when the remote document (or update) has a
// non-empty value for its remote_fieldname, as in Frappe (`if
// doc.get(mapping.remote_fieldname)`); otherwise the local field gets the
// rule's default_value, or the empty value as it came, and nothing is
// fetched. Empty, here and below, means missing, null or ""
// (IsEmptyFieldValue); unlike Python's truthiness, which Frappe uses, 0 and
// false are values.
//
// remote_value_filters is Frappe's JSON object {remote field: value}. It
// selects the remote document (of the inner mapping's remote_doctype) whose
// fields equal every resolved value; each value resolves against the outer
// remote document ("the document" below: the one holding the Document
// rule's field, a child row for a rule of a child mapping):
//   "eval:<expr>"  the value of <expr> over the document as `doc`, in the
//                  safe expression language of expr.h (nothing is
//                  executed), e.g. "eval:doc.get('customer', doc.owner)".
//                  Frappe's form. It must parse when the mapping set is
//                  created.
//   "doc.<field>"  that field of the document; an explicit spelling of ours
//                  that never falls back to a literal.
//   other string   Frappe's rule: the document's field of that name when
//                  the document has a non-empty one, otherwise the string
//                  itself. {"title": "title"} selects the remote document
//                  whose title equals this document's title. When a literal
//                  happens to equal a field name, the field wins (as in
//                  Frappe); write the literal as an expression,
//                  "eval:'title'", to force it.
//   number, boolean or null: a literal.
// A "doc.<field>" or "eval:" value that resolves to empty, a field or
// "eval:" result that is a list (a table) or an object, or an "eval:" that
// fails to evaluate fails the mapping (FAILED_PRECONDITION naming the
// mapping, field_mapping[i] and the filter key) rather than select an
// arbitrary document. Where this reads differently from Frappe: a string
// starting with "doc." (a literal there, as no field name has a dot) is a
// field here, so write such a literal as "eval:'doc.x'"; 0 and false are
// values (see above); Frappe's eval also sees `frappe`, ours only `doc`, so
// an expression naming anything else fails to parse when the set is
// created.
//
// Standard columns pass through without a rule: "name" (the producer's; the
// consumer's naming policy decides what to do with it), "docstatus" and
// "idx". Bookkeeping columns and a child row's parent/parenttype/parentfield
// are dropped: they describe the producer's copy, and the consumer sets its
// own.
#ifndef EVENTSTREAM_LIBSYNC_MODEL_MAPPING_H_
#define EVENTSTREAM_LIBSYNC_MODEL_MAPPING_H_

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libsync/model/diff.h"
#include "libsync/config/expr.h"
#include "libsync/base/value.h"

namespace eventstream {

struct FieldMapping {
  std::string remote_fieldname;
  std::string local_fieldname;
  std::string mapping_type;   // "" (plain), "Child Table" or "Document"
  std::string mapping;        // name of the inner mapping for the two above
  std::string default_value;  // used when the remote value is missing/empty
  // For "Document" only: a non-empty JSON object {remote field: value}
  // selecting the remote document (of the inner mapping's remote_doctype),
  // each value a scalar read as described at the top of this file: e.g.
  // {"title": "title"}, {"name": "doc.customer"}, {"name": "eval:doc.x"}.
  Value remote_value_filters;
};

// One entry of a Document rule's remote_value_filters, classified once
// (an "eval:" expression is parsed here, not per document).
struct RemoteValueFilter {
  enum class Kind {
    kLiteral,         // a number, boolean or null: itself
    kFieldOrLiteral,  // a string: the document's non-empty field of that
                      // name, else the string itself (Frappe's rule)
    kField,           // "doc.<field>": that field, which must be non-empty
    kEval,            // "eval:<expr>": the expression's value over `doc`
  };

  // INVALID_ARGUMENT, the message starting "remote_value_filters.<key>: ",
  // for an array or object, "doc." without a field, or an "eval:"
  // expression that does not parse (with expr.h's column).
  static absl::StatusOr<RemoteValueFilter> Parse(std::string key,
                                                 const Value& value);

  std::string key;
  Kind kind = Kind::kLiteral;
  Value value;        // as configured
  std::string field;  // kFieldOrLiteral, kField: the field name
  std::optional<Condition> expression;  // kEval
};

// remote_value_filters (a non-empty object) entry by entry, in key order.
// INVALID_ARGUMENT as RemoteValueFilter::Parse, or when `filters` is not a
// non-empty object.
absl::StatusOr<std::vector<RemoteValueFilter>> ParseRemoteValueFilters(
    const Value& filters);

struct ResolvedFilters {
  Value filters;  // an object {remote field: value} for FindRemote
  // Keys whose string was taken literally because the document has no
  // non-empty field of that name (for the message when nothing matches).
  std::vector<std::string> literal_fallbacks;
};

// Resolves `filters` against `doc` (the outer remote document, or the
// `changed` object of an update). Pure. FAILED_PRECONDITION, the message
// starting "remote_value_filters.<key>: ", when a "doc.<field>" or "eval:"
// value resolves to empty, a field or "eval:" result is a list or object,
// or the expression fails (e.g. ordering a string against a number).
// Nothing else is read: no database, no clock. `doc_kind`
// names the document in those messages ("document", "update", "row").
absl::StatusOr<ResolvedFilters> ResolveRemoteValueFilters(
    const std::vector<RemoteValueFilter>& filters, const Value& doc,
    absl::string_view doc_kind = "document");

struct DocTypeMapping {
  std::string name;
  std::string local_doctype;
  std::string remote_doctype;
  std::vector<FieldMapping> field_mapping;
};

// What a `Document` field mapping needs from the outside world. The consumer
// implements it with the producer's FindDocuments/GetDocument and its own
// insert path; unit tests use a fake.
class DocumentFetcher {
 public:
  virtual ~DocumentFetcher() = default;

  // The first document of the producer's `remote_doctype` whose fields equal
  // every entry of `filters` (an object field -> value), complete with its
  // child tables, or nullopt when none matches. An error (producer down,
  // permission denied) fails the mapping with that error.
  virtual absl::StatusOr<std::optional<Value>> FindRemote(
      const std::string& remote_doctype, const Value& filters) = 0;

  // Makes `mapped_doc` (already in its local DocType, "name" still the
  // producer's) exist locally and returns its local name. Must be idempotent:
  // when a copy of that remote document already exists, return its name
  // instead of inserting a second one.
  virtual absl::StatusOr<std::string> InsertLocal(const Value& mapped_doc) = 0;
};

// A validated set of mappings, looked up by name.
class MappingSet {
 public:
  MappingSet() = default;

  // Checks: names unique and non-empty; doctypes and field names set; no
  // two rules write one local field; mapping_type is "", "Child Table" or
  // "Document"; an inner `mapping` is named exactly for the latter two and
  // exists; Document rules have usable remote_value_filters (every
  // "eval:" expression parses); Child Table rules have no default_value and
  // form no cycle. INVALID_ARGUMENT naming the mapping and field_mapping[i]
  // (and the filter key) otherwise.
  static absl::StatusOr<MappingSet> Create(
      std::vector<DocTypeMapping> mappings);

  const DocTypeMapping* Find(std::string_view name) const;
  const std::vector<DocTypeMapping>& all() const { return mappings_; }
  // The parsed remote_value_filters of rule `rule` of `mapping` (one of
  // all()); empty for a rule that is not a Document rule.
  const std::vector<RemoteValueFilter>& FiltersOf(const DocTypeMapping& mapping,
                                                  size_t rule) const;

  // The local document for `remote_doc` (doctype = local_doctype). Document
  // rules with a non-empty remote value resolve their remote_value_filters
  // against `remote_doc` (ResolveRemoteValueFilters), fetch the first match,
  // map it with the inner mapping, insert it through `fetcher` (which may
  // be null when no Document rule applies) and hold its local name.
  // NOT_FOUND when a mapping or a Document target does not exist (the
  // message shows the resolved filters and which strings were taken
  // literally); INVALID_ARGUMENT when the document does not fit the mapping
  // (wrong doctype, a table not an array); FAILED_PRECONDITION when a filter
  // cannot be resolved. Messages name the mapping and field_mapping[i].
  absl::StatusOr<Value> MapDocument(const std::string& mapping_name,
                                    const Value& remote_doc,
                                    DocumentFetcher* fetcher) const;

  // The same translation for an Update diff: `changed` keys renamed (no
  // defaults for fields the diff does not mention), added rows mapped,
  // removed row names kept under the local table, row_changed entries
  // renamed through the Child Table's mapping. A Document rule applies when
  // `changed` carries a non-empty value for its remote_fieldname, and its
  // filters resolve against `changed` itself, as Frappe's get_mapped_update
  // does: a bare field name the update does not carry (or sets empty) is
  // taken literally, as in Frappe; "doc.<field>" of such a field is
  // FAILED_PRECONDITION; an "eval:" expression sees only the changed
  // fields (doc.<other> reads None). Spell a filter on a field that may
  // not change in the same update "doc.<field>" to get an error instead of
  // a literal. Rules of child mappings resolve against the added row or
  // the row_changed entry.
  absl::StatusOr<DocDiff> MapDiff(const std::string& mapping_name,
                                  const DocDiff& diff,
                                  DocumentFetcher* fetcher) const;

 private:
  std::vector<DocTypeMapping> mappings_;
  std::map<std::string, size_t, std::less<>> index_;
  // filters_[mapping index][rule index]: the parsed remote_value_filters of
  // each Document rule (empty for other rules).
  std::vector<std::vector<std::vector<RemoteValueFilter>>> filters_;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_MODEL_MAPPING_H_
