// The evaluator of Condition (expr.h): walks the tree (expr_internal.h)
// with Python's semantics, comparing numbers exactly as decimal text. Each
// node is visited once; the parser bounds the tree's height.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "libsync/base/status_macros.h"
#include "libsync/config/expr.h"
#include "libsync/config/expr_internal.h"

namespace eventstream {
namespace {

using expr_internal::Av;
using expr_internal::CmpOp;
using expr_internal::IsDigit;
using expr_internal::Node;

const char* CmpOpText(CmpOp op) {
  switch (op) {
    case CmpOp::kEq: return "==";
    case CmpOp::kNe: return "!=";
    case CmpOp::kLt: return "<";
    case CmpOp::kLe: return "<=";
    case CmpOp::kGt: return ">";
    case CmpOp::kGe: return ">=";
    case CmpOp::kIn: return "in";
    case CmpOp::kNotIn: return "not in";
    case CmpOp::kIs: return "is";
    case CmpOp::kIsNot: return "is not";
  }
  return "?";
}

// ---- exact decimal comparison -------------------------------------------------

// A number as sign, significant digits d1d2... and `point`, meaning the value
// is 0.d1d2... x 10^point. Leading and trailing zeros are stripped, so equal
// numbers have equal representations and zero has no digits.
struct Decimal {
  bool negative = false;
  std::string digits;
  int64_t point = 0;
};

Decimal ToDecimal(const Value& v) {
  Decimal d;
  if (v.is_bool()) {
    if (v.as_bool()) {
      d.digits = "1";
      d.point = 1;
    }
    return d;
  }
  std::string_view t = v.number_text();
  size_t i = 0;
  if (i < t.size() && (t[i] == '-' || t[i] == '+')) d.negative = t[i++] == '-';
  int64_t int_len = 0;
  for (; i < t.size() && IsDigit(t[i]); ++i, ++int_len) d.digits += t[i];
  if (i < t.size() && t[i] == '.') {
    for (++i; i < t.size() && IsDigit(t[i]); ++i) d.digits += t[i];
  }
  int64_t exp = 0;
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    bool neg_exp = false;
    if (i < t.size() && (t[i] == '-' || t[i] == '+')) neg_exp = t[i++] == '-';
    // Saturate: beyond 10^15 the exact exponent cannot change an ordering
    // between numbers whose text fits in memory.
    for (; i < t.size() && IsDigit(t[i]); ++i) {
      exp = std::min<int64_t>(exp * 10 + (t[i] - '0'), int64_t{1} << 50);
    }
    if (neg_exp) exp = -exp;
  }
  size_t lead = d.digits.find_first_not_of('0');
  if (lead == std::string::npos) return Decimal{};  // zero, sign dropped
  d.digits.erase(d.digits.find_last_not_of('0') + 1);
  d.digits.erase(0, lead);
  d.point = int_len - static_cast<int64_t>(lead) + exp;
  return d;
}

int CompareDecimal(const Decimal& a, const Decimal& b) {
  const int sa = a.digits.empty() ? 0 : (a.negative ? -1 : 1);
  const int sb = b.digits.empty() ? 0 : (b.negative ? -1 : 1);
  if (sa != sb || sa == 0) return sa < sb ? -1 : (sa > sb ? 1 : 0);
  int magnitude = 0;
  if (a.point != b.point) {
    magnitude = a.point < b.point ? -1 : 1;
  } else {
    int c = a.digits.compare(b.digits);  // same point: digit-wise order
    magnitude = c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  return sa * magnitude;
}

// ---- evaluation -------------------------------------------------------------

// An intermediate result: either borrowed from the document or the AST (no
// copy of possibly large document parts) or owned when computed.
struct Val {
  const Value* ref = nullptr;
  Value owned;
  const Value& get() const { return ref != nullptr ? *ref : owned; }
};

Val Borrow(const Value* v) {
  Val out;
  out.ref = v;
  return out;
}
Val Own(Value v) {
  Val out;
  out.owned = std::move(v);
  return out;
}

bool IsNumeric(const Value& v) { return v.is_number() || v.is_bool(); }

std::string TypeName(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kNull: return "NoneType";
    case Value::Kind::kBool: return "bool";
    case Value::Kind::kNumber:
      return v.number_text().find_first_of(".eE") == std::string::npos
                 ? "int" : "float";
    case Value::Kind::kString: return "str";
    case Value::Kind::kArray: return "list";
    case Value::Kind::kObject: return "dict";
  }
  return "?";
}

bool Truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kNull: return false;
    case Value::Kind::kBool: return v.as_bool();
    case Value::Kind::kNumber: return !ToDecimal(v).digits.empty();
    case Value::Kind::kString: return !v.as_string().empty();
    case Value::Kind::kArray: return !v.as_array().empty();
    case Value::Kind::kObject: return !v.as_object().empty();
  }
  return false;
}

