#include "services/producer/answer_size.h"

#include "absl/strings/str_cat.h"

namespace eventstream {
namespace {

// A repeated string field's element on the wire: tag, length, text.
int64_t WireBytes(const std::string& json) {
  return 1 + 5 + static_cast<int64_t>(json.size());
}

std::vector<int64_t> WireSizes(const std::vector<std::string>& documents) {
  std::vector<int64_t> sizes;
  sizes.reserve(documents.size());
  for (const std::string& d : documents) sizes.push_back(WireBytes(d));
  return sizes;
}

absl::Status TooLarge(absl::string_view what, size_t bytes, const ByteBudget& budget) {
  return absl::ResourceExhaustedError(absl::StrCat(
      what, " is ", bytes, " bytes of JSON, more than the caller accepts in one answer (",
      "max_message_bytes ", budget.max_message_bytes,
      "); raise the caller's limit (eventstream consumers: consumer.max_message_mb)"));
}

}  // namespace

absl::StatusOr<ServedDocument> FitServedDocument(const ByteBudget& budget,
                                                 absl::string_view doctype,
                                                 absl::string_view name, ServedDocument doc) {
  const int64_t own = WireBytes(doc.json);
  if (own > budget.capacity()) {
    return TooLarge(absl::StrCat("document \"", name, "\" of DocType \"", doctype, "\""),
                    doc.json.size(), budget);
  }
  const size_t keep = FitPrefix(budget.capacity(), own, WireSizes(doc.dependencies_json));
  if (keep < doc.dependencies_json.size()) {
    doc.dependencies_json.resize(keep);
    doc.dependencies_truncated = true;
  }
  return doc;
}

absl::StatusOr<FoundDocuments> FitFoundDocuments(const ByteBudget& budget,
                                                 absl::string_view doctype,
                                                 std::vector<std::string> documents) {
  FoundDocuments out;
  const size_t keep = FitPrefix(budget.capacity(), 0, WireSizes(documents));
  if (keep == 0 && !documents.empty()) {
    return TooLarge(absl::StrCat("the first matching document of DocType \"", doctype, "\""),
                    documents.front().size(), budget);
  }
  out.truncated = keep < documents.size();
  documents.resize(keep);
  out.documents = std::move(documents);
  return out;
}

}  // namespace eventstream
