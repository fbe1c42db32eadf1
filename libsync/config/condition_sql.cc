// ConditionToSql: one translation per node kind of expr_internal::Node.
//
// A value operand becomes a jsonb expression that is never SQL NULL (a
// missing field is 'null'::jsonb), matching the Value the evaluator sees. A
// boolean node becomes an SQL boolean where NULL stands for "evaluation
// error" (Python's TypeError), so errors propagate through `not` and the
// short-circuits of `and` / `or` exactly as Eval's do; the whole condition
// is COALESCE(..., FALSE), since an error hides the document.
//
// Casts of jsonb (::boolean, ::numeric) sit only in CASE branches chosen by
// jsonb_typeof, which PostgreSQL evaluates in order, so a row of another
// kind never reaches a cast that would fail the query. Strings compare
// under COLLATE "C" (bytes, as the evaluator does); numbers as numeric
// (exact decimals, as the evaluator does).
#include "libsync/config/condition_sql.h"

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libsync/config/expr_internal.h"
#include "libsync/base/pg.h"
#include "libsync/base/status_macros.h"

namespace eventstream {
namespace {

using expr_internal::CmpOp;
using expr_internal::Node;

constexpr int kMaxNumberExponent = 1000;

absl::Status Untranslatable(const std::string& what) {
  return absl::UnimplementedError(absl::StrCat("not translated to SQL: ", what));
}

bool IsScalar(const Value& v) { return !v.is_array() && !v.is_object(); }

const Value* ScalarLiteral(const Node& n) {
  return n.kind == Node::Kind::kLiteral && IsScalar(n.literal) ? &n.literal : nullptr;
}

// A number literal PostgreSQL's numeric reads without overflow.
bool FitsNumeric(const std::string& text) {
  size_t e = text.find_first_of("eE");
  if (e == std::string::npos) return text.size() <= 1000;
  return std::abs(std::atol(text.c_str() + e + 1)) <= kMaxNumberExponent && e <= 1000;
}

CmpOp Flipped(CmpOp op) {
  switch (op) {
    case CmpOp::kLt: return CmpOp::kGt;
    case CmpOp::kLe: return CmpOp::kGe;
    case CmpOp::kGt: return CmpOp::kLt;
    case CmpOp::kGe: return CmpOp::kLe;
    default: return op;
  }
}

const char* SqlOp(CmpOp op) {
  switch (op) {
    case CmpOp::kLt: return "<";
    case CmpOp::kLe: return "<=";
    case CmpOp::kGt: return ">";
    default: return ">=";
  }
}

// Python truthiness of jsonb `j`.
std::string Truth(const std::string& j) {
  return absl::StrCat("(CASE jsonb_typeof(", j, ") WHEN 'null' THEN FALSE",
                      " WHEN 'boolean' THEN (", j, ")::boolean",
                      " WHEN 'number' THEN (", j, ")::numeric <> 0",
                      " WHEN 'string' THEN (", j, ") #>> '{}' <> ''",
                      " WHEN 'array' THEN jsonb_array_length(", j, ") > 0",
                      " ELSE (", j, ") <> '{}'::jsonb END)");
}

// Python's error-propagating short circuits over SQL booleans (NULL = error).
std::string And(const std::string& x, const std::string& y) {
  return absl::StrCat("(CASE ", x, " WHEN TRUE THEN ", y, " WHEN FALSE THEN FALSE END)");
}
std::string Or(const std::string& x, const std::string& y) {
  return absl::StrCat("(CASE ", x, " WHEN TRUE THEN TRUE WHEN FALSE THEN ", y, " END)");
}

class Compiler {
 public:
  Compiler(const DocTypeDef& def, RowSql row, int first_param)
      : def_(def), row_(std::move(row)), first_param_(first_param) {}

  absl::StatusOr<std::string> Bool(const Node& n);
  std::vector<std::string> TakeParams() { return std::move(params_); }

