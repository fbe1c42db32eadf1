#include "libsync/model/mapping.h"

#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "libsync/base/status_macros.h"
#include "libsync/model/document.h"
#include "libsync/config/expr.h"

namespace eventstream {
namespace {

constexpr char kChildTable[] = "Child Table";
constexpr char kDocument[] = "Document";
constexpr char kDocPrefix[] = "doc.";
constexpr char kEvalPrefix[] = "eval:";
// Document rules map a fetched document that may itself have Document
// rules; a chain this long is a loop in the data or the mappings.
constexpr int kMaxDocumentDepth = 16;

std::string Where(const DocTypeMapping& m, size_t i) {
  return absl::StrCat("mapping \"", m.name, "\" field_mapping[", i, "] (",
                      m.field_mapping[i].remote_fieldname, ")");
}

// `f` is one of m.field_mapping: named by its index, as at load time.
std::string Where(const DocTypeMapping& m, const FieldMapping& f) {
  return Where(m, static_cast<size_t>(&f - m.field_mapping.data()));
}

// Columns that keep their name and value without a rule (see mapping.h).
bool PassesThrough(const std::string& key) {
  return key == "name" || key == "docstatus" || key == "idx";
}

absl::StatusOr<std::vector<RemoteValueFilter>> CheckFilters(
    const DocTypeMapping& m, size_t i) {
  const Value& filters = m.field_mapping[i].remote_value_filters;
  if (!filters.is_object() || filters.as_object().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        Where(m, i),
        ": remote_value_filters must be a non-empty object {field: value} "
        "selecting the remote document, e.g. {\"name\": \"doc.",
        m.field_mapping[i].remote_fieldname, "\"}"));
  }
  absl::StatusOr<std::vector<RemoteValueFilter>> parsed =
      ParseRemoteValueFilters(filters);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(m, i), ": ", parsed.status().message()));
  }
  return parsed;
}

std::string Quoted(absl::string_view text) {
  return Value::String(std::string(text)).ToJson();
}

}  // namespace

absl::StatusOr<RemoteValueFilter> RemoteValueFilter::Parse(std::string key,
                                                           const Value& value) {
  RemoteValueFilter f;
  f.key = std::move(key);
  f.value = value;
  auto error = [&f](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("remote_value_filters.", f.key, ": ", what));
  };
  if (value.is_array() || value.is_object()) {
    return error(
        absl::StrCat("expected a value, a field name, \"doc.<field>\" or "
                     "\"eval:<expression>\", got ",
                     value.ToJson()));
  }
  if (!value.is_string()) return f;  // kLiteral
  const std::string& text = value.as_string();
  if (absl::StartsWith(text, kEvalPrefix)) {
    const std::string expression = text.substr(sizeof(kEvalPrefix) - 1);
    absl::StatusOr<Condition> parsed = Condition::Parse(expression);
    if (!parsed.ok()) {
      return error(
          absl::StrCat("the expression after \"eval:\" (", expression,
                       ") does not parse: ", parsed.status().message()));
    }
    f.kind = Kind::kEval;
    f.expression = *std::move(parsed);
  } else if (absl::StartsWith(text, kDocPrefix)) {
    f.field = text.substr(sizeof(kDocPrefix) - 1);
    if (f.field.empty()) {
      return error("\"doc.\" must be followed by a field name");
    }
    f.kind = Kind::kField;
  } else {
    f.kind = Kind::kFieldOrLiteral;
    f.field = text;
  }
  return f;
}

absl::StatusOr<std::vector<RemoteValueFilter>> ParseRemoteValueFilters(
    const Value& filters) {
  if (!filters.is_object() || filters.as_object().empty()) {
    return absl::InvalidArgumentError(
        "remote_value_filters must be a non-empty object {field: value}");
  }
  std::vector<RemoteValueFilter> out;
  for (const auto& [key, value] : filters.as_object()) {
    ASSIGN_OR_RETURN(RemoteValueFilter f, RemoteValueFilter::Parse(key, value));
    out.push_back(std::move(f));
  }
  return out;
}

