#include "libsync/model/diff.h"

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/doctype_fixtures.h"
#include "libsync/model/document.h"

namespace eventstream {
namespace {

using ::testing::HasSubstr;

using fixtures::J;

DocDiff D(const std::string& text) {
  absl::StatusOr<DocDiff> d = DocDiff::FromJson(J(text));
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? *d : DocDiff();
}

Value MustPatch(const Value& doc, const DocDiff& diff) {
  absl::StatusOr<Value> v = Patch(doc, diff);
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *v : Value();
}

const char kOld[] = R"({
  "doctype": "Sales Order", "name": "SO-1", "docstatus": 0,
  "customer": "C1", "total": 10.50, "note": "x",
  "modified": "2026-11-23 10:00:00.123456+00", "modified_by": "a",
  "creation": "2026-11-23 09:00:00+00", "owner": "a",
  "items": [
    {"doctype": "SO Item", "name": "r1", "idx": 1, "docstatus": 0,
     "item": "A", "qty": 1, "modified": "2026-11-23 10:00:00+00"},
    {"doctype": "SO Item", "name": "r2", "idx": 2, "docstatus": 0,
     "item": "B", "qty": 2, "modified": "2026-11-23 10:00:00+00"}
  ]
})";

TEST(DiffTest, SameDocumentIsEmpty) {
  Value old_doc = J(kOld);
  DocDiff d = Diff(old_doc, old_doc);
  EXPECT_TRUE(d.empty());
  EXPECT_EQ(d.ToJson().ToJson(),
            R"({"added":{},"changed":{},"removed":{},"row_changed":{}})");
  EXPECT_EQ(MustPatch(old_doc, d), old_doc);
}

TEST(DiffTest, BookkeepingIsNotReported) {
  Value old_doc = J(kOld);
  Value new_doc = old_doc;
  new_doc["modified"] = Value::String("2026-11-24 00:00:00+00");
  new_doc["modified_by"] = Value::String("b");
  new_doc["owner"] = Value::String("b");
  new_doc["creation"] = Value::String("2026-11-24 00:00:00+00");
  new_doc["items"].mutable_array()[0]["modified"] = Value::String("later");
  EXPECT_TRUE(Diff(old_doc, new_doc).empty());
}

TEST(DiffTest, ChangedFields) {
  Value old_doc = J(kOld);
  Value new_doc = old_doc;
  new_doc["customer"] = Value::String("C2");
  new_doc["total"] = Value::Number("12345678901234567.123456789");
  new_doc["new_field"] = Value::Int(7);
  new_doc.Erase("note");  // removed -> reported as null
  new_doc["modified"] = Value::String("later");
  DocDiff d = Diff(old_doc, new_doc);
  EXPECT_EQ(d.changed.ToJson(), R"({"customer":"C2","new_field":7,"note":null,)"
                                R"("total":12345678901234567.123456789})");
  EXPECT_TRUE(d.added.as_object().empty());
  EXPECT_TRUE(d.removed.as_object().empty());
  EXPECT_TRUE(d.row_changed.as_object().empty());

  Value patched = MustPatch(old_doc, d);
  Value expected = new_doc;
  expected["note"] = Value::Null();
  EXPECT_EQ(StripBookkeeping(patched), StripBookkeeping(expected));
}

TEST(DiffTest, NullToAbsentIsNoChange) {
  EXPECT_TRUE(
      Diff(J(R"({"name":"a","x":null})"), J(R"({"name":"a"})")).empty());
  EXPECT_EQ(Diff(J(R"({"name":"a"})"), J(R"({"name":"a","x":null})"))
                .changed.ToJson(),
            R"({"x":null})");
}

TEST(DiffTest, DocstatusAlwaysReportedAndFollowedByRows) {
  Value old_doc = J(kOld);
  Value new_doc = old_doc;
  new_doc["docstatus"] = Value::Int(1);
  for (Value& row : new_doc["items"].mutable_array()) {
    row["docstatus"] = Value::Int(1);
  }
  DocDiff d = Diff(old_doc, new_doc);
  // Submitting reports docstatus once, not a row_changed per child row.
  EXPECT_EQ(d.ToJson().ToJson(),
            R"({"added":{},"changed":{"docstatus":1},"removed":{},)"
            R"("row_changed":{}})");
  EXPECT_EQ(MustPatch(old_doc, d), new_doc);
}

