// Value: a JSON value that keeps every number as its exact decimal text.
//
// Documents travel between sites as JSON. PostgreSQL numerics, bigints and
// timestamps must arrive digit for digit, so a Value never converts a number
// to double: `12345678901234567.123456789` stays that text from ParseJson to
// ToJson. Objects keep their keys sorted (ValueObject), so ToJson is canonical
// and two equal Values serialize to the same bytes.
//
// Value is a plain value type: copyable, movable, comparable with ==.
#ifndef EVENTSTREAM_LIBSYNC_BASE_VALUE_H_
#define EVENTSTREAM_LIBSYNC_BASE_VALUE_H_

#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace eventstream {

class Value;

// An object's members, sorted by key (std::string's order, as std::map's):
// one vector instead of a tree node per member, so building, copying and
// freeing a document costs a few allocations, not one per field. The
// subset of std::map's interface the code uses; a lookup is a binary search,
// an insert or erase in the middle moves the members after it (objects are
// rows of tens to hundreds of fields; ParseJson sorts once).
class ValueObject {
 public:
  using value_type = std::pair<std::string, Value>;
  using iterator = std::vector<value_type>::iterator;
  using const_iterator = std::vector<value_type>::const_iterator;

  ValueObject() = default;

  iterator begin();
  iterator end();
  const_iterator begin() const;
  const_iterator end() const;
  size_t size() const;
  bool empty() const;

  iterator find(std::string_view key);
  const_iterator find(std::string_view key) const;
  Value& operator[](std::string_view key);
  // As std::map: inserts when absent (an existing member stays);
  // `second` says whether it did.
  std::pair<iterator, bool> emplace(std::string key, Value value);
  iterator erase(const_iterator it);
  size_t erase(std::string_view key);

  // Members already sorted by key, keys unique (ParseJson sorts them).
  static ValueObject FromSorted(std::vector<value_type> members);

  friend bool operator==(const ValueObject& a, const ValueObject& b);
  friend bool operator!=(const ValueObject& a, const ValueObject& b) { return !(a == b); }

 private:
  iterator LowerBound(std::string_view key);
  std::vector<value_type> items_;
};

class Value {
 public:
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  using Array = std::vector<Value>;
  using Object = ValueObject;

  Value() = default;  // null
  static Value Null() { return Value(); }
  static Value Bool(bool b);
  // `text` must be a JSON number (checked by IsNumberText); kept verbatim.
  static Value Number(std::string text);
  static Value Int(int64_t n);
  static Value String(std::string s);
  static Value FromArray(Array a);
  static Value FromObject(Object o);
  static Value EmptyArray() { return FromArray({}); }
  static Value EmptyObject() { return FromObject({}); }

  Kind kind() const { return static_cast<Kind>(data_.index()); }
  bool is_null() const { return kind() == Kind::kNull; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_number() const { return kind() == Kind::kNumber; }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_array() const { return kind() == Kind::kArray; }
  bool is_object() const { return kind() == Kind::kObject; }

  // Accessors; calling one on the wrong kind is a programming error (asserts).
  bool as_bool() const;
  const std::string& number_text() const;
  const std::string& as_string() const;
  const Array& as_array() const;
  Array& mutable_array();
  const Object& as_object() const;
  Object& mutable_object();

  // Object helpers. Find returns nullptr when absent or when not an object.
  const Value* Find(std::string_view key) const;
  // Inserts null if absent; turns a null Value into an object first.
  Value& operator[](std::string_view key);
  // Removes `key` from an object; returns whether it was there.
  bool Erase(std::string_view key);

  // Scalar text as a database would take it: strings as is, numbers as their
  // text, booleans "1"/"0" (Frappe's Check), null -> empty. Arrays/objects
  // -> their JSON.
  std::string ToText() const;

  // Compact JSON, keys sorted. Non-ASCII is written as UTF-8 as is.
  std::string ToJson() const;
  // Strict JSON (RFC 8259). Errors name the byte offset and what was expected.
  static absl::StatusOr<Value> ParseJson(std::string_view text);

  // Whether ParseJson's nesting limit (512 levels) admits `text`, read as
  // well-formed JSON (e.g. PostgreSQL's jsonb output) without building it:
  // a scan that skips strings, no allocation.
  static bool NestingWithinLimit(std::string_view text);

  // True for text that is a JSON number (`-0.5`, `1e10`, `9223372036854775807`).
  static bool IsNumberText(std::string_view text);

  friend bool operator==(const Value& a, const Value& b) {
    return a.data_ == b.data_;
  }
  friend bool operator!=(const Value& a, const Value& b) { return !(a == b); }

 private:
  struct NumberText {
    std::string text;
    friend bool operator==(const NumberText& a, const NumberText& b) {
      return a.text == b.text;
    }
  };
  std::variant<std::monostate, bool, NumberText, std::string, Array, Object>
      data_;
};

inline ValueObject::iterator ValueObject::begin() { return items_.begin(); }
inline ValueObject::iterator ValueObject::end() { return items_.end(); }
inline ValueObject::const_iterator ValueObject::begin() const { return items_.begin(); }
inline ValueObject::const_iterator ValueObject::end() const { return items_.end(); }
inline size_t ValueObject::size() const { return items_.size(); }
inline bool ValueObject::empty() const { return items_.empty(); }
inline ValueObject::iterator ValueObject::erase(const_iterator it) { return items_.erase(it); }

// Lets GoogleTest (and logs) show a Value as its JSON.
void PrintTo(const Value& v, std::ostream* os);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_BASE_VALUE_H_
