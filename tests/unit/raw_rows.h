// Test helpers for the capture planners (entry_builder_test, assembly_plan_
// test): a small registry (Note with a Table field of Note Item; Memo without
// tables) and a builder of one transaction's raw rows written as JSON text.
#ifndef EVENTSTREAM_TESTS_UNIT_RAW_ROWS_H_
#define EVENTSTREAM_TESTS_UNIT_RAW_ROWS_H_

#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libsync/model/doctype.h"
#include "libsync/rules/entry_builder.h"
#include "libsync/base/value.h"
#include "tests/support/doctype_fixtures.h"

// Inline: the planners' tests (namespace eventstream) use these names as
// they are, without a using-declaration each.
namespace eventstream {
inline namespace testing_raw_rows {

using fixtures::Field;
using fixtures::J;

// Note {title, items: Table of Note Item {item, qty}}, Memo {body}.
inline DocTypeRegistry NoteRegistry() {
  DocTypeDef note;
  note.name = "Note";
  note.is_submittable = true;
  note.fields = {Field("title", "Data"), Field("items", "Table", "Note Item")};
  DocTypeDef item;
  item.name = "Note Item";
  item.istable = true;
  item.fields = {Field("item", "Data"), Field("qty", "Int")};
  DocTypeDef memo;
  memo.name = "Memo";
  memo.fields = {Field("body", "Text")};
  absl::StatusOr<DocTypeRegistry> registry = DocTypeRegistry::Create({note, item, memo});
  EXPECT_TRUE(registry.ok()) << registry.status();
  return registry.ok() ? *registry : DocTypeRegistry();
}

// One transaction's raw rows, ids ascending from `first_id`.
class Tx {
 public:
  explicit Tx(std::string txid = "100", int64_t first_id = 1)
      : txid_(std::move(txid)), next_id_(first_id) {}

  Tx& Origin(std::optional<std::string> origin) {
    origin_ = std::move(origin);
    return *this;
  }
  Tx& Insert(const std::string& doctype, const std::string& row) {
    return Add(doctype, 'I', std::nullopt, J(row));
  }
  Tx& Update(const std::string& doctype, const std::string& old_row, const std::string& new_row) {
    return Add(doctype, 'U', J(old_row), J(new_row));
  }
  Tx& Delete(const std::string& doctype, const std::string& old_row) {
    return Add(doctype, 'D', J(old_row), std::nullopt);
  }
  Tx& Add(const std::string& doctype, char op, std::optional<Value> old_row,
          std::optional<Value> new_row) {
    RawChange c;
    c.id = next_id_++;
    c.txid = txid_;
    c.doctype = doctype;
    c.op = op;
    c.old_row = std::move(old_row);
    c.new_row = std::move(new_row);
    c.origin = origin_;
    rows.push_back(std::move(c));
    return *this;
  }

  std::vector<RawChange> rows;

 private:
  std::string txid_;
  int64_t next_id_;
  std::optional<std::string> origin_;
};

// "Type:docname" of each entry, in order.
inline std::vector<std::string> Kinds(const std::vector<LogEntry>& entries) {
  std::vector<std::string> out;
  for (const LogEntry& e : entries) out.push_back(e.update_type + ":" + e.docname);
  return out;
}

}  // namespace testing_raw_rows
}  // namespace eventstream

#endif  // EVENTSTREAM_TESTS_UNIT_RAW_ROWS_H_
