// libsync/model/link_graph: which documents link where, the backward walk that
// decides whether a document is readable, and the forward closure sent with
// a dependency. No database: the walks run over an in-memory graph.
#include "libsync/model/link_graph.h"

#include <map>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/doctype_fixtures.h"

namespace eventstream {
namespace {

using fixtures::DocType;
using fixtures::Field;

// Note -> (author) User, Note -> (seen_by rows) User, Note -> (ref) any,
// User -> (roles rows) Role, Role -> (parent_role) Role.
DocTypeRegistry Registry() {
  auto reg = DocTypeRegistry::Create({
      DocType("Note", {Field("title", "Data"), Field("author", "Link", "User"),
                       Field("ref_type", "Data"), Field("ref_name", "Dynamic Link", "ref_type"),
                       Field("seen_by", "Table", "Note Seen By")}),
      DocType("Note Seen By",
              {Field("user", "Link", "User"), Field("ref_type", "Data"),
               Field("ref_name", "Dynamic Link", "ref_type")},
              true),
      DocType("User", {Field("full_name", "Data"), Field("roles", "Table", "Has Role")}),
      DocType("Has Role", {Field("role", "Link", "Role")}, true),
      DocType("Role", {Field("parent_role", "Link", "Role")}),
  });
  EXPECT_TRUE(reg.ok()) << reg.status();
  return *std::move(reg);
}

Value Json(const std::string& text) {
  auto v = Value::ParseJson(text);
  EXPECT_TRUE(v.ok()) << v.status() << ": " << text;
  return v.ok() ? *v : Value();
}

std::string Names(const std::vector<DocRef>& refs) {
  std::string out;
  for (const DocRef& r : refs) out += (out.empty() ? "" : " ") + r.doctype + ":" + r.name;
  return out;
}

TEST(ForwardLinks, LinkChildRowLinkAndDynamicLinkEachOnce) {
  DocTypeRegistry reg = Registry();
  Value note = Json(R"({"name": "N1", "author": "u1", "ref_type": "Role", "ref_name": "r1",
      "seen_by": [{"user": "u2"}, {"user": "u1"}, {"user": ""},
                  {"ref_type": "User", "ref_name": "u3"},
                  {"ref_type": "Nope", "ref_name": "x"},
                  {"ref_type": "Has Role", "ref_name": "child-row"}]})");
  EXPECT_EQ(Names(ForwardLinks(reg, *reg.Find("Note"), note)),
            "User:u1 Role:r1 User:u2 User:u3");
  EXPECT_EQ(Names(ForwardLinks(reg, *reg.Find("Note"), Json(R"({"author": 7})"))), "");
}

TEST(FieldsLinkingTo, LinksNamingTheDocTypeAndEveryDynamicLink) {
  DocTypeRegistry reg = Registry();
  std::vector<std::string> got;
  for (const LinkField& f : FieldsLinkingTo(reg, "Role")) {
    got.push_back(f.holder->name + "." + f.field->fieldname + (f.dynamic ? " (dynamic)" : ""));
  }
  EXPECT_EQ(got, (std::vector<std::string>{"Note.ref_name (dynamic)",
                                           "Note Seen By.ref_name (dynamic)", "Has Role.role",
                                           "Role.parent_role"}));
}

// A graph of documents: who links to whom, and how each stands.
struct Graph {
  std::map<DocRef, std::vector<DocRef>> links;  // from -> to
  std::map<DocRef, Standing> standing;          // absent = kPassage
  int linker_calls = 0;

