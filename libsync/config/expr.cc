// Condition: tokenizer, recursive-descent parser and tree-walking evaluator.
//
// The pipeline is text -> tokens -> AST (expr_internal::Node) -> value.
// Two limits keep every input cheap: the text is at most kMaxLength bytes and
// the parser refuses nesting deeper than kMaxDepth, so neither parsing nor
// evaluation can overflow the stack, and evaluation visits each node once.
//
// Decisions worth knowing (see also expr.h):
//  * `is` / `is not` only compare with the literals None, True and False;
//    Python's identity on anything else depends on CPython internals.
//  * Attribute names starting with `__` are parse errors: they are how
//    Python sandbox escapes begin, and no document field is named that way.
//  * `-` is accepted only directly in front of a number literal (`doc.x > -1`);
//    there is no arithmetic.
//  * Tuples and lists are both arrays, so `(1, 2) == [1, 2]` is true (Python
//    says false). Documents only contain lists, so conditions rarely notice.
//  * `doc.get` followed by `(` is Frappe's doc.get(key[, default]); without a
//    call, `doc.get` reads the field named "get".
#include "libsync/config/expr.h"
#include "libsync/config/expr_internal.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace eventstream {
namespace {

constexpr size_t kMaxLength = 4096;
constexpr int kMaxDepth = 64;
// Attribute chains (`doc.a.b.c`) are parsed in a loop, not by recursion, so
// they are bounded separately by the height of the tree they build; this
// keeps evaluation and destruction recursion shallow too.
constexpr int kMaxHeight = 4 * kMaxDepth;

using expr_internal::CmpOp;

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

}  // namespace


namespace {

using expr_internal::Node;
using NodePtr = std::unique_ptr<Node>;

// 1-based column of byte offset `pos`, counting UTF-8 characters rather than
// bytes so the number matches what an editor shows.
int ColumnOf(std::string_view text, size_t pos) {
  int column = 1;
  for (size_t i = 0; i < pos && i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) ++column;
  }
  return column;
}

void Adopt(Node* parent, NodePtr kid) {
  parent->height = std::max(parent->height, kid->height + 1);
  parent->kids.push_back(std::move(kid));
}

// ---- tokenizer --------------------------------------------------------------

enum class Tok { kEnd, kName, kNumber, kString, kPunct, kBad };

struct Token {
  Tok kind = Tok::kEnd;
  // kName: the name; kNumber: JSON number text; kString: decoded bytes;
  // kPunct: the operator; kBad: the complete error message (no column).
  std::string text;
  size_t pos = 0;  // byte offset in the input
};

// Debian's Abseil has its own string_view type, which StrCat needs.
absl::string_view Av(std::string_view s) { return {s.data(), s.size()}; }

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Splits `text` into tokens. A lexical error becomes a final kBad token rather
// than an immediate failure, so the parser reports whichever problem comes
// first in the text.
class Lexer {
 public:
  explicit Lexer(std::string_view text) : text_(text) {}

  std::vector<Token> Run() {
    std::vector<Token> out;
    while (true) {
      while (i_ < text_.size() && (text_[i_] == ' ' || text_[i_] == '\t' ||
                                   text_[i_] == '\n' || text_[i_] == '\r')) {
        ++i_;
      }
      Token t;
      t.pos = i_;
      if (i_ >= text_.size()) {
        out.push_back(std::move(t));
        return out;
      }
      t.kind = LexOne(&t.text);
      out.push_back(std::move(t));
      if (out.back().kind == Tok::kBad) return out;
    }
  }

 private:
  Tok Bad(std::string* out, std::string message) {
    *out = std::move(message);
    return Tok::kBad;
  }

