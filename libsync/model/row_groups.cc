#include "libsync/model/row_groups.h"

#include <map>
#include <numeric>
#include <tuple>

namespace eventstream {
namespace {

// Union-find over row indexes.
class Groups {
 public:
  explicit Groups(size_t n) : parent_(n) { std::iota(parent_.begin(), parent_.end(), 0); }
  size_t Find(size_t i) {
    while (parent_[i] != i) i = parent_[i] = parent_[parent_[i]];
    return i;
  }
  // The smaller index becomes the root, so a group's root is its first row.
  void Join(size_t a, size_t b) {
    a = Find(a);
    b = Find(b);
    if (a == b) return;
    if (b < a) std::swap(a, b);
    parent_[b] = a;
  }

 private:
  std::vector<size_t> parent_;
};

// A key space per kind, so a child row's own name never meets a document's.
using Key = std::tuple<char, std::string, std::string>;

}  // namespace

std::vector<std::vector<size_t>> GroupRowsByDocument(const std::vector<RowKeys>& rows) {
  Groups groups(rows.size());
  std::map<Key, size_t> first_with_key;
  auto claim = [&](size_t row, Key key) {
    auto [it, inserted] = first_with_key.emplace(std::move(key), row);
    if (!inserted) groups.Join(it->second, row);
  };
  for (size_t i = 0; i < rows.size(); ++i) {
    const RowKeys& r = rows[i];
    const char own = r.child ? 'c' : 'd';  // a child row itself / a document
    if (r.old_name) claim(i, Key{own, r.doctype, *r.old_name});
    if (r.new_name) claim(i, Key{own, r.doctype, *r.new_name});
    if (!r.child) continue;
    if (r.old_parent) claim(i, Key{'d', r.old_parent->first, r.old_parent->second});
    if (r.new_parent) claim(i, Key{'d', r.new_parent->first, r.new_parent->second});
  }
  std::map<size_t, size_t> slot_of_root;
  std::vector<std::vector<size_t>> out;
  for (size_t i = 0; i < rows.size(); ++i) {
    auto [it, inserted] = slot_of_root.emplace(groups.Find(i), out.size());
    if (inserted) out.emplace_back();
    out[it->second].push_back(i);
  }
  return out;
}

}  // namespace eventstream