absl::StatusOr<ResolvedFilters> ResolveRemoteValueFilters(
    const std::vector<RemoteValueFilter>& filters, const Value& doc,
    absl::string_view doc_kind) {
  ResolvedFilters out;
  out.filters = Value::EmptyObject();
  for (const RemoteValueFilter& f : filters) {
    auto fail = [&f](absl::string_view what) {
      return absl::FailedPreconditionError(
          absl::StrCat("remote_value_filters.", f.key, ": ", what));
    };
    const Value* field = nullptr;
    if (!f.field.empty() && doc.is_object()) field = doc.Find(f.field);
    switch (f.kind) {
      case RemoteValueFilter::Kind::kLiteral:
        out.filters[f.key] = f.value;
        break;
      case RemoteValueFilter::Kind::kFieldOrLiteral:
        if (IsEmptyFieldValue(field)) {
          out.filters[f.key] = f.value;
          out.literal_fallbacks.push_back(f.key);
          break;
        }
        [[fallthrough]];
      case RemoteValueFilter::Kind::kField:
        if (IsEmptyFieldValue(field)) {
          return fail(absl::StrCat("takes doc.", f.field, ", which the remote ",
                                   doc_kind,
                                   " does not set (it is missing, null or "
                                   "\"\")"));
        }
        if (field->is_array() || field->is_object()) {
          return fail(absl::StrCat("takes field \"", f.field,
                                   "\" of the remote ", doc_kind,
                                   ", which holds a table or object, not a "
                                   "value"));
        }
        out.filters[f.key] = *field;
        break;
      case RemoteValueFilter::Kind::kEval: {
        const std::string& text = f.value.as_string();
        absl::StatusOr<Value> v = f.expression->EvaluateValue(doc);
        if (!v.ok()) {
          return fail(absl::StrCat(Quoted(text), " failed on the remote ",
                                   doc_kind, ": ", v.status().message()));
        }
        if (v->is_array() || v->is_object()) {
          return fail(absl::StrCat(Quoted(text), " gives ", v->ToJson(),
                                   " for the remote ", doc_kind,
                                   "; a filter needs a single value"));
        }
        if (IsEmptyFieldValue(&*v)) {
          return fail(absl::StrCat(Quoted(text), " gives ",
                                   v->is_null() ? "None" : "\"\"",
                                   " for the remote ", doc_kind,
                                   "; a filter needs a non-empty value"));
        }
        out.filters[f.key] = *std::move(v);
        break;
      }
    }
  }
  return out;
}

namespace {

using MappingIndex = std::map<std::string, size_t, std::less<>>;

// Rule i of mapping `m`: both field names, a local field written once (per
// `*locals`), a known mapping_type with an existing inner mapping, no
// default_value on a Child Table rule. remote_value_filters are CheckFilters'.
absl::Status CheckRule(const DocTypeMapping& m, size_t i,
                       const MappingIndex& index, std::set<std::string>* locals) {
  const FieldMapping& f = m.field_mapping[i];
  if (f.remote_fieldname.empty() || f.local_fieldname.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mapping \"", m.name, "\" field_mapping[", i, "]: ",
        f.remote_fieldname.empty() ? "remote_fieldname" : "local_fieldname",
        " is required"));
  }
  if (!locals->insert(f.local_fieldname).second) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(m, i), ": local field \"", f.local_fieldname,
                     "\" is already written by another rule"));
  }
  bool inner = f.mapping_type == kChildTable || f.mapping_type == kDocument;
  if (!inner && !f.mapping_type.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        Where(m, i), ": mapping_type \"", f.mapping_type,
        "\" is not one of \"\", \"Child Table\", \"Document\""));
  }
  if (!inner && !f.mapping.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        Where(m, i), ": mapping \"", f.mapping,
        "\" needs mapping_type \"Child Table\" or \"Document\""));
  }
  if (inner && f.mapping.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(m, i), ": mapping_type \"", f.mapping_type,
                     "\" needs `mapping` naming the inner mapping"));
  }
  if (inner && index.find(f.mapping) == index.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        Where(m, i), ": inner mapping \"", f.mapping, "\" does not exist"));
  }
  if (f.mapping_type == kChildTable && !f.default_value.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        Where(m, i), ": a Child Table rule cannot have a default_value"));
  }
  return absl::OkStatus();
}

