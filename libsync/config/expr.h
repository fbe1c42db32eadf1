// Condition: the safe interpreter for subscription conditions.
//
// Users write Python-style expressions over the current document, as they
// did for Frappe's Event Streaming (`doc.public == 1 and doc.customer_group
// in ("Retail", "Wholesale")`). The grammar is a small, closed subset of
// Python expressions: literals (strings, numbers, True, False, None, tuples,
// lists), `doc` and attribute access on it, comparisons (== != < <= > >=,
// chained), `in` / `not in`, `and` / `or` / `not`, parentheses. Anything else
// is a parse error naming the column (1-based) where it failed. Nothing is
// ever executed: evaluation walks a tree and is bounded by the input size.
//
// Condition is an immutable value type; Parse once, Evaluate many times from
// any number of threads.
//
// Semantics follow Python: `1 == 1.0`, `True == 1`, `1 == "1"` is false,
// ordering different kinds (`"a" < 1`) is an error, numbers compare exactly
// as decimal text (never via double), strings by bytes, `in` is substring on
// a str, membership on a tuple/list, key lookup on an object. `and`/`or`
// return the deciding operand. Also accepted: `doc.get("f")`,
// `doc.get("f", default)`, `-` directly before a number. Deliberately
// narrower than Python: `is` / `is not` only with None, True or False;
// attribute names starting with `__` are parse errors. Tuples and lists are
// both arrays, so `(1, 2) == [1, 2]` (false in Python) is true here. Limits:
// 4096 bytes of text, 64 levels of nesting.
#ifndef EVENTSTREAM_LIBSYNC_CONFIG_EXPR_H_
#define EVENTSTREAM_LIBSYNC_CONFIG_EXPR_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "libsync/base/value.h"

namespace eventstream {

namespace expr_internal {
struct Node;
}

class Condition {
 public:
  // INVALID_ARGUMENT "column 12: expected ')'" style errors.
  static absl::StatusOr<Condition> Parse(std::string_view text);

  // Evaluates against `doc` (a document object: `doc.x` reads key "x"; a
  // missing key reads as None, like Frappe's doc.get). The result's Python
  // truthiness is returned. Type errors (`"a" < 1`, attribute of a
  // non-object) are INVALID_ARGUMENT, never a crash.
  absl::StatusOr<bool> Evaluate(const Value& doc) const;
  // The raw result value (a tuple/list literal becomes an array).
  absl::StatusOr<Value> EvaluateValue(const Value& doc) const;

  const std::string& text() const { return text_; }
  // The syntax tree (expr_internal.h); null for a default-constructed one.
  const expr_internal::Node* root() const { return root_.get(); }

 private:
  std::string text_;
  std::shared_ptr<const expr_internal::Node> root_;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_CONFIG_EXPR_H_
