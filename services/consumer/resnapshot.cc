#include "services/consumer/resnapshot.h"

#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libsync/base/status_macros.h"
#include "libsync/base/value.h"
#include "services/consumer/applier.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

constexpr int kPage = 500;
constexpr int kNamesPage = 1000;  // the producer's default max_find_limit

void AddExample(v1::ResnapshotCheck* check, const std::string& example) {
  if (check->examples_size() < kMaxSnapshotExamples) check->add_examples(example);
}

// Every page of ListVisibleDocuments compared; the names seen in `seen`.
absl::Status ComparePages(Applier& applier, pg::Connection* conn, ProducerLink* link,
                          const std::string& doctype, v1::ResnapshotCheck* check,
                          std::set<std::string>* seen) {
  std::string after;
  do {
    ASSIGN_OR_RETURN(v1::ListVisibleDocumentsResponse page,
                     link->ListVisibleDocuments(doctype, after, kPage));
    std::vector<std::pair<std::string, std::string>> docs;
    for (const std::string& json : page.documents_json()) {
      auto doc = Value::ParseJson(json);
      const Value* name = doc.ok() ? doc->Find("name") : nullptr;
      if (name == nullptr || !name->is_string()) {
        return absl::DataLossError(absl::StrCat("producer ", link->name(),
                                                ": ListVisibleDocuments(", doctype,
                                                ") sent a document without a name"));
      }
      seen->insert(name->as_string());
      docs.emplace_back(name->as_string(), json);
    }
    ASSIGN_OR_RETURN(SnapshotCompare cmp,
                     applier.CompareSnapshot(conn, link->name(), doctype, docs, link));
    check->set_checked(check->checked() + static_cast<int64_t>(docs.size()));
    check->set_equal(check->equal() + cmp.equal);
    check->set_missing(check->missing() + cmp.missing);
    check->set_differing(check->differing() + cmp.differing);
    check->set_failed(check->failed() + cmp.failed);
    for (const std::string& e : cmp.examples) AddExample(check, e);
    after = page.next_after_name();
  } while (!after.empty());
  return absl::OkStatus();
}

// Every name of `doctype` the producer shows, a page at a time.
absl::Status ListNames(ProducerLink* link, const std::string& doctype,
                       std::set<std::string>* seen) {
  std::string after;
  do {
    ASSIGN_OR_RETURN(v1::ListVisibleDocumentsResponse page,
                     link->ListVisibleDocuments(doctype, after, kNamesPage, /*names_only=*/true));
    seen->insert(page.names().begin(), page.names().end());
    after = page.next_after_name();
  } while (!after.empty());
  return absl::OkStatus();
}

// The copies here (read before the listing: a copy arriving later is not
// extra). Checks that the DocType is subscribed from this producer:
// NotFound otherwise.
absl::StatusOr<std::vector<std::string>> CopiesHere(Applier& applier, pg::Connection* conn,
                                                    ProducerLink* link,
                                                    const std::string& doctype) {
  absl::StatusOr<std::vector<std::string>> copies =
      applier.LocalCopies(conn, link->name(), doctype);
  if (absl::IsFailedPrecondition(copies.status())) {
    return absl::NotFoundError(copies.status().message());
  }
  return copies;
}

// Copies here that the listing did not show: extra unless the producer
// still shows them (a dependency this site fetched, or one that moved in
// since its page was read).
absl::StatusOr<std::vector<std::string>> Extras(ProducerLink* link, const std::string& doctype,
                                                const std::vector<std::string>& copies,
                                                const std::set<std::string>& seen) {
  std::vector<std::string> extra;
  for (const std::string& name : copies) {
    if (seen.count(name) > 0) continue;
    ASSIGN_OR_RETURN(auto shown, link->GetDocument(doctype, name));
    if (!shown.has_value()) extra.push_back(name);
  }
  return extra;
}

}  // namespace

absl::StatusOr<v1::ResnapshotResponse> RunResnapshot(const Config& config, pg::Connection* conn,
                                                     ProducerLink* link,
                                                     const std::string& doctype, bool dry_run) {
  Applier applier(config);
  v1::ResnapshotResponse out;
  v1::ResnapshotCheck* check = out.mutable_check();
  ASSIGN_OR_RETURN(const std::vector<std::string> copies,
                   CopiesHere(applier, conn, link, doctype));
  std::set<std::string> seen;
  RETURN_IF_ERROR(ComparePages(applier, conn, link, doctype, check, &seen));
  ASSIGN_OR_RETURN(const std::vector<std::string> extra, Extras(link, doctype, copies, seen));
  for (const std::string& name : extra) AddExample(check, absl::StrCat("extra: ", name));
  check->set_extra(static_cast<int64_t>(extra.size()));
  spdlog::info("producer {}: Resnapshot{} of {}: {} documents there, {} equal here, {} missing, "
               "{} differing, {} not comparable, {} extra copies",
               link->name(), dry_run ? " (dry run)" : "", doctype, check->checked(),
               check->equal(), check->missing(), check->differing(), check->failed(),
               check->extra());
  if (dry_run) return out;
  ASSIGN_OR_RETURN(int64_t moved, applier.MoveOutCopies(conn, link->name(), doctype, extra, link));
  out.set_moved_out(moved);
  ASSIGN_OR_RETURN(v1::RestartSyncResponse answer, link->RestartSync(doctype));
  *out.mutable_subscription() = answer.subscription();
  return out;
}

absl::StatusOr<int64_t> MoveOutExtras(const Config& config, pg::Connection* conn,
                                      ProducerLink* link, const std::string& doctype) {
  Applier applier(config);
  ASSIGN_OR_RETURN(const std::vector<std::string> copies,
                   CopiesHere(applier, conn, link, doctype));
  std::set<std::string> seen;
  RETURN_IF_ERROR(ListNames(link, doctype, &seen));
  ASSIGN_OR_RETURN(const std::vector<std::string> extra, Extras(link, doctype, copies, seen));
  return applier.MoveOutCopies(conn, link->name(), doctype, extra, link);
}

}  // namespace eventstream
