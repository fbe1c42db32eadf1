// The link graph between a site's documents (docs/design.md "What a
// consumer may see"): a document links to another through a Link field, a
// Dynamic Link field (its DocType field names the target's DocType), or such
// a field of one of its child rows. Only parent DocTypes of the registry are
// nodes; links to child DocTypes or to DocTypes outside the registry are not
// edges.
//
// Pure: the walks take their I/O as callbacks, so the rules are tested
// without a database (tests/unit/link_graph_test.cc). Both walks visit each
// document once (cycles end) and stop at a budget.
#ifndef EVENTSTREAM_LIBSYNC_MODEL_LINK_GRAPH_H_
#define EVENTSTREAM_LIBSYNC_MODEL_LINK_GRAPH_H_

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "libsync/model/doctype.h"
#include "libsync/base/value.h"

namespace eventstream {

struct DocRef {
  std::string doctype;
  std::string name;
  friend bool operator<(const DocRef& a, const DocRef& b) {
    return std::tie(a.doctype, a.name) < std::tie(b.doctype, b.name);
  }
  friend bool operator==(const DocRef& a, const DocRef& b) {
    return a.doctype == b.doctype && a.name == b.name;
  }
};

// The documents `doc` (of parent DocType `def`) links to, in field order
// (parent fields first, then child rows in order), each once. Empty and
// non-string values are not links.
std::vector<DocRef> ForwardLinks(const DocTypeRegistry& registry, const DocTypeDef& def,
                                 const Value& doc);

// A field that can hold a link to a document of some DocType.
struct LinkField {
  const DocTypeDef* holder = nullptr;  // a parent or a child DocType
  const FieldDef* field = nullptr;
  bool dynamic = false;  // Dynamic Link: column field->options holds the DocType
};
// Every field of the registry that can link to a document of `target`:
// Link fields whose options name it and every Dynamic Link field.
std::vector<LinkField> FieldsLinkingTo(const DocTypeRegistry& registry,
                                       const std::string& target);

// How a document stands for the reader a walk is made for.
enum class Standing {
  kGrantor,  // the reader may see it as such (and all it links to)
  kPassage,  // readable only through a link; links through it count
  kBlocked,  // must not be read nor followed (a hard boundary)
  kMissing,  // no such document
};

struct ReverseWalk {
  // The parent documents holding a link to one of `names` (all of DocType
  // `doctype`), at most `limit` of them.
  std::function<absl::StatusOr<std::vector<DocRef>>(
      const std::string& doctype, const std::vector<std::string>& names, int limit)>
      linkers;
  std::function<absl::StatusOr<Standing>(const DocRef&)> standing;
};

struct Reachability {
  bool readable = false;
  int examined = 0;          // documents judged
  bool out_of_budget = false;  // stopped before the answer was certain
};

// Whether `target` is a grantor or reachable from one along links that
// pass no blocked document: walks links backwards, level by level, until a
// grantor is met, the graph is exhausted, or `budget` documents were judged
// (then readable = false, out_of_budget = true).
absl::StatusOr<Reachability> ReachableFromGrantor(const DocRef& target, const ReverseWalk& walk,
                                                  int budget);

// A link found walking backwards: document `from` links to the document
// named `to` (of the DocType the walk asked about).
struct LinkEdge {
  DocRef from;
  std::string to;
};
// The batched form of ReverseWalk: each call covers a whole level of one
// DocType, so a walk costs queries per level, not per document.
struct BatchReverseWalk {
  // The links to any of `names` (of `doctype`), at most `limit` per field.
  std::function<absl::StatusOr<std::vector<LinkEdge>>(
      const std::string& doctype, const std::vector<std::string>& names, int limit)>
      linkers;
  // The standing of each of `names` (of `doctype`); a name left out is
  // missing.
  std::function<absl::StatusOr<std::map<std::string, Standing>>(
      const std::string& doctype, const std::vector<std::string>& names)>
      standings;
};
struct BatchReachability {
  std::set<DocRef> readable;  // the targets a grantor reaches
  int examined = 0;           // documents judged
  bool out_of_budget = false;
};
// ReachableFromGrantor for many `targets` at once (all of them passage
// documents): one backward walk from all of them, recording the links it
// meets, then forwards from the grantors found along those links through
// passage documents only. Past `budget` judged documents the walk stops and
// what it has not proven reachable counts as not readable.
absl::StatusOr<BatchReachability> ReachableFromGrantors(const std::vector<DocRef>& targets,
                                                        const BatchReverseWalk& walk,
                                                        int budget);

struct ClosureLimits {
  int max_documents = 1000;
  size_t max_bytes = 2 << 20;  // of the documents' JSON text
};
struct Closure {
  std::vector<Value> documents;  // breadth first from the root, root excluded
  bool truncated = false;        // a limit cut it short
};
// The documents reachable from `root` (of parent DocType `def`) through
// links, at any depth. `read` gives a document or nullopt when it is
// missing or must not be read; such documents are left out and not
// followed.
absl::StatusOr<Closure> LinkClosure(
    const DocTypeRegistry& registry, const DocTypeDef& def, const Value& root,
    const std::function<absl::StatusOr<std::optional<Value>>(const DocRef&)>& read,
    ClosureLimits limits);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_MODEL_LINK_GRAPH_H_
