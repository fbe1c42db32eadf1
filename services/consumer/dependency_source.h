// DependencySource: where the applier gets what an entry needs but did not
// bring: missing link targets (GetDocument, with what came along in a
// FetchedDocument) and `Document` mapping sources (FindDocuments). The
// consumer implements it with Producer.GetDocument / FindDocuments
// (ProducerLink, producer_link.h); tests with an in-memory producer.
#ifndef EVENTSTREAM_SERVICES_CONSUMER_DEPENDENCY_SOURCE_H_
#define EVENTSTREAM_SERVICES_CONSUMER_DEPENDENCY_SOURCE_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libsync/base/value.h"

namespace eventstream {

// A document fetched to satisfy a dependency, with the documents it links
// to at any depth that came along (each with "doctype" and "name"; maybe
// not all of them: fetch the rest on their own).
struct FetchedDocument {
  Value document;
  std::vector<Value> dependencies;
};

// Where missing link targets and `Document` mapping sources come from: the
// consumer implements it with Producer.GetDocument / FindDocuments.
class DependencySource {
 public:
  virtual ~DependencySource() = default;
  // nullopt when the producer has no such document (or may not show it).
  virtual absl::StatusOr<std::optional<FetchedDocument>> GetDocument(
      const std::string& doctype, const std::string& name) = 0;
  virtual absl::StatusOr<std::vector<Value>> FindDocuments(
      const std::string& doctype, const std::map<std::string, std::string>& filters, int limit) = 0;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_CONSUMER_DEPENDENCY_SOURCE_H_