 private:
  std::string Param(std::string value, const char* type) {
    params_.push_back(std::move(value));
    return absl::StrCat("$", first_param_ + static_cast<int>(params_.size()) - 1, "::", type);
  }
  absl::StatusOr<std::string> Number(const Value& lit);
  absl::StatusOr<std::string> Json(const Node& n);
  absl::StatusOr<std::string> Field(const std::string& key, const Node* fallback);
  absl::StatusOr<std::string> Eq(const std::string& j, const Value& lit);
  absl::StatusOr<std::string> Order(CmpOp op, const std::string& j, const Value& lit);
  absl::StatusOr<std::string> Contains(const std::string& j, const Value& lit);
  absl::StatusOr<std::string> InSeq(const Node& item, const Node& seq);
  absl::StatusOr<std::string> Is(const std::string& j, const Value& lit);
  absl::StatusOr<std::string> Compare(CmpOp op, const Node& a, const Node& b);

  const DocTypeDef& def_;
  const RowSql row_;
  const int first_param_;
  std::vector<std::string> params_;
};

absl::StatusOr<std::string> Compiler::Number(const Value& lit) {
  if (lit.is_bool()) return std::string(lit.as_bool() ? "1" : "0");
  if (!FitsNumeric(lit.number_text())) return Untranslatable("a very large number");
  return Param(lit.number_text(), "numeric");
}

absl::StatusOr<std::string> Compiler::Json(const Node& n) {
  switch (n.kind) {
    case Node::Kind::kLiteral: {
      const Value& v = n.literal;
      if (v.is_null()) return std::string("'null'::jsonb");
      if (v.is_bool()) return std::string(v.as_bool() ? "'true'::jsonb" : "'false'::jsonb");
      if (v.is_number()) {
        ASSIGN_OR_RETURN(std::string number, Number(v));
        return absl::StrCat("to_jsonb(", number, ")");
      }
      if (v.is_string() && v.as_string().find('\0') == std::string::npos) {
        return absl::StrCat("to_jsonb(", Param(v.as_string(), "text"), ")");
      }
      return Untranslatable("a list or a string with NUL");
    }
    case Node::Kind::kAttr:
      if (n.kids[0]->kind != Node::Kind::kDoc) return Untranslatable("a nested field");
      return Field(n.name, nullptr);
    case Node::Kind::kGet: {
      const Value* key = ScalarLiteral(*n.kids[1]);
      if (n.kids[0]->kind != Node::Kind::kDoc || key == nullptr || !key->is_string()) {
        return Untranslatable("get() of something but the document");
      }
      return Field(key->as_string(), n.kids.size() == 3 ? n.kids[2].get() : nullptr);
    }
    default:
      return Untranslatable("a value that is not a field or a literal");
  }
}

absl::StatusOr<std::string> Compiler::Field(const std::string& key, const Node* fallback) {
  // document_reader.h: "doctype" is always set; other keys are the
  // registry's replicated columns the table has; child tables are arrays.
  if (key == "doctype") return absl::StrCat("to_jsonb(", Param(def_.name, "text"), ")");
  const FieldDef* field = def_.FindField(key);
  if (field != nullptr && field->is_table()) return Untranslatable("a child table");
  std::string otherwise = "'null'::jsonb";
  if (fallback != nullptr) {
    if (ScalarLiteral(*fallback) == nullptr) return Untranslatable("a get() default");
    ASSIGN_OR_RETURN(otherwise, Json(*fallback));
  }
  if (key.find('\0') != std::string::npos || !IsReplicatedColumn(&def_, key)) return otherwise;
  if (row_.read == RowRead::kByColumn) {
    return absl::StrCat("COALESCE(to_jsonb(", row_.alias, ".", pg::QuoteIdentifier(key), "), ",
                        otherwise, ")");
  }
  return absl::StrCat("COALESCE(to_jsonb(", row_.alias, ") -> ", Param(key, "text"), ", ",
                      otherwise, ")");
}

absl::StatusOr<std::string> Compiler::Eq(const std::string& j, const Value& lit) {
  if (lit.is_null()) return absl::StrCat("(jsonb_typeof(", j, ") = 'null')");
  if (lit.is_string()) {
    if (lit.as_string().find('\0') != std::string::npos) return Untranslatable("NUL");
    return absl::StrCat("(CASE WHEN jsonb_typeof(", j, ") = 'string' THEN ((", j,
                        ") #>> '{}') COLLATE \"C\" = ", Param(lit.as_string(), "text"),
                        " ELSE FALSE END)");
  }
  ASSIGN_OR_RETURN(std::string n, Number(lit));
  return absl::StrCat("(CASE jsonb_typeof(", j, ") WHEN 'number' THEN (", j, ")::numeric = ", n,
                      " WHEN 'boolean' THEN ((", j, ")::boolean)::int = ", n,
                      " ELSE FALSE END)");
}

absl::StatusOr<std::string> Compiler::Order(CmpOp op, const std::string& j, const Value& lit) {
  if (lit.is_null()) return std::string("NULL::boolean");  // None orders with nothing
  if (lit.is_string()) {
    if (lit.as_string().find('\0') != std::string::npos) return Untranslatable("NUL");
    return absl::StrCat("(CASE WHEN jsonb_typeof(", j, ") = 'string' THEN ((", j,
                        ") #>> '{}') COLLATE \"C\" ", SqlOp(op), " ",
                        Param(lit.as_string(), "text"), " COLLATE \"C\" END)");
  }
  ASSIGN_OR_RETURN(std::string n, Number(lit));
  return absl::StrCat("(CASE jsonb_typeof(", j, ") WHEN 'number' THEN (", j, ")::numeric ",
                      SqlOp(op), " ", n, " WHEN 'boolean' THEN ((", j, ")::boolean)::int ",
                      SqlOp(op), " ", n, " END)");
}

// Python's `lit in j`: substring of a str, element of a list, key of a dict.
absl::StatusOr<std::string> Compiler::Contains(const std::string& j, const Value& lit) {
  ASSIGN_OR_RETURN(std::string element, Eq("e.v", lit));
  std::string in_string = "NULL";
  std::string in_object = "FALSE";
  if (lit.is_string()) {
    const std::string s = Param(lit.as_string(), "text");
    in_string = absl::StrCat("strpos(((", j, ") #>> '{}') COLLATE \"C\", ", s, ") > 0");
    in_object = absl::StrCat("(", j, ") ? ", s);
  }
  return absl::StrCat("(CASE jsonb_typeof(", j, ") WHEN 'string' THEN ", in_string,
                      " WHEN 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements(", j,
                      ") AS e(v) WHERE ", element, ") WHEN 'object' THEN ", in_object,
                      " END)");
}

absl::StatusOr<std::string> Compiler::InSeq(const Node& item, const Node& seq) {
  if (seq.kids.empty()) return std::string("FALSE");  // before any parameter
  ASSIGN_OR_RETURN(std::string j, Json(item));
  std::vector<std::string> any;
  for (const auto& kid : seq.kids) {
    const Value* lit = ScalarLiteral(*kid);
    if (lit == nullptr) return Untranslatable("a list holding more than literals");
    ASSIGN_OR_RETURN(std::string eq, Eq(j, *lit));
    any.push_back(std::move(eq));
  }
  return absl::StrCat("(", absl::StrJoin(any, " OR "), ")");
}

absl::StatusOr<std::string> Compiler::Is(const std::string& j, const Value& lit) {
  if (lit.is_null()) return absl::StrCat("(jsonb_typeof(", j, ") = 'null')");
  return absl::StrCat("(CASE WHEN jsonb_typeof(", j, ") = 'boolean' THEN (", j,
                      ")::boolean = ", lit.as_bool() ? "TRUE" : "FALSE", " ELSE FALSE END)");
}

absl::StatusOr<std::string> Compiler::Compare(CmpOp op, const Node& a, const Node& b) {
  const Value* la = ScalarLiteral(a);
  const Value* lb = ScalarLiteral(b);
  if (op == CmpOp::kIn || op == CmpOp::kNotIn) {
    std::string in;
    if (b.kind == Node::Kind::kSeq) {
      ASSIGN_OR_RETURN(in, InSeq(a, b));
    } else if (la != nullptr && lb == nullptr) {
      ASSIGN_OR_RETURN(std::string j, Json(b));
      ASSIGN_OR_RETURN(in, Contains(j, *la));
    } else {
      return Untranslatable("'in' between two fields or two literals");
    }
    return op == CmpOp::kIn ? in : absl::StrCat("(NOT ", in, ")");
  }
  if (op == CmpOp::kIs || op == CmpOp::kIsNot) {
    if (lb == nullptr) return Untranslatable("'is' of a non-literal");
    ASSIGN_OR_RETURN(std::string j, Json(a));
    ASSIGN_OR_RETURN(std::string is, Is(j, *lb));
    return op == CmpOp::kIs ? is : absl::StrCat("(NOT ", is, ")");
  }
  if ((la == nullptr) == (lb == nullptr)) {
    return Untranslatable("a comparison of two fields or of two literals");
  }
  const Node& field = la != nullptr ? b : a;
  const Value& lit = la != nullptr ? *la : *lb;
  ASSIGN_OR_RETURN(std::string j, Json(field));
  if (op == CmpOp::kEq || op == CmpOp::kNe) {
    ASSIGN_OR_RETURN(std::string eq, Eq(j, lit));
    return op == CmpOp::kEq ? eq : absl::StrCat("(NOT ", eq, ")");
  }
  return Order(la != nullptr ? Flipped(op) : op, j, lit);
}

absl::StatusOr<std::string> Compiler::Bool(const Node& n) {
  switch (n.kind) {
    case Node::Kind::kNot: {
      ASSIGN_OR_RETURN(std::string x, Bool(*n.kids[0]));
      return absl::StrCat("(NOT ", x, ")");
    }
    case Node::Kind::kAnd:
    case Node::Kind::kOr: {
      ASSIGN_OR_RETURN(std::string acc, Bool(*n.kids[0]));
      for (size_t i = 1; i < n.kids.size(); ++i) {
        ASSIGN_OR_RETURN(std::string next, Bool(*n.kids[i]));
        acc = n.kind == Node::Kind::kAnd ? And(acc, next) : Or(acc, next);
      }
      return acc;
    }
    case Node::Kind::kCmp: {
      // a < b < c: each comparison in turn, stopping at the first false.
      ASSIGN_OR_RETURN(std::string acc, Compare(n.ops[0], *n.kids[0], *n.kids[1]));
      for (size_t i = 1; i < n.ops.size(); ++i) {
        ASSIGN_OR_RETURN(std::string next, Compare(n.ops[i], *n.kids[i], *n.kids[i + 1]));
        acc = And(acc, next);
      }
      return acc;
    }
    case Node::Kind::kLiteral:
    case Node::Kind::kAttr:
    case Node::Kind::kGet: {
      ASSIGN_OR_RETURN(std::string j, Json(n));
      return Truth(j);
    }
    default:
      return Untranslatable("the whole document or a list as a condition");
  }
}

}  // namespace

absl::StatusOr<SqlPredicate> ConditionToSql(const Condition& condition, const DocTypeDef& def,
                                            const RowSql& row, int first_param) {
  if (condition.root() == nullptr) return Untranslatable("an unparsed condition");
  Compiler compiler(def, row, first_param);
  ASSIGN_OR_RETURN(std::string sql, compiler.Bool(*condition.root()));
  return SqlPredicate{absl::StrCat("COALESCE(", sql, ", FALSE)"), compiler.TakeParams()};
}

absl::StatusOr<SqlPredicate> ConditionsToSql(const std::vector<std::string>& conditions,
                                             const DocTypeDef& def, const RowSql& row,
                                             int first_param) {
  SqlPredicate all{"TRUE", {}};
  for (const std::string& text : conditions) {
    if (absl::StartsWith(text, "cmd:")) return Untranslatable("a cmd: function");
    auto parsed = Condition::Parse(text);
    if (!parsed.ok()) return Untranslatable("a condition that does not parse");
    ASSIGN_OR_RETURN(SqlPredicate one,
                     ConditionToSql(*parsed, def, row,
                                    first_param + static_cast<int>(all.params.size())));
    absl::StrAppend(&all.sql, " AND ", one.sql);
    for (std::string& p : one.params) all.params.push_back(std::move(p));
  }
  return all;
}

}  // namespace eventstream
