#include "libsync/base/value.h"

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <ostream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace eventstream {

// ---- ValueObject ------------------------------------------------------------

ValueObject::iterator ValueObject::LowerBound(std::string_view key) {
  return std::lower_bound(items_.begin(), items_.end(), key,
                          [](const value_type& m, std::string_view k) { return m.first < k; });
}

ValueObject::iterator ValueObject::find(std::string_view key) {
  auto it = LowerBound(key);
  return it != items_.end() && it->first == key ? it : items_.end();
}

ValueObject::const_iterator ValueObject::find(std::string_view key) const {
  return const_cast<ValueObject*>(this)->find(key);
}

Value& ValueObject::operator[](std::string_view key) {
  auto it = LowerBound(key);
  if (it == items_.end() || it->first != key) it = items_.emplace(it, std::string(key), Value());
  return it->second;
}

std::pair<ValueObject::iterator, bool> ValueObject::emplace(std::string key, Value value) {
  auto it = LowerBound(key);
  if (it != items_.end() && it->first == key) return {it, false};
  return {items_.emplace(it, std::move(key), std::move(value)), true};
}

size_t ValueObject::erase(std::string_view key) {
  auto it = find(key);
  if (it == items_.end()) return 0;
  items_.erase(it);
  return 1;
}

ValueObject ValueObject::FromSorted(std::vector<value_type> members) {
  assert(std::is_sorted(members.begin(), members.end(),
                        [](const value_type& a, const value_type& b) { return a.first < b.first; }));
  ValueObject o;
  o.items_ = std::move(members);
  return o;
}

bool operator==(const ValueObject& a, const ValueObject& b) { return a.items_ == b.items_; }

// ---- Value ------------------------------------------------------------------

Value Value::Bool(bool b) {
  Value v;
  v.data_ = b;
  return v;
}

Value Value::Number(std::string text) {
  assert(IsNumberText(text));
  Value v;
  v.data_ = NumberText{std::move(text)};
  return v;
}

Value Value::Int(int64_t n) {
  Value v;
  v.data_ = NumberText{std::to_string(n)};
  return v;
}

Value Value::String(std::string s) {
  Value v;
  v.data_ = std::move(s);
  return v;
}

Value Value::FromArray(Array a) {
  Value v;
  v.data_ = std::move(a);
  return v;
}

Value Value::FromObject(Object o) {
  Value v;
  v.data_ = std::move(o);
  return v;
}

bool Value::as_bool() const {
  assert(is_bool());
  return std::get<bool>(data_);
}

const std::string& Value::number_text() const {
  assert(is_number());
  return std::get<NumberText>(data_).text;
}

const std::string& Value::as_string() const {
  assert(is_string());
  return std::get<std::string>(data_);
}

const Value::Array& Value::as_array() const {
  assert(is_array());
  return std::get<Array>(data_);
}

Value::Array& Value::mutable_array() {
  assert(is_array());
  return std::get<Array>(data_);
}

const Value::Object& Value::as_object() const {
  assert(is_object());
  return std::get<Object>(data_);
}

Value::Object& Value::mutable_object() {
  assert(is_object());
  return std::get<Object>(data_);
}

const Value* Value::Find(std::string_view key) const {
  if (!is_object()) return nullptr;
  const Object& o = std::get<Object>(data_);
  auto it = o.find(key);
  return it == o.end() ? nullptr : &it->second;
}

Value& Value::operator[](std::string_view key) {
  if (is_null()) data_ = Object();
  assert(is_object());
  Object& o = std::get<Object>(data_);
  auto it = o.find(key);
  if (it == o.end()) it = o.emplace(std::string(key), Value()).first;
  return it->second;
}

bool Value::Erase(std::string_view key) {
  if (!is_object()) return false;
  Object& o = std::get<Object>(data_);
  auto it = o.find(key);
  if (it == o.end()) return false;
  o.erase(it);
  return true;
}

std::string Value::ToText() const {
  switch (kind()) {
    case Kind::kNull:
      return "";
    case Kind::kBool:
      return as_bool() ? "1" : "0";
    case Kind::kNumber:
      return number_text();
    case Kind::kString:
      return as_string();
    case Kind::kArray:
    case Kind::kObject:
      return ToJson();
  }
  return "";
}

// ---- serializer -------------------------------------------------------------

namespace {

void AppendQuoted(std::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xf]);
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

// Iterative would avoid recursion, but every Value we serialize was either
// parsed (depth-limited) or built by our own code; recursion depth equals
// nesting depth.
void AppendJson(const Value& v, std::string* out) {
  switch (v.kind()) {
    case Value::Kind::kNull:
      out->append("null");
      return;
    case Value::Kind::kBool:
      out->append(v.as_bool() ? "true" : "false");
      return;
    case Value::Kind::kNumber:
      out->append(v.number_text());
      return;
    case Value::Kind::kString:
      AppendQuoted(v.as_string(), out);
      return;
    case Value::Kind::kArray: {
      out->push_back('[');
      bool first = true;
      for (const Value& e : v.as_array()) {
        if (!first) out->push_back(',');
        first = false;
        AppendJson(e, out);
      }
      out->push_back(']');
      return;
    }
    case Value::Kind::kObject: {
      out->push_back('{');
      bool first = true;
      for (const auto& [k, e] : v.as_object()) {
        if (!first) out->push_back(',');
        first = false;
        AppendQuoted(k, out);
        out->push_back(':');
        AppendJson(e, out);
      }
      out->push_back('}');
      return;
    }
  }
}

}  // namespace

