#include "libsync/model/mapping.h"

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/doctype_fixtures.h"

namespace eventstream {
namespace {

using ::testing::HasSubstr;

using fixtures::J;

FieldMapping Plain(std::string remote, std::string local,
                   std::string default_value = "") {
  FieldMapping f;
  f.remote_fieldname = std::move(remote);
  f.local_fieldname = std::move(local);
  f.default_value = std::move(default_value);
  return f;
}

FieldMapping Table(std::string remote, std::string local, std::string inner) {
  FieldMapping f = Plain(std::move(remote), std::move(local));
  f.mapping_type = "Child Table";
  f.mapping = std::move(inner);
  return f;
}

FieldMapping Doc(std::string remote, std::string local, std::string inner,
                 const std::string& filters) {
  FieldMapping f = Plain(std::move(remote), std::move(local));
  f.mapping_type = "Document";
  f.mapping = std::move(inner);
  f.remote_value_filters = J(filters);
  return f;
}

std::vector<DocTypeMapping> SalesToPurchase() {
  return {
      {"so-to-po",
       "Purchase Order",
       "Sales Order",
       {Plain("customer_ref", "supplier_ref"),
        Plain("delivery_date", "schedule_date"),
        Plain("company", "company", "Branch Ltd"),
        Plain("terms", "terms", "Net 30"), Plain("discount", "discount", "0.5"),
        Table("items", "items", "soi-to-poi"),
        Doc("customer", "supplier", "customer-to-supplier",
            R"({"name": "doc.customer", "disabled": 0})")}},
      {"soi-to-poi",
       "Purchase Order Item",
       "Sales Order Item",
       {Plain("item_code", "item_code"), Plain("qty", "qty"),
        Plain("rate", "price", "1")}},
      {"customer-to-supplier",
       "Supplier",
       "Customer",
       {Plain("customer_name", "supplier_name"),
        Plain("customer_group", "supplier_group", "All Supplier Groups")}},
  };
}

MappingSet MustCreate(std::vector<DocTypeMapping> mappings) {
  absl::StatusOr<MappingSet> set = MappingSet::Create(std::move(mappings));
  EXPECT_TRUE(set.ok()) << set.status();
  return set.ok() ? *std::move(set) : MappingSet();
}

// A producer with a few Customers and a local site that records inserts.
class FakeFetcher : public DocumentFetcher {
 public:
  absl::StatusOr<std::optional<Value>> FindRemote(
      const std::string& remote_doctype, const Value& filters) override {
    finds.push_back(remote_doctype + " " + filters.ToJson());
    if (!find_error.ok()) return find_error;
    for (const Value& doc : remote) {
      if (doc.Find("doctype")->as_string() != remote_doctype) continue;
      bool match = true;
      for (const auto& [k, v] : filters.as_object()) {
        const Value* f = doc.Find(k);
        match = match && f != nullptr && *f == v;
      }
      if (match) return std::optional<Value>(doc);
    }
    return std::optional<Value>();
  }

  absl::StatusOr<std::string> InsertLocal(const Value& mapped_doc) override {
    inserted.push_back(mapped_doc);
    return "LOCAL-" + mapped_doc.Find("name")->as_string();
  }

  std::vector<Value> remote;
  std::vector<std::string> finds;
  std::vector<Value> inserted;
  absl::Status find_error;
};

const char kSalesOrder[] = R"({
  "doctype": "Sales Order", "name": "SO-0001", "docstatus": 1,
  "customer_ref": "PO-77", "delivery_date": "2026-11-23 10:00:00.123456+00",
  "company": null, "terms": "", "discount": 0, "grand_total": 12345678901234567.123456789,
  "modified": "2026-11-23 10:00:00+00", "owner": "hq@example.com",
  "items": [
    {"doctype": "Sales Order Item", "name": "soi-1", "idx": 1, "docstatus": 1,
     "parent": "SO-0001", "parenttype": "Sales Order", "parentfield": "items",
     "item_code": "WIDGET", "qty": 3, "rate": 9.99, "warehouse": "HQ"},
    {"doctype": "Sales Order Item", "name": "soi-2", "idx": 2, "docstatus": 1,
     "item_code": "GADGET", "qty": 1, "rate": null}
  ]
})";

