#include "libsync/model/doctype.h"

#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace eventstream {
namespace {

// PostgreSQL truncates identifiers longer than this (NAMEDATALEN - 1); a
// truncated table or column name would silently point somewhere else.
constexpr size_t kMaxIdentifierBytes = 63;

bool IsIdentifier(std::string_view s) {
  if (s.empty() || s.size() > kMaxIdentifierBytes) return false;
  if (!absl::ascii_isalpha(s[0]) && s[0] != '_') return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(c) && c != '_') return false;
  }
  return true;
}

// Frappe's rule for DocType names: a letter first, then letters, digits,
// spaces, underscores and hyphens.
bool IsValidDocTypeName(std::string_view s) {
  if (s.empty() || !absl::ascii_isalpha(s[0])) return false;
  if (s.back() == ' ') return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(c) && c != ' ' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

std::string Quote(std::string_view s) {
  return absl::StrCat("\"", absl::string_view(s.data(), s.size()), "\"");
}

// (Debian's Abseil has its own string_view, which StrJoin cannot take.)
std::string JoinFieldtypes() {
  std::string out;
  for (std::string_view t : KnownFieldtypes()) {
    if (!out.empty()) out += ", ";
    out += t;
  }
  return out;
}

}  // namespace

const std::vector<std::string_view>& KnownFieldtypes() {
  // Frappe's data fieldtypes (those that own a column). Table MultiSelect is
  // left out on purpose: its rows are not replicated like a Table's yet.
  static const auto* const kTypes = new std::vector<std::string_view>{
      "Data",        "Small Text",   "Text",
      "Long Text",   "Text Editor",  "Markdown Editor",
      "HTML Editor", "Code",         "Int",
      "Float",       "Currency",     "Percent",
      "Check",       "Date",         "Datetime",
      "Time",        "Duration",     "Select",
      "Link",        "Dynamic Link", "Table",
      "JSON",        "Password",     "Read Only",
      "Attach",      "Attach Image", "Color",
      "Phone",       "Rating",       "Signature",
      "Barcode",     "Geolocation",  "Autocomplete",
      "Icon",
  };
  return *kTypes;
}

bool IsKnownFieldtype(std::string_view fieldtype) {
  for (std::string_view t : KnownFieldtypes()) {
    if (t == fieldtype) return true;
  }
  return false;
}

std::string AutonameProblem(std::string_view autoname) {
  if (autoname == "hash" || autoname == "uuid") return "";
  std::string_view rest = autoname;
  if (rest.substr(0, 6) == "field:") {
    return IsIdentifier(rest.substr(6))
               ? ""
               : "expected field:<fieldname> with a valid fieldname";
  }
  if (rest.substr(0, 7) == "series:") {
    // Same rule as NamingPolicy::Parse, so that a registry that loads can
    // always name its documents: a trailing run of '#' is the counter; the
    // text before it (minus one separating '.') is the prefix.
    std::string_view pattern = rest.substr(7);
    size_t end = pattern.size();
    while (end > 0 && pattern[end - 1] == '#') --end;
    size_t digits = pattern.size() - end;
    std::string_view prefix = pattern.substr(0, end);
    if (!prefix.empty() && prefix.back() == '.') prefix.remove_suffix(1);
    if (digits == 0 || digits > 18 || prefix.empty() ||
        prefix.find('#') != std::string_view::npos) {
      return "expected series:PREFIX.##### (a prefix, then 1 to 18 '#', "
             "e.g. series:NOTE-.#####)";
    }
    return "";
  }
  return "expected one of hash, uuid, field:<fieldname>, "
         "series:PREFIX-.#####";
}

const FieldDef* DocTypeDef::FindField(std::string_view fieldname) const {
  for (const FieldDef& f : fields) {
    if (f.fieldname == fieldname) return &f;
  }
  return nullptr;
}

bool IsStandardColumn(std::string_view column, bool istable) {
  static const std::set<std::string_view>* const kAll =
      new std::set<std::string_view>{"name",        "creation", "modified",
                                     "modified_by", "owner",    "docstatus",
                                     "idx"};
  static const std::set<std::string_view>* const kChild =
      new std::set<std::string_view>{"parent", "parenttype", "parentfield"};
  return kAll->count(column) > 0 || (istable && kChild->count(column) > 0);
}

bool IsBookkeepingColumn(std::string_view column) {
  return column == "modified" || column == "modified_by" ||
         column == "creation" || column == "owner";
}