// Child Table rules must not form a cycle (mapping a row would never end).
// Depth-first search; `path` is the current chain for the message. Every
// inner mapping exists (CheckRule ran first).
absl::Status CheckChildTableCycles(const std::vector<DocTypeMapping>& mappings,
                                   const MappingIndex& index) {
  enum Color { kWhite, kGrey, kBlack };
  std::vector<Color> color(mappings.size(), kWhite);
  std::vector<std::string> path;
  absl::Status cycle;
  std::function<bool(size_t)> visit = [&](size_t at) {
    color[at] = kGrey;
    const DocTypeMapping& m = mappings[at];
    path.push_back(m.name);
    for (size_t i = 0; i < m.field_mapping.size(); ++i) {
      const FieldMapping& f = m.field_mapping[i];
      if (f.mapping_type != kChildTable) continue;
      size_t next = index.find(f.mapping)->second;
      if (color[next] == kGrey) {
        path.push_back(f.mapping);
        cycle = absl::InvalidArgumentError(
            absl::StrCat(Where(m, i), ": Child Table mappings form a cycle: ",
                         absl::StrJoin(path, " -> ")));
        return false;
      }
      if (color[next] == kWhite && !visit(next)) return false;
    }
    path.pop_back();
    color[at] = kBlack;
    return true;
  };
  for (size_t i = 0; i < mappings.size(); ++i) {
    if (color[i] == kWhite && !visit(i)) return cycle;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<MappingSet> MappingSet::Create(
    std::vector<DocTypeMapping> mappings) {
  MappingSet set;
  for (size_t i = 0; i < mappings.size(); ++i) {
    const DocTypeMapping& m = mappings[i];
    if (m.name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("mappings[", i, "]: name is required"));
    }
    if (!set.index_.emplace(m.name, i).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("mapping \"", m.name, "\" is defined twice"));
    }
    if (m.local_doctype.empty() || m.remote_doctype.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mapping \"", m.name,
          "\": ", m.local_doctype.empty() ? "local_doctype" : "remote_doctype",
          " is required"));
    }
  }
  set.mappings_ = std::move(mappings);
  set.filters_.resize(set.mappings_.size());

  for (size_t at = 0; at < set.mappings_.size(); ++at) {
    const DocTypeMapping& m = set.mappings_[at];
    set.filters_[at].resize(m.field_mapping.size());
    std::set<std::string> locals;
    for (size_t i = 0; i < m.field_mapping.size(); ++i) {
      RETURN_IF_ERROR(CheckRule(m, i, set.index_, &locals));
      if (m.field_mapping[i].mapping_type == kDocument) {
        ASSIGN_OR_RETURN(set.filters_[at][i], CheckFilters(m, i));
      }
    }
  }
  RETURN_IF_ERROR(CheckChildTableCycles(set.mappings_, set.index_));
  return set;
}

const DocTypeMapping* MappingSet::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &mappings_[it->second];
}

const std::vector<RemoteValueFilter>& MappingSet::FiltersOf(
    const DocTypeMapping& mapping, size_t rule) const {
  static const std::vector<RemoteValueFilter> kNone;
  auto it = index_.find(mapping.name);
  if (it == index_.end() || rule >= filters_[it->second].size()) return kNone;
  return filters_[it->second][rule];
}

namespace {

// One translation run over a validated MappingSet.
class Mapper {
 public:
  Mapper(const MappingSet& set, DocumentFetcher* fetcher)
      : set_(set), fetcher_(fetcher) {}

  absl::StatusOr<const DocTypeMapping*> Get(const std::string& name) const {
    const DocTypeMapping* m = set_.Find(name);
    if (m == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("unknown mapping \"", name, "\""));
    }
    return m;
  }

