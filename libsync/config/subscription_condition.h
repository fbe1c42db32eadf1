// Subscription conditions (docs/design.md "Producer / Notify / pull"): ""
// (every document), an expression of the safe language (expr.h), or
// `cmd:schema.function`, a PostgreSQL function (consumer text, doc jsonb,
// update_log jsonb) -> boolean.
//
// A cmd: condition a consumer sends (RegisterConsumer / UpdateSubscription)
// may only name a function in the producer's `condition_functions` allow-
// list (config.h); the producer's own config conditions may name any. The
// producer calls them read-only (update_feed.cc). One rule, used by the
// config loader, the registration RPCs and the pull.
#ifndef EVENTSTREAM_LIBSYNC_CONFIG_SUBSCRIPTION_CONDITION_H_
#define EVENTSTREAM_LIBSYNC_CONFIG_SUBSCRIPTION_CONDITION_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace eventstream {

struct ConditionFunction {
  std::string schema;
  std::string function;
  std::string Name() const { return schema + "." + function; }  // unquoted
};

// The function of a `cmd:` condition; nullopt for any other condition;
// INVALID_ARGUMENT (what was expected) when `cmd:` is not followed by
// schema.function (two identifiers: letters, digits, '_', not starting with
// a digit).
absl::StatusOr<std::optional<ConditionFunction>> ParseConditionFunction(
    absl::string_view condition);

// "" when `condition` is acceptable, else what is wrong with it. With
// `allowed` (schema.function names), a cmd: condition must name one of them.
std::string ConditionProblem(absl::string_view condition,
                             const std::vector<std::string>* allowed = nullptr);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_CONFIG_SUBSCRIPTION_CONDITION_H_