TEST(MappingTest, MapsFullDocument) {
  MappingSet set = MustCreate(SalesToPurchase());
  FakeFetcher fetcher;
  Value so = J(kSalesOrder);
  so.Erase("customer");  // no Document rule triggered here
  absl::StatusOr<Value> po = set.MapDocument("so-to-po", so, &fetcher);
  ASSERT_TRUE(po.ok()) << po.status();
  EXPECT_EQ(*po, J(R"({
    "doctype": "Purchase Order", "name": "SO-0001", "docstatus": 1,
    "supplier_ref": "PO-77", "schedule_date": "2026-11-23 10:00:00.123456+00",
    "company": "Branch Ltd", "terms": "Net 30", "discount": 0,
    "items": [
      {"doctype": "Purchase Order Item", "name": "soi-1", "idx": 1,
       "docstatus": 1, "item_code": "WIDGET", "qty": 3, "price": 9.99},
      {"doctype": "Purchase Order Item", "name": "soi-2", "idx": 2,
       "docstatus": 1, "item_code": "GADGET", "qty": 1, "price": "1"}
    ]
  })"))
      << po->ToJson();
  EXPECT_TRUE(fetcher.finds.empty());
}

TEST(MappingTest, DefaultFillsMissingField) {
  MappingSet set = MustCreate(SalesToPurchase());
  absl::StatusOr<Value> po = set.MapDocument(
      "so-to-po", J(R"({"doctype":"Sales Order","name":"SO-2"})"), nullptr);
  ASSERT_TRUE(po.ok()) << po.status();
  EXPECT_EQ(po->ToJson(),
            R"({"company":"Branch Ltd","discount":"0.5",)"
            R"("doctype":"Purchase Order","name":"SO-2","terms":"Net 30"})");
}

TEST(MappingTest, DocumentRuleFetchesMapsAndInserts) {
  MappingSet set = MustCreate(SalesToPurchase());
  FakeFetcher fetcher;
  fetcher.remote.push_back(J(R"({"doctype":"Customer","name":"CUST-9",
      "customer_name":"Acme","customer_group":"","disabled":0,
      "credit_limit":1000})"));
  Value so = J(kSalesOrder);
  so["customer"] = Value::String("CUST-9");
  absl::StatusOr<Value> po = set.MapDocument("so-to-po", so, &fetcher);
  ASSERT_TRUE(po.ok()) << po.status();
  EXPECT_EQ(po->Find("supplier")->as_string(), "LOCAL-CUST-9");
  EXPECT_EQ(po->Find("customer"), nullptr);
  ASSERT_EQ(fetcher.finds.size(), 1u);
  EXPECT_EQ(fetcher.finds[0], R"(Customer {"disabled":0,"name":"CUST-9"})");
  ASSERT_EQ(fetcher.inserted.size(), 1u);
  EXPECT_EQ(fetcher.inserted[0].ToJson(),
            R"({"doctype":"Supplier","name":"CUST-9","supplier_group":)"
            R"("All Supplier Groups","supplier_name":"Acme"})");
}

