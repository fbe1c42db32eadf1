#include "libsync/mapping.h"

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace eventstream {
namespace {

using ::testing::HasSubstr;

Value J(const std::string& text) {
  absl::StatusOr<Value> v = Value::ParseJson(text);
  EXPECT_TRUE(v.ok()) << text << ": " << v.status();
  return v.ok() ? *v : Value();
}

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
              HasSubstr("mapping \"so-to-po\" field \"customer\": no Customer "
                        "on the producer matches "
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
              HasSubstr("remote_value_filters.name takes doc.customer_code, "
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
              HasSubstr("field \"items\": expected a child table (array)"));
  out = set.MapDocument(
      "so-to-po", J(R"({"name":"S","items":[{"doctype":"Item","name":"r1"}]})"),
      nullptr);
  EXPECT_THAT(out.status().message(),
              HasSubstr("field \"items\" row \"r1\": mapping \"soi-to-poi\" "
                        "maps Sales Order Item, not Item"));
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
  EXPECT_THAT(mapped.status().message(),
              HasSubstr("takes doc.company, which the remote update does not "
                        "set"));

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
             J(R"({"name":"eval:doc.customer"})");
       },
       "remote_value_filters.name: \"eval:\" expressions are not supported"},
      {[](auto* m) {
         (*m)[0].field_mapping[6].remote_value_filters = J(R"({"name":[1]})");
       },
       "remote_value_filters.name must be a scalar"},
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

}  // namespace
}  // namespace eventstream