TEST(DiffTest, ChildRowsMatchedByName) {
  Value old_doc = J(kOld);
  Value new_doc = J(R"({
    "doctype": "Sales Order", "name": "SO-1", "docstatus": 0,
    "customer": "C1", "total": 10.50, "note": "x",
    "modified": "2026-11-24 10:00:00+00",
    "items": [
      {"doctype": "SO Item", "name": "r2", "idx": 1, "docstatus": 0,
       "item": "B", "qty": 3, "modified": "2026-11-24 10:00:00+00"},
      {"doctype": "SO Item", "name": "r3", "idx": 2, "docstatus": 0,
       "item": "C", "qty": 1}
    ]
  })");
  DocDiff d = Diff(old_doc, new_doc);
  EXPECT_EQ(d.changed.ToJson(), "{}");  // bookkeeping dropped: not reported
  EXPECT_EQ(d.removed.ToJson(), R"({"items":["r1"]})");
  EXPECT_EQ(d.row_changed.ToJson(),
            R"({"items":[{"idx":1,"name":"r2","qty":3}]})");
  EXPECT_EQ(d.added.ToJson(),
            R"({"items":[{"docstatus":0,"doctype":"SO Item","idx":2,)"
            R"("item":"C","name":"r3","qty":1}]})");
  EXPECT_EQ(StripBookkeeping(MustPatch(old_doc, d)), StripBookkeeping(new_doc));
}

TEST(DiffTest, NewAndDroppedTables) {
  Value old_doc = J(R"({"name":"a","t":[{"name":"r1","idx":1}]})");
  Value new_doc = J(R"({"name":"a","u":[{"name":"s1","idx":1}]})");
  DocDiff d = Diff(old_doc, new_doc);
  EXPECT_EQ(d.removed.ToJson(), R"({"t":["r1"]})");
  EXPECT_EQ(d.added.ToJson(), R"({"u":[{"idx":1,"name":"s1"}]})");
  // An absent table is an empty one.
  EXPECT_EQ(MustPatch(old_doc, d),
            J(R"({"name":"a","t":[],"u":[{"name":"s1","idx":1}]})"));
}

TEST(DiffTest, UnmatchableRowsReportTheWholeTable) {
  Value old_doc = J(R"({"name":"a","t":[{"x":1}]})");
  Value new_doc = J(R"({"name":"a","t":[{"x":2},{"x":3}]})");
  DocDiff d = Diff(old_doc, new_doc);
  EXPECT_EQ(d.changed.ToJson(), R"({"t":[{"x":2},{"x":3}]})");
  EXPECT_EQ(MustPatch(old_doc, d), new_doc);
  Value dup = J(R"({"name":"a","t":[{"name":"r","x":1},{"name":"r","x":2}]})");
  EXPECT_EQ(MustPatch(old_doc, Diff(old_doc, dup)), dup);
}

TEST(DiffTest, ScalarToTableAndBack) {
  Value a = J(R"({"name":"a","t":"text"})");
  Value b = J(R"({"name":"a","t":[{"name":"r1"}]})");
  EXPECT_EQ(MustPatch(a, Diff(a, b)), b);
  EXPECT_EQ(MustPatch(b, Diff(b, a)), a);
}

TEST(DiffTest, PatchOrdersRowsByIdx) {
  Value doc =
      J(R"({"name":"a","t":[{"name":"r1","idx":1},{"name":"r2","idx":2}]})");
  DocDiff d = D(R"({"row_changed":{"t":[{"name":"r1","idx":3}]},
                    "added":{"t":[{"name":"r0","idx":0}]}})");
  EXPECT_EQ(MustPatch(doc, d),
            J(R"({"name":"a","t":[{"name":"r0","idx":0},{"name":"r2","idx":2},)"
              R"({"name":"r1","idx":3}]})"));
  // Without a numeric idx on every row, the order is the patch order.
  DocDiff d2 = D(R"({"added":{"t":[{"name":"r9"}]}})");
  Value out = MustPatch(doc, d2);
  EXPECT_EQ(NameOf(out["t"].as_array()[2]), "r9");
}