  Tok LexOne(std::string* out) {
    const char c = text_[i_];
    if (IsNameStart(c)) {
      size_t start = i_;
      while (i_ < text_.size() && IsNameChar(text_[i_])) ++i_;
      *out = std::string(text_.substr(start, i_ - start));
      return Tok::kName;
    }
    if (IsDigit(c) || (c == '.' && i_ + 1 < text_.size() &&
                       IsDigit(text_[i_ + 1]))) {
      return LexNumber(out);
    }
    if (c == '"' || c == '\'') return LexString(out);
    static constexpr std::string_view kTwo[] = {"==", "!=", "<=", ">="};
    for (std::string_view op : kTwo) {
      if (text_.substr(i_, 2) == op) {
        i_ += 2;
        *out = std::string(op);
        return Tok::kPunct;
      }
    }
    if (std::string_view("()[],.<>-").find(c) != std::string_view::npos) {
      ++i_;
      *out = std::string(1, c);
      return Tok::kPunct;
    }
    if (c == '=') return Bad(out, "'=' is not supported; use '==' to compare");
    if (static_cast<unsigned char>(c) > 0x20 &&
        static_cast<unsigned char>(c) < 0x7F) {
      return Bad(out, absl::StrCat(
          "'", std::string(1, c),
          "' is not supported; conditions allow only comparisons, in, is, "
          "and, or, not, literals and doc.field"));
    }
    return Bad(out, "unexpected character outside a string literal");
  }

  // Python int/float literal, rewritten as JSON number text so it can live
  // in a Value: `.5` -> `0.5`, `1.` -> `1.0`, `007.5` -> `7.5`.
  Tok LexNumber(std::string* out) {
    size_t start = i_;
    std::string_view int_part, frac_part, exp_part;
    bool has_dot = false;
    size_t s = i_;
    while (i_ < text_.size() && IsDigit(text_[i_])) ++i_;
    int_part = text_.substr(s, i_ - s);
    if (i_ < text_.size() && text_[i_] == '.') {
      has_dot = true;
      s = ++i_;
      while (i_ < text_.size() && IsDigit(text_[i_])) ++i_;
      frac_part = text_.substr(s, i_ - s);
    }
    if (i_ < text_.size() && (text_[i_] == 'e' || text_[i_] == 'E')) {
      s = i_ + 1;
      size_t j = s;
      if (j < text_.size() && (text_[j] == '+' || text_[j] == '-')) ++j;
      if (j >= text_.size() || !IsDigit(text_[j])) {
        return Bad(out, "malformed number: expected digits after 'e'");
      }
      while (j < text_.size() && IsDigit(text_[j])) ++j;
      exp_part = text_.substr(s, j - s);
      i_ = j;
    }
    if (i_ < text_.size() && (IsNameChar(text_[i_]) || text_[i_] == '.')) {
      return Bad(out, absl::StrCat("malformed number '",
                                   Av(text_.substr(start, i_ + 1 - start)), "'"));
    }
    bool is_int = !has_dot && exp_part.empty();
    size_t nz = int_part.find_first_not_of('0');
    if (is_int && int_part.size() > 1 && int_part[0] == '0' &&
        nz != std::string_view::npos) {
      return Bad(out, "leading zeros are not allowed in integer literals");
    }
    *out = nz == std::string_view::npos ? "0" : std::string(int_part.substr(nz));
    if (has_dot) absl::StrAppend(out, ".", frac_part.empty() ? "0" : Av(frac_part));
    if (!exp_part.empty()) absl::StrAppend(out, "e", Av(exp_part));
    return Tok::kNumber;
  }