std::string Value::ToJson() const {
  std::string out;
  AppendJson(*this, &out);
  return out;
}

// ---- number text ------------------------------------------------------------

namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Scans the longest JSON number prefix of text[pos..]. Returns the end
// offset, or sets *error / *error_at on a malformed number.
size_t ScanNumber(std::string_view text, size_t pos, std::string* error,
                  size_t* error_at) {
  size_t i = pos;
  auto fail = [&](size_t at, const char* what) {
    *error_at = at;
    *error = what;
    return std::string_view::npos;
  };
  if (i < text.size() && text[i] == '-') ++i;
  if (i >= text.size() || !IsDigit(text[i])) {
    return fail(i, "expected a digit in number");
  }
  if (text[i] == '0') {
    ++i;
    if (i < text.size() && IsDigit(text[i])) {
      return fail(i,
                  "expected '.', 'e' or end of number after leading 0 "
                  "(leading zeros are not allowed)");
    }
  } else {
    while (i < text.size() && IsDigit(text[i])) ++i;
  }
  if (i < text.size() && text[i] == '.') {
    ++i;
    if (i >= text.size() || !IsDigit(text[i])) {
      return fail(i, "expected a digit after '.' in number");
    }
    while (i < text.size() && IsDigit(text[i])) ++i;
  }
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
    if (i >= text.size() || !IsDigit(text[i])) {
      return fail(i, "expected a digit in number exponent");
    }
    while (i < text.size() && IsDigit(text[i])) ++i;
  }
  return i;
}

}  // namespace

bool Value::IsNumberText(std::string_view text) {
  std::string error;
  size_t error_at = 0;
  size_t end = ScanNumber(text, 0, &error, &error_at);
  return end == text.size();
}

// ---- parser -----------------------------------------------------------------

namespace {

constexpr int kMaxDepth = 512;

}  // namespace

bool Value::NestingWithinLimit(std::string_view text) {
  int depth = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    switch (text[i]) {
      case '"':  // to the closing quote, over escapes
        for (++i; i < text.size() && text[i] != '"'; ++i) {
          if (text[i] == '\\') ++i;
        }
        break;
      case '[':
      case '{':
        if (++depth > kMaxDepth) return false;
        break;
      case ']':
      case '}':
        --depth;
        break;
      default:
        break;
    }
  }
  return true;
}

namespace {

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  absl::StatusOr<Value> ParseDocument() {
    SkipSpace();
    Value v;
    if (!ParseValue(&v, 0)) return status_;
    SkipSpace();
    if (pos_ != text_.size()) {
      Fail(pos_, "expected end of input after the JSON value");
      return status_;
    }
    return v;
  }

 private:
  // Records the first error; returns false so callers can `return Fail(..)`.
  bool Fail(size_t at, absl::string_view what) {
    std::string found;
    if (at >= text_.size()) {
      found = "end of input";
    } else {
      unsigned char c = static_cast<unsigned char>(text_[at]);
      if (c >= 0x20 && c < 0x7f) {
        found = absl::StrFormat("'%c'", c);
      } else {
        found = absl::StrFormat("byte 0x%02x", c);
      }
    }
    status_ = absl::InvalidArgumentError(absl::StrCat(
        "invalid JSON at byte ", at, ": ", what, ", found ", found));
    return false;
  }

