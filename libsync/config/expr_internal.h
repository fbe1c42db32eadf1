// The syntax tree of a parsed Condition (expr.h), for code that translates
// conditions (libsync/config/condition_sql.h). Immutable once parsed; only
// libsync reads it.
#ifndef EVENTSTREAM_LIBSYNC_CONFIG_EXPR_INTERNAL_H_
#define EVENTSTREAM_LIBSYNC_CONFIG_EXPR_INTERNAL_H_

#include <memory>
#include <string>
#include <vector>

#include "libsync/base/value.h"

namespace eventstream::expr_internal {

enum class CmpOp { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn, kIs, kIsNot };

struct Node {
  enum class Kind { kLiteral, kDoc, kAttr, kGet, kSeq, kNot, kAnd, kOr, kCmp };
  Kind kind = Kind::kLiteral;
  int column = 0;                // 1-based; where evaluation errors point
  int height = 1;                // longest path to a leaf, counting this node
  Value literal;                 // kLiteral
  std::string name;              // kAttr: the field name
  std::vector<std::unique_ptr<Node>> kids;  // operands, in source order
  std::vector<CmpOp> ops;        // kCmp: ops[i] joins kids[i] and kids[i+1]
  std::vector<int> op_columns;   // kCmp: column of each operator
};


}  // namespace eventstream::expr_internal

#endif  // EVENTSTREAM_LIBSYNC_CONFIG_EXPR_INTERNAL_H_