TEST(DiffTest, PatchErrorsNameTableAndRow) {
  Value doc = J(kOld);
  struct Case {
    const char* diff;
    const char* message;
  } cases[] = {
      {R"({"row_changed":{"items":[{"name":"nope","qty":1}]}})",
       "patch row_changed: child table \"items\" has no row \"nope\""},
      {R"({"removed":{"items":["nope"]}})",
       "patch removed: child table \"items\" has no row \"nope\""},
      {R"({"added":{"items":[{"name":"r1"}]}})",
       "patch added: child table \"items\" already has a row \"r1\""},
      {R"({"removed":{"lines":["r1"]}})",
       "patch removed: document has no child table \"lines\""},
      {R"({"row_changed":{"customer":[{"name":"r1"}]}})",
       "patch row_changed: document has no child table \"customer\""},
      {R"({"added":{"customer":[{"name":"r1"}]}})",
       "patch added: document has no child table \"customer\""},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Value> out = Patch(doc, D(c.diff));
    ASSERT_FALSE(out.ok()) << c.diff;
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(out.status().message(), HasSubstr(c.message));
  }
  // A hand-built diff is checked too.
  DocDiff bad;
  bad.removed = J(R"({"items":"r1"})");
  EXPECT_THAT(Patch(doc, bad).status().message(),
              HasSubstr("removed.items must be an array"));
  EXPECT_FALSE(Patch(Value::Int(1), DocDiff()).ok());
}

TEST(DiffTest, FromJsonValidatesShape) {
  struct Case {
    const char* json;
    const char* message;
  } cases[] = {
      {R"([])", "diff: expected a JSON object"},
      {R"({"changes":{}})", "unknown key \"changes\""},
      {R"({"changed":[]})", "\"changed\" must be an object"},
      {R"({"added":{"t":{}}})", "added.t must be an array of rows"},
      {R"({"added":{"t":[1]}})", "added.t[0] must be a row object"},
      {R"({"removed":{"t":[{"name":"x"}]}})",
       "removed.t[0] must be a row name (string)"},
      {R"({"row_changed":{"t":[{"qty":1}]}})",
       "row_changed.t[0] must have a string \"name\""},
  };
  for (const Case& c : cases) {
    absl::StatusOr<DocDiff> d = DocDiff::FromJson(J(c.json));
    ASSERT_FALSE(d.ok()) << c.json;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(d.status().message(), HasSubstr(c.message)) << c.json;
  }
  // Missing keys mean empty.
  absl::StatusOr<DocDiff> d = DocDiff::FromJson(J(R"({"changed":{"a":1}})"));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->ToJson().ToJson(),
            R"({"added":{},"changed":{"a":1},"removed":{},"row_changed":{}})");
}

// ---- property test ----------------------------------------------------------

class DocGen {
 public:
  explicit DocGen(uint64_t seed) : rng_(seed) {}

  int Int(int lo, int hi) {  // inclusive
    return lo + static_cast<int>(rng_() % static_cast<uint64_t>(hi - lo + 1));
  }
  bool Chance(int percent) { return Int(1, 100) <= percent; }

  Value Scalar() {
    switch (Int(0, 7)) {
      case 0:
        return Value::Null();
      case 1:
        return Value::Bool(Chance(50));
      case 2:
        return Value::Int(Int(-5, 5));
      case 3:
        return Value::Number(std::to_string(Int(0, 99999)) + "." +
                             std::to_string(Int(0, 999)));
      case 4:
        return Value::String("");
      case 5:
        return Value::String("s" + std::to_string(Int(0, 5)));
      case 6:
        return Value::String("2026-11-23 10:00:0" + std::to_string(Int(0, 9)) +
                             ".123456+00");
      default:
        return Value::String("\xc3\xa9\"\\\n" + std::to_string(Int(0, 3)));
    }
  }

