#include "libsync/model/naming.h"

#include <random>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "libsync/base/status_macros.h"

namespace eventstream {
namespace {

absl::BitGen& Gen() {
  thread_local absl::BitGen gen;
  return gen;
}

constexpr char kHex[] = "0123456789abcdef";

}  // namespace

std::string RandomHashName() {
  std::string out(10, '0');
  for (char& c : out) c = kHex[absl::Uniform(Gen(), 0, 16)];
  return out;
}

std::string RandomUuid() {
  std::string out = "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx";
  for (char& c : out) {
    if (c == 'x') c = kHex[absl::Uniform(Gen(), 0, 16)];
    if (c == 'y') c = kHex[8 + absl::Uniform(Gen(), 0, 4)];  // variant 10xx
  }
  return out;
}

absl::StatusOr<NamingPolicy> NamingPolicy::Parse(absl::string_view autoname) {
  NamingPolicy policy;
  if (autoname.empty() || autoname == "hash") return policy;
  if (autoname == "uuid") {
    policy.kind_ = Kind::kUuid;
    return policy;
  }
  if (absl::StartsWith(autoname, "field:")) {
    policy.kind_ = Kind::kField;
    policy.arg_ = std::string(autoname.substr(6));
    if (policy.arg_.empty())
      return absl::InvalidArgumentError(
          absl::StrCat("autoname \"", autoname, "\": field: needs a fieldname"));
    return policy;
  }
  if (absl::StartsWith(autoname, "series:")) {
    absl::string_view pattern = autoname.substr(7);
    // PREFIX.##### : the #'s at the end are the counter, a '.' before them
    // separates it from the prefix (Frappe's naming series syntax).
    size_t hashes = pattern.size();
    while (hashes > 0 && pattern[hashes - 1] == '#') --hashes;
    int digits = static_cast<int>(pattern.size() - hashes);
    absl::string_view prefix = pattern.substr(0, hashes);
    if (absl::EndsWith(prefix, ".")) prefix.remove_suffix(1);
    if (digits == 0 || prefix.empty() || digits > 18)
      return absl::InvalidArgumentError(absl::StrCat(
          "autoname \"", autoname,
          "\": expected series:PREFIX.##### (a prefix, then 1 to 18 #)"));
    policy.kind_ = Kind::kSeries;
    policy.arg_ = std::string(prefix);
    policy.digits_ = digits;
    return policy;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("autoname \"", autoname,
                   "\": expected hash, uuid, field:<fieldname> or series:PREFIX.#####"));
}

absl::StatusOr<std::string> NamingPolicy::NewName(const Value& doc,
                                                  SeriesCounter* counter) const {
  switch (kind_) {
    case Kind::kHash:
      return RandomHashName();
    case Kind::kUuid:
      return RandomUuid();
    case Kind::kField: {
      const Value* v = doc.Find(arg_);
      std::string text = v ? v->ToText() : "";
      if (text.empty())
        return absl::InvalidArgumentError(absl::StrCat(
            "autoname field:", arg_, ": the document has no value in \"", arg_, "\""));
      return text;
    }
    case Kind::kSeries: {
      if (counter == nullptr)
        return absl::FailedPreconditionError("series naming needs a counter");
      ASSIGN_OR_RETURN(int64_t next, counter->Next(arg_));
      return absl::StrCat(arg_, absl::StrFormat("%0*d", digits_, next));
    }
  }
  return absl::InternalError("unknown naming policy");
}

absl::StatusOr<int64_t> PgSeriesCounter::Next(absl::string_view prefix) {
  // The upsert locks the counter row until the transaction ends: concurrent
  // inserts queue behind it, and a rollback returns the number.
  ASSIGN_OR_RETURN(
      pg::Result result,
      conn_->Exec(absl::StrCat(
                      "INSERT INTO ", table_,
                      " AS s (name, current) VALUES ($1, 1)"
                      " ON CONFLICT (name) DO UPDATE SET current = s.current + 1"
                      " RETURNING current"),
                  {prefix}));
  return result.GetInt64(0, "current");
}

}  // namespace eventstream