  void SkipSpace() {
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  bool ParseValue(Value* out, int depth) {
    if (pos_ >= text_.size()) return Fail(pos_, "expected a JSON value");
    char c = text_[pos_];
    switch (c) {
      case '{':
        return ParseObject(out, depth + 1);
      case '[':
        return ParseArray(out, depth + 1);
      case '"': {
        std::string s;
        if (!ParseString(&s)) return false;
        *out = Value::String(std::move(s));
        return true;
      }
      case 't':
        if (!Literal("true")) return false;
        *out = Value::Bool(true);
        return true;
      case 'f':
        if (!Literal("false")) return false;
        *out = Value::Bool(false);
        return true;
      case 'n':
        if (!Literal("null")) return false;
        *out = Value::Null();
        return true;
      default:
        if (c == '-' || IsDigit(c)) return ParseNumber(out);
        return Fail(pos_,
                    "expected a JSON value (object, array, string, "
                    "number, true, false or null)");
    }
  }

  bool Literal(absl::string_view word) {
    for (size_t i = 0; i < word.size(); ++i) {
      if (pos_ + i >= text_.size() || text_[pos_ + i] != word[i]) {
        return Fail(pos_ + i, absl::StrCat("expected literal '", word, "'"));
      }
    }
    pos_ += word.size();
    return true;
  }

  bool ParseNumber(Value* out) {
    std::string error;
    size_t error_at = 0;
    size_t end = ScanNumber(text_, pos_, &error, &error_at);
    if (end == std::string_view::npos) return Fail(error_at, error);
    *out = Value::Number(std::string(text_.substr(pos_, end - pos_)));
    pos_ = end;
    return true;
  }

  bool EnterNesting(int depth) {
    if (depth > kMaxDepth) {
      return Fail(pos_, absl::StrCat("nesting deeper than ", kMaxDepth,
                                     " levels is not allowed"));
    }
    return true;
  }

  bool ParseArray(Value* out, int depth) {
    if (!EnterNesting(depth)) return false;
    ++pos_;  // '['
    Value::Array arr;
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == ']') {
      ++pos_;
      *out = Value::FromArray(std::move(arr));
      return true;
    }
    while (true) {
      SkipSpace();
      Value elem;
      if (!ParseValue(&elem, depth)) return false;
      arr.push_back(std::move(elem));
      SkipSpace();
      if (pos_ < text_.size() && text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < text_.size() && text_[pos_] == ']') {
        ++pos_;
        break;
      }
      return Fail(pos_, "expected ',' or ']' after array element");
    }
    *out = Value::FromArray(std::move(arr));
    return true;
  }

