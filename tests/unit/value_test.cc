#include "libsync/base/value.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/doctype_fixtures.h"

namespace eventstream {
namespace {

using ::testing::HasSubstr;

using fixtures::J;

std::string ParseError(const std::string& text) {
  absl::StatusOr<Value> v = Value::ParseJson(text);
  EXPECT_FALSE(v.ok()) << text << " parsed as " << v->ToJson();
  if (v.ok()) return "";
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(v.status().message());
}

TEST(ValueTest, NumbersRoundTripExactly) {
  for (const char* text :
       {"12345678901234567.123456789", "9223372036854775807",
        "-9223372036854775808", "-1.5e-300", "0", "-0", "0.10", "1E+2",
        "18446744073709551616123", "1e400"}) {
    Value v = J(text);
    ASSERT_TRUE(v.is_number()) << text;
    EXPECT_EQ(v.number_text(), text);
    EXPECT_EQ(v.ToJson(), text);
  }
  Value doc = J(
      R"({"amount":12345678901234567.123456789,"id":9223372036854775807})");
  EXPECT_EQ(
      doc.ToJson(),
      R"({"amount":12345678901234567.123456789,"id":9223372036854775807})");
  EXPECT_EQ(doc.Find("amount")->ToText(), "12345678901234567.123456789");
}

TEST(ValueTest, NumbersWithDifferentTextAreDifferent) {
  // Exact text is the contract: 1.0 and 1 are not silently merged.
  EXPECT_NE(J("1.0"), J("1"));
  EXPECT_EQ(Value::Int(42).ToJson(), "42");
  EXPECT_EQ(Value::Int(INT64_MIN).number_text(), "-9223372036854775808");
}

TEST(ValueTest, IsNumberText) {
  for (const char* ok : {"0", "-0.5", "1e10", "1E-10", "9223372036854775807"}) {
    EXPECT_TRUE(Value::IsNumberText(ok)) << ok;
  }
  for (const char* bad : {"", "-", "01", "1.", ".5", "+1", "1e", "1e+", "0x10",
                          "NaN", "Infinity", " 1", "1 "}) {
    EXPECT_FALSE(Value::IsNumberText(bad)) << bad;
  }
}

TEST(ValueTest, TimestampStaysAString) {
  Value v = J(R"({"modified":"2026-11-23 10:00:00.123456+00"})");
  EXPECT_EQ(v.Find("modified")->as_string(), "2026-11-23 10:00:00.123456+00");
  EXPECT_EQ(v.ToJson(), R"({"modified":"2026-11-23 10:00:00.123456+00"})");
}

TEST(ValueTest, KeysAreSortedAndOutputCompact) {
  Value v = J(
      " { \"b\" : [ 1 , 2 ] ,\n\t\"a\" : { \"z\" : null , \"y\" : true } , "
      "\"c\" : false } ");
  EXPECT_EQ(v.ToJson(), R"({"a":{"y":true,"z":null},"b":[1,2],"c":false})");
  EXPECT_EQ(J(v.ToJson()), v);
}

TEST(ValueTest, StringEscapes) {
  Value v = J(R"("q\" b\\ s\/ \b\f\n\r\t \u0001 \u00e9 \u20AC")");
  EXPECT_EQ(v.as_string(), "q\" b\\ s/ \b\f\n\r\t \x01 \xc3\xa9 \xe2\x82\xac");
  // Serializer: control characters escaped, '/' and non-ASCII as is.
  EXPECT_EQ(v.ToJson(),
            "\"q\\\" b\\\\ s/ \\b\\f\\n\\r\\t \\u0001 \xc3\xa9 \xe2\x82\xac\"");
  EXPECT_EQ(Value::String(std::string("\x1f\x7f", 2)).ToJson(),
            "\"\\u001f\x7f\"");
  EXPECT_EQ(J(v.ToJson()), v);
}

TEST(ValueTest, SurrogatePairs) {
  Value v = J(R"("\ud83d\ude00 \uD834\uDD1E")");
  EXPECT_EQ(v.as_string(), "\xf0\x9f\x98\x80 \xf0\x9d\x84\x9e");
  EXPECT_EQ(v.ToJson(), "\"\xf0\x9f\x98\x80 \xf0\x9d\x84\x9e\"");
  // Raw UTF-8 input round-trips byte for byte.
  EXPECT_EQ(J("\"\xf0\x9f\x98\x80\"").as_string(), "\xf0\x9f\x98\x80");
}

TEST(ValueTest, EmbeddedNul) {
  Value v = J(R"("a\u0000b")");
  EXPECT_EQ(v.as_string(), std::string("a\0b", 3));
  EXPECT_EQ(v.ToJson(), R"("a\u0000b")");
}

TEST(ValueTest, ParseErrorsNameOffsetAndExpectation) {
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {"", "invalid JSON at byte 0: expected a JSON value"},
      {"   ", "at byte 3: expected a JSON value, found end of input"},
      {"@",
       "at byte 0: expected a JSON value (object, array, string, "
       "number, true, false or null), found '@'"},
      {"tru", "at byte 3: expected literal 'true', found end of input"},
      {"nulL", "at byte 3: expected literal 'null', found 'L'"},
      {"fals", "at byte 4: expected literal 'false'"},
      {"1 2",
       "at byte 2: expected end of input after the JSON value, "
       "found '2'"},
      {"01", "at byte 1: expected '.', 'e' or end of number after leading 0"},
      {"-", "at byte 1: expected a digit in number"},
      {"-a", "at byte 1: expected a digit in number, found 'a'"},
      {"1.", "at byte 2: expected a digit after '.' in number"},
      {"1e+", "at byte 3: expected a digit in number exponent"},
      {"[1,]", "at byte 3: expected a JSON value"},
      {"[1 2]",
       "at byte 3: expected ',' or ']' after array element, "
       "found '2'"},
      {"[1",
       "at byte 2: expected ',' or ']' after array element, found "
       "end of input"},
      {"{1:2}", "at byte 1: expected '\"' to begin an object key, found '1'"},
      {"{\"a\" 1}", "at byte 5: expected ':' after object key, found '1'"},
      {"{\"a\":1,}",
       "at byte 7: expected '\"' to begin an object key, "
       "found '}'"},
      {"{\"a\":1 \"b\":2}",
       "at byte 7: expected ',' or '}' after object "
       "member"},
      {"{\"a\":1,\"a\":2}", "at byte 7: duplicate key \"a\" in object"},
      {"\"abc",
       "at byte 4: expected '\"' to close the string, found end "
       "of input"},
      {"\"a\nb\"",
       "at byte 2: expected an escape (\\n, \\u00XX) instead of "
       "a raw control character in string, found byte 0x0a"},
      {"\"\\x\"",
       "at byte 2: expected one of \\\" \\\\ \\/ \\b \\f \\n \\r "
       "\\t \\u after '\\', found 'x'"},
      {"\"\\", "at byte 2: expected an escape character after '\\'"},
      {"\"\\u12G4\"",
       "at byte 5: expected 4 hex digits after \\u, "
       "found 'G'"},
      {"\"\\ud83d\"",
       "at byte 7: expected a \\u low surrogate after high "
       "surrogate \\u escape"},
      {"\"\\ud83d\\u0041\"",
       "at byte 7: expected a \\u low surrogate "
       "(DC00-DFFF)"},
      {"\"\\ude00\"",
       "at byte 1: expected a high surrogate before low "
       "surrogate"},
      {"\"\xff\"",
       "at byte 1: expected valid UTF-8 in string, found byte "
       "0xff"},
      {"\"\xc3(\"", "at byte 2: expected UTF-8 continuation byte in string"},
      {"\"\xc0\xaf\"", "at byte 1: expected valid UTF-8"},      // overlong
      {"\"\xed\xa0\x80\"", "at byte 1: expected valid UTF-8"},  // surrogate
      {"\"\xe2\x82\"", "at byte 3: expected UTF-8 continuation byte"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ParseError(c.text), HasSubstr(c.message)) << c.text;
  }
}

TEST(ValueTest, NestingLimit) {
  std::string ok = std::string(512, '[') + std::string(512, ']');
  EXPECT_TRUE(Value::ParseJson(ok).ok());
  std::string deep = std::string(513, '[') + std::string(513, ']');
  EXPECT_THAT(ParseError(deep),
              HasSubstr("at byte 512: nesting deeper than 512 levels"));
  // Far deeper input fails the same way instead of overflowing the stack.
  std::string huge(1000000, '[');
  EXPECT_THAT(ParseError(huge), HasSubstr("nesting deeper than 512"));
  std::string objects;
  for (int i = 0; i < 600; ++i) objects += "{\"a\":";
  EXPECT_THAT(ParseError(objects), HasSubstr("nesting deeper than 512"));
}

// The scan agrees with the parser's limit, and brackets inside strings
// (escaped quotes included) do not count.
TEST(ValueTest, NestingWithinLimitAgreesWithTheParser) {
  for (int n : {1, 511, 512, 513, 2000}) {
    const std::string arrays = std::string(n, '[') + std::string(n, ']');
    EXPECT_EQ(Value::NestingWithinLimit(arrays), Value::ParseJson(arrays).ok()) << n;
    std::string objects;
    for (int i = 0; i < n; ++i) objects += "{\"a\":";
    objects += "1" + std::string(n, '}');
    EXPECT_EQ(Value::NestingWithinLimit(objects), Value::ParseJson(objects).ok()) << n;
  }
  const std::string in_strings =
      "{\"a\": \"" + std::string(600, '[') + "\\\"" + std::string(600, '{') + "\"}";
  EXPECT_TRUE(Value::ParseJson(in_strings).ok());
  EXPECT_TRUE(Value::NestingWithinLimit(in_strings));
  // Siblings do not add up.
  std::string siblings = "[";
  for (int i = 0; i < 600; ++i) siblings += i == 0 ? "[1]" : ",[1]";
  EXPECT_TRUE(Value::NestingWithinLimit(siblings + "]"));
}

TEST(ValueTest, ObjectHelpers) {
  Value v;
  v["b"] = Value::Int(1);
  v["a"] = Value::String("x");
  EXPECT_TRUE(v.is_object());
  EXPECT_EQ(v.ToJson(), R"({"a":"x","b":1})");
  ASSERT_NE(v.Find("a"), nullptr);
  EXPECT_EQ(v.Find("missing"), nullptr);
  EXPECT_EQ(Value::Int(1).Find("a"), nullptr);
  EXPECT_TRUE(v.Erase("a"));
  EXPECT_FALSE(v.Erase("a"));
  EXPECT_EQ(v.ToJson(), R"({"b":1})");
}

// ValueObject keeps members sorted however they arrive, so parsed,
// built and compared objects agree (ToJson is canonical).
TEST(ValueTest, ObjectMembersStaySortedWhateverTheOrder) {
  Value parsed = J(R"({"zeta":1,"alpha":2,"mid":{"y":1,"b":2},"Beta":3})");
  EXPECT_EQ(parsed.ToJson(), R"({"Beta":3,"alpha":2,"mid":{"b":2,"y":1},"zeta":1})");
  Value built;
  for (const char* k : {"mid", "zeta", "Beta", "alpha"}) built[k] = Value::Int(0);
  built["mid"] = J(R"({"b":2,"y":1})");
  built["zeta"] = Value::Int(1);
  built["alpha"] = Value::Int(2);
  built["Beta"] = Value::Int(3);
  EXPECT_EQ(built, parsed);
  Value::Object o;
  EXPECT_TRUE(o.emplace("b", Value::Int(1)).second);
  EXPECT_FALSE(o.emplace("b", Value::Int(2)).second);  // as std::map: kept
  EXPECT_EQ(o.find("b")->second, Value::Int(1));
  o["b"] = Value::Int(2);
  EXPECT_EQ(o.find("b")->second, Value::Int(2));
  EXPECT_EQ(o.find("a"), o.end());
  EXPECT_EQ(o.erase("b"), 1u);
  EXPECT_TRUE(o.empty());
}

TEST(ValueTest, DuplicateKeyNamedAtItsFirstRepeatInTextOrder) {
  // Unsorted members: the error still names the first key repeated in the
  // text (here "b" at byte 13), not the first in sorted order ("a").
  auto v = Value::ParseJson(R"({"c":1,"b":2,"b":3,"a":4,"a":5})");
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(std::string(v.status().message()),
              ::testing::HasSubstr("at byte 13: duplicate key \"b\" in object"));
}

TEST(ValueTest, ToText) {
  EXPECT_EQ(Value().ToText(), "");
  EXPECT_EQ(Value::Bool(true).ToText(), "1");
  EXPECT_EQ(Value::Bool(false).ToText(), "0");
  EXPECT_EQ(Value::Number("-1.5e-300").ToText(), "-1.5e-300");
  EXPECT_EQ(Value::String("a\"b").ToText(), "a\"b");
  EXPECT_EQ(J(R"([1,"a"])").ToText(), R"([1,"a"])");
}

TEST(ValueTest, Equality) {
  EXPECT_EQ(J(R"({"a":[1,{"b":null}]})"),
            J(R"({ "a" : [1, {"b": null}] })"));
  EXPECT_NE(J(R"({"a":1})"), J(R"({"a":"1"})"));
  EXPECT_NE(Value(), Value::String(""));
  EXPECT_NE(Value::Bool(false), Value::Int(0));
}

}  // namespace
}  // namespace eventstream