TEST(MappingTest, DocumentRuleErrors) {
  MappingSet set = MustCreate(SalesToPurchase());
  Value so = J(kSalesOrder);
  so["customer"] = Value::String("CUST-404");

  FakeFetcher fetcher;
  absl::StatusOr<Value> po = set.MapDocument("so-to-po", so, &fetcher);
  EXPECT_EQ(po.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(po.status().message(),
              HasSubstr("mapping \"so-to-po\" field_mapping[6] (customer): no "
                        "Customer on the producer matches "
                        "{\"disabled\":0,\"name\":\"CUST-404\"}"));

  fetcher.find_error = absl::UnavailableError("producer down");
  po = set.MapDocument("so-to-po", so, &fetcher);
  EXPECT_EQ(po.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(po.status().message(),
              HasSubstr("fetching Customer: producer down"));

  po = set.MapDocument("so-to-po", so, nullptr);
  EXPECT_EQ(po.status().code(), absl::StatusCode::kFailedPrecondition);

  // A filter on a field the remote document leaves empty.
  std::vector<DocTypeMapping> m = SalesToPurchase();
  m[0].field_mapping[6].remote_value_filters =
      J(R"({"name":"doc.customer_code"})");
  MappingSet set2 = MustCreate(m);
  po = set2.MapDocument("so-to-po", so, &fetcher);
  EXPECT_EQ(po.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(po.status().message(),
              HasSubstr("mapping \"so-to-po\" field_mapping[6] (customer): "
                        "remote_value_filters.name: takes doc.customer_code, "
                        "which the remote document does not set"));
}

TEST(MappingTest, DocumentRulesThatLoopStop) {
  MappingSet set =
      MustCreate({{"self",
                   "Node",
                   "Node",
                   {Doc("next", "next", "self", R"({"name":"doc.next"})")}}});
  FakeFetcher fetcher;
  fetcher.remote.push_back(J(R"({"doctype":"Node","name":"a","next":"a"})"));
  absl::StatusOr<Value> out =
      set.MapDocument("self", fetcher.remote[0], &fetcher);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(out.status().message(), HasSubstr("nest deeper than 16"));
}

TEST(MappingTest, DocumentShapeErrors) {
  MappingSet set = MustCreate(SalesToPurchase());
  EXPECT_EQ(set.MapDocument("nope", J("{}"), nullptr).status().code(),
            absl::StatusCode::kNotFound);
  absl::StatusOr<Value> out = set.MapDocument(
      "so-to-po", J(R"({"doctype":"Customer","name":"C"})"), nullptr);
  EXPECT_THAT(out.status().message(),
              HasSubstr("mapping \"so-to-po\" maps Sales Order, not Customer"));
  out = set.MapDocument("so-to-po", J(R"({"name":"S","items":"x"})"), nullptr);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(out.status().message(),
              HasSubstr("field_mapping[5] (items): expected a child table "
                        "(array)"));
  out = set.MapDocument(
      "so-to-po", J(R"({"name":"S","items":[{"doctype":"Item","name":"r1"}]})"),
      nullptr);
  EXPECT_THAT(out.status().message(),
              HasSubstr("field_mapping[5] (items) row \"r1\": mapping "
                        "\"soi-to-poi\" maps Sales Order Item, not Item"));
}

TEST(MappingTest, MapsUpdateDiff) {
  MappingSet set = MustCreate(SalesToPurchase());
  absl::StatusOr<DocDiff> diff = DocDiff::FromJson(J(R"({
    "changed": {"customer_ref": "PO-78", "grand_total": 5, "terms": null,
                "docstatus": 2},
    "added": {"items": [{"doctype": "Sales Order Item", "name": "soi-3",
                         "idx": 3, "item_code": "BOLT", "qty": 10,
                         "warehouse": "HQ"}],
              "payments": [{"name": "pay-1"}]},
    "removed": {"items": ["soi-1"], "payments": ["pay-0"]},
    "row_changed": {"items": [{"name": "soi-2", "qty": 4, "idx": 1},
                              {"name": "soi-9", "warehouse": "X"}]}
  })"));
  ASSERT_TRUE(diff.ok()) << diff.status();
  absl::StatusOr<DocDiff> mapped = set.MapDiff("so-to-po", *diff, nullptr);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  // terms: null is "empty", so the rule's default applies, as for documents.
  EXPECT_EQ(mapped->ToJson(), J(R"({
    "changed": {"supplier_ref": "PO-78", "terms": "Net 30", "docstatus": 2},
    "added": {"items": [{"doctype": "Purchase Order Item", "name": "soi-3",
                         "idx": 3, "item_code": "BOLT", "qty": 10,
                         "price": "1"}]},
    "removed": {"items": ["soi-1"]},
    "row_changed": {"items": [{"name": "soi-2", "qty": 4, "idx": 1}]}
  })"))
      << mapped->ToJson().ToJson();
}

TEST(MappingTest, UpdateDiffWithDocumentRule) {
  MappingSet set = MustCreate(SalesToPurchase());
  FakeFetcher fetcher;
  fetcher.remote.push_back(J(R"({"doctype":"Customer","name":"CUST-2",
      "customer_name":"Beta","disabled":0})"));
  DocDiff diff;
  diff.changed = J(R"({"customer":"CUST-2"})");
  absl::StatusOr<DocDiff> mapped = set.MapDiff("so-to-po", diff, &fetcher);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_EQ(mapped->changed.ToJson(), R"({"supplier":"LOCAL-CUST-2"})");
  ASSERT_EQ(fetcher.inserted.size(), 1u);

  // A filter naming a field the diff does not carry cannot be resolved.
  std::vector<DocTypeMapping> m = SalesToPurchase();
  m[0].field_mapping[6].remote_value_filters =
      J(R"({"name":"doc.customer","company":"doc.company"})");
  MappingSet set2 = MustCreate(m);
  mapped = set2.MapDiff("so-to-po", diff, &fetcher);
  EXPECT_EQ(mapped.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(
      mapped.status().message(),
      HasSubstr("field_mapping[6] (customer): "
                "remote_value_filters.company: takes doc.company, which "
                "the remote update does not set"));

  // Clearing the link clears the local field without a fetch.
  diff.changed = J(R"({"customer":null})");
  mapped = set.MapDiff("so-to-po", diff, nullptr);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_EQ(mapped->changed.ToJson(), R"({"supplier":null})");
}

TEST(MappingTest, ValidationNamesMappingAndField) {
  struct Case {
    std::function<void(std::vector<DocTypeMapping>*)> edit;
    const char* message;
  } cases[] = {
      {[](auto* m) { (*m)[1].name = "so-to-po"; },
       "mapping \"so-to-po\" is defined twice"},
      {[](auto* m) { (*m)[0].name = ""; }, "mappings[0]: name is required"},
      {[](auto* m) { (*m)[0].local_doctype = ""; },
       "mapping \"so-to-po\": local_doctype is required"},
      {[](auto* m) { (*m)[0].field_mapping[1].local_fieldname = ""; },
       "mapping \"so-to-po\" field_mapping[1]: local_fieldname is required"},
      {[](auto* m) { (*m)[0].field_mapping[5].mapping = "missing"; },
       "mapping \"so-to-po\" field_mapping[5] (items): inner mapping "
       "\"missing\" does not exist"},
      {[](auto* m) { (*m)[0].field_mapping[5].mapping = ""; },
       "field_mapping[5] (items): mapping_type \"Child Table\" needs "
       "`mapping`"},
      {[](auto* m) { (*m)[0].field_mapping[0].mapping_type = "Link"; },
       "field_mapping[0] (customer_ref): mapping_type \"Link\" is not one of"},
      {[](auto* m) { (*m)[0].field_mapping[0].mapping = "soi-to-poi"; },
       "field_mapping[0] (customer_ref): mapping \"soi-to-poi\" needs "
       "mapping_type"},
      {[](auto* m) {
         (*m)[0].field_mapping[1].local_fieldname = "supplier_ref";
       },
       "field_mapping[1] (delivery_date): local field \"supplier_ref\" is "
       "already written by another rule"},
      {[](auto* m) { (*m)[0].field_mapping[5].default_value = "x"; },
       "field_mapping[5] (items): a Child Table rule cannot have a "
       "default_value"},
      {[](auto* m) { (*m)[0].field_mapping[6].remote_value_filters = Value(); },
       "field_mapping[6] (customer): remote_value_filters must be a "
       "non-empty object"},
      {[](auto* m) {
         (*m)[0].field_mapping[6].remote_value_filters =
             J(R"({"disabled":0,"name":"eval:doc.customer or"})");
       },
       "mapping \"so-to-po\" field_mapping[6] (customer): "
       "remote_value_filters.name: the expression after \"eval:\" "
       "(doc.customer or) does not parse: column 16: expected a value"},
      {[](auto* m) {
         (*m)[0].field_mapping[6].remote_value_filters =
             J(R"j({"name":"eval:__import__('os')"})j");
       },
       "field_mapping[6] (customer): remote_value_filters.name: the "
       "expression after \"eval:\" (__import__('os')) does not parse: "
       "column 1:"},
      {[](auto* m) {
         (*m)[0].field_mapping[6].remote_value_filters = J(R"({"name":[1]})");
       },
       "field_mapping[6] (customer): remote_value_filters.name: expected a "
       "value, a field name, \"doc.<field>\" or \"eval:<expression>\", got "
       "[1]"},
      {[](auto* m) {
         (*m)[0].field_mapping[6].remote_value_filters =
             J(R"({"name":"doc."})");
       },
       "field_mapping[6] (customer): remote_value_filters.name: \"doc.\" "
       "must be followed by a field name"},
      {[](auto* m) {
         (*m)[1].field_mapping.push_back(Table("sub", "sub", "so-to-po"));
       },
       "mapping \"soi-to-poi\" field_mapping[3] (sub): Child Table mappings "
       "form a cycle: so-to-po -> soi-to-poi -> so-to-po"},
      {[](auto* m) {
         (*m)[2].field_mapping.push_back(
             Table("self", "self", "customer-to-supplier"));
       },
       "Child Table mappings form a cycle: customer-to-supplier -> "
       "customer-to-supplier"},
  };
  for (const Case& c : cases) {
    std::vector<DocTypeMapping> m = SalesToPurchase();
    c.edit(&m);
    absl::StatusOr<MappingSet> set = MappingSet::Create(m);
    ASSERT_FALSE(set.ok()) << c.message;
    EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(set.status().message(), HasSubstr(c.message));
  }
  // A Document rule may point back at its own mapping (checked at run time).
  EXPECT_TRUE(MappingSet::Create(
                  {{"self",
                    "Node",
                    "Node",
                    {Doc("next", "next", "self", R"({"name":"doc.next"})")}}})
                  .ok());
}

// ---- remote_value_filters: ResolveRemoteValueFilters (pure) ---------------

std::vector<RemoteValueFilter> Filters(const std::string& json) {
  absl::StatusOr<std::vector<RemoteValueFilter>> f =
      ParseRemoteValueFilters(J(json));
  EXPECT_TRUE(f.ok()) << json << ": " << f.status();
  return f.ok() ? *std::move(f) : std::vector<RemoteValueFilter>();
}

// "filters" or the error message, and the literal fallbacks after a "|".
std::string Resolve(const std::string& filters, const std::string& doc,
                    absl::string_view doc_kind = "document") {
  absl::StatusOr<ResolvedFilters> r =
      ResolveRemoteValueFilters(Filters(filters), J(doc), doc_kind);
  if (!r.ok()) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition)
        << r.status();
    return std::string(r.status().message());
  }
  std::string out = r->filters.ToJson();
  if (!r->literal_fallbacks.empty()) {
    out += " | literal:";
    for (const std::string& k : r->literal_fallbacks) out += " " + k;
  }
  return out;
}

TEST(RemoteValueFilters, ParseClassifiesEachForm) {
  std::vector<RemoteValueFilter> f = Filters(
      R"({"a":"title","b":"doc.title","c":"eval:doc.title","d":3,"e":true,)"
      R"("f":null,"g":""})");
  ASSERT_EQ(f.size(), 7u);
  using K = RemoteValueFilter::Kind;
  EXPECT_EQ(f[0].kind, K::kFieldOrLiteral);
  EXPECT_EQ(f[0].field, "title");
  EXPECT_EQ(f[1].kind, K::kField);
  EXPECT_EQ(f[1].field, "title");
  EXPECT_EQ(f[2].kind, K::kEval);
  ASSERT_TRUE(f[2].expression.has_value());
  EXPECT_EQ(f[2].expression->text(), "doc.title");
  EXPECT_EQ(f[3].kind, K::kLiteral);
  EXPECT_EQ(f[4].kind, K::kLiteral);
  EXPECT_EQ(f[5].kind, K::kLiteral);
  EXPECT_EQ(f[6].kind, K::kFieldOrLiteral);  // "" is no field: a literal
}

TEST(RemoteValueFilters, ParseErrorsNameTheKey) {
  struct Case {
    const char* filters;
    const char* message;
  } cases[] = {
      {R"({"k":[1]})",
       "remote_value_filters.k: expected a value, a field "
       "name, \"doc.<field>\" or \"eval:<expression>\", got [1]"},
      {R"({"k":{"a":1}})", "remote_value_filters.k: expected a value"},
      {R"({"k":"doc."})",
       "remote_value_filters.k: \"doc.\" must be followed by a field name"},
      {R"({"k":"eval:"})",
       "remote_value_filters.k: the expression after \"eval:\" () does not "
       "parse: column 1:"},
      {R"({"k":"eval:doc.a ="})",
       "remote_value_filters.k: the expression after \"eval:\" (doc.a =) does "
       "not parse: column 7:"},
      {R"({"k":"eval:doc.__class__"})",
       "remote_value_filters.k: the expression after \"eval:\""},
      {R"j({"k":"eval:frappe.db.get_value('User', 'x')"})j",
       "'frappe' is not allowed"},
      {"{}", "remote_value_filters must be a non-empty object"},
      {"[]", "remote_value_filters must be a non-empty object"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<RemoteValueFilter>> f =
        ParseRemoteValueFilters(J(c.filters));
    ASSERT_FALSE(f.ok()) << c.filters;
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(f.status().message(), HasSubstr(c.message)) << c.filters;
  }
}

// Frappe's own example: {"title": "title"} is "the title of this document".
TEST(RemoteValueFilters, BareFieldNameTakesTheDocumentsValue) {
  EXPECT_EQ(Resolve(R"({"title":"title"})",
                    R"({"name":"N1","title":"Inner Mapping Tester"})"),
            R"({"title":"Inner Mapping Tester"})");
  // Any field, under any key; numbers keep their type; 0 is a value.
  EXPECT_EQ(Resolve(R"({"name":"customer","qty":"qty","disabled":"off"})",
                    R"({"customer":"C1","qty":2.50,"off":0})"),
            R"({"disabled":0,"name":"C1","qty":2.50})");
}

TEST(RemoteValueFilters, BareStringIsALiteralWhenNoSuchFieldIsSet) {
  // Missing, null and "" all fall back to the string itself.
  EXPECT_EQ(Resolve(R"({"customer_group":"Retail","a":"x","b":"y"})",
                    R"({"name":"N1","x":null,"y":""})"),
            R"({"a":"x","b":"y","customer_group":"Retail"} | literal: a b )"
            R"(customer_group)");
}

// When a literal equals a field name, the field wins (Frappe's rule); an
// expression forces the literal.
TEST(RemoteValueFilters, FieldWinsOverAnEqualLiteral) {
  const char kDoc[] = R"({"status":"Closed","Open":"yes"})";
  EXPECT_EQ(Resolve(R"({"status":"Open"})", kDoc), R"({"status":"yes"})");
  EXPECT_EQ(Resolve(R"({"status":"eval:'Open'"})", kDoc),
            R"({"status":"Open"})");
  EXPECT_EQ(Resolve(R"({"status":"eval:\"Open\""})", kDoc),
            R"({"status":"Open"})");
}

TEST(RemoteValueFilters, DocFieldIsExplicitAndNeverALiteral) {
  EXPECT_EQ(Resolve(R"({"name":"doc.customer"})", R"({"customer":"C1"})"),
            R"({"name":"C1"})");
  for (const char* doc :
       {R"({})", R"({"customer":null})", R"({"customer":""})"}) {
    EXPECT_EQ(Resolve(R"({"name":"doc.customer"})", doc),
              "remote_value_filters.name: takes doc.customer, which the "
              "remote document does not set (it is missing, null or \"\")")
        << doc;
  }
  EXPECT_EQ(Resolve(R"({"name":"doc.customer"})", "{}", "update"),
            "remote_value_filters.name: takes doc.customer, which the "
            "remote update does not set (it is missing, null or \"\")");
  // A table is not a value, whichever way it is named.
  EXPECT_EQ(Resolve(R"({"name":"items"})", R"({"items":[{"name":"r"}]})"),
            "remote_value_filters.name: takes field \"items\" of the remote "
            "document, which holds a table or object, not a value");
}

TEST(RemoteValueFilters, EvalIsEvaluatedOverDoc) {
  const char kDoc[] = R"({"customer":"C1","owner":"ann","qty":3,"alias":null})";
  EXPECT_EQ(Resolve(R"({"name":"eval:doc.customer"})", kDoc),
            R"({"name":"C1"})");
  EXPECT_EQ(Resolve(R"({"name":"eval:doc.alias or doc.owner"})", kDoc),
            R"({"name":"ann"})");
  EXPECT_EQ(Resolve(R"j({"name":"eval:doc.get('nick', 'guest')"})j", kDoc),
            R"({"name":"guest"})");
  EXPECT_EQ(Resolve(R"({"big":"eval:doc.qty > 2","n":"eval:7"})", kDoc),
            R"({"big":true,"n":7})");
  // The expression's text is not looked up as a field afterwards.
  EXPECT_EQ(Resolve(R"({"name":"eval:doc.customer"})",
                    R"({"customer":"C1","eval:doc.customer":"X"})"),
            R"({"name":"C1"})");
}

// A run-time failure of an expression fails this resolution only, naming
// the key; nothing is ever selected by an empty value.
TEST(RemoteValueFilters, EvalFailuresNameTheKey) {
  const char kDoc[] = R"({"customer":"C1","qty":3,"items":[{"name":"r"}]})";
  EXPECT_EQ(Resolve(R"({"name":"eval:doc.customer < 1"})", kDoc),
            "remote_value_filters.name: \"eval:doc.customer < 1\" failed on "
            "the remote document: column 14: '<' not supported between 'str' "
            "and 'int'");
  EXPECT_EQ(Resolve(R"({"name":"eval:doc.nick"})", kDoc, "update"),
            "remote_value_filters.name: \"eval:doc.nick\" gives None for the "
            "remote update; a filter needs a non-empty value");
  EXPECT_EQ(
      Resolve(R"j({"name":"eval:doc.get('nick', '')"})j", kDoc),
      "remote_value_filters.name: \"eval:doc.get('nick', '')\" gives \"\" "
      "for the remote document; a filter needs a non-empty value");
  EXPECT_EQ(
      Resolve(R"j({"name":"eval:(doc.qty, 1)"})j", kDoc),
      "remote_value_filters.name: \"eval:(doc.qty, 1)\" gives [3,1] for the "
      "remote document; a filter needs a single value");
  EXPECT_EQ(Resolve(R"({"name":"eval:doc.items"})", kDoc),
            "remote_value_filters.name: \"eval:doc.items\" gives "
            "[{\"name\":\"r\"}] "
            "for the remote document; a filter needs a single value");
}

TEST(RemoteValueFilters, NonStringValuesAreLiterals) {
  EXPECT_EQ(Resolve(R"({"a":0,"b":1.50,"c":false,"d":null})",
                    R"({"a":9,"b":9,"c":9,"d":9})"),
            R"({"a":0,"b":1.50,"c":false,"d":null})");
}

// ---- remote_value_filters in MappingSet ------------------------------------

// Frappe's test_inner_mapping (test_event_producer.py): a ToDo mapped from a
// Note; its `role` is the local Role made from the producer's Note found by
// title, through the inner mapping Role <- Note (role_name <- title).
std::vector<DocTypeMapping> ToDoFromNote(const std::string& filters) {
  return {
      {"todo-from-note",
       "ToDo",
       "Note",
       {Plain("content", "description"),
        Doc("title", "role", "role-from-note", filters)}},
      {"role-from-note", "Role", "Note", {Plain("title", "role_name")}},
  };
}

const char kInnerNote[] = R"({"doctype":"Note","name":"NOTE-7",
    "title":"Inner Mapping Tester","content":"Test Inner Mapping"})";

