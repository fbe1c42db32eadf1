#include "libsync/rules/membership.h"

namespace eventstream {
namespace {

// The holding state as the planner walks the entries.
class Holdings {
 public:
  explicit Holdings(const std::set<DocKey>& held) : held_(held) {}
  bool Has(const DocKey& k) const { return held_.count(k) > 0; }
  void Set(int64_t seq, const DocKey& k, bool held, std::vector<HoldingChange>* changes) {
    if (Has(k) == held) return;
    if (held) {
      held_.insert(k);
    } else {
      held_.erase(k);
    }
    changes->push_back({seq, k, held});
  }

 private:
  std::set<DocKey> held_;
};

MembershipPlan::Step Judge(const MemberEntry& e, Holdings* holdings,
                           std::vector<HoldingChange>* changes) {
  const DocKey now{e.doctype, e.docname};
  const bool rename = e.update_type == "Rename";
  const DocKey known = rename ? DocKey{e.doctype, e.old_name} : now;
  const bool held = holdings->Has(known);
  if (e.update_type == "Revoke") {
    // Logged when a subscription ended: what the consumer holds goes.
    holdings->Set(e.seq, known, false, changes);
    return {Verdict::kSend, ""};
  }
  if (e.update_type == "Sync") {
    // An initial sync's entry: the document as it is now decides (a
    // document gone since has its Delete later in the log).
    if (!e.passes.has_value()) return {Verdict::kSkip, ""};
    if (*e.passes) {
      holdings->Set(e.seq, now, true, changes);
      return {Verdict::kSync, now.second};
    }
    if (!held) return {Verdict::kSkip, ""};
    holdings->Set(e.seq, known, false, changes);
    return {Verdict::kRevoke, known.second};
  }
  if (e.update_type == "Delete") {
    if (!held) return {Verdict::kSkip, ""};
    holdings->Set(e.seq, known, false, changes);
    return {Verdict::kSend, ""};
  }
  // Gone since: whatever happened next follows in later entries, which the
  // consumer can apply only if it has the document.
  const bool passes = e.passes.value_or(held);
  if (held && passes) {
    if (rename) {
      holdings->Set(e.seq, known, false, changes);
      holdings->Set(e.seq, now, true, changes);
    }
    return {Verdict::kSend, ""};
  }
  if (held) {
    holdings->Set(e.seq, known, false, changes);
    return {Verdict::kRevoke, known.second};
  }
  if (passes) {
    holdings->Set(e.seq, now, true, changes);
    return {Verdict::kSync, now.second};
  }
  return {Verdict::kSkip, ""};
}

}  // namespace

MembershipPlan PlanMembership(const std::vector<MemberEntry>& entries,
                              const std::set<DocKey>& held) {
  MembershipPlan plan;
  Holdings holdings(held);
  for (const MemberEntry& e : entries) {
    if (!e.tracked) {
      plan.steps.push_back({Verdict::kSend, ""});
      continue;
    }
    plan.steps.push_back(Judge(e, &holdings, &plan.changes));
  }
  return plan;
}

}  // namespace eventstream
