// Small builders the unit tests (and a few integration tests) share for
// registries and documents: a FieldDef, a DocTypeDef, a Value from JSON
// text (a parse error fails the test), and EXPECT_CONTAINS. Header-only:
// unit_tests link only libsync and gtest.
#ifndef EVENTSTREAM_TESTS_SUPPORT_DOCTYPE_FIXTURES_H_
#define EVENTSTREAM_TESTS_SUPPORT_DOCTYPE_FIXTURES_H_

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "libsync/base/value.h"
#include "libsync/model/doctype.h"

// unit_tests link gtest only (no gmock matchers everywhere), so a substring
// check by hand.
#define EXPECT_CONTAINS(haystack, needle)                                \
  do {                                                                   \
    const std::string es_h = (haystack);                                 \
    EXPECT_NE(es_h.find(needle), std::string::npos)                      \
        << "\"" << es_h << "\" does not contain \"" << (needle) << "\""; \
  } while (0)

namespace eventstream::fixtures {

inline FieldDef Field(std::string fieldname, std::string fieldtype, std::string options = "") {
  FieldDef f;
  f.fieldname = std::move(fieldname);
  f.fieldtype = std::move(fieldtype);
  f.options = std::move(options);
  return f;
}

inline DocTypeDef DocType(std::string name, std::vector<FieldDef> fields, bool istable = false) {
  DocTypeDef d;
  d.name = std::move(name);
  d.fields = std::move(fields);
  d.istable = istable;
  return d;
}

// `text` parsed as JSON; an empty Value (and a test failure) when it is not.
inline Value J(const std::string& text) {
  absl::StatusOr<Value> v = Value::ParseJson(text);
  EXPECT_TRUE(v.ok()) << text << ": " << v.status();
  return v.ok() ? *v : Value();
}

}  // namespace eventstream::fixtures

#endif  // EVENTSTREAM_TESTS_SUPPORT_DOCTYPE_FIXTURES_H_
