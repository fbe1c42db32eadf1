#include "libsync/rules/batch_plan.h"

#include "libsync/base/value.h"

namespace eventstream {

std::vector<std::string> EntryNames(absl::string_view docname, bool rename,
                                    absl::string_view data_json) {
  std::vector<std::string> names{std::string(docname)};
  if (!rename) return names;
  auto json = Value::ParseJson(std::string_view(data_json.data(), data_json.size()));
  if (!json.ok()) return names;
  const Value* old_name = json->Find("old_name");
  if (old_name != nullptr && old_name->is_string() && old_name->as_string() != docname) {
    names.push_back(old_name->as_string());
  }
  return names;
}

std::vector<std::string> BlockedLookupNames(const std::vector<BatchEntry>& entries) {
  std::vector<std::string> names;
  for (const BatchEntry& e : entries) names.insert(names.end(), e.names.begin(), e.names.end());
  return names;
}

void BatchPlanner::AddBlocked(const std::string& doctype, const std::string& docname,
                              int64_t root) {
  blocked_.emplace(std::make_pair(doctype, docname), root);  // the first one stays
}

BatchPlanner::Step BatchPlanner::Next(const BatchEntry& entry) {
  Step step;
  if (Skips(entry.seq)) {
    step.kind = Step::kSkip;
    return step;
  }
  int64_t behind = 0;
  for (const std::string& n : entry.names) {
    auto it = blocked_.find({entry.doctype, n});
    if (it != blocked_.end()) behind = it->second;  // the last name found wins
  }
  if (behind == 0) return step;  // kApply
  step.kind = Step::kPark;
  step.parked_behind = behind;
  for (const std::string& n : entry.names) blocked_[{entry.doctype, n}] = behind;
  return step;
}

void BatchPlanner::Failed(const BatchEntry& entry, int64_t failed_id) {
  for (const std::string& n : entry.names) blocked_[{entry.doctype, n}] = failed_id;
}

ResyncStep ResyncPlan::Next() const {
  if (root_ == 0) return ResyncStep::kReplay;
  return root_index_ == 0 ? ResyncStep::kStop : ResyncStep::kRepark;
}

void ResyncPlan::Failed(size_t index, int64_t id) {
  root_ = id;
  root_index_ = index;
}

size_t ResyncPlan::Reported(size_t rows) const {
  return root_ != 0 && root_index_ == 0 ? 1 : rows;
}

size_t RowsPerInsert(size_t available) {
  for (size_t size : {200, 100, 50, 20, 10, 5, 2}) {
    if (size <= available) return size;
  }
  return 1;
}

}  // namespace eventstream
