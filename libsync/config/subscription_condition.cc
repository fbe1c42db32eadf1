#include "libsync/config/subscription_condition.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libsync/config/expr.h"

namespace eventstream {
namespace {

constexpr char kExpected[] =
    "expected cmd:schema.function (a PostgreSQL function "
    "(consumer text, doc jsonb, update_log jsonb) -> boolean, e.g. "
    "cmd:public.visible_to_branch)";

bool IsIdentifier(absl::string_view s) {
  if (s.empty() || absl::ascii_isdigit(s[0])) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(c) && c != '_') return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::optional<ConditionFunction>> ParseConditionFunction(
    absl::string_view condition) {
  absl::string_view rest = condition;
  if (!absl::ConsumePrefix(&rest, "cmd:")) return std::nullopt;
  std::vector<absl::string_view> parts =
      absl::StrSplit(absl::StripAsciiWhitespace(rest), '.');
  if (parts.size() != 2 || !IsIdentifier(parts[0]) || !IsIdentifier(parts[1])) {
    return absl::InvalidArgumentError(kExpected);
  }
  return ConditionFunction{std::string(parts[0]), std::string(parts[1])};
}

std::string ConditionProblem(absl::string_view condition,
                             const std::vector<std::string>* allowed) {
  if (condition.empty()) return "";
  auto function = ParseConditionFunction(condition);
  if (!function.ok()) return std::string(function.status().message());
  if (function->has_value()) {
    if (allowed == nullptr ||
        std::find(allowed->begin(), allowed->end(), (*function)->Name()) != allowed->end()) {
      return "";
    }
    return absl::StrCat(
        "function ", (*function)->Name(),
        " is not one the producer allows in conditions (its config's "
        "producer.condition_functions",
        allowed->empty() ? " is empty" : absl::StrCat(": ", absl::StrJoin(*allowed, ", ")),
        ")");
  }
  auto parsed = Condition::Parse(std::string_view(condition.data(), condition.size()));
  if (!parsed.ok()) return absl::StrCat("invalid condition: ", parsed.status().message());
  return "";
}

}  // namespace eventstream
