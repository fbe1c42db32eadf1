// Tests for the condition language (libsync/config/expr.h): what it accepts, what it
// means (Python semantics), the errors users see, and a fuzz test that it
// never crashes or hangs on hostile input.
#include "libsync/config/expr.h"

#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace eventstream {
namespace {

// The document most tests evaluate against.
const Value& TestDoc() {
  static const Value* doc = [] {
    auto parsed = Value::ParseJson(R"({
      "public": 1, "customer_group": "Retail", "name": "SO-0001",
      "qty": 5, "rate": 12345678901234567.123456789,
      "big": 9223372036854775807, "neg": -3.5,
      "flag": true, "off": false, "none": null, "empty": "", "zero": 0,
      "zero_f": 0.0, "tags": ["a", "b"], "address": {"city": "Pune"},
      "items": [{"name": "r1", "qty": 2}], "get": "field-named-get"
    })");
    if (!parsed.ok()) {
      ADD_FAILURE() << parsed.status();
      return new Value();
    }
    return new Value(*std::move(parsed));
  }();
  return *doc;
}

struct TruthCase {
  const char* text;
  bool want;
};

class ConditionTruth : public testing::TestWithParam<TruthCase> {};

TEST_P(ConditionTruth, EvaluatesLikePython) {
  const TruthCase& c = GetParam();
  auto cond = Condition::Parse(c.text);
  ASSERT_TRUE(cond.ok()) << c.text << ": " << cond.status();
  auto got = cond->Evaluate(TestDoc());
  ASSERT_TRUE(got.ok()) << c.text << ": " << got.status();
  EXPECT_EQ(*got, c.want) << c.text;
  EXPECT_EQ(cond->text(), c.text);
}

