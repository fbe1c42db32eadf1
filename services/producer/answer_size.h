// Fitting GetDocument and FindDocuments answers into the caller's
// max_message_bytes (issue 13 item 2; rules in libsync/rules/batch_budget.h).
//
//  * GetDocument: the document itself must fit, else RESOURCE_EXHAUSTED
//    naming its size and the limit (the caller must raise its limit: a
//    document is never split). Its dependencies are kept in order while
//    they fit; dependencies_truncated says when some were left out (the
//    caller asks for them on their own, as for the closure's own bounds).
//  * FindDocuments: matches are kept in order while they fit; `truncated`
//    says when some were left out; a first match that alone does not fit is
//    RESOURCE_EXHAUSTED naming its size and the limit.
#ifndef EVENTSTREAM_SERVICES_PRODUCER_ANSWER_SIZE_H_
#define EVENTSTREAM_SERVICES_PRODUCER_ANSWER_SIZE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libsync/rules/batch_budget.h"
#include "services/producer/update_feed.h"

namespace eventstream {

absl::StatusOr<ServedDocument> FitServedDocument(const ByteBudget& budget,
                                                 absl::string_view doctype,
                                                 absl::string_view name, ServedDocument doc);

struct FoundDocuments {
  std::vector<std::string> documents;
  bool truncated = false;
};
absl::StatusOr<FoundDocuments> FitFoundDocuments(const ByteBudget& budget,
                                                 absl::string_view doctype,
                                                 std::vector<std::string> documents);

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_ANSWER_SIZE_H_