  // A whole document (is_row = false) or child row (is_row = true).
  absl::StatusOr<Value> MapObject(const DocTypeMapping& m, const Value& remote,
                                  bool is_row, int depth) {
    if (!remote.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mapping \"", m.name, "\": expected a ",
          is_row ? "child row" : "document", " object, got ", remote.ToJson()));
    }
    const Value* doctype = remote.Find("doctype");
    if (doctype != nullptr && doctype->is_string() &&
        doctype->as_string() != m.remote_doctype) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mapping \"", m.name, "\" maps ", m.remote_doctype, ", not ",
          doctype->as_string(), " (", NameOf(remote), ")"));
    }
    Value out = Value::EmptyObject();
    for (const auto& [key, v] : remote.as_object()) {
      if (PassesThrough(key)) out[key] = v;
    }
    if (!is_row || doctype != nullptr)
      out["doctype"] = Value::String(m.local_doctype);

    for (const FieldMapping& f : m.field_mapping) {
      const Value* rv = remote.Find(f.remote_fieldname);
      if (f.mapping_type == kChildTable) {
        if (rv == nullptr || rv->is_null()) continue;
        ASSIGN_OR_RETURN(out[f.local_fieldname], MapRows(m, f, *rv, depth));
        continue;
      }
      RETURN_IF_ERROR(
          MapScalar(m, f, rv, remote, depth, is_row ? "row" : "document", &out));
    }
    return out;
  }

  // `changed` of a diff, or one row_changed entry (its "name" passes);
  // `doc_kind` names it in messages.
  absl::StatusOr<Value> MapChanged(const DocTypeMapping& m,
                                   const Value& changed, int depth,
                                   absl::string_view doc_kind) {
    Value out = Value::EmptyObject();
    for (const auto& [key, v] : changed.as_object()) {
      if (PassesThrough(key)) out[key] = v;
    }
    for (const FieldMapping& f : m.field_mapping) {
      const Value* rv = changed.Find(f.remote_fieldname);
      if (rv == nullptr) continue;  // not part of this update
      if (f.mapping_type == kChildTable) {
        // A whole table in `changed` (see diff.h: unmatchable rows).
        if (rv->is_null()) {
          out[f.local_fieldname] = Value::Null();
          continue;
        }
        ASSIGN_OR_RETURN(out[f.local_fieldname], MapRows(m, f, *rv, depth));
        continue;
      }
      RETURN_IF_ERROR(MapScalar(m, f, rv, changed, depth, doc_kind, &out));
    }
    return out;
  }

  absl::StatusOr<DocDiff> MapDiff(const DocTypeMapping& m,
                                  const DocDiff& diff) {
    DocDiff out;
    if (!diff.changed.is_object()) {
      return absl::InvalidArgumentError("diff: \"changed\" must be an object");
    }
    ASSIGN_OR_RETURN(out.changed, MapChanged(m, diff.changed, 0, "update"));

    auto tables = [](const Value& v) -> const Value::Object& {
      static const Value::Object kNone;
      return v.is_object() ? v.as_object() : kNone;
    };
    for (const FieldMapping& f : m.field_mapping) {
      if (f.mapping_type == kDocument) continue;
      const DocTypeMapping* inner = nullptr;
      if (f.mapping_type == kChildTable) inner = set_.Find(f.mapping);

      if (auto it = tables(diff.removed).find(f.remote_fieldname);
          it != tables(diff.removed).end()) {
        out.removed[f.local_fieldname] = it->second;
      }
      if (auto it = tables(diff.added).find(f.remote_fieldname);
          it != tables(diff.added).end()) {
        Value rows = it->second;
        if (inner != nullptr) {
          ASSIGN_OR_RETURN(rows, MapRows(m, f, it->second, 0));
        }
        out.added[f.local_fieldname] = std::move(rows);
      }
      if (auto it = tables(diff.row_changed).find(f.remote_fieldname);
          it != tables(diff.row_changed).end()) {
        if (inner == nullptr) {
          out.row_changed[f.local_fieldname] = it->second;
          continue;
        }
        if (!it->second.is_array()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "diff: row_changed.", f.remote_fieldname, " must be an array"));
        }
        Value::Array entries;
        for (const Value& entry : it->second.as_array()) {
          if (!entry.is_object() || entry.Find("name") == nullptr) {
            return absl::InvalidArgumentError(
                absl::StrCat("diff: row_changed.", f.remote_fieldname,
                             " entries must be objects with a \"name\""));
          }
          ASSIGN_OR_RETURN(Value mapped,
                           MapChanged(*inner, entry, 0, "row update"));
          // An entry whose every field is unmapped changes nothing here.
          if (mapped.as_object().size() > 1) entries.push_back(mapped);
        }
        if (!entries.empty()) {
          out.row_changed[f.local_fieldname] =
              Value::FromArray(std::move(entries));
        }
      }
    }
    return out;
  }

 private:
  absl::StatusOr<Value> MapRows(const DocTypeMapping& m, const FieldMapping& f,
                                const Value& rows, int depth) {
    if (!rows.is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Where(m, f), ": expected a child table (array), got ",
                       rows.ToJson()));
    }
    const DocTypeMapping* inner = set_.Find(f.mapping);
    Value::Array out;
    out.reserve(rows.as_array().size());
    for (const Value& row : rows.as_array()) {
      absl::StatusOr<Value> mapped = MapObject(*inner, row, true, depth);
      if (!mapped.ok()) {
        return absl::Status(mapped.status().code(),
                            absl::StrCat(Where(m, f), " row \"", NameOf(row),
                                         "\": ", mapped.status().message()));
      }
      out.push_back(*std::move(mapped));
    }
    return Value::FromArray(std::move(out));
  }

  // A plain or Document rule: writes out[local_fieldname] (or nothing when
  // the remote value is absent and there is no default).
  absl::Status MapScalar(const DocTypeMapping& m, const FieldMapping& f,
                         const Value* rv, const Value& context, int depth,
                         absl::string_view doc_kind, Value* out) {
    if (IsEmptyFieldValue(rv)) {
      if (!f.default_value.empty()) {
        (*out)[f.local_fieldname] = Value::String(f.default_value);
      } else if (rv != nullptr) {
        (*out)[f.local_fieldname] = *rv;
      }
      return absl::OkStatus();
    }
    if (f.mapping_type != kDocument) {
      (*out)[f.local_fieldname] = *rv;
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(std::string local_name,
                     ResolveDocument(m, f, context, depth, doc_kind));
    (*out)[f.local_fieldname] = Value::String(std::move(local_name));
    return absl::OkStatus();
  }

  // The local name of the document a Document rule selects (mapping.h).
  absl::StatusOr<std::string> ResolveDocument(const DocTypeMapping& m,
                                              const FieldMapping& f,
                                              const Value& context, int depth,
                                              absl::string_view doc_kind) {
    if (depth >= kMaxDocumentDepth) {
      return absl::FailedPreconditionError(absl::StrCat(
          Where(m, f), ": Document mappings nest deeper than ",
          kMaxDocumentDepth, " levels; do the documents link in a loop?"));
    }
    if (fetcher_ == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          Where(m, f), ": a Document mapping needs a DocumentFetcher"));
    }
    const DocTypeMapping* inner = set_.Find(f.mapping);
    const size_t rule = static_cast<size_t>(&f - m.field_mapping.data());
    absl::StatusOr<ResolvedFilters> resolved =
        ResolveRemoteValueFilters(set_.FiltersOf(m, rule), context, doc_kind);
    if (!resolved.ok()) {
      return absl::Status(
          resolved.status().code(),
          absl::StrCat(Where(m, f), ": ", resolved.status().message()));
    }
    const Value& filters = resolved->filters;
    absl::StatusOr<std::optional<Value>> found =
        fetcher_->FindRemote(inner->remote_doctype, filters);
    if (!found.ok()) {
      return absl::Status(
          found.status().code(),
          absl::StrCat(Where(m, f), ": fetching ", inner->remote_doctype, ": ",
                       found.status().message()));
    }
    if (!found->has_value()) {
      std::string why;
      for (const std::string& key : resolved->literal_fallbacks) {
        const Value* literal = filters.Find(key);
        absl::StrAppend(&why, "; remote_value_filters.", key,
                        " was taken as the literal ", literal->ToJson(),
                        " because the remote ", doc_kind,
                        " has no non-empty field of that name");
      }
      return absl::NotFoundError(
          absl::StrCat(Where(m, f), ": no ", inner->remote_doctype,
                       " on the producer matches ", filters.ToJson(), why));
    }
    ASSIGN_OR_RETURN(Value mapped,
                     MapObject(*inner, **found, /*is_row=*/false, depth + 1));
    absl::StatusOr<std::string> name = fetcher_->InsertLocal(mapped);
    if (!name.ok()) {
      return absl::Status(
          name.status().code(),
          absl::StrCat(Where(m, f), ": inserting ", inner->local_doctype, " ",
                       NameOf(mapped), ": ", name.status().message()));
    }
    return name;
  }

  const MappingSet& set_;
  DocumentFetcher* fetcher_;
};

}  // namespace

absl::StatusOr<Value> MappingSet::MapDocument(const std::string& mapping_name,
                                              const Value& remote_doc,
                                              DocumentFetcher* fetcher) const {
  Mapper mapper(*this, fetcher);
  ASSIGN_OR_RETURN(const DocTypeMapping* m, mapper.Get(mapping_name));
  return mapper.MapObject(*m, remote_doc, /*is_row=*/false, 0);
}

absl::StatusOr<DocDiff> MappingSet::MapDiff(const std::string& mapping_name,
                                            const DocDiff& diff,
                                            DocumentFetcher* fetcher) const {
  Mapper mapper(*this, fetcher);
  ASSIGN_OR_RETURN(const DocTypeMapping* m, mapper.Get(mapping_name));
  return mapper.MapDiff(*m, diff);
}

}  // namespace eventstream
