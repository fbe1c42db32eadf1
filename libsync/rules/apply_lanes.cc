#include "libsync/rules/apply_lanes.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <set>

#include "libsync/base/value.h"

namespace eventstream {
namespace {

// The fieldnames of `def`'s and its child DocTypes' Link / Dynamic Link fields.
std::set<std::string> LinkFieldnames(const DocTypeRegistry& registry, const DocTypeDef& def) {
  std::set<std::string> out;
  for (const FieldDef& f : def.fields) {
    if (f.is_link() || f.is_dynamic_link()) out.insert(f.fieldname);
    if (!f.is_table()) continue;
    if (const DocTypeDef* child = registry.Find(f.options)) {
      for (const FieldDef& cf : child->fields) {
        if (cf.is_link() || cf.is_dynamic_link()) out.insert(cf.fieldname);
      }
    }
  }
  return out;
}

// Adds the string values of `links` fields of every object in `v` to `keys`.
void CollectLinks(const Value& v, const std::set<std::string>& links,
                  std::vector<std::string>* keys) {
  if (v.is_array()) {
    for (const Value& item : v.as_array()) CollectLinks(item, links, keys);
    return;
  }
  if (!v.is_object()) return;
  for (const auto& [field, value] : v.as_object()) {
    if (value.is_string()) {
      if (!value.as_string().empty() && links.count(field) > 0) keys->push_back(value.as_string());
      continue;
    }
    CollectLinks(value, links, keys);
  }
}

// Union-find over entry indices.
size_t Root(std::vector<size_t>& parent, size_t i) {
  while (parent[i] != i) i = parent[i] = parent[parent[i]];
  return i;
}

}  // namespace

std::vector<std::string> LaneKeys(const DocTypeRegistry& registry, const DocTypeDef* def,
                                  const std::vector<std::string>& names,
                                  absl::string_view data_json, bool serial) {
  // Its names always count: a serial entry may be linked by another one.
  std::vector<std::string> keys = names;
  if (def == nullptr || serial) keys.push_back(kSerialLaneKey);
  if (def == nullptr) return keys;
  const std::set<std::string> links = LinkFieldnames(registry, *def);
  if (links.empty() || data_json.empty()) return keys;
  auto json = Value::ParseJson(std::string_view(data_json.data(), data_json.size()));
  if (!json.ok()) {
    keys.push_back(kSerialLaneKey);  // cannot tell what it links: be safe
    return keys;
  }
  CollectLinks(*json, links, &keys);
  return keys;
}

std::vector<std::vector<size_t>> PlanLanes(const std::vector<std::vector<std::string>>& keys,
                                           int workers) {
  const size_t n = keys.size();
  std::vector<size_t> parent(n);
  std::iota(parent.begin(), parent.end(), 0);
  std::map<std::string, size_t> owner;  // key -> first entry that had it
  for (size_t i = 0; i < n; ++i) {
    for (const std::string& k : keys[i]) {
      auto [it, fresh] = owner.emplace(k, i);
      if (!fresh) parent[Root(parent, i)] = Root(parent, it->second);
    }
  }
  // Groups in order of their first entry, then largest first (stable).
  std::map<size_t, std::vector<size_t>> by_root;
  std::vector<size_t> order;
  for (size_t i = 0; i < n; ++i) {
    auto [it, fresh] = by_root.try_emplace(Root(parent, i));
    if (fresh) order.push_back(it->first);
    it->second.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return by_root[a].size() > by_root[b].size();
  });
  std::vector<std::vector<size_t>> lanes(static_cast<size_t>(std::max(1, workers)));
  for (size_t root : order) {
    auto least = std::min_element(lanes.begin(), lanes.end(), [](const auto& a, const auto& b) {
      return a.size() < b.size();
    });
    least->insert(least->end(), by_root[root].begin(), by_root[root].end());
  }
  std::vector<std::vector<size_t>> out;
  for (auto& lane : lanes) {
    if (lane.empty()) continue;
    std::sort(lane.begin(), lane.end());
    out.push_back(std::move(lane));
  }
  return out;
}

}  // namespace eventstream