TEST(MappingTest, FrappeInnerMappingByTitle) {
  MappingSet set = MustCreate(ToDoFromNote(R"({"title": "title"})"));
  FakeFetcher fetcher;
  fetcher.remote.push_back(J(R"({"doctype":"Note","name":"NOTE-1",
      "title":"Another","content":"x"})"));
  fetcher.remote.push_back(J(kInnerNote));
  absl::StatusOr<Value> todo =
      set.MapDocument("todo-from-note", J(kInnerNote), &fetcher);
  ASSERT_TRUE(todo.ok()) << todo.status();
  EXPECT_EQ(todo->ToJson(),
            R"({"description":"Test Inner Mapping","doctype":"ToDo",)"
            R"("name":"NOTE-7","role":"LOCAL-NOTE-7"})");
  ASSERT_EQ(fetcher.finds.size(), 1u);
  EXPECT_EQ(fetcher.finds[0], R"(Note {"title":"Inner Mapping Tester"})");
  ASSERT_EQ(fetcher.inserted.size(), 1u);
  EXPECT_EQ(fetcher.inserted[0].ToJson(),
            R"({"doctype":"Role","name":"NOTE-7",)"
            R"("role_name":"Inner Mapping Tester"})");
}

// As in Frappe (`if doc.get(mapping.remote_fieldname)`), a Document rule
// whose remote field is empty fetches nothing.
TEST(MappingTest, DocumentRuleNeedsANonEmptyRemoteField) {
  std::vector<DocTypeMapping> m = ToDoFromNote(R"({"title": "title"})");
  MappingSet set = MustCreate(m);
  FakeFetcher fetcher;
  absl::StatusOr<Value> todo =
      set.MapDocument("todo-from-note",
                      J(R"({"doctype":"Note","name":"N","title":"",)"
                        R"("content":"c"})"),
                      &fetcher);
  ASSERT_TRUE(todo.ok()) << todo.status();
  EXPECT_EQ(todo->ToJson(),
            R"({"description":"c","doctype":"ToDo","name":"N","role":""})");
  EXPECT_TRUE(fetcher.finds.empty());
  // The rule's default_value fills it instead.
  m[0].field_mapping[1].default_value = "Guest";
  MappingSet set2 = MustCreate(m);
  todo = set2.MapDocument("todo-from-note",
                          J(R"({"doctype":"Note","name":"N","content":"c"})"),
                          &fetcher);
  ASSERT_TRUE(todo.ok()) << todo.status();
  EXPECT_EQ(todo->Find("role")->as_string(), "Guest");
  EXPECT_TRUE(fetcher.finds.empty());
}

