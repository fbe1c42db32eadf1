#include "libsync/model/link_graph.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "libsync/base/status_macros.h"

namespace eventstream {
namespace {

// The DocType a link field of `row` points at, or nullptr when it is not an
// edge of the graph.
const DocTypeDef* TargetOf(const DocTypeRegistry& registry, const FieldDef& f, const Value& row) {
  std::string doctype;
  if (f.is_link()) {
    doctype = f.options;
  } else if (f.is_dynamic_link()) {
    const Value* dt = row.Find(f.options);
    if (dt == nullptr || !dt->is_string()) return nullptr;
    doctype = dt->as_string();
  } else {
    return nullptr;
  }
  const DocTypeDef* def = registry.Find(doctype);
  return def != nullptr && !def->istable ? def : nullptr;
}

void AddLinksOfRow(const DocTypeRegistry& registry, const DocTypeDef& def, const Value& row,
                   std::set<DocRef>* seen, std::vector<DocRef>* out) {
  if (!row.is_object()) return;
  for (const FieldDef& f : def.fields) {
    const Value* v = row.Find(f.fieldname);
    if (v == nullptr || !v->is_string() || v->as_string().empty()) continue;
    const DocTypeDef* target = TargetOf(registry, f, row);
    if (target == nullptr) continue;
    DocRef ref{target->name, v->as_string()};
    if (seen->insert(ref).second) out->push_back(std::move(ref));
  }
}

}  // namespace

std::vector<DocRef> ForwardLinks(const DocTypeRegistry& registry, const DocTypeDef& def,
                                 const Value& doc) {
  std::set<DocRef> seen;
  std::vector<DocRef> out;
  AddLinksOfRow(registry, def, doc, &seen, &out);
  for (const FieldDef& f : def.fields) {
    if (!f.is_table()) continue;
    const DocTypeDef* child = registry.Find(f.options);
    const Value* rows = doc.is_object() ? doc.Find(f.fieldname) : nullptr;
    if (child == nullptr || rows == nullptr || !rows->is_array()) continue;
    for (const Value& row : rows->as_array()) AddLinksOfRow(registry, *child, row, &seen, &out);
  }
  return out;
}

std::vector<LinkField> FieldsLinkingTo(const DocTypeRegistry& registry,
                                       const std::string& target) {
  std::vector<LinkField> out;
  for (const DocTypeDef& holder : registry.all()) {
    for (const FieldDef& f : holder.fields) {
      if (f.is_link() && f.options == target) out.push_back({&holder, &f, false});
      if (f.is_dynamic_link()) out.push_back({&holder, &f, true});
    }
  }
  return out;
}

absl::StatusOr<Reachability> ReachableFromGrantor(const DocRef& target, const ReverseWalk& walk,
                                                  int budget) {
  Reachability out;
  auto judge = [&](const DocRef& ref) -> absl::StatusOr<Standing> {
    ++out.examined;
    return walk.standing(ref);
  };
  ASSIGN_OR_RETURN(Standing first, judge(target));
  if (first == Standing::kGrantor) {
    out.readable = true;
    return out;
  }
  if (first != Standing::kPassage) return out;
  std::set<DocRef> visited = {target};
  std::map<std::string, std::vector<std::string>> frontier;  // doctype -> names
  frontier[target.doctype].push_back(target.name);
  while (!frontier.empty()) {
    std::map<std::string, std::vector<std::string>> next;
    for (const auto& [doctype, names] : frontier) {
      if (out.examined >= budget) {
        out.out_of_budget = true;
        return out;
      }
      ASSIGN_OR_RETURN(auto linkers, walk.linkers(doctype, names, budget - out.examined));
      for (const DocRef& ref : linkers) {
        if (!visited.insert(ref).second) continue;
        if (out.examined >= budget) {
          out.out_of_budget = true;
          return out;
        }
        ASSIGN_OR_RETURN(Standing standing, judge(ref));
        if (standing == Standing::kGrantor) {
          out.readable = true;
          return out;
        }
        if (standing == Standing::kPassage) next[ref.doctype].push_back(ref.name);
      }
    }
    frontier = std::move(next);
  }
  return out;
}

namespace {

using Frontier = std::map<std::string, std::vector<std::string>>;  // doctype -> names

// The backward half of ReachableFromGrantors: what links to what, and the
// grantors met.
struct BackwardMap {
  std::map<DocRef, std::vector<DocRef>> links_to;  // linker -> documents it links to
  std::vector<DocRef> grantors;
};

// Judges the documents first met on this level and returns the passage
// ones as the next frontier.
absl::StatusOr<Frontier> JudgeLevel(const Frontier& met, const BatchReverseWalk& walk,
                                    int budget, BatchReachability* out, BackwardMap* map) {
  Frontier next;
  for (const auto& [doctype, all] : met) {
    std::vector<std::string> names = all;
    if (out->examined + static_cast<int>(names.size()) > budget) {
      names.resize(std::max(0, budget - out->examined));
      out->out_of_budget = true;
    }
    if (names.empty()) continue;
    out->examined += static_cast<int>(names.size());
    ASSIGN_OR_RETURN(auto standings, walk.standings(doctype, names));
    for (const auto& [name, standing] : standings) {
      if (standing == Standing::kGrantor) map->grantors.push_back({doctype, name});
      if (standing == Standing::kPassage) next[doctype].push_back(name);
    }
  }
  return next;
}

}  // namespace

absl::StatusOr<BatchReachability> ReachableFromGrantors(const std::vector<DocRef>& targets,
                                                        const BatchReverseWalk& walk,
                                                        int budget) {
  BatchReachability out;
  BackwardMap map;
  std::set<DocRef> visited(targets.begin(), targets.end());
  Frontier frontier;
  for (const DocRef& t : targets) frontier[t.doctype].push_back(t.name);
  while (!frontier.empty() && !out.out_of_budget) {
    Frontier met;
    for (const auto& [doctype, names] : frontier) {
      ASSIGN_OR_RETURN(std::vector<LinkEdge> edges,
                       walk.linkers(doctype, names, std::max(1, budget - out.examined)));
      for (LinkEdge& edge : edges) {
        map.links_to[edge.from].push_back({doctype, edge.to});
        if (visited.insert(edge.from).second) met[edge.from.doctype].push_back(edge.from.name);
      }
    }
    ASSIGN_OR_RETURN(frontier, JudgeLevel(met, walk, budget, &out, &map));
  }
  // Forwards from the grantors; every document reached this way is a
  // target or a passage document (only those were walked from).
  std::set<DocRef> reached;
  std::vector<DocRef> queue = map.grantors;
  while (!queue.empty()) {
    DocRef at = std::move(queue.back());
    queue.pop_back();
    auto it = map.links_to.find(at);
    if (it == map.links_to.end()) continue;
    for (const DocRef& to : it->second) {
      if (reached.insert(to).second) queue.push_back(to);
    }
  }
  for (const DocRef& t : targets) {
    if (reached.count(t) > 0) out.readable.insert(t);
  }
  return out;
}

absl::StatusOr<Closure> LinkClosure(
    const DocTypeRegistry& registry, const DocTypeDef& def, const Value& root,
    const std::function<absl::StatusOr<std::optional<Value>>(const DocRef&)>& read,
    ClosureLimits limits) {
  Closure out;
  size_t bytes = 0;
  const Value* root_name = root.is_object() ? root.Find("name") : nullptr;
  std::set<DocRef> seen = {
      DocRef{def.name, root_name != nullptr && root_name->is_string() ? root_name->as_string() : ""}};
  // Reads what `doc` links to and has not been seen; false once a limit
  // stops the walk.
  auto follow = [&](const DocTypeDef& holder, const Value& doc) -> absl::StatusOr<bool> {
    for (DocRef& ref : ForwardLinks(registry, holder, doc)) {
      if (!seen.insert(ref).second) continue;
      if (static_cast<int>(out.documents.size()) >= limits.max_documents) {
        out.truncated = true;
        return false;
      }
      ASSIGN_OR_RETURN(std::optional<Value> found, read(ref));
      if (!found) continue;
      found->operator[]("doctype") = Value::String(ref.doctype);
      found->operator[]("name") = Value::String(ref.name);
      size_t size = found->ToJson().size();
      if (bytes + size > limits.max_bytes) {
        out.truncated = true;  // a smaller one may still fit
        continue;
      }
      bytes += size;
      out.documents.push_back(*std::move(found));
    }
    return true;
  };
  ASSIGN_OR_RETURN(bool go_on, follow(def, root));
  // Breadth first: the documents read so far, in order; copies, because
  // following one appends to the vector.
  for (size_t i = 0; go_on && i < out.documents.size(); ++i) {
    Value current = out.documents[i];
    const DocTypeDef* holder = registry.Find(current.Find("doctype")->as_string());
    if (holder == nullptr) continue;
    ASSIGN_OR_RETURN(go_on, follow(*holder, current));
  }
  return out;
}

}  // namespace eventstream
