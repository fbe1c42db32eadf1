// Document Type Mapping: translate a producer's DocType into a local one.
//
// A mapping (from the consumer config's `mappings:`) renames fields of a
// remote document into a local DocType, field by field. `Child Table` field
// mappings translate each child row through another mapping; `Document`
// field mappings replace the value with the name of a local document built
// from a remote one (found with `remote_value_filters`) through a
// DocumentFetcher, which the consumer implements with a producer call.
// Fields without a rule are dropped; a rule's `default_value` fills a field
// the remote document leaves empty (missing, null or "").
//
// Standard columns pass through without a rule: "name" (the producer's; the
// consumer's naming policy decides what to do with it), "docstatus" and
// "idx". Bookkeeping columns and a child row's parent/parenttype/parentfield
// are dropped: they describe the producer's copy, and the consumer sets its
// own.
#ifndef EVENTSTREAM_LIBSYNC_MAPPING_H_
#define EVENTSTREAM_LIBSYNC_MAPPING_H_

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "libsync/diff.h"
#include "libsync/value.h"

namespace eventstream {

struct FieldMapping {
  std::string remote_fieldname;
  std::string local_fieldname;
  std::string mapping_type;   // "" (plain), "Child Table" or "Document"
  std::string mapping;        // name of the inner mapping for the two above
  std::string default_value;  // used when the remote value is missing/empty
  // For "Document" only: a non-empty JSON object {remote field: value}
  // selecting the remote document (of the inner mapping's remote_doctype).
  // A string value "doc.<field>" stands for that field of the outer remote
  // document (e.g. {"name": "doc.customer"}); every other value is a
  // literal. Frappe's "eval:" expressions are not supported.
  Value remote_value_filters;
};

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
  // exists; Document rules have usable remote_value_filters; Child Table
  // rules have no default_value and form no cycle. INVALID_ARGUMENT naming
  // the mapping and field_mapping[i] otherwise.
  static absl::StatusOr<MappingSet> Create(
      std::vector<DocTypeMapping> mappings);

  const DocTypeMapping* Find(std::string_view name) const;
  const std::vector<DocTypeMapping>& all() const { return mappings_; }

  // The local document for `remote_doc` (doctype = local_doctype). Document
  // rules fetch, map and insert their target through `fetcher` (which may be
  // null when the mapping has none) and hold its local name. NOT_FOUND when
  // a mapping or a Document target does not exist; INVALID_ARGUMENT when the
  // document does not fit the mapping (wrong doctype, a table not an array).
  absl::StatusOr<Value> MapDocument(const std::string& mapping_name,
                                    const Value& remote_doc,
                                    DocumentFetcher* fetcher) const;

  // The same translation for an Update diff: `changed` keys renamed (no
  // defaults for fields the diff does not mention), added rows mapped,
  // removed row names kept under the local table, row_changed entries
  // renamed through the Child Table's mapping. Document rules in `changed`
  // resolve "doc.<field>" filters against `changed` itself (as Frappe did);
  // a filter naming a field the diff does not carry is FAILED_PRECONDITION.
  absl::StatusOr<DocDiff> MapDiff(const std::string& mapping_name,
                                  const DocDiff& diff,
                                  DocumentFetcher* fetcher) const;

 private:
  std::vector<DocTypeMapping> mappings_;
  std::map<std::string, size_t, std::less<>> index_;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_MAPPING_H_
