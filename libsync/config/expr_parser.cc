// Condition's recursive-descent parser, and Condition::Parse. The pipeline is
// text -> tokens (expr_lexer.cc) -> AST (expr_internal::Node, here) -> value
// (expr_eval.cc).
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
#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "libsync/base/status_macros.h"
#include "libsync/config/expr.h"
#include "libsync/config/expr_internal.h"

namespace eventstream {
namespace {

constexpr size_t kMaxLength = 4096;
constexpr int kMaxDepth = 64;
// Attribute chains (`doc.a.b.c`) are parsed in a loop, not by recursion, so
// they are bounded separately by the height of the tree they build; this
// keeps evaluation and destruction recursion shallow too.
constexpr int kMaxHeight = 4 * kMaxDepth;

using expr_internal::Av;
using expr_internal::CmpOp;
using expr_internal::Node;
using expr_internal::Tok;
using expr_internal::Token;
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
    ASSIGN_OR_RETURN(NodePtr root, ParseBool(Node::Kind::kOr, "or"));
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
      ASSIGN_OR_RETURN(NodePtr next, kind == Node::Kind::kOr
                                         ? ParseBool(Node::Kind::kAnd, "and")
                                         : ParseNot());
      Adopt(node.get(), std::move(next));
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
    ASSIGN_OR_RETURN(NodePtr first, ParsePrimary());
    NodePtr node;
    while (true) {
      const Token& op_tok = Peek();
      CmpOp op;
      if (!ReadCmpOp(&op)) break;
      if (node == nullptr) {
        node = MakeNode(Node::Kind::kCmp, start);
        Adopt(node.get(), std::move(first));
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
      RETURN_IF_ERROR(right.status());
      Adopt(node.get(), *std::move(right));
    }
    if (node == nullptr) return first;
    return node;
  }

  absl::StatusOr<NodePtr> ParsePrimary() {
    ASSIGN_OR_RETURN(NodePtr node, ParseAtom());
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
        RETURN_IF_ERROR(ParseGetArgs(node.get()));
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
      ASSIGN_OR_RETURN(NodePtr arg, ParseExpr(opener));
      Adopt(get, std::move(arg));
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
      ASSIGN_OR_RETURN(NodePtr item, ParseExpr(opener));
      Adopt(node.get(), std::move(item));
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

}  // namespace

absl::StatusOr<Condition> Condition::Parse(std::string_view text) {
  if (text.size() > kMaxLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "column ", ColumnOf(text, kMaxLength), ": condition is ",
        text.size(), " bytes long; the limit is ", kMaxLength));
  }
  Parser parser(text, expr_internal::Tokenize(text));
  ASSIGN_OR_RETURN(NodePtr root, parser.ParseAll());
  Condition c;
  c.text_ = std::string(text);
  c.root_ = std::shared_ptr<const Node>(std::move(root));
  return c;
}

}  // namespace eventstream
