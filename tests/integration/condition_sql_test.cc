// ConditionToSql (libsync/config/condition_sql.h) against the evaluator it
// replaces in queries: for every condition and every row of a table with
// columns of each kind (NULLs, empty strings, zero, exact decimals, floats,
// booleans, dates, JSON of every shape, non-ASCII text), the SQL predicate
// is true exactly when Condition::Evaluate on the document as the producer
// reads it (ReadDocument) is true, an evaluation error counting as false.
#include "libsync/config/condition_sql.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libsync/model/doctype.h"
#include "libsync/config/expr.h"
#include "libsync/base/pg.h"
#include "services/producer/document_reader.h"
#include "tests/support/pg_cluster.h"

namespace eventstream::testing {
namespace {

DocTypeRegistry ThingRegistry() {
  DocTypeDef thing;
  thing.name = "Thing";
  thing.table = "tabThing";
  thing.fields = {{"title", "Data"},   {"status", "Select"},   {"qty", "Int"},
                  {"amount", "Currency"}, {"rate", "Float"},  {"flag", "Check"},
                  {"on", "Date"},       {"data", "JSON"},      {"ghost", "Data"},
                  {"items", "Table", "Thing Item"}};
  DocTypeDef item;
  item.name = "Thing Item";
  item.table = "tabThing Item";
  item.istable = true;
  item.fields = {{"qty", "Int"}};
  auto registry = DocTypeRegistry::Create({thing, item});
  EXPECT_TRUE(registry.ok()) << registry.status();
  return *std::move(registry);
}

constexpr char kSchema[] = R"sql(
CREATE TABLE "tabThing" (
  name text PRIMARY KEY, creation timestamp, modified timestamp, modified_by text,
  owner text, docstatus int DEFAULT 0, idx int DEFAULT 0,
  title text, status text, qty int, amount numeric(24,6), rate double precision,
  flag boolean, "on" date, data jsonb, hidden text);
CREATE TABLE "tabThing Item" (
  name text PRIMARY KEY, creation timestamp, modified timestamp, modified_by text,
  owner text, docstatus int DEFAULT 0, idx int DEFAULT 0,
  parent text, parenttype text, parentfield text, qty int);
INSERT INTO "tabThing" (name, title, status, qty, amount, rate, flag, "on", data, hidden,
                        docstatus) VALUES
  ('T01', 'alpha', 'Open', 1, 1.5, 0.1, true, '2024-01-31', '[1, "a", true]', 'x', 0),
  ('T02', '', 'Closed', 0, 0, 0, false, '2023-12-31', '{"a": 1}', NULL, 1),
  ('T03', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 2),
  ('T04', 'Ähre', 'open', -3, 12345678901234.123456, 1e20, true, '2024-02-29', '"alpha"', 'y', 0),
  ('T05', 'beta 1', 'Open', 5, 1.500000, 0.30000000000000004, false, '2024-01-01', '5', NULL, 0),
  ('T06', 'a', 'Draft', 10, -0.5, -0, true, NULL, '[]', NULL, 0),
  ('T07', 'zeta', 'Open', 2, 2, 2.5, NULL, '2025-06-01', 'null', NULL, 0),
  ('T08', 'A', 'Open', 1, 1, 1, true, '2024-01-31', '{}', NULL, 0),
  ('T09', '1', 'Open', 100, 100, 100, false, '2024-01-31', '[[1], {"b": 2}, 1.0]', NULL, 0),
  ('T10', 'it''s "quoted"', 'Open', 7, 7.25, 7.25, true, '2024-03-01', 'true', NULL, 0),
  ('T11', 'Open', 'Open', 2147483647, 0.000001, 1.0e-300, true, '1999-12-31', '{"alpha": null}', NULL, 0),
  ('T12', '日本', 'Cancelled', -1, -1, -1, false, '2024-01-31', '["alpha", "beta"]', NULL, 0);
)sql";

// Every form the translator takes, and some it does not.
const std::vector<std::string>& Conditions() {
  static const auto* conditions = new std::vector<std::string>{
      "doc.status == 'Open'", "doc.status != 'Open'", "doc.qty > 1", "doc.qty >= 1",
      "doc.qty < 5", "doc.qty <= 0", "1 < doc.qty", "5 >= doc.qty", "1 <= doc.qty <= 7",
      "doc.qty == True", "doc.flag == 1", "doc.flag", "not doc.flag", "doc.flag is True",
      "doc.flag is not False", "doc.flag is None", "doc.qty is None", "doc.title",
      "not doc.title", "doc.title == ''", "doc.title == None", "doc.title != None",
      "doc.title > 'a'", "doc.title < 'b'", "doc.title >= 'Ä'", "doc.title > 5",
      "not doc.title > 5", "doc.title > 5 or doc.qty > 1", "doc.qty > 1 or doc.title > 5",
      "doc.qty > 1 and doc.title > 5", "doc.title > 5 and doc.qty > 1",
      "doc.amount == 1.5", "doc.amount > 1.4999999", "doc.amount == 12345678901234.123456",
      "doc.rate == 0.1", "doc.rate > 0.3", "doc.rate == 1e20", "doc.rate < 1e-299",
      "doc.rate == 0", "doc.amount", "doc.rate", "doc.qty in (1, 2, 3)",
      "doc.qty not in (1, 2, 3)", "doc.status in ['Open', 'Draft']", "doc.status in ()",
      "doc.status not in ('Open',)", "doc.qty in (True, 'x', None)", "doc.title in (None,)",
      "'a' in doc.title", "'' in doc.title", "'alpha' in doc.data", "1 in doc.data",
      "True in doc.data", "'a' in doc.data", "'x' not in doc.data", "None in doc.data",
      "5 in doc.title", "doc.data", "not doc.data", "doc.data == 5", "doc.data == 'alpha'",
      "doc.data == None", "doc.data > 4", "doc.data is True", "doc.on >= '2024-01-01'",
      "doc.on == '2024-01-31'", "doc.on < '2024'", "doc.doctype == 'Thing'",
      "doc.get('status') == 'Open'", "doc.get('ghost', 3) == 3", "doc.get('ghost') is None",
      "doc.get('hidden') == 'x'", "doc.hidden", "doc.get('nope', 'd') == 'd'",
      "doc.nope == None", "doc.name > 'T05'", "doc.docstatus == 1", "doc.docstatus != 2",
      "doc.status == 'Open' and (doc.qty > 1 or doc.flag)",
      "not (doc.status == 'Open' and doc.qty > 1)", "doc.status == 'Open' or doc.title > 5",
      "doc.qty == 1.0", "doc.qty == -3",
      "doc.qty > -3.5", "doc.title == 'it\\'s \"quoted\"'", "doc.title == 'Ähre'",
      "doc.title < '日'", "True", "None", "0", "'x'", "doc.status == None or doc.qty",
      // Not translated (the caller judges these in C++):
      "doc.items", "doc.qty == doc.amount", "doc", "[1]", "doc.data.a == 1",
      "doc.title < 'b' < 'c'", "1 < doc.qty < 3 < 4",
  };
  return *conditions;
}

TEST(ConditionSqlTest, AgreesWithTheEvaluatorOnEveryRow) {
  const DocTypeRegistry registry = ThingRegistry();
  const DocTypeDef& thing = *registry.Find("Thing");
  const std::string db = FreshDatabase("condsql");
  auto conn = pg::Connection::Open(SharedCluster().Url(db));
  ASSERT_TRUE(conn.ok()) << conn.status();
  absl::Status created = (*conn)->ExecScript(kSchema);
  ASSERT_TRUE(created.ok()) << created;

  std::map<std::string, Value> docs;
  auto names = (*conn)->Exec("SELECT name FROM \"tabThing\" ORDER BY name");
  ASSERT_TRUE(names.ok()) << names.status();
  for (int i = 0; i < names->rows(); ++i) {
    const std::string name(names->Get(i, "name"));
    auto doc = ReadDocument(conn->get(), registry, thing, name);
    ASSERT_TRUE(doc.ok() && doc->has_value()) << name;
    docs[name] = **doc;
  }

  int translated = 0;
  for (RowRead read : {RowRead::kWholeRow, RowRead::kByColumn}) {
    translated = 0;
    for (const std::string& text : Conditions()) {
      SCOPED_TRACE(text);
      auto condition = Condition::Parse(text);
      ASSERT_TRUE(condition.ok()) << condition.status();
      auto sql = ConditionToSql(*condition, thing, RowSql{"t", read}, 1);
      if (!sql.ok()) {
        EXPECT_EQ(sql.status().code(), absl::StatusCode::kUnimplemented) << sql.status();
        continue;
      }
      ++translated;
      pg::Params params(sql->params.begin(), sql->params.end());
      auto r = (*conn)->Exec(
          "SELECT t.name, (" + sql->sql + ") AS ok FROM \"tabThing\" AS t ORDER BY t.name",
          params);
      if (read == RowRead::kByColumn && text.find("ghost") != std::string::npos) {
        // The registry lists "ghost"; the table has no such column.
        EXPECT_EQ(pg::SqlStateOf(r.status()), "42703") << r.status();
        continue;
      }
      ASSERT_TRUE(r.ok()) << r.status() << "\n" << sql->sql;
      for (int i = 0; i < r->rows(); ++i) {
        const std::string name(r->Get(i, "name"));
        auto expected = condition->Evaluate(docs[name]);
        const bool want = expected.ok() && *expected;
        EXPECT_EQ(r->Get(i, "ok") == "t", want)
            << name << " " << docs[name].ToJson() << "\nevaluator: "
            << (expected.ok() ? (*expected ? "true" : "false") : expected.status().ToString())
            << "\nsql: " << sql->sql;
      }
    }
  }
  EXPECT_EQ(translated, static_cast<int>(Conditions().size()) - 7);
}

TEST(ConditionSqlTest, SeveralConditionsAndWhatIsNotTranslated) {
  const DocTypeRegistry registry = ThingRegistry();
  const DocTypeDef& thing = *registry.Find("Thing");
  auto all = ConditionsToSql({"doc.qty > 1", "doc.status == 'Open'"}, thing, RowSql{}, 3);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->params.size(), 2u);  // 1 and "Open" (columns are identifiers)
  EXPECT_NE(all->sql.find("$3"), std::string::npos);
  EXPECT_EQ(all->sql.find("$1::"), std::string::npos);
  auto none = ConditionsToSql({}, thing, RowSql{}, 1);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->sql, "TRUE");
  EXPECT_EQ(ConditionsToSql({"cmd:public.f"}, thing, RowSql{}, 1).status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(ConditionsToSql({"doc.qty >"}, thing, RowSql{}, 1).status().code(),
            absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace eventstream::testing
