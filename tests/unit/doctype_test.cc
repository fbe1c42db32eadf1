#include "libsync/model/doctype.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libsync/model/naming.h"
#include "tests/support/doctype_fixtures.h"

namespace eventstream {
namespace {

using fixtures::DocType;
using fixtures::Field;

// The docs/design.md example registry.
std::vector<DocTypeDef> NoteDefs() {
  return {DocType("Note", {Field("title", "Data"), Field("public", "Check"),
                           Field("content", "Text"),
                           Field("seen_by", "Table", "Note Seen By")}),
          DocType("Note Seen By", {Field("user", "Link", "User")}, true)};
}

std::string ErrorOf(std::vector<DocTypeDef> defs,
                    DocTypeProblem* problem = nullptr) {
  absl::StatusOr<DocTypeRegistry> reg =
      DocTypeRegistry::Create(std::move(defs), problem);
  if (reg.ok()) return "OK";
  EXPECT_EQ(reg.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(reg.status().message());
}

TEST(DocTypeRegistry, DesignExampleIsValid) {
  absl::StatusOr<DocTypeRegistry> reg = DocTypeRegistry::Create(NoteDefs());
  ASSERT_TRUE(reg.ok()) << reg.status();
  ASSERT_EQ(reg->all().size(), 2u);
  const DocTypeDef* note = reg->Find("Note");
  ASSERT_NE(note, nullptr);
  EXPECT_EQ(note->table, "tabNote");
  EXPECT_EQ(note->autoname, "hash");
  EXPECT_EQ(reg->Find("Note Seen By")->table, "tabNote Seen By");
  ASSERT_NE(note->FindField("seen_by"), nullptr);
  EXPECT_TRUE(note->FindField("seen_by")->is_table());
  EXPECT_EQ(note->FindField("nope"), nullptr);
  EXPECT_EQ(reg->Find("Missing"), nullptr);
}

TEST(DocTypeRegistry, GetUnknownIsNotFound) {
  absl::StatusOr<DocTypeRegistry> reg = DocTypeRegistry::Create(NoteDefs());
  ASSERT_TRUE(reg.ok());
  EXPECT_TRUE(reg->Get("Note").ok());
  absl::StatusOr<const DocTypeDef*> missing = reg->Get("Invoice");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(missing.status().message()),
            "unknown DocType \"Invoice\"");
}

TEST(DocTypeRegistry, ExplicitTableIsKept) {
  std::vector<DocTypeDef> defs = NoteDefs();
  defs[0].table = "notes";
  absl::StatusOr<DocTypeRegistry> reg = DocTypeRegistry::Create(defs);
  ASSERT_TRUE(reg.ok()) << reg.status();
  EXPECT_EQ(reg->Find("Note")->table, "notes");
}

TEST(DocTypeRegistry, EmptyRegistryIsValid) { EXPECT_EQ(ErrorOf({}), "OK"); }

TEST(DocTypeRegistry, DuplicateNameNamesBoth) {
  std::vector<DocTypeDef> defs = NoteDefs();
  defs.push_back(DocType("Note", {}));
  DocTypeProblem problem;
  EXPECT_EQ(ErrorOf(defs, &problem),
            "DocType \"Note\": name: duplicate DocType \"Note\"");
  EXPECT_EQ(problem.doctype_index, 2u);
  EXPECT_FALSE(problem.field_index.has_value());
  EXPECT_EQ(problem.key, "name");
}

TEST(DocTypeRegistry, DuplicateTable) {
  std::vector<DocTypeDef> defs = NoteDefs();
  defs.push_back(DocType("Memo", {}));
  defs.back().table = "tabNote";
  EXPECT_EQ(ErrorOf(defs),
            "DocType \"Memo\": table: table \"tabNote\" is already used by "
            "DocType \"Note\"");
}

TEST(DocTypeRegistry, BadNames) {
  EXPECT_EQ(ErrorOf({DocType("", {})}), "DocType \"\": name: required");
  EXPECT_CONTAINS(ErrorOf({DocType("1Note", {})}),
                  ("name: expected a DocType name"));
  EXPECT_CONTAINS(ErrorOf({DocType("Note\"; drop", {})}),
                  ("name: expected a DocType name"));
  EXPECT_CONTAINS(ErrorOf({DocType(std::string(61, 'A'), {})}),
                  ("longer than PostgreSQL's 63 bytes"));
  EXPECT_EQ(ErrorOf({DocType(std::string(60, 'A'), {})}), "OK");
}

TEST(DocTypeRegistry, TableOptionsMustNameAChildDocType) {
  std::vector<DocTypeDef> defs = NoteDefs();
  defs[0].fields[3].options = "Note Seen";
  DocTypeProblem problem;
  EXPECT_EQ(ErrorOf(defs, &problem),
            "DocType \"Note\": field \"seen_by\": options: unknown DocType "
            "\"Note Seen\" (a Table field's options must name a child "
            "DocType of the registry)");
  EXPECT_EQ(problem.doctype_index, 0u);
  EXPECT_EQ(problem.field_index, 3u);
  EXPECT_EQ(problem.key, "options");

  defs = NoteDefs();
  defs[1].istable = false;
  EXPECT_EQ(ErrorOf(defs),
            "DocType \"Note\": field \"seen_by\": options: DocType \"Note "
            "Seen By\" is not a child DocType (set istable: true on it)");

  defs = NoteDefs();
  defs[0].fields[3].options = "";
  EXPECT_EQ(ErrorOf(defs),
            "DocType \"Note\": field \"seen_by\": options: required: the "
            "child DocType");
}

TEST(DocTypeRegistry, TableOptionsMayNameALaterDocType) {
  std::vector<DocTypeDef> defs = NoteDefs();
  std::swap(defs[0], defs[1]);
  EXPECT_EQ(ErrorOf(defs), "OK");
}

TEST(DocTypeRegistry, NoNestedTables) {
  std::vector<DocTypeDef> defs = NoteDefs();
  defs[1].fields.push_back(Field("more", "Table", "Note Seen By"));
  EXPECT_EQ(ErrorOf(defs),
            "DocType \"Note Seen By\": field \"more\": fieldtype: a child "
            "DocType (istable) cannot have Table fields");
}

TEST(DocTypeRegistry, LinkNeedsOptions) {
  EXPECT_EQ(ErrorOf({DocType("Note", {Field("user", "Link")})}),
            "DocType \"Note\": field \"user\": options: required: the "
            "DocType this Link targets");
  // Link targets need not be in the registry (User is not replicated).
  EXPECT_EQ(ErrorOf({DocType("Note", {Field("user", "Link", "User")})}), "OK");
}

TEST(DocTypeRegistry, DynamicLinkOptionsNameAFieldOfTheSameDocType) {
  std::vector<FieldDef> fields = {
      Field("reference_name", "Dynamic Link", "reference_type"),
      Field("reference_type", "Link", "DocType")};
  EXPECT_EQ(ErrorOf({DocType("ToDo", fields)}), "OK");  // declared after
  fields[0].options = "ref_type";
  EXPECT_EQ(ErrorOf({DocType("ToDo", fields)}),
            "DocType \"ToDo\": field \"reference_name\": options: "
            "\"ref_type\" is not a field of \"ToDo\" (a Dynamic Link's "
            "options name the field that holds the target DocType)");
  fields[0].options = "";
  EXPECT_CONTAINS(ErrorOf({DocType("ToDo", fields)}),
                  ("options: required: the field holding the target"));
}

TEST(DocTypeRegistry, Fieldnames) {
  EXPECT_EQ(ErrorOf({DocType("Note", {Field("", "Data")})}),
            "DocType \"Note\": field \"\": fieldname: required");
  EXPECT_CONTAINS(ErrorOf({DocType("Note", {Field("my field", "Data")})}),
                  ("fieldname: expected an identifier"));
  EXPECT_CONTAINS(ErrorOf({DocType("Note", {Field("1st", "Data")})}),
                  ("fieldname: expected an identifier"));
  EXPECT_CONTAINS(
      ErrorOf({DocType("Note", {Field(std::string(64, 'a'), "Data")})}),
      ("fieldname: expected an identifier"));
  EXPECT_EQ(ErrorOf({DocType(
                "Note", {Field("title", "Data"), Field("title", "Text")})}),
            "DocType \"Note\": field \"title\": fieldname: duplicate "
            "fieldname \"title\"");
}

TEST(DocTypeRegistry, StandardColumnsAreNotFields) {
  for (const char* column : {"name", "creation", "modified", "modified_by",
                             "owner", "docstatus", "idx", "doctype"}) {
    EXPECT_EQ(ErrorOf({DocType("Note", {Field(column, "Data")})}),
              std::string("DocType \"Note\": field \"") + column +
                  "\": fieldname: \"" + column +
                  "\" is a standard column; it exists on every table and "
                  "must not be listed")
        << column;
  }
  // parent/parenttype/parentfield are standard only on child tables.
  EXPECT_CONTAINS(ErrorOf({DocType("Row", {Field("parent", "Data")}, true)}),
                  ("is a standard column"));
  EXPECT_EQ(ErrorOf({DocType("Note", {Field("parent", "Data")})}), "OK");
}

TEST(DocTypeRegistry, Fieldtypes) {
  for (std::string_view type : KnownFieldtypes()) {
    if (type == "Link" || type == "Dynamic Link" || type == "Table") continue;
    EXPECT_EQ(ErrorOf({DocType("Note", {Field("f", std::string(type))})}), "OK")
        << type;
  }
  EXPECT_EQ(ErrorOf({DocType("Note", {Field("f", "")})}),
            "DocType \"Note\": field \"f\": fieldtype: required");
  std::string bad = ErrorOf({DocType("Note", {Field("f", "Section Break")})});
  EXPECT_CONTAINS(bad, ("fieldtype: unknown fieldtype \"Section Break\" "
                        "(expected one of: Data, Small Text,"));
  EXPECT_CONTAINS(ErrorOf({DocType("Note", {Field("f", "data")})}),
                  ("unknown fieldtype \"data\""));
  EXPECT_TRUE(IsKnownFieldtype("Dynamic Link"));
  EXPECT_FALSE(IsKnownFieldtype("Column Break"));
}

TEST(DocTypeRegistry, AutonameForms) {
  auto with_autoname = [](std::string autoname) {
    DocTypeDef d = DocType(
        "Note", {Field("title", "Data"), Field("rows", "Table", "Row")});
    d.autoname = std::move(autoname);
    return ErrorOf({d, DocType("Row", {}, true)});
  };
  for (const char* ok :
       {"hash", "uuid", "field:title", "series:NOTE-.#####", "series:NOTE.####",
        "series:NOTE-#####", "series:PO-.YYYY.-.####", "series:N.#"}) {
    EXPECT_EQ(with_autoname(ok), "OK") << ok;
  }
  EXPECT_EQ(with_autoname("prompt"),
            "DocType \"Note\": autoname: expected one of hash, uuid, "
            "field:<fieldname>, series:PREFIX-.#####");
  EXPECT_EQ(with_autoname("field:subject"),
            "DocType \"Note\": autoname: \"subject\" is not a field of "
            "\"Note\"");
  EXPECT_CONTAINS(with_autoname("field:rows"), ("is not a field"));
  EXPECT_EQ(with_autoname("field:"),
            "DocType \"Note\": autoname: expected field:<fieldname> with a "
            "valid fieldname");
  for (const char* bad :
       {"series:NOTE-", "series:.#####", "series:#####", "series:NOTE-.#####-X",
        "series:A#B.###", "series:N.###################"}) {
    EXPECT_EQ(with_autoname(bad),
              "DocType \"Note\": autoname: expected series:PREFIX.##### (a "
              "prefix, then 1 to 18 '#', e.g. series:NOTE-.#####)")
        << bad;
  }
}

// What the registry accepts, the consumer's naming policy must be able to
// use: a config that loads can always name its documents.
TEST(DocTypeRegistry, AutonameAgreesWithNamingPolicy) {
  for (const char* autoname :
       {"hash", "uuid", "field:title", "series:NOTE-.#####", "series:N.#",
        "series:NOTE-#####", "series:PO-.YYYY.-.####", "prompt", "field:",
        "series:NOTE-", "series:.#####", "series:#####", "series:X.#####-A",
        "series:N.###################", "series:N.##################"}) {
    bool registry_ok = AutonameProblem(autoname).empty();
    if (registry_ok) {
      EXPECT_TRUE(NamingPolicy::Parse(autoname).ok()) << autoname;
    }
  }
}

TEST(DocTypeRegistry, StandardAndBookkeepingColumns) {
  EXPECT_TRUE(IsStandardColumn("docstatus", false));
  EXPECT_TRUE(IsStandardColumn("parentfield", true));
  EXPECT_FALSE(IsStandardColumn("parentfield", false));
  EXPECT_FALSE(IsStandardColumn("title", true));
  EXPECT_TRUE(IsBookkeepingColumn("modified"));
  EXPECT_TRUE(IsBookkeepingColumn("owner"));
  EXPECT_FALSE(IsBookkeepingColumn("docstatus"));
  EXPECT_FALSE(IsBookkeepingColumn("name"));
}

// Issue 13 item 5: a column the site added for itself is not replicated.
TEST(DocTypeRegistry, ReplicatedColumnsAreStandardColumnsAndFieldsWithAColumn) {
  std::vector<DocTypeDef> defs(2);
  defs[0].name = "Note";
  defs[0].fields = {FieldDef{"title", "Data"}, FieldDef{"rows", "Table", "Note Row"}};
  defs[1].name = "Note Row";
  defs[1].istable = true;
  defs[1].fields = {FieldDef{"item", "Data"}};
  auto registry = DocTypeRegistry::Create(std::move(defs));
  ASSERT_TRUE(registry.ok()) << registry.status();
  const DocTypeDef* note = registry->Find("Note");
  const DocTypeDef* row = registry->Find("Note Row");

  EXPECT_TRUE(IsReplicatedColumn(note, "name"));
  EXPECT_TRUE(IsReplicatedColumn(note, "docstatus"));
  EXPECT_TRUE(IsReplicatedColumn(note, "title"));
  EXPECT_FALSE(IsReplicatedColumn(note, "rows"));    // a Table: no column
  EXPECT_FALSE(IsReplicatedColumn(note, "secret"));  // the site's own
  EXPECT_FALSE(IsReplicatedColumn(note, "parent"));  // not a child DocType
  EXPECT_TRUE(IsReplicatedColumn(row, "parentfield"));
  EXPECT_TRUE(IsReplicatedColumn(row, "item"));
  EXPECT_FALSE(IsReplicatedColumn(row, "title"));
  EXPECT_TRUE(IsReplicatedColumn(nullptr, "parenttype"));
  EXPECT_FALSE(IsReplicatedColumn(nullptr, "title"));

  EXPECT_EQ(ReplicatedColumns(*note),
            (std::vector<std::string>{"name", "creation", "modified", "modified_by",
                                      "owner", "docstatus", "idx", "title"}));
  EXPECT_EQ(ReplicatedColumns(*row).size(), 11u);

  auto parsed = Value::ParseJson(
      R"({"name": "N1", "title": "t", "secret": "s3cret", "rows": 1, "idx": 0})");
  ASSERT_TRUE(parsed.ok());
  Value doc = *parsed;
  KeepReplicatedColumns(note, &doc);
  EXPECT_EQ(doc.ToJson(), R"({"idx":0,"name":"N1","title":"t"})");
  Value scalar = Value::String("x");
  KeepReplicatedColumns(note, &scalar);
  EXPECT_EQ(scalar.ToJson(), R"("x")");
}

}  // namespace
}  // namespace eventstream