// Python ==: numbers and booleans compare by value, containers element-wise,
// different kinds are simply unequal.
bool PyEqual(const Value& a, const Value& b) {
  if (IsNumeric(a) && IsNumeric(b)) {
    return CompareDecimal(ToDecimal(a), ToDecimal(b)) == 0;
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kNull: return true;
    case Value::Kind::kString: return a.as_string() == b.as_string();
    case Value::Kind::kArray: {
      const auto& x = a.as_array();
      const auto& y = b.as_array();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!PyEqual(x[i], y[i])) return false;
      }
      return true;
    }
    case Value::Kind::kObject: {
      const auto& x = a.as_object();
      const auto& y = b.as_object();
      if (x.size() != y.size()) return false;
      for (const auto& [key, value] : x) {
        auto it = y.find(key);
        if (it == y.end() || !PyEqual(value, it->second)) return false;
      }
      return true;
    }
    default: return false;
  }
}

absl::Status EvalError(int column, std::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat("column ", column, ": ", Av(message)));
}

// Python ordering: -1, 0 or 1, or an error for kinds Python cannot order.
absl::StatusOr<int> PyOrder(const Value& a, const Value& b, CmpOp op,
                            int column) {
  if (IsNumeric(a) && IsNumeric(b)) {
    return CompareDecimal(ToDecimal(a), ToDecimal(b));
  }
  if (a.is_string() && b.is_string()) {
    int c = a.as_string().compare(b.as_string());  // unsigned bytes
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_array() && b.is_array()) {
    // Lexicographic: the first unequal element decides, else the length.
    const auto& x = a.as_array();
    const auto& y = b.as_array();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!PyEqual(x[i], y[i])) return PyOrder(x[i], y[i], op, column);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  return EvalError(column, absl::StrCat("'", CmpOpText(op),
                                        "' not supported between '",
                                        TypeName(a), "' and '", TypeName(b),
                                        "'"));
}

absl::StatusOr<bool> Contains(const Value& container, const Value& item,
                              int column) {
  switch (container.kind()) {
    case Value::Kind::kString:
      if (!item.is_string()) {
        return EvalError(column, absl::StrCat("'in <str>' needs a str on the "
                                              "left, not '", TypeName(item),
                                              "'"));
      }
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::kArray:
      for (const Value& v : container.as_array()) {
        if (PyEqual(item, v)) return true;
      }
      return false;
    case Value::Kind::kObject:  // dict membership tests keys
      return item.is_string() && container.Find(item.as_string()) != nullptr;
    default:
      return EvalError(column, absl::StrCat("'in' needs a str, list or tuple "
                                            "on the right, not '",
                                            TypeName(container), "'"));
  }
}

absl::StatusOr<bool> Compare(CmpOp op, const Value& a, const Value& b,
                             int column) {
  switch (op) {
    case CmpOp::kEq: return PyEqual(a, b);
    case CmpOp::kNe: return !PyEqual(a, b);
    case CmpOp::kIn: return Contains(b, a, column);
    case CmpOp::kNotIn: {
      ASSIGN_OR_RETURN(bool in, Contains(b, a, column));
      return !in;
    }
    case CmpOp::kIs:
    case CmpOp::kIsNot: {
      // The parser only allows None/True/False on the right.
      bool same = b.is_null() ? a.is_null()
                              : a.is_bool() && a.as_bool() == b.as_bool();
      return op == CmpOp::kIs ? same : !same;
    }
    default: break;
  }
  ASSIGN_OR_RETURN(int order, PyOrder(a, b, op, column));
  switch (op) {
    case CmpOp::kLt: return order < 0;
    case CmpOp::kLe: return order <= 0;
    case CmpOp::kGt: return order > 0;
    default: return order >= 0;
  }
}