  bool ParseObject(Value* out, int depth) {
    if (!EnterNesting(depth)) return false;
    ++pos_;  // '{'
    std::vector<Value::Object::value_type> members;
    std::vector<size_t> key_at;  // each member's key offset, for a duplicate's error
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      *out = Value::FromObject(Value::Object());
      return true;
    }
    while (true) {
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] != '"') {
        return Fail(pos_, "expected '\"' to begin an object key");
      }
      key_at.push_back(pos_);
      std::string key;
      if (!ParseString(&key)) return false;
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] != ':') {
        return Fail(pos_, "expected ':' after object key");
      }
      ++pos_;
      SkipSpace();
      Value member;
      if (!ParseValue(&member, depth)) return false;
      members.emplace_back(std::move(key), std::move(member));
      SkipSpace();
      if (pos_ < text_.size() && text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < text_.size() && text_[pos_] == '}') {
        ++pos_;
        break;
      }
      return Fail(pos_, "expected ',' or '}' after object member");
    }
    if (!SortMembers(&members, key_at)) return false;
    *out = Value::FromObject(Value::Object::FromSorted(std::move(members)));
    return true;
  }

  // Sorts an object's members by key. RFC 8259 leaves duplicate keys'
  // meaning open; a document with two values for one field is ambiguous, so
  // we refuse it, naming the first repeated key in text order.
  bool SortMembers(std::vector<Value::Object::value_type>* members,
                   const std::vector<size_t>& key_at) {
    auto& m = *members;
    bool strictly_sorted = true;
    for (size_t i = 1; i < m.size() && strictly_sorted; ++i) {
      strictly_sorted = m[i - 1].first < m[i].first;
    }
    if (strictly_sorted) return true;
    std::vector<size_t> order(m.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return m[a].first < m[b].first; });
    size_t first_repeat = m.size();
    for (size_t i = 1; i < order.size(); ++i) {
      if (m[order[i]].first == m[order[i - 1]].first) {
        first_repeat = std::min(first_repeat, order[i]);  // stable: the later one
      }
    }
    if (first_repeat != m.size()) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat("invalid JSON at byte ", key_at[first_repeat], ": duplicate key \"",
                       m[first_repeat].first, "\" in object"));
      return false;
    }
    std::vector<Value::Object::value_type> sorted;
    sorted.reserve(m.size());
    for (size_t i : order) sorted.push_back(std::move(m[i]));
    m = std::move(sorted);
    return true;
  }

  static int HexDigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Reads the 4 hex digits of a \u escape at pos_ (just past "\u").
  bool ReadHex4(uint32_t* out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      int d = pos_ < text_.size() ? HexDigit(text_[pos_]) : -1;
      if (d < 0) return Fail(pos_, "expected 4 hex digits after \\u");
      v = v * 16 + static_cast<uint32_t>(d);
      ++pos_;
    }
    *out = v;
    return true;
  }

  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
      out->push_back(static_cast<char>(0xf0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
  }

  // Validates one UTF-8 sequence at pos_ (first byte >= 0x80), copies it.
  bool CopyUtf8(std::string* out) {
    size_t start = pos_;
    unsigned char c = static_cast<unsigned char>(text_[pos_]);
    int len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return Fail(start, "expected valid UTF-8 in string");
    }
    for (int i = 1; i < len; ++i) {
      if (start + i >= text_.size()) {
        return Fail(start + i, "expected UTF-8 continuation byte in string");
      }
      unsigned char cc = static_cast<unsigned char>(text_[start + i]);
      if ((cc & 0xc0) != 0x80) {
        return Fail(start + i, "expected UTF-8 continuation byte in string");
      }
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, surrogates and > U+10FFFF are not valid UTF-8.
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return Fail(start, "expected valid UTF-8 in string");
    }
    out->append(text_.substr(start, len));
    pos_ = start + len;
    return true;
  }

  bool ParseString(std::string* out) {
    ++pos_;  // opening quote
    while (true) {
      if (pos_ >= text_.size()) {
        return Fail(pos_, "expected '\"' to close the string");
      }
      unsigned char c = static_cast<unsigned char>(text_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) {
        return Fail(pos_,
                    "expected an escape (\\n, \\u00XX) instead of a "
                    "raw control character in string");
      }
      if (c >= 0x80) {
        if (!CopyUtf8(out)) return false;
        continue;
      }
      if (c != '\\') {
        // A run of plain ASCII characters, appended at once.
        size_t end = pos_ + 1;
        while (end < text_.size()) {
          const unsigned char d = static_cast<unsigned char>(text_[end]);
          if (d == '"' || d == '\\' || d < 0x20 || d >= 0x80) break;
          ++end;
        }
        out->append(text_.data() + pos_, end - pos_);
        pos_ = end;
        continue;
      }
      if (!ParseEscape(out)) return false;
    }
  }

  // The escape at pos_ (a backslash) inside a string.
  bool ParseEscape(std::string* out) {
    size_t esc_at = pos_;
    ++pos_;
    if (pos_ >= text_.size()) {
      return Fail(pos_, "expected an escape character after '\\'");
    }
    char e = text_[pos_++];
    switch (e) {
      case '"':
        out->push_back('"');
        break;
      case '\\':
        out->push_back('\\');
        break;
      case '/':
        out->push_back('/');
        break;
      case 'b':
        out->push_back('\b');
        break;
      case 'f':
        out->push_back('\f');
        break;
      case 'n':
        out->push_back('\n');
        break;
      case 'r':
        out->push_back('\r');
        break;
      case 't':
        out->push_back('\t');
        break;
      case 'u':
        return ParseUnicodeEscape(esc_at, out);
      default:
        return Fail(pos_ - 1,
                    "expected one of \\\" \\\\ \\/ \\b \\f \\n "
                    "\\r \\t \\u after '\\'");
    }
    return true;
  }

  // The 'u' escape (four hex digits) whose backslash is at `esc_at`, pos_
  // after the 'u'; a surrogate pair is joined into one code point.
  bool ParseUnicodeEscape(size_t esc_at, std::string* out) {
    uint32_t cp = 0;
    if (!ReadHex4(&cp)) return false;
    if (cp >= 0xdc00 && cp <= 0xdfff) {
      return Fail(esc_at,
                  "expected a high surrogate before low "
                  "surrogate \\u escape");
    }
    if (cp >= 0xd800 && cp <= 0xdbff) {
      if (pos_ + 1 >= text_.size() || text_[pos_] != '\\' ||
          text_[pos_ + 1] != 'u') {
        return Fail(pos_,
                    "expected a \\u low surrogate after high "
                    "surrogate \\u escape");
      }
      size_t low_at = pos_;
      pos_ += 2;
      uint32_t low = 0;
      if (!ReadHex4(&low)) return false;
      if (low < 0xdc00 || low > 0xdfff) {
        return Fail(low_at,
                    "expected a \\u low surrogate (DC00-DFFF) "
                    "after high surrogate \\u escape");
      }
      cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
    }
    AppendUtf8(cp, out);
    return true;
  }

  std::string_view text_;
  size_t pos_ = 0;
  absl::Status status_;
};

}  // namespace

absl::StatusOr<Value> Value::ParseJson(std::string_view text) {
  return Parser(text).ParseDocument();
}

void PrintTo(const Value& v, std::ostream* os) { *os << v.ToJson(); }

}  // namespace eventstream