TEST(MappingTest, DocumentRuleWithEvalAndDocFieldFilters) {
  MappingSet set = MustCreate(ToDoFromNote(
      R"j({"title":"eval:doc.get('role_title', doc.title)","public":1,)j"
      R"("owner":"doc.owner"})"));
  FakeFetcher fetcher;
  fetcher.remote.push_back(J(R"({"doctype":"Note","name":"R1",
      "title":"Managers","public":1,"owner":"ann"})"));
  absl::StatusOr<Value> todo = set.MapDocument(
      "todo-from-note",
      J(R"({"doctype":"Note","name":"N","title":"x","role_title":"Managers",)"
        R"("owner":"ann"})"),
      &fetcher);
  ASSERT_TRUE(todo.ok()) << todo.status();
  EXPECT_EQ(todo->Find("role")->as_string(), "LOCAL-R1");
  EXPECT_EQ(fetcher.finds[0],
            R"(Note {"owner":"ann","public":1,"title":"Managers"})");
}

// A filter that cannot be resolved fails this document only, naming the
// mapping, field_mapping[i] and the key; the set stays usable.
TEST(MappingTest, FilterFailuresNameMappingRuleAndKey) {
  // Numbers only: comparing a string title to 5 fails.
  MappingSet set = MustCreate(
      ToDoFromNote(R"({"title":"eval:doc.title < 5 and doc.title"})"));
  FakeFetcher fetcher;
  fetcher.remote.push_back(J(kInnerNote));
  absl::StatusOr<Value> todo =
      set.MapDocument("todo-from-note", J(kInnerNote), &fetcher);
  EXPECT_EQ(todo.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(todo.status().message(),
            "mapping \"todo-from-note\" field_mapping[1] (title): "
            "remote_value_filters.title: \"eval:doc.title < 5 and doc.title\" "
            "failed on the remote document: column 11: '<' not supported "
            "between 'str' and 'int'");
  EXPECT_TRUE(fetcher.finds.empty());
  // The next document, whose title is a number, maps.
  fetcher.remote.push_back(J(R"({"doctype":"Note","name":"N2","title":3})"));
  todo = set.MapDocument("todo-from-note",
                         J(R"({"doctype":"Note","name":"N2","title":3})"),
                         &fetcher);
  ASSERT_TRUE(todo.ok()) << todo.status();
  EXPECT_EQ(todo->Find("role")->as_string(), "LOCAL-N2");
}

// Nothing matched and a string was taken literally: the message says so.
TEST(MappingTest, NotFoundSaysWhichStringsWereTakenLiterally) {
  MappingSet set =
      MustCreate(ToDoFromNote(R"({"title":"title","content":"body"})"));
  FakeFetcher fetcher;
  absl::StatusOr<Value> todo =
      set.MapDocument("todo-from-note", J(kInnerNote), &fetcher);
  EXPECT_EQ(todo.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(todo.status().message(),
            "mapping \"todo-from-note\" field_mapping[1] (title): no Note on "
            "the producer matches "
            "{\"content\":\"body\",\"title\":\"Inner Mapping Tester\"}; "
            "remote_value_filters.content was taken as the literal \"body\" "
            "because the remote document has no non-empty field of that name");
}

// In an Update, filters resolve against `changed`, as in Frappe: a bare name
// the update does not carry is a literal, doc.<field> of it an error, and
// eval sees only the changed fields.
TEST(MappingTest, UpdateDiffResolvesFiltersAgainstChanged) {
  FakeFetcher fetcher;
  fetcher.remote.push_back(J(R"({"doctype":"Note","name":"R2",
      "title":"Renamed","public":"public"})"));
  DocDiff diff;
  diff.changed = J(R"({"title":"Renamed","content":"new"})");

  MappingSet set = MustCreate(ToDoFromNote(R"({"title":"title"})"));
  absl::StatusOr<DocDiff> mapped =
      set.MapDiff("todo-from-note", diff, &fetcher);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_EQ(mapped->changed.ToJson(),
            R"({"description":"new","role":"LOCAL-R2"})");
  EXPECT_EQ(fetcher.finds.back(), R"(Note {"title":"Renamed"})");

  // `public` is not part of this update: literally "public" (Frappe's rule).
  set = MustCreate(ToDoFromNote(R"({"title":"title","public":"public"})"));
  mapped = set.MapDiff("todo-from-note", diff, &fetcher);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_EQ(fetcher.finds.back(),
            R"(Note {"public":"public","title":"Renamed"})");

  set = MustCreate(ToDoFromNote(R"({"title":"title","public":"doc.public"})"));
  mapped = set.MapDiff("todo-from-note", diff, &fetcher);
  EXPECT_EQ(mapped.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(mapped.status().message(),
            "mapping \"todo-from-note\" field_mapping[1] (title): "
            "remote_value_filters.public: takes doc.public, which the remote "
            "update does not set (it is missing, null or \"\")");

  set = MustCreate(ToDoFromNote(R"({"title":"eval:doc.public"})"));
  mapped = set.MapDiff("todo-from-note", diff, &fetcher);
  EXPECT_EQ(mapped.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(mapped.status().message(),
              HasSubstr("remote_value_filters.title: \"eval:doc.public\" gives "
                        "None for the remote update"));

  // An update that does not change the rule's own field fetches nothing.
  diff.changed = J(R"({"content":"only"})");
  mapped = set.MapDiff("todo-from-note", diff, &fetcher);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_EQ(mapped->changed.ToJson(), R"({"description":"only"})");
}

}  // namespace
}  // namespace eventstream