  Tok LexString(std::string* out) {
    const char quote = text_[i_++];
    out->clear();
    while (true) {
      if (i_ >= text_.size() || text_[i_] == '\n' || text_[i_] == '\r') {
        return Bad(out, absl::StrCat("unterminated string: expected closing ",
                                     std::string(1, quote)));
      }
      char c = text_[i_++];
      if (c == quote) return Tok::kString;
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (i_ >= text_.size()) continue;  // reported as unterminated above
      char e = text_[i_++];
      switch (e) {
        case '\\': out->push_back('\\'); break;
        case '\'': out->push_back('\''); break;
        case '"': out->push_back('"'); break;
        case 'n': out->push_back('\n'); break;
        case 't': out->push_back('\t'); break;
        case 'r': out->push_back('\r'); break;
        case 'u': {
          uint32_t cp = 0;
          for (int k = 0; k < 4; ++k, ++i_) {
            char h = i_ < text_.size() ? text_[i_] : '\0';
            int d = IsDigit(h) ? h - '0'
                    : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                    : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
            if (d < 0) {
              return Bad(out, "malformed \\u escape: expected 4 hex digits");
            }
            cp = cp * 16 + d;
          }
          if (cp >= 0xD800 && cp <= 0xDFFF) {
            return Bad(out, "\\u escape names a surrogate; write the "
                            "character itself instead");
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          return Bad(out, absl::StrCat(
              "unsupported escape '\\", std::string(1, e),
              "' (use \\\\ \\' \\\" \\n \\t \\r or \\uXXXX)"));
      }
    }
  }

  std::string_view text_;
  size_t i_ = 0;
};

// ---- parser -----------------------------------------------------------------

// Grammar (Python's precedence, lowest first):
//   expr       := and_expr ('or' and_expr)*
//   and_expr   := not_expr ('and' not_expr)*
//   not_expr   := 'not' not_expr | comparison
//   comparison := primary (cmp_op primary)*      chained like Python
//   primary    := atom ('.' NAME | '.get' '(' expr [',' expr] [','] ')')*
//   atom       := STRING+ | ['-'] NUMBER | True | False | None | doc
//               | '(' [expr (',' expr)* [',']] ')' | '[' same ']'
class Parser {
 public:
  Parser(std::string_view text, std::vector<Token> tokens)
      : text_(text), toks_(std::move(tokens)) {}

  absl::StatusOr<NodePtr> ParseAll() {
    // The top level is not a nesting level: 64 parentheses are allowed.
    auto root = ParseBool(Node::Kind::kOr, "or");
    if (!root.ok()) return root;
    if (Peek().kind != Tok::kEnd) {
      return Unexpected("an operator (and, or, ==, in, ...) or end of input");
    }
    return root;
  }

 private:
  const Token& Peek(size_t ahead = 0) const {
    return toks_[std::min(pos_ + ahead, toks_.size() - 1)];
  }
  void Advance() {
    if (pos_ + 1 < toks_.size()) ++pos_;
  }
  bool IsPunct(std::string_view p, size_t ahead = 0) const {
    return Peek(ahead).kind == Tok::kPunct && Peek(ahead).text == p;
  }
  bool IsWord(std::string_view w, size_t ahead = 0) const {
    return Peek(ahead).kind == Tok::kName && Peek(ahead).text == w;
  }
  int Column(const Token& t) const { return ColumnOf(text_, t.pos); }

  absl::Status ErrorAt(const Token& t, std::string_view message) const {
    return absl::InvalidArgumentError(
        absl::StrCat("column ", Column(t), ": ", Av(message)));
  }

  static std::string Describe(const Token& t) {
    switch (t.kind) {
      case Tok::kEnd: return "end of input";
      case Tok::kName: return absl::StrCat("'", t.text, "'");
      case Tok::kNumber: return absl::StrCat("number ", t.text);
      case Tok::kString: return "a string";
      case Tok::kPunct: return absl::StrCat("'", t.text, "'");
      case Tok::kBad: return t.text;
    }
    return "?";
  }

  // The error for the current token when it is not what the grammar needs.
  absl::Status Unexpected(std::string_view expected) const {
    const Token& t = Peek();
    if (t.kind == Tok::kBad) return ErrorAt(t, t.text);
    if (t.kind == Tok::kPunct && t.text == "-") {
      return ErrorAt(t, "arithmetic is not supported ('-' may only precede "
                        "a number)");
    }
    return ErrorAt(t, absl::StrCat("expected ", Av(expected), ", found ",
                                   Describe(t)));
  }

  NodePtr MakeNode(Node::Kind kind, const Token& at) const {
    auto n = std::make_unique<Node>();
    n->kind = kind;
    n->column = Column(at);
    return n;
  }

  // Every way of nesting (parentheses, brackets, get arguments, `not`)
  // passes through here or ParseNot, so the depth check bounds recursion.
  // `opener` is the bracket that began this level, blamed when too deep.
  absl::StatusOr<NodePtr> ParseExpr(const Token& opener) {
    if (++depth_ > kMaxDepth) {
      return ErrorAt(opener, absl::StrCat("nesting is deeper than ", kMaxDepth,
                                          " levels"));
    }
    auto result = ParseBool(Node::Kind::kOr, "or");
    --depth_;
    return result;
  }

  // `and` and `or` build one n-ary node, so long chains stay shallow.
  absl::StatusOr<NodePtr> ParseBool(Node::Kind kind, std::string_view word) {
    const Token& start = Peek();
    auto first = kind == Node::Kind::kOr ? ParseBool(Node::Kind::kAnd, "and")
                                         : ParseNot();
    if (!first.ok() || !IsWord(word)) return first;
    NodePtr node = MakeNode(kind, start);
    Adopt(node.get(), *std::move(first));
    while (IsWord(word)) {
      Advance();
      auto next = kind == Node::Kind::kOr ? ParseBool(Node::Kind::kAnd, "and")
                                          : ParseNot();
      if (!next.ok()) return next;
      Adopt(node.get(), *std::move(next));
    }
    return node;
  }

  absl::StatusOr<NodePtr> ParseNot() {
    if (!IsWord("not")) return ParseComparison();
    NodePtr node = MakeNode(Node::Kind::kNot, Peek());
    if (++depth_ > kMaxDepth) {
      return ErrorAt(Peek(), absl::StrCat("nesting is deeper than ", kMaxDepth,
                                          " levels"));
    }
    Advance();
    auto operand = ParseNot();
    --depth_;
    if (!operand.ok()) return operand;
    Adopt(node.get(), *std::move(operand));
    return node;
  }

  // Reads a comparison operator if one is next; false when there is none.
  bool ReadCmpOp(CmpOp* op) {
    static constexpr std::pair<std::string_view, CmpOp> kOps[] = {
        {"==", CmpOp::kEq}, {"!=", CmpOp::kNe}, {"<", CmpOp::kLt},
        {"<=", CmpOp::kLe}, {">", CmpOp::kGt},  {">=", CmpOp::kGe}};
    for (const auto& [text, value] : kOps) {
      if (IsPunct(text)) {
        *op = value;
        Advance();
        return true;
      }
    }
    if (IsWord("in")) {
      *op = CmpOp::kIn;
      Advance();
      return true;
    }
    if (IsWord("not") && IsWord("in", 1)) {
      *op = CmpOp::kNotIn;
      Advance();
      Advance();
      return true;
    }
    if (IsWord("is")) {
      Advance();
      *op = CmpOp::kIs;
      if (IsWord("not")) {
        *op = CmpOp::kIsNot;
        Advance();
      }
      return true;
    }
    return false;
  }

  absl::StatusOr<NodePtr> ParseComparison() {
    const Token& start = Peek();
    auto first = ParsePrimary();
    if (!first.ok()) return first;
    NodePtr node;
    while (true) {
      const Token& op_tok = Peek();
      CmpOp op;
      if (!ReadCmpOp(&op)) break;
      if (node == nullptr) {
        node = MakeNode(Node::Kind::kCmp, start);
        Adopt(node.get(), *std::move(first));
      }
      node->ops.push_back(op);
      node->op_columns.push_back(Column(op_tok));
      absl::StatusOr<NodePtr> right;
      if (op == CmpOp::kIs || op == CmpOp::kIsNot) {
        // Identity is only meaningful for the singletons; see file comment.
        if (!IsWord("None") && !IsWord("True") && !IsWord("False")) {
          return Unexpected("None, True or False after 'is' (use == to "
                            "compare values)");
        }
        right = ParseAtom();
      } else {
        right = ParsePrimary();
      }
      if (!right.ok()) return right;
      Adopt(node.get(), *std::move(right));
    }
    if (node == nullptr) return first;
    return node;
  }

  absl::StatusOr<NodePtr> ParsePrimary() {
    auto atom = ParseAtom();
    if (!atom.ok()) return atom;
    NodePtr node = *std::move(atom);
    while (IsPunct(".")) {
      Advance();
      const Token& name = Peek();
      if (name.kind != Tok::kName) {
        return Unexpected("a field name after '.'");
      }
      if (name.text.rfind("__", 0) == 0) {
        return ErrorAt(name, absl::StrCat("'", name.text,
                                          "' is not allowed; names starting "
                                          "with '__' are reserved"));
      }
      Advance();
      const bool call = name.text == "get" && IsPunct("(");
      NodePtr next =
          MakeNode(call ? Node::Kind::kGet : Node::Kind::kAttr, name);
      next->name = name.text;
      Adopt(next.get(), std::move(node));
      node = std::move(next);
      if (call) {
        auto status = ParseGetArgs(node.get());
        if (!status.ok()) return status;
      }
      if (node->height > kMaxHeight) {
        return ErrorAt(name, "attribute chain is nested too deeply");
      }
    }
    if (IsPunct("(")) {
      return ErrorAt(Peek(), "calls are not supported (only doc.get(...))");
    }
    if (IsPunct("[")) {
      return ErrorAt(Peek(), "subscripts are not supported; use doc.field or "
                             "doc.get(\"field\")");
    }
    return node;
  }

  absl::Status ParseGetArgs(Node* get) {
    const Token& opener = Peek();
    Advance();  // '('
    if (IsPunct(")")) {
      return ErrorAt(Peek(), "get() needs a field name: doc.get(\"field\")");
    }
    while (!IsPunct(")")) {
      if (get->kids.size() == 3) {
        return ErrorAt(Peek(), "get() takes a field name and an optional "
                               "default, nothing more");
      }
      auto arg = ParseExpr(opener);
      if (!arg.ok()) return arg.status();
      Adopt(get, *std::move(arg));
      if (IsPunct(",")) {
        Advance();
      } else if (!IsPunct(")")) {
        return Unexpected("',' or ')'");
      }
    }
    Advance();  // ')'
    return absl::OkStatus();
  }

  absl::StatusOr<NodePtr> ParseAtom() {
    const Token& t = Peek();
    NodePtr node = MakeNode(Node::Kind::kLiteral, t);
    switch (t.kind) {
      case Tok::kString: {
        // Adjacent literals concatenate, as in Python: "a" "b" == "ab".
        std::string s;
        while (Peek().kind == Tok::kString) {
          s += Peek().text;
          Advance();
        }
        node->literal = Value::String(std::move(s));
        return node;
      }
      case Tok::kNumber:
        node->literal = Value::Number(t.text);
        Advance();
        return node;
      case Tok::kName:
        if (t.text == "doc") {
          node->kind = Node::Kind::kDoc;
        } else if (t.text == "True" || t.text == "False") {
          node->literal = Value::Bool(t.text == "True");
        } else if (t.text == "None") {
          // literal stays null
        } else if (t.text == "and" || t.text == "or" || t.text == "not" ||
                   t.text == "in" || t.text == "is") {
          return Unexpected("a value");
        } else {
          return ErrorAt(t, absl::StrCat("'", t.text,
                                         "' is not allowed; a condition can "
                                         "only name doc, True, False and "
                                         "None"));
        }
        Advance();
        return node;
      case Tok::kPunct:
        if (t.text == "-" && Peek(1).kind == Tok::kNumber) {
          Advance();
          node->literal = Value::Number("-" + Peek().text);
          Advance();
          return node;
        }
        if (t.text == "(" || t.text == "[") {
          return ParseSequence(std::move(node));
        }
        break;
      default:
        break;
    }
    return Unexpected("a value");
  }

  // `( ... )` is grouping unless it is empty or has a comma; `[ ... ]` is
  // always a list.
  absl::StatusOr<NodePtr> ParseSequence(NodePtr node) {
    const bool paren = IsPunct("(");
    const std::string_view close = paren ? ")" : "]";
    node->kind = Node::Kind::kSeq;
    bool saw_comma = false;
    const Token& opener = Peek();
    Advance();
    while (!IsPunct(close)) {
      auto item = ParseExpr(opener);
      if (!item.ok()) return item;
      Adopt(node.get(), *std::move(item));
      if (IsPunct(",")) {
        saw_comma = true;
        Advance();
      } else if (!IsPunct(close)) {
        return Unexpected(absl::StrCat("',' or '", Av(close), "'"));
      }
    }
    Advance();
    if (paren && !saw_comma && node->kids.size() == 1) {
      return std::move(node->kids[0]);
    }
    return node;
  }

  std::string_view text_;
  std::vector<Token> toks_;
  size_t pos_ = 0;
  int depth_ = 0;
};

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
      auto in = Contains(b, a, column);
      if (!in.ok()) return in;
      return !*in;
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
  auto order = PyOrder(a, b, op, column);
  if (!order.ok()) return order.status();
  switch (op) {
    case CmpOp::kLt: return *order < 0;
    case CmpOp::kLe: return *order <= 0;
    case CmpOp::kGt: return *order > 0;
    default: return *order >= 0;
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
      auto base = Eval(*n.kids[0], doc);
      if (!base.ok()) return base;
      if (!base->get().is_object()) {
        return EvalError(n.column, absl::StrCat("cannot read field '", n.name,
                                                "' of a '",
                                                TypeName(base->get()),
                                                "' value"));
      }
      const Value* field = base->get().Find(n.name);
      return ReadField(*std::move(base), field);
    }
    case Node::Kind::kGet: {
      auto base = Eval(*n.kids[0], doc);
      if (!base.ok()) return base;
      if (!base->get().is_object()) {
        return EvalError(n.column, absl::StrCat("'", TypeName(base->get()),
                                                "' value has no get()"));
      }
      auto key = Eval(*n.kids[1], doc);
      if (!key.ok()) return key;
      const Value* field = key->get().is_string()
                               ? base->get().Find(key->get().as_string())
                               : nullptr;
      if (field != nullptr) return ReadField(*std::move(base), field);
      if (n.kids.size() == 3) return Eval(*n.kids[2], doc);
      return Val{};
    }
    case Node::Kind::kSeq: {
      Value::Array items;
      items.reserve(n.kids.size());
      for (const auto& kid : n.kids) {
        auto v = Eval(*kid, doc);
        if (!v.ok()) return v;
        items.push_back(v->ref != nullptr ? *v->ref : std::move(v->owned));
      }
      return Own(Value::FromArray(std::move(items)));
    }
    case Node::Kind::kNot: {
      auto v = Eval(*n.kids[0], doc);
      if (!v.ok()) return v;
      return Own(Value::Bool(!Truthy(v->get())));
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
      auto left = Eval(*n.kids[0], doc);
      if (!left.ok()) return left;
      for (size_t i = 0; i < n.ops.size(); ++i) {
        auto right = Eval(*n.kids[i + 1], doc);
        if (!right.ok()) return right;
        auto r = Compare(n.ops[i], left->get(), right->get(), n.op_columns[i]);
        if (!r.ok()) return r.status();
        if (!*r) return Own(Value::Bool(false));
        left = std::move(right);
      }
      return Own(Value::Bool(true));
    }
  }
  return absl::InternalError("unknown expression node");
}

}  // namespace

absl::StatusOr<Condition> Condition::Parse(std::string_view text) {
  if (text.size() > kMaxLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "column ", ColumnOf(text, kMaxLength), ": condition is ",
        text.size(), " bytes long; the limit is ", kMaxLength));
  }
  Parser parser(text, Lexer(text).Run());
  auto root = parser.ParseAll();
  if (!root.ok()) return root.status();
  Condition c;
  c.text_ = std::string(text);
  c.root_ = std::shared_ptr<const Node>(*std::move(root));
  return c;
}

absl::StatusOr<Value> Condition::EvaluateValue(const Value& doc) const {
  if (root_ == nullptr) {
    return absl::FailedPreconditionError("condition was never parsed");
  }
  auto v = Eval(*root_, doc);
  if (!v.ok()) return v.status();
  return v->ref != nullptr ? *v->ref : std::move(v->owned);
}

absl::StatusOr<bool> Condition::Evaluate(const Value& doc) const {
  if (root_ == nullptr) {
    return absl::FailedPreconditionError("condition was never parsed");
  }
  auto v = Eval(*root_, doc);
  if (!v.ok()) return v.status();
  return Truthy(v->get());
}

}  // namespace eventstream