  void Link(DocRef from, DocRef to) { links[from].push_back(to); }
  ReverseWalk Walk() {
    ReverseWalk w;
    w.linkers = [this](const std::string& doctype, const std::vector<std::string>& names,
                       int limit) -> absl::StatusOr<std::vector<DocRef>> {
      ++linker_calls;
      std::set<std::string> wanted(names.begin(), names.end());
      std::vector<DocRef> out;
      for (const auto& [from, tos] : links) {
        for (const DocRef& to : tos) {
          if (to.doctype == doctype && wanted.count(to.name) &&
              static_cast<int>(out.size()) < limit) {
            out.push_back(from);
            break;
          }
        }
      }
      return out;
    };
    w.standing = [this](const DocRef& ref) -> absl::StatusOr<Standing> {
      auto it = standing.find(ref);
      return it == standing.end() ? Standing::kPassage : it->second;
    };
    return w;
  }
  int standings_calls = 0;
  BatchReverseWalk Batch() {
    BatchReverseWalk w;
    w.linkers = [this](const std::string& doctype, const std::vector<std::string>& names,
                       int limit) -> absl::StatusOr<std::vector<LinkEdge>> {
      ++linker_calls;
      std::set<std::string> wanted(names.begin(), names.end());
      std::vector<LinkEdge> out;
      for (const auto& [from, tos] : links) {
        for (const DocRef& to : tos) {
          if (to.doctype == doctype && wanted.count(to.name) &&
              static_cast<int>(out.size()) < limit) {
            out.push_back({from, to.name});
          }
        }
      }
      return out;
    };
    w.standings = [this](const std::string& doctype, const std::vector<std::string>& names)
        -> absl::StatusOr<std::map<std::string, Standing>> {
      ++standings_calls;
      std::map<std::string, Standing> out;
      for (const std::string& name : names) {
        auto it = standing.find(R(doctype, name));
        if (it == standing.end()) {
          out[name] = Standing::kPassage;
        } else if (it->second != Standing::kMissing) {
          out[name] = it->second;
        }
      }
      return out;
    };
    return w;
  }
  static DocRef R(std::string doctype, std::string name) {
    return {std::move(doctype), std::move(name)};
  }
};

std::string Names(const std::set<DocRef>& refs) {
  return Names(std::vector<DocRef>(refs.begin(), refs.end()));
}

DocRef R(std::string doctype, std::string name) { return {std::move(doctype), std::move(name)}; }

TEST(ReachableFromGrantor, FourLevelChain) {
  // Note n1 (visible) -> User u1 -> Role r1 -> Role r2 -> Role r3.
  Graph g;
  g.standing[R("Note", "n1")] = Standing::kGrantor;
  g.Link(R("Note", "n1"), R("User", "u1"));
  g.Link(R("User", "u1"), R("Role", "r1"));
  g.Link(R("Role", "r1"), R("Role", "r2"));
  g.Link(R("Role", "r2"), R("Role", "r3"));
  for (const char* role : {"r1", "r2", "r3"}) {
    auto r = ReachableFromGrantor(R("Role", role), g.Walk(), 100);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->readable) << role;
  }
  auto grantor = ReachableFromGrantor(R("Note", "n1"), g.Walk(), 100);
  EXPECT_TRUE(grantor->readable);
  EXPECT_EQ(grantor->examined, 1);
}

TEST(ReachableFromGrantor, CycleEndsWithoutAGrantor) {
  // A links B links A; nothing visible links to either.
  Graph g;
  g.Link(R("Role", "a"), R("Role", "b"));
  g.Link(R("Role", "b"), R("Role", "a"));
  auto r = ReachableFromGrantor(R("Role", "a"), g.Walk(), 100);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->readable);
  EXPECT_FALSE(r->out_of_budget);
  EXPECT_EQ(r->examined, 2);
  // ... and with a grantor linking into the cycle, both are readable.
  g.standing[R("Note", "n")] = Standing::kGrantor;
  g.Link(R("Note", "n"), R("Role", "b"));
  EXPECT_TRUE(ReachableFromGrantor(R("Role", "a"), g.Walk(), 100)->readable);
}

TEST(ReachableFromGrantor, LinkedOnlyFromAnInvisibleDocumentIsNotReadable) {
  // Hidden note h (its condition is false now) links u; h is a passage, but
  // nothing visible links to h.
  Graph g;
  g.Link(R("Note", "h"), R("User", "u"));
  auto r = ReachableFromGrantor(R("User", "u"), g.Walk(), 100);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->readable);
}