// The result of reading `field` out of `base`: borrowed when `base` is, so
// large document parts are not copied; a missing field (nullptr) is None.
Val ReadField(Val base, const Value* field) {
  if (field == nullptr) return Val{};
  if (base.ref != nullptr) return Borrow(field);
  return Own(*field);
}

absl::StatusOr<Val> Eval(const Node& n, const Value& doc) {
  switch (n.kind) {
    case Node::Kind::kLiteral:
      return Borrow(&n.literal);
    case Node::Kind::kDoc:
      return Borrow(&doc);
    case Node::Kind::kAttr: {
      ASSIGN_OR_RETURN(Val base, Eval(*n.kids[0], doc));
      if (!base.get().is_object()) {
        return EvalError(n.column, absl::StrCat("cannot read field '", n.name,
                                                "' of a '",
                                                TypeName(base.get()),
                                                "' value"));
      }
      const Value* field = base.get().Find(n.name);
      return ReadField(std::move(base), field);
    }
    case Node::Kind::kGet: {
      ASSIGN_OR_RETURN(Val base, Eval(*n.kids[0], doc));
      if (!base.get().is_object()) {
        return EvalError(n.column, absl::StrCat("'", TypeName(base.get()),
                                                "' value has no get()"));
      }
      ASSIGN_OR_RETURN(Val key, Eval(*n.kids[1], doc));
      const Value* field = key.get().is_string()
                               ? base.get().Find(key.get().as_string())
                               : nullptr;
      if (field != nullptr) return ReadField(std::move(base), field);
      if (n.kids.size() == 3) return Eval(*n.kids[2], doc);
      return Val{};
    }
    case Node::Kind::kSeq: {
      Value::Array items;
      items.reserve(n.kids.size());
      for (const auto& kid : n.kids) {
        ASSIGN_OR_RETURN(Val v, Eval(*kid, doc));
        items.push_back(v.ref != nullptr ? *v.ref : std::move(v.owned));
      }
      return Own(Value::FromArray(std::move(items)));
    }
    case Node::Kind::kNot: {
      ASSIGN_OR_RETURN(Val v, Eval(*n.kids[0], doc));
      return Own(Value::Bool(!Truthy(v.get())));
    }
    case Node::Kind::kAnd:
    case Node::Kind::kOr: {
      // Python returns the deciding operand itself, not a bool.
      const bool stop_on = n.kind == Node::Kind::kOr;
      absl::StatusOr<Val> v;
      for (const auto& kid : n.kids) {
        v = Eval(*kid, doc);
        if (!v.ok() || Truthy(v->get()) == stop_on) return v;
      }
      return v;
    }
    case Node::Kind::kCmp: {
      // Chained: a < b < c means a < b and b < c, each operand once.
      ASSIGN_OR_RETURN(Val left, Eval(*n.kids[0], doc));
      for (size_t i = 0; i < n.ops.size(); ++i) {
        ASSIGN_OR_RETURN(Val right, Eval(*n.kids[i + 1], doc));
        ASSIGN_OR_RETURN(
            bool holds,
            Compare(n.ops[i], left.get(), right.get(), n.op_columns[i]));
        if (!holds) return Own(Value::Bool(false));
        left = std::move(right);
      }
      return Own(Value::Bool(true));
    }
  }
  return absl::InternalError("unknown expression node");
}

}  // namespace

absl::StatusOr<Value> Condition::EvaluateValue(const Value& doc) const {
  if (root_ == nullptr) {
    return absl::FailedPreconditionError("condition was never parsed");
  }
  ASSIGN_OR_RETURN(Val v, Eval(*root_, doc));
  return v.ref != nullptr ? *v.ref : std::move(v.owned);
}

absl::StatusOr<bool> Condition::Evaluate(const Value& doc) const {
  if (root_ == nullptr) {
    return absl::FailedPreconditionError("condition was never parsed");
  }
  ASSIGN_OR_RETURN(Val v, Eval(*root_, doc));
  return Truthy(v.get());
}

}  // namespace eventstream