INSTANTIATE_TEST_SUITE_P(
    Expr, ConditionTruth,
    testing::ValuesIn(std::vector<TruthCase>{
        // The seed's own example and its variants.
        {R"(doc.public == 1 and doc.customer_group in ("Retail", "Wholesale"))",
         true},
        {R"(doc.public == 1 and doc.customer_group in ("Wholesale",))", false},
        {R"(doc.customer_group not in ["Retail"])", false},
        {R"(doc.public == 2 or doc.customer_group == "Retail")", true},
        // Missing fields read as None; is / is not with the singletons.
        {"doc.missing is None", true},
        {"doc.missing == None", true},
        {"doc.missing is not None", false},
        {"doc.none is None", true},
        {"doc.flag is True", true},
        {"doc.off is False", true},
        {"doc.public is True", false},  // 1 is not True, though 1 == True
        {"doc.flag is not False", true},
        // Python equality across kinds.
        {"doc.flag == 1", true},
        {"True == 1", true},
        {"False == 0.0", true},
        {"1 == 1.0", true},
        {"1 == '1'", false},
        {"doc.public != '1'", true},
        {"None == 0", false},
        {"None != False", true},
        {"doc.address == doc.address", true},
        // Chained comparisons.
        {"1 < doc.qty <= 5", true},
        {"1 < doc.qty < 5", false},
        {"5 >= doc.qty > 4.999", true},
        {"1 == 1 == 1.0 != 2", true},
        {"3 > 2 > 1", true},
        {"1 > 2 < doc.missing.x", false},  // short-circuits like Python
        // Exact decimal comparison, never via double.
        {"doc.big == 9223372036854775807", true},
        {"doc.big > 9223372036854775806", true},
        {"doc.big < 9223372036854775808", true},
        {"doc.big == 9223372036854775807.0", true},
        {"doc.rate == 12345678901234567.123456789", true},
        {"doc.rate == 12345678901234567.1234567890000", true},
        {"doc.rate == 1.2345678901234567123456789e16", true},
        {"doc.rate > 12345678901234567.123456788", true},
        {"doc.rate < 12345678901234567.12345679", true},
        {"doc.rate != 12345678901234567.12345678", true},
        {"0.1e1 == 1", true},
        {".5 == 0.5", true},
        {"1. == 1", true},
        {"00 == 0", true},
        {"007.5 == 7.5", true},
        {"-0 == 0", true},
        {"-0.0 == 0", true},
        {"doc.neg < -3", true},
        {"doc.neg == -3.5", true},
        {"doc.neg > -3.51", true},
        {"-1 < 0 < 1", true},
        {"-2 < -1", true},
        {"1e-5 < 1e-4", true},
        {"100E-2 == 1", true},
        {"1e100 > 99e98", true},
        {"1e999999999999999999999 > 1", true},
        {"1e-999999999999999999999 > 0", true},
        {"True < 2", true},
        // Truthiness.
        {"doc.public", true},
        {"doc.empty", false},
        {"doc.zero", false},
        {"doc.zero_f", false},
        {"doc.tags", true},
        {"doc.address", true},
        {"doc.missing", false},
        {"not doc.missing", true},
        {"[]", false},
        {"()", false},
        {"[0]", true},
        {"''", false},
        {"'0'", true},
        {"None", false},
        {"0.000", false},
        {"0.001", true},
        {"not not doc.public", true},
        // not binds looser than comparisons, and tighter than and/or.
        {"not doc.public == 2", true},
        {"not doc.public == 1 or doc.flag", true},
        {"not (doc.public == 1 or doc.flag)", false},
        {"doc.flag or doc.missing.x", true},  // short-circuit, no error
        {"doc.off and doc.missing.x", false},
        {"doc.public == 1 and doc.flag and not doc.off", true},
        // Strings: byte order, substring, escapes, concatenation.
        {"'ab' < 'b'", true},
        {"'a' < 'ab'", true},
        {"'Z' < 'a'", true},
        {"'\u00e9' > 'z'", true},
        {"'et' in doc.customer_group", true},
        {"'' in 'abc'", true},
        {"'x' not in 'abc'", true},
        {R"("a\"b" == 'a"b')", true},
        {R"('it\'s' == "it's")", true},
        {R"("\\" == '\\')", true},
        {R"('\u00e9' == "é")", true},
        {R"("tab\there" != "tab here")", true},
        {R"("a\nb" != "ab")", true},
        {R"("a" 'b' == "ab")", true},
        // Containers: membership, dict keys, element-wise compare.
        {"'a' in doc.tags", true},
        {"'c' in doc.tags", false},
        {"'city' in doc.address", true},
        {"1 in doc.address", false},
        {"['a', 'b'] == doc.tags", true},
        {"doc.tags == ('a', 'b')", true},  // tuples and lists are both arrays
        {"[1, 2] < [1, 3]", true},
        {"(1, 2) < (1, 2, 0)", true},
        {"[1, 'a'] == [1.0, 'a']", true},
        {"1 in (1.0,)", true},
        {"None in (None,)", true},
        {"(1) == 1", true},  // parentheses group; (1,) is a tuple
        {"((1,)) == [1]", true},
        {"[(1, 2), [3]] == [[1, 2], (3,)]", true},
        {"[1, 2,] == [1, 2]", true},
        // Attribute chains and doc.get.
        {"doc.address.city == 'Pune'", true},
        {"doc.address.zip is None", true},
        {"(doc).public == 1", true},
        {"doc.get('public') == 1", true},
        {"doc.get(\"missing\") is None", true},
        {"doc.get('missing', 'x') == 'x'", true},
        {"doc.get('none', 5) is None", true},  // a stored null is kept
        {"doc.get('public', 5) == 1", true},
        {"doc.get(1) is None", true},
        {"doc.get('address').get('city') == 'Pune'", true},
        {"doc.address.get('city',) == 'Pune'", true},
        {"doc.get == 'field-named-get'", true},  // no call: the field "get"
        {"doc.get(doc.get('customer_group'), 7) == 7", true},
        // Whitespace of every kind between tokens.
        {"  doc.public\t==\n1  ", true},
        {"doc . public == 1", true},
    }));

TEST(ExprValue, AndOrReturnTheDecidingOperand) {
  struct Case {
    const char* text;
    const char* want_json;
  };
  for (const Case& c : std::vector<Case>{
           {"doc.missing or 'default'", R"("default")"},
           {"doc.public and doc.customer_group", R"("Retail")"},
           {"doc.zero and doc.public", "0"},
           {"doc.zero or doc.empty or doc.none", "null"},
           {"(1, 'a', doc.tags)", R"([1,"a",["a","b"]])"},
           {"[doc.address]", R"([{"city":"Pune"}])"},
           {"()", "[]"},
           {"-1.5e3", "-1.5e3"},
           {".5", "0.5"},
           {"1.", "1.0"},
           {"doc.rate", "12345678901234567.123456789"},
           {"doc.public == 1", "true"},
           {"not doc.public", "false"},
           {"doc.items", R"([{"name":"r1","qty":2}])"},
           {"'\\u00e9'", "\"\xc3\xa9\""},
       }) {
    auto cond = Condition::Parse(c.text);
    ASSERT_TRUE(cond.ok()) << c.text << ": " << cond.status();
    auto got = cond->EvaluateValue(TestDoc());
    ASSERT_TRUE(got.ok()) << c.text << ": " << got.status();
    EXPECT_EQ(got->ToJson(), c.want_json) << c.text;
  }
}

struct ErrorCase {
  std::string text;
  std::string want;  // the exact message
};

TEST(ExprParse, ErrorsNameTheColumnAndTheProblem) {
  const std::string kNames =
      "is not allowed; a condition can only name doc, True, False and None";
  for (const ErrorCase& c : std::vector<ErrorCase>{
           {"doc.x == ", "column 10: expected a value, found end of input"},
           {"", "column 1: expected a value, found end of input"},
           {"   ", "column 4: expected a value, found end of input"},
           {"import os", "column 1: 'import' " + kNames},
           {"__import__('os')", "column 1: '__import__' " + kNames},
           {"lambda: 1", "column 1: 'lambda' " + kNames},
           {"doc.x == os.system", "column 10: 'os' " + kNames},
           {"doc.x = 1", "column 7: '=' is not supported; use '==' to compare"},
           {"doc.x + 1",
            "column 7: '+' is not supported; conditions allow only "
            "comparisons, in, is, and, or, not, literals and doc.field"},
           {"{}",
            "column 1: '{' is not supported; conditions allow only "
            "comparisons, in, is, and, or, not, literals and doc.field"},
           {"doc.x - 1",
            "column 7: arithmetic is not supported ('-' may only precede a "
            "number)"},
           {"-doc.x",
            "column 1: arithmetic is not supported ('-' may only precede a "
            "number)"},
           {"doc.x == (1, 2",
            "column 15: expected ',' or ')', found end of input"},
           {"doc.x in [1 2]", "column 13: expected ',' or ']', found number 2"},
           {"doc.x()", "column 6: calls are not supported (only doc.get(...))"},
           {"'abc'.upper()",
            "column 12: calls are not supported (only doc.get(...))"},
           {"doc[0]",
            "column 4: subscripts are not supported; use doc.field or "
            "doc.get(\"field\")"},
           {"doc.__class__",
            "column 5: '__class__' is not allowed; names starting with '__' "
            "are reserved"},
           {"doc.x is 1",
            "column 10: expected None, True or False after 'is' (use == to "
            "compare values), found number 1"},
           {"doc.x is not 'a'",
            "column 14: expected None, True or False after 'is' (use == to "
            "compare values), found a string"},
           {"doc.x == 'abc", "column 10: unterminated string: expected closing '"},
           {"\"a\nb\"", "column 1: unterminated string: expected closing \""},
           {R"("\q")",
            R"(column 1: unsupported escape '\q' (use \\ \' \" \n \t \r or \uXXXX))"},
           {R"("\u12")", "column 1: malformed \\u escape: expected 4 hex digits"},
           {R"("\ud800")",
            "column 1: \\u escape names a surrogate; write the character "
            "itself instead"},
           {"01", "column 1: leading zeros are not allowed in integer literals"},
           {"1e", "column 1: malformed number: expected digits after 'e'"},
           {"0x10", "column 1: malformed number '0x'"},
           {"1..2", "column 1: malformed number '1..'"},
           {"doc.x == 1 doc.y",
            "column 12: expected an operator (and, or, ==, in, ...) or end of "
            "input, found 'doc'"},
           {"doc.x)",
            "column 6: expected an operator (and, or, ==, in, ...) or end of "
            "input, found ')'"},
           {"doc.", "column 5: expected a field name after '.', found end of input"},
           {"doc.1", "column 4: expected an operator (and, or, ==, in, ...) or "
                     "end of input, found number 0.1"},
           {"not", "column 4: expected a value, found end of input"},
           {"doc.x and", "column 10: expected a value, found end of input"},
           {"doc.x == and 1", "column 10: expected a value, found 'and'"},
           {"doc.x not 1",
            "column 7: expected an operator (and, or, ==, in, ...) or end of "
            "input, found 'not'"},
           {"doc.get()",
            "column 9: get() needs a field name: doc.get(\"field\")"},
           {"doc.get('a', 1, 2)",
            "column 17: get() takes a field name and an optional default, "
            "nothing more"},
           {"doc.get('a' 1)", "column 13: expected ',' or ')', found number 1"},
           // Columns count characters, not bytes.
           {"'é' == é", "column 8: unexpected character outside a string literal"},
           {"x\x01", "column 1: 'x' " + kNames},
           {"\x01", "column 1: unexpected character outside a string literal"},
       }) {
    auto cond = Condition::Parse(c.text);
    ASSERT_FALSE(cond.ok()) << c.text;
    EXPECT_EQ(cond.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(cond.status().message(), c.want) << c.text;
  }
}

TEST(ExprParse, LimitsAreParseErrorsNotCrashes) {
  // 64 levels of parentheses or `not` are fine; one more is an error.
  std::string ok64 = std::string(64, '(') + "1" + std::string(64, ')');
  EXPECT_TRUE(Condition::Parse(ok64).ok());
  std::string bad65 = std::string(65, '(') + "1" + std::string(65, ')');
  EXPECT_EQ(Condition::Parse(bad65).status().message(),
            "column 65: nesting is deeper than 64 levels");
  std::string nots;
  for (int i = 0; i < 64; ++i) nots += "not ";
  EXPECT_TRUE(Condition::Parse(nots + "doc.x").ok());
  EXPECT_EQ(Condition::Parse(nots + "not doc.x").status().message(),
            "column 257: nesting is deeper than 64 levels");
  EXPECT_EQ(Condition::Parse(std::string(4000, '[')).status().message(),
            "column 65: nesting is deeper than 64 levels");

  std::string chain = "doc";
  for (int i = 0; i < 1000; ++i) chain += ".a";
  auto deep = Condition::Parse(chain);
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.status().message(),
            "column 515: attribute chain is nested too deeply");

  // The length limit is checked before anything else.
  EXPECT_EQ(Condition::Parse(std::string(10000, '(')).status().message(),
            "column 4097: condition is 10000 bytes long; the limit is 4096");
  std::string long_ok = "doc.x == '" + std::string(4000, 'a') + "'";
  EXPECT_TRUE(Condition::Parse(long_ok).ok());

  // A long flat chain is not deep: and/or and tuples are n-ary nodes.
  std::string flat = "doc.x == 1";
  while (flat.size() < 4000) flat += " or doc.x == 1";
  EXPECT_TRUE(Condition::Parse(flat).ok());
}

TEST(ExprEvaluate, TypeErrorsAreInvalidArgumentWithColumn) {
  for (const ErrorCase& c : std::vector<ErrorCase>{
           {"'a' < 1", "column 5: '<' not supported between 'str' and 'int'"},
           {"doc.neg >= 'x'",
            "column 9: '>=' not supported between 'float' and 'str'"},
           {"None < 1", "column 6: '<' not supported between 'NoneType' and 'int'"},
           {"doc.tags > doc.address",
            "column 10: '>' not supported between 'list' and 'dict'"},
           {"[1] < ['a']", "column 5: '<' not supported between 'int' and 'str'"},
           {"1 < doc.qty < 'x'",
            "column 13: '<' not supported between 'int' and 'str'"},
           {"doc.missing.x",
            "column 13: cannot read field 'x' of a 'NoneType' value"},
           {"doc.public.x", "column 12: cannot read field 'x' of a 'int' value"},
           {"doc.items.qty",
            "column 11: cannot read field 'qty' of a 'list' value"},
           {"doc.qty.get('x')", "column 9: 'int' value has no get()"},
           {"'a' in doc.missing",
            "column 5: 'in' needs a str, list or tuple on the right, not "
            "'NoneType'"},
           {"'a' not in 5",
            "column 5: 'in' needs a str, list or tuple on the right, not "
            "'int'"},
           {"1 in 'abc'", "column 3: 'in <str>' needs a str on the left, not 'int'"},
           {"doc.flag and doc.missing.x",
            "column 26: cannot read field 'x' of a 'NoneType' value"},
       }) {
    auto cond = Condition::Parse(c.text);
    ASSERT_TRUE(cond.ok()) << c.text << ": " << cond.status();
    auto got = cond->Evaluate(TestDoc());
    ASSERT_FALSE(got.ok()) << c.text;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(got.status().message(), c.want) << c.text;
    EXPECT_EQ(cond->EvaluateValue(TestDoc()).status(), got.status());
  }
}

TEST(ExprEvaluate, DocThatIsNotAnObject) {
  auto cond = Condition::Parse("doc.x == 1");
  ASSERT_TRUE(cond.ok());
  EXPECT_EQ(cond->Evaluate(Value()).status().message(),
            "column 5: cannot read field 'x' of a 'NoneType' value");
  auto empty = Condition::Parse("doc.x is None");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(*empty->Evaluate(Value::EmptyObject()));
}

TEST(ExprEvaluate, DefaultConstructedConditionIsAnError) {
  Condition c;
  EXPECT_EQ(c.Evaluate(TestDoc()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(ExprEvaluate, SharedAcrossThreads) {
  auto cond = Condition::Parse(
      "doc.public == 1 and doc.customer_group in ('Retail', 'Wholesale')");
  ASSERT_TRUE(cond.ok());
  const Condition shared = *cond;  // copies share the immutable tree
  std::vector<std::thread> threads;
  std::vector<int> hits(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) hits[t] += *shared.Evaluate(TestDoc());
    });
  }
  for (auto& th : threads) th.join();
  for (int h : hits) EXPECT_EQ(h, 2000);
}

// 100,000 random and mutated inputs: each parse (and evaluation when it
// parses) must return, without crashing, in well under the time budget.
TEST(ExprFuzz, RandomAndMutatedInputsNeverCrashOrHang) {
  const std::vector<std::string> seeds = {
      R"(doc.public == 1 and doc.customer_group in ("Retail", "Wholesale"))",
      "1 < doc.qty <= 5",
      "not doc.missing is None or doc.flag is not False",
      "doc.get('missing', [1, (2,), 'x']) != doc.tags",
      "doc.address.city == 'Pune' and 'et' in doc.customer_group",
      "doc.rate > 12345678901234567.123456788 and -1.5e3 < .5",
      R"('\u00e9\n\t\\\'' not in ("a" 'b', None, True, False))",
      "doc.items and doc.items == [] or (doc.x,)",
  };
  const std::vector<std::string> pieces = {
      "doc", ".", "x", "public", "get", "(", ")", "[", "]", ",", "==", "!=",
      "<", "<=", ">", ">=", "in", "not", "and", "or", "is", "None", "True",
      "False", "1", "-", "1.5", "1e9", ".5", "'a'", "\"", "'", "\\", "\\u",
      " ", "__class__", "=", "+", "é", std::string(1, '\0'), "tags",
      "address", "city", "missing", "qty"};
  const char kChars[] = "doc.x_ ()[],'\"\\=<>!-+*0123456789eE\tnotandis";

  std::mt19937 rng(20240611);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  // A random well-formed expression, so that most of these inputs reach the
  // evaluator with every kind of operand.
  const std::vector<std::string> atoms = {
      "doc.public", "doc.qty", "doc.rate", "doc.tags", "doc.address",
      "doc.address.city", "doc.missing", "doc.items", "doc.get('qty', 0)",
      "doc", "1", "-2.5", "0", "1e3", "'Retail'", "''", "None", "True",
      "False", "[]", "('a', 1)", "[doc.qty, 'x']"};
  const std::vector<std::string> ops = {"==", "!=", "<", "<=", ">", ">=",
                                        "in", "not in", "is", "is not"};
  std::function<std::string(int)> gen = [&](int depth) -> std::string {
    switch (depth <= 0 ? 0 : pick(6)) {
      case 1: return "not " + gen(depth - 1);
      case 2: return gen(depth - 1) + " and " + gen(depth - 1);
      case 3: return gen(depth - 1) + " or " + gen(depth - 1);
      case 4: return "(" + gen(depth - 1) + ")";
      case 5: {
        const std::string& op = ops[pick(ops.size())];
        std::string right = op.substr(0, 2) == "is"
                                ? std::vector<std::string>{
                                      "None", "True", "False"}[pick(3)]
                                : atoms[pick(atoms.size())];
        return atoms[pick(atoms.size())] + " " + op + " " + right;
      }
      default: return atoms[pick(atoms.size())];
    }
  };
  auto mutate = [&](std::string s) {
    int edits = 1 + pick(3);
    for (int e = 0; e < edits; ++e) {
      size_t at = s.empty() ? 0 : pick(s.size() + 1);
      switch (pick(5)) {
        case 0:  // insert a character
          s.insert(at, 1, kChars[pick(sizeof(kChars) - 1)]);
          break;
        case 1:  // delete a character
          if (at < s.size()) s.erase(at, 1);
          break;
        case 2:  // replace a character with any byte
          if (at < s.size()) s[at] = static_cast<char>(rng());
          break;
        case 3:  // insert a token
          s.insert(at, pieces[pick(pieces.size())]);
          break;
        default:  // duplicate a slice
          if (at < s.size()) s.insert(at, s.substr(at, pick(16)));
          break;
      }
    }
    return s;
  };

  std::vector<std::string> special = {
      std::string(10000, '('), std::string(4096, '('),
      std::string(4096, '['), std::string(2048, '"'),
      "'" + std::string(4094, '\\'), std::string(4096, '-') + "1"};
  std::string nots, chain = "doc", gets = "doc";
  while (nots.size() < 4000) nots += "not ";
  while (chain.size() < 4000) chain += ".a";
  while (gets.size() < 4000) gets += ".get('a')";
  special.push_back(nots + "1");
  special.push_back(chain);
  special.push_back(gets);

  const Value& doc = TestDoc();
  int parsed = 0;
  auto start = std::chrono::steady_clock::now();
  constexpr int kRuns = 100000;
  for (int i = 0; i < kRuns; ++i) {
    std::string input;
    if (i < static_cast<int>(special.size())) {
      input = special[i];
    } else if (i % 10 < 3) {
      input = mutate(seeds[pick(seeds.size())]);
    } else if (i % 10 < 5) {
      input = gen(4);
    } else if (i % 10 < 6) {
      input = mutate(gen(4));
    } else if (i % 10 < 8) {
      int n = pick(12);
      for (int k = 0; k < n; ++k) input += pieces[pick(pieces.size())] + " ";
    } else {
      int n = pick(40);
      for (int k = 0; k < n; ++k) input += static_cast<char>(rng());
    }
    auto cond = Condition::Parse(input);
    if (!cond.ok()) {
      ASSERT_EQ(cond.status().code(), absl::StatusCode::kInvalidArgument);
      ASSERT_EQ(cond.status().message().substr(0, 7), "column ") << input;
      continue;
    }
    ++parsed;
    auto truth = cond->Evaluate(doc);
    auto value = cond->EvaluateValue(doc);
    ASSERT_EQ(truth.ok(), value.ok()) << input;
  }
  // No time assertion (speed lives in benchmarks); a hang would trip the
  // ctest timeout.
  double seconds = std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - start).count();
  // The fuzzer must actually reach the evaluator, not only the parser.
  EXPECT_GT(parsed, kRuns / 5);
  std::printf("fuzz: %d inputs, %d parsed, %.3f s\n", kRuns, parsed, seconds);
}

}  // namespace
}  // namespace eventstream