  std::string Stamp() { return "2026-11-2" + std::to_string(Int(0, 9)); }

  Value Row(int docstatus) {
    Value row = Value::EmptyObject();
    row["doctype"] = Value::String("Child");
    row["name"] = Value::String("row-" + std::to_string(next_row_++));
    row["docstatus"] = Value::Int(docstatus);
    row["parent"] = Value::String("P");
    row["modified"] = Value::String(Stamp());
    for (int f = 0; f < 4; ++f) {
      if (Chance(70)) row["f" + std::to_string(f)] = Scalar();
    }
    return row;
  }

  Value Doc() {
    Value doc = Value::EmptyObject();
    doc["doctype"] = Value::String("Parent");
    doc["name"] = Value::String("P-" + std::to_string(Int(0, 1000)));
    int docstatus = Int(0, 2);
    doc["docstatus"] = Value::Int(docstatus);
    doc["modified"] = Value::String(Stamp());
    doc["modified_by"] = Value::String("u" + std::to_string(Int(0, 3)));
    doc["creation"] = Value::String(Stamp());
    doc["owner"] = Value::String("u" + std::to_string(Int(0, 3)));
    for (int f = 0; f < 5; ++f) {
      if (Chance(70)) doc["p" + std::to_string(f)] = Scalar();
    }
    int tables = Int(0, 2);
    for (int t = 0; t < tables; ++t) {
      Value rows = Value::EmptyArray();
      int n = Int(0, 5);
      for (int i = 0; i < n; ++i)
        rows.mutable_array().push_back(Row(docstatus));
      doc["t" + std::to_string(t)] = std::move(rows);
    }
    Renumber(&doc);
    return doc;
  }

  static void Renumber(Value* doc) {
    for (auto& [key, v] : doc->mutable_object()) {
      if (!v.is_array()) continue;
      int idx = 1;
      for (Value& row : v.mutable_array()) row["idx"] = Value::Int(idx++);
    }
  }

  Value* PickTable(Value* doc) {
    std::vector<Value*> tables;
    for (auto& [key, v] : doc->mutable_object()) {
      if (v.is_array()) tables.push_back(&v);
    }
    if (tables.empty()) return nullptr;
    return tables[Int(0, static_cast<int>(tables.size()) - 1)];
  }

  Value Mutate(const Value& old_doc) {
    Value doc = old_doc;
    int edits = Int(0, 6);
    for (int e = 0; e < edits; ++e) {
      int docstatus = std::stoi(doc.Find("docstatus")->number_text());
      Value* table = PickTable(&doc);
      switch (Int(0, 11)) {
        case 0:
        case 1:
          doc["p" + std::to_string(Int(0, 6))] = Scalar();
          break;
        case 2:
          doc.Erase("p" + std::to_string(Int(0, 5)));
          break;
        case 3:
          doc["docstatus"] = Value::Int((docstatus + 1) % 3);
          break;
        case 4:
          doc["modified"] = Value::String(Stamp());
          doc["modified_by"] = Value::String("x");
          if (table != nullptr && !table->as_array().empty()) {
            table->mutable_array()[0]["modified"] = Value::String(Stamp());
          }
          break;
        case 5: {  // add a row at a random position
          if (table == nullptr) break;
          auto& rows = table->mutable_array();
          rows.insert(rows.begin() + Int(0, static_cast<int>(rows.size())),
                      Row(docstatus));
          break;
        }
        case 6:
          if (table == nullptr || table->as_array().empty()) break;
          table->mutable_array().erase(
              table->mutable_array().begin() +
              Int(0, static_cast<int>(table->as_array().size()) - 1));
          break;
        case 7:
        case 8: {  // edit or drop a field of a row
          if (table == nullptr || table->as_array().empty()) break;
          Value& row = table->mutable_array()[Int(
              0, static_cast<int>(table->as_array().size()) - 1)];
          std::string f = "f" + std::to_string(Int(0, 4));
          if (Chance(25)) {
            row.Erase(f);
          } else {
            row[f] = Scalar();
          }
          break;
        }
        case 9:  // reorder
          if (table == nullptr) break;
          std::shuffle(table->mutable_array().begin(),
                       table->mutable_array().end(), rng_);
          break;
        case 10: {  // a new, non-empty table
          Value rows = Value::EmptyArray();
          rows.mutable_array().push_back(Row(docstatus));
          doc["t" + std::to_string(Int(2, 3))] = std::move(rows);
          break;
        }
        default:
          if (table == nullptr || table->as_array().empty()) break;
          table->mutable_array()[0]["idx"] = Value::Int(99);
          break;
      }
    }
    // Rows keep idx = position and their parent's docstatus.
    Renumber(&doc);
    const Value docstatus = *doc.Find("docstatus");
    for (auto& [key, v] : doc.mutable_object()) {
      if (!v.is_array()) continue;
      for (Value& row : v.mutable_array()) row["docstatus"] = docstatus;
    }
    return doc;
  }