TEST(ReachableFromGrantor, BlockedDocumentsAreNotReadNorFollowed) {
  // Grantor g -> blocked b -> u: u is not readable through b; b itself is
  // not readable although g links to it.
  Graph g;
  g.standing[R("Note", "g")] = Standing::kGrantor;
  g.standing[R("Note", "b")] = Standing::kBlocked;
  g.Link(R("Note", "g"), R("Note", "b"));
  g.Link(R("Note", "b"), R("User", "u"));
  EXPECT_FALSE(ReachableFromGrantor(R("User", "u"), g.Walk(), 100)->readable);
  EXPECT_FALSE(ReachableFromGrantor(R("Note", "b"), g.Walk(), 100)->readable);
  g.standing[R("User", "missing")] = Standing::kMissing;
  EXPECT_FALSE(ReachableFromGrantor(R("User", "missing"), g.Walk(), 100)->readable);
}

TEST(ReachableFromGrantor, StopsAtTheBudget) {
  // A chain of 50 passages above the target, the grantor at the top.
  Graph g;
  for (int i = 0; i < 50; ++i) {
    g.Link(R("Role", std::to_string(i + 1)), R("Role", std::to_string(i)));
  }
  g.standing[R("Role", "50")] = Standing::kGrantor;
  auto cut = ReachableFromGrantor(R("Role", "0"), g.Walk(), 10);
  ASSERT_TRUE(cut.ok());
  EXPECT_FALSE(cut->readable);
  EXPECT_TRUE(cut->out_of_budget);
  EXPECT_EQ(cut->examined, 10);
  EXPECT_TRUE(ReachableFromGrantor(R("Role", "0"), g.Walk(), 100)->readable);
}

TEST(ReachableFromGrantor, OneLinkerQueryPerDocTypePerLevel) {
  // Ten users link the role; one level up, ten notes link those users.
  Graph g;
  for (int i = 0; i < 10; ++i) {
    std::string u = "u" + std::to_string(i), n = "n" + std::to_string(i);
    g.Link(R("User", u), R("Role", "r"));
    g.Link(R("Note", n), R("User", u));
  }
  g.standing[R("Note", "n9")] = Standing::kGrantor;
  auto r = ReachableFromGrantor(R("Role", "r"), g.Walk(), 100);
  EXPECT_TRUE(r->readable);
  EXPECT_EQ(g.linker_calls, 2);
}

// The batched walk FindDocuments uses (issue 13 item 9): many targets in
// one walk, with the same answers as one walk each.
TEST(ReachableFromGrantors, SameAnswersAsOneWalkEach) {
  Graph g;
  // n1 (grantor) -> u1 -> r1 -> r2 <-> r3; h (passage, unreachable) -> u9 -> r9;
  // g2 (grantor) -> b (blocked) -> u8; a <-> c a cycle nothing visible links.
  g.standing[R("Note", "n1")] = Standing::kGrantor;
  g.standing[R("Note", "g2")] = Standing::kGrantor;
  g.standing[R("Note", "b")] = Standing::kBlocked;
  g.Link(R("Note", "n1"), R("User", "u1"));
  g.Link(R("User", "u1"), R("Role", "r1"));
  g.Link(R("Role", "r1"), R("Role", "r2"));
  g.Link(R("Role", "r2"), R("Role", "r3"));
  g.Link(R("Role", "r3"), R("Role", "r2"));
  g.Link(R("Note", "h"), R("User", "u9"));
  g.Link(R("User", "u9"), R("Role", "r9"));
  g.Link(R("Note", "g2"), R("Note", "b"));
  g.Link(R("Note", "b"), R("User", "u8"));
  g.Link(R("Role", "a"), R("Role", "c"));
  g.Link(R("Role", "c"), R("Role", "a"));
  std::vector<DocRef> targets = {R("User", "u1"), R("Role", "r1"), R("Role", "r3"),
                                 R("User", "u9"), R("Role", "r9"), R("User", "u8"),
                                 R("Role", "a"),  R("Role", "c")};
  auto r = ReachableFromGrantors(targets, g.Batch(), 100);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Names(r->readable), "Role:r1 Role:r3 User:u1");
  EXPECT_FALSE(r->out_of_budget);
  for (const DocRef& t : targets) {
    auto one = ReachableFromGrantor(t, g.Walk(), 100);
    ASSERT_TRUE(one.ok());
    EXPECT_EQ(one->readable, r->readable.count(t) > 0) << t.doctype << ":" << t.name;
  }
}

