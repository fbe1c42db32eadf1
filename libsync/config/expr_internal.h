// The syntax tree of a parsed Condition (expr.h), for code that translates
// conditions (libsync/config/condition_sql.h). Immutable once parsed; only
// libsync reads it. Also the tokens the lexer (expr_lexer.cc) hands the
// parser (expr_parser.cc); the evaluator is expr_eval.cc.
#ifndef EVENTSTREAM_LIBSYNC_CONFIG_EXPR_INTERNAL_H_
#define EVENTSTREAM_LIBSYNC_CONFIG_EXPR_INTERNAL_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"
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

// ---- tokens (expr_lexer.cc -> expr_parser.cc)

enum class Tok { kEnd, kName, kNumber, kString, kPunct, kBad };

struct Token {
  Tok kind = Tok::kEnd;
  // kName: the name; kNumber: JSON number text; kString: decoded bytes;
  // kPunct: the operator; kBad: the complete error message (no column).
  std::string text;
  size_t pos = 0;  // byte offset in the input
};

// Splits `text` into tokens, ending with kEnd, or with kBad at the first
// lexical error (so the parser reports whichever problem comes first).
std::vector<Token> Tokenize(std::string_view text);

// Debian's Abseil has its own string_view type, which StrCat needs.
inline absl::string_view Av(std::string_view s) { return {s.data(), s.size()}; }

inline bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace eventstream::expr_internal

#endif  // EVENTSTREAM_LIBSYNC_CONFIG_EXPR_INTERNAL_H_
