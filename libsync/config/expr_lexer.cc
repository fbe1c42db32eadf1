// The tokenizer of Condition (expr.h): text -> tokens (expr_internal.h).
// A lexical error becomes a final kBad token, so the parser reports
// whichever problem comes first in the text.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libsync/config/expr_internal.h"

namespace eventstream::expr_internal {
namespace {

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

}  // namespace

std::vector<Token> Tokenize(std::string_view text) {
  return Lexer(text).Run();
}

}  // namespace eventstream::expr_internal