 private:
  std::mt19937_64 rng_;
  int next_row_ = 0;
};

// `new_doc` as Patch reproduces it (see diff.h): fields dropped since
// `old_doc` come back as null, and a table that appeared empty stays absent.
Value WithRemovedAsNull(const Value& old_doc, const Value& new_doc) {
  Value out = new_doc;
  for (const auto& [key, v] : new_doc.as_object()) {
    if (v.is_array() && v.as_array().empty() && old_doc.Find(key) == nullptr) {
      out.Erase(key);
    }
  }
  for (const auto& [key, v] : old_doc.as_object()) {
    if (out.Find(key) == nullptr && !v.is_array()) out[key] = Value::Null();
  }
  for (auto& [key, v] : out.mutable_object()) {
    if (!v.is_array()) continue;
    for (Value& row : v.mutable_array()) {
      const Value* old_row = FindChildRow(old_doc, key, NameOf(row));
      if (old_row == nullptr) continue;
      for (const auto& [f, ov] : old_row->as_object()) {
        if (row.Find(f) == nullptr) row[f] = Value::Null();
      }
    }
  }
  return out;
}

TEST(DiffTest, PropertyPatchOfDiffRebuildsNewDocument) {
  DocGen gen(20261123);
  int non_empty = 0;
  for (int i = 0; i < 10000; ++i) {
    Value old_doc = gen.Doc();
    Value new_doc = gen.Mutate(old_doc);
    // Evaluated only when an assertion fails.
    auto context = [&] {
      return "case " + std::to_string(i) + "\nold: " + old_doc.ToJson() +
             "\nnew: " + new_doc.ToJson();
    };
    ASSERT_TRUE(Diff(old_doc, old_doc).empty()) << context();
    ASSERT_TRUE(Diff(new_doc, new_doc).empty()) << context();

    DocDiff d = Diff(old_doc, new_doc);
    if (!d.empty()) ++non_empty;
    absl::StatusOr<Value> patched = Patch(old_doc, d);
    ASSERT_TRUE(patched.ok()) << patched.status() << "\n" << context();
    Value expected = WithRemovedAsNull(old_doc, new_doc);
    ASSERT_EQ(StripBookkeeping(*patched), StripBookkeeping(expected))
        << "diff: " << d.ToJson().ToJson() << "\n"
        << context();
    // Diffing the result against the target says nothing more.
    ASSERT_TRUE(Diff(*patched, expected).empty()) << context();

    // The wire form round-trips.
    absl::StatusOr<Value> wire = Value::ParseJson(d.ToJson().ToJson());
    ASSERT_TRUE(wire.ok()) << wire.status();
    absl::StatusOr<DocDiff> back = DocDiff::FromJson(*wire);
    ASSERT_TRUE(back.ok()) << back.status();
    ASSERT_EQ(back->ToJson(), d.ToJson()) << context();
  }
  // The generator must actually exercise diffs.
  EXPECT_GT(non_empty, 7000);
}

}  // namespace
}  // namespace eventstream