TEST(ReachableFromGrantors, QueriesPerLevelNotPerTarget) {
  // 200 invisible notes match; none is linked. One linker query for their
  // DocType, none for standings (nothing was met): the cost does not grow
  // with the number of targets.
  Graph g;
  std::vector<DocRef> targets;
  for (int i = 0; i < 200; ++i) targets.push_back(R("Note", "h" + std::to_string(i)));
  auto r = ReachableFromGrantors(targets, g.Batch(), 1000);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->readable.empty());
  EXPECT_EQ(g.linker_calls, 1);
  EXPECT_EQ(g.standings_calls, 0);
  // Each linked by its own user, all users linked by one grantor: two
  // levels, two linker queries and two standings queries, whatever the count.
  for (int i = 0; i < 200; ++i) {
    g.Link(R("User", "u" + std::to_string(i)), R("Note", "h" + std::to_string(i)));
    g.Link(R("Role", "top"), R("User", "u" + std::to_string(i)));
  }
  g.standing[R("Role", "top")] = Standing::kGrantor;
  g.linker_calls = g.standings_calls = 0;
  auto all = ReachableFromGrantors(targets, g.Batch(), 1000);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->readable.size(), 200u);
  EXPECT_EQ(g.linker_calls, 2);
  EXPECT_EQ(g.standings_calls, 2);
}

TEST(ReachableFromGrantors, StopsAtTheBudget) {
  Graph g;
  for (int i = 0; i < 50; ++i) {
    g.Link(R("Role", std::to_string(i + 1)), R("Role", std::to_string(i)));
  }
  g.standing[R("Role", "50")] = Standing::kGrantor;
  auto cut = ReachableFromGrantors({R("Role", "0")}, g.Batch(), 10);
  ASSERT_TRUE(cut.ok());
  EXPECT_TRUE(cut->readable.empty());
  EXPECT_TRUE(cut->out_of_budget);
  EXPECT_EQ(cut->examined, 10);
  EXPECT_EQ(ReachableFromGrantors({R("Role", "0")}, g.Batch(), 100)->readable.size(), 1u);
}

TEST(LinkClosure, WholeChainBreadthFirstEachOnce) {
  DocTypeRegistry reg = Registry();
  std::map<DocRef, Value> docs = {
      {R("User", "u1"), Json(R"({"roles": [{"role": "r1"}]})")},
      {R("User", "u2"), Json(R"({"roles": [{"role": "r1"}]})")},
      {R("Role", "r1"), Json(R"({"parent_role": "r2"})")},
      {R("Role", "r2"), Json(R"({"parent_role": "r1"})")},  // a cycle
  };
  int reads = 0;
  auto read = [&](const DocRef& ref) -> absl::StatusOr<std::optional<Value>> {
    ++reads;
    auto it = docs.find(ref);
    if (it == docs.end()) return std::optional<Value>();
    return std::optional<Value>(it->second);
  };
  Value note = Json(R"({"name": "n1", "author": "u1", "ref_type": "User", "ref_name": "gone",
                        "seen_by": [{"user": "u2"}]})");
  auto c = LinkClosure(reg, *reg.Find("Note"), note, read, ClosureLimits());
  ASSERT_TRUE(c.ok()) << c.status();
  std::vector<std::string> got;
  for (const Value& d : c->documents) {
    got.push_back(d.Find("doctype")->as_string() + ":" + d.Find("name")->as_string());
  }
  EXPECT_EQ(got, (std::vector<std::string>{"User:u1", "User:u2", "Role:r1", "Role:r2"}));
  EXPECT_FALSE(c->truncated);
  EXPECT_EQ(reads, 5);  // u1, gone, u2, r1, r2

  ClosureLimits two;
  two.max_documents = 2;
  c = LinkClosure(reg, *reg.Find("Note"), note, read, two);
  EXPECT_EQ(c->documents.size(), 2u);
  EXPECT_TRUE(c->truncated);

  ClosureLimits tiny;
  tiny.max_bytes = 10;
  c = LinkClosure(reg, *reg.Find("Note"), note, read, tiny);
  EXPECT_TRUE(c->documents.empty());
  EXPECT_TRUE(c->truncated);
}

}  // namespace
}  // namespace eventstream