bool IsReplicatedColumn(const DocTypeDef* def, std::string_view column) {
  if (def == nullptr) return IsStandardColumn(column, true);
  if (IsStandardColumn(column, def->istable)) return true;
  const FieldDef* field = def->FindField(column);
  return field != nullptr && !field->is_table();
}

std::vector<std::string> ReplicatedColumns(const DocTypeDef& def) {
  std::vector<std::string> out = {"name",  "creation",  "modified", "modified_by",
                                  "owner", "docstatus", "idx"};
  if (def.istable) out.insert(out.end(), {"parent", "parenttype", "parentfield"});
  for (const FieldDef& f : def.fields) {
    if (!f.is_table()) out.push_back(f.fieldname);
  }
  return out;
}

void KeepReplicatedColumns(const DocTypeDef* def, Value* row) {
  if (row == nullptr || !row->is_object()) return;
  Value::Object& columns = row->mutable_object();
  for (auto it = columns.begin(); it != columns.end();) {
    it = IsReplicatedColumn(def, it->first) ? std::next(it) : columns.erase(it);
  }
}

namespace {

// What is wrong with one DocType (or one of its fields): the key and the
// message DocTypeRegistry::Create reports through DocTypeProblem.
struct Issue {
  std::string key;
  std::string message;
};

using DocTypeIndex = std::map<std::string, size_t, std::less<>>;

// A Table field's options name a child DocType of the registry, and only a
// parent DocType has Table fields. `index` maps names to `defs` positions.
std::optional<Issue> TableFieldIssue(const DocTypeDef& def,
                                     const FieldDef& field,
                                     const std::vector<DocTypeDef>& defs,
                                     const DocTypeIndex& index) {
  if (def.istable) {
    return Issue{"fieldtype",
                 "a child DocType (istable) cannot have Table fields"};
  }
  if (field.options.empty()) {
    return Issue{"options", "required: the child DocType"};
  }
  auto child_it = index.find(field.options);
  const DocTypeDef* child =
      child_it == index.end() ? nullptr : &defs[child_it->second];
  if (child == nullptr) {
    return Issue{"options",
                 absl::StrCat("unknown DocType ", Quote(field.options),
                              " (a Table field's options must name a "
                              "child DocType of the registry)")};
  }
  if (!child->istable) {
    return Issue{"options",
                 absl::StrCat("DocType ", Quote(field.options),
                              " is not a child DocType (set istable: "
                              "true on it)")};
  }
  return std::nullopt;
}

// One field of `def`: its name (unique within `*seen`), type and options.
std::optional<Issue> FieldIssue(const DocTypeDef& def, const FieldDef& field,
                                const std::vector<DocTypeDef>& defs,
                                const DocTypeIndex& index,
                                std::set<std::string_view>* seen) {
  if (field.fieldname.empty()) return Issue{"fieldname", "required"};
  if (!IsIdentifier(field.fieldname)) {
    return Issue{"fieldname",
                 "expected an identifier (letters, digits, '_', not "
                 "starting with a digit, at most 63 bytes)"};
  }
  if (IsStandardColumn(field.fieldname, def.istable) ||
      field.fieldname == "doctype") {
    return Issue{"fieldname",
                 absl::StrCat(Quote(field.fieldname),
                              " is a standard column; it exists on every "
                              "table and must not be listed")};
  }
  if (!seen->insert(field.fieldname).second) {
    return Issue{"fieldname",
                 absl::StrCat("duplicate fieldname ", Quote(field.fieldname))};
  }
  if (field.fieldtype.empty()) return Issue{"fieldtype", "required"};
  if (!IsKnownFieldtype(field.fieldtype)) {
    return Issue{"fieldtype",
                 absl::StrCat("unknown fieldtype ", Quote(field.fieldtype),
                              " (expected one of: ", JoinFieldtypes(), ")")};
  }
  if (field.is_link() && field.options.empty()) {
    return Issue{"options", "required: the DocType this Link targets"};
  }
  if (field.is_table()) return TableFieldIssue(def, field, defs, index);
  return std::nullopt;
}

// A Dynamic Link's options name the field of `def` holding the target
// DocType; it may be declared after the link, so this runs once all
// fieldnames are known.
std::optional<Issue> DynamicLinkIssue(const DocTypeDef& def,
                                      const FieldDef& field) {
  if (field.options.empty()) {
    return Issue{"options", "required: the field holding the target DocType"};
  }
  const FieldDef* target = def.FindField(field.options);
  if (target == nullptr || target->is_table()) {
    return Issue{"options",
                 absl::StrCat(Quote(field.options), " is not a field of ",
                              Quote(def.name),
                              " (a Dynamic Link's options name the field "
                              "that holds the target DocType)")};
  }
  return std::nullopt;
}

// `def.autoname` is a known rule, and field:<f> names a field of `def`.
std::optional<Issue> AutonameIssue(const DocTypeDef& def) {
  std::string autoname_problem = AutonameProblem(def.autoname);
  if (!autoname_problem.empty()) return Issue{"autoname", autoname_problem};
  if (def.autoname.substr(0, 6) == "field:") {
    std::string_view fieldname = std::string_view(def.autoname).substr(6);
    const FieldDef* named_by = def.FindField(fieldname);
    if (named_by == nullptr || named_by->is_table()) {
      return Issue{"autoname", absl::StrCat(Quote(fieldname),
                                            " is not a field of ",
                                            Quote(def.name))};
    }
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<DocTypeRegistry> DocTypeRegistry::Create(
    std::vector<DocTypeDef> defs, DocTypeProblem* problem) {
  // Every check funnels through `fail`, which both fills `problem` (for the
  // config loader's key paths) and builds a self-contained message.
  auto fail = [&](size_t d, std::optional<size_t> f, std::string key,
                  std::string message) {
    std::string where = absl::StrCat("DocType ", Quote(defs[d].name));
    if (f.has_value()) {
      absl::StrAppend(&where, ": field ", Quote(defs[d].fields[*f].fieldname));
    }
    absl::Status status = absl::InvalidArgumentError(
        absl::StrCat(where, ": ", key, ": ", message));
    if (problem != nullptr) {
      *problem = DocTypeProblem{d, f, std::move(key), std::move(message)};
    }
    return status;
  };

  DocTypeRegistry reg;
  std::map<std::string, size_t, std::less<>> tables;
  // Pass 1: names and tables, so that pass 2 can resolve Table options.
  for (size_t d = 0; d < defs.size(); ++d) {
    DocTypeDef& def = defs[d];
    if (def.name.empty()) return fail(d, std::nullopt, "name", "required");
    if (!IsValidDocTypeName(def.name)) {
      return fail(d, std::nullopt, "name",
                  "expected a DocType name: a letter, then letters, digits, "
                  "spaces, '_' or '-'");
    }
    if (!reg.index_.emplace(def.name, d).second) {
      return fail(d, std::nullopt, "name",
                  absl::StrCat("duplicate DocType ", Quote(def.name)));
    }
    if (def.table.empty()) def.table = "tab" + def.name;
    if (def.table.size() > kMaxIdentifierBytes) {
      return fail(d, std::nullopt, "table",
                  absl::StrCat("table name ", Quote(def.table),
                               " is longer "
                               "than PostgreSQL's 63 bytes; shorten the name "
                               "or set table:"));
    }
    auto [it, inserted] = tables.emplace(def.table, d);
    if (!inserted) {
      return fail(d, std::nullopt, "table",
                  absl::StrCat("table ", Quote(def.table),
                               " is already used by DocType ",
                               Quote(defs[it->second].name)));
    }
  }

  // Pass 2: fields and autoname. reg.defs_ is only filled at the end, so
  // Table options are looked up in `defs`.
  for (size_t d = 0; d < defs.size(); ++d) {
    const DocTypeDef& def = defs[d];
    std::set<std::string_view> seen;
    for (size_t f = 0; f < def.fields.size(); ++f) {
      const FieldDef& field = def.fields[f];
      if (auto issue = FieldIssue(def, field, defs, reg.index_, &seen)) {
        return fail(d, f, std::move(issue->key), std::move(issue->message));
      }
    }
    for (size_t f = 0; f < def.fields.size(); ++f) {
      if (!def.fields[f].is_dynamic_link()) continue;
      if (auto issue = DynamicLinkIssue(def, def.fields[f])) {
        return fail(d, f, std::move(issue->key), std::move(issue->message));
      }
    }
    if (auto issue = AutonameIssue(def)) {
      return fail(d, std::nullopt, std::move(issue->key),
                  std::move(issue->message));
    }
  }

  reg.defs_ = std::move(defs);
  return reg;
}

const DocTypeDef* DocTypeRegistry::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &defs_[it->second];
}

absl::StatusOr<const DocTypeDef*> DocTypeRegistry::Get(
    std::string_view name) const {
  const DocTypeDef* def = Find(name);
  if (def == nullptr) {
    return absl::NotFoundError(absl::StrCat("unknown DocType ", Quote(name)));
  }
  return def;
}

}  // namespace eventstream
