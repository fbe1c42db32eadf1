// Membership (docs/design.md "Membership"; issue 14): which documents of a
// DocType a consumer holds, and what a pull sends as that set changes.
//
// For a subscription with conditions, a consumer holds a document once it
// was sent one passing them; the producer records it (es_producer.holding)
// as the consumer acknowledges. Each log entry of a document is judged
// against the CURRENT document:
//   held, passes        -> the entry as it is
//   held, fails         -> REVOKE (move-out), no longer held
//   not held, passes    -> SYNC: the whole current document (move-in), held
//   not held, fails     -> nothing
// A Delete goes only to a consumer holding the document; a document gone
// since (deleted or renamed later) counts as passing exactly when held. A
// Rename moves the holding to the new name. A Sync entry an initial sync
// logged for the consumer becomes a SYNC of the current document when it
// passes (held or not), a REVOKE when it fails and is held, else nothing;
// a Revoke entry logged when its subscription ended goes as it is. Subscriptions without
// conditions hold everything: their entries all go as they are and nothing
// is recorded.
//
// Pure: the caller reads the holdings and judges the conditions
// (update_feed.cc); tests/unit/membership_test.cc.
#ifndef EVENTSTREAM_LIBSYNC_RULES_MEMBERSHIP_H_
#define EVENTSTREAM_LIBSYNC_RULES_MEMBERSHIP_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace eventstream {

using DocKey = std::pair<std::string, std::string>;  // doctype, name

// What the planner needs of one log entry.
struct MemberEntry {
  int64_t seq = 0;
  std::string doctype;
  std::string docname;      // the document's name after the entry
  std::string update_type;  // Create | Update | Cancel | Rename | Delete | Sync | Revoke
  std::string old_name;     // Rename: the name before
  bool tracked = false;     // its subscription has conditions
  // Whether the current document passes the conditions for this entry;
  // nullopt when it is gone now (deleted or renamed since). Unused for a
  // Delete or an untracked entry.
  std::optional<bool> passes;
};

enum class Verdict {
  kSend,    // the entry as it is
  kSync,    // a SYNC of the current document under `docname`
  kRevoke,  // a REVOKE of the document under the name the consumer has
  kSkip,    // nothing
};

// A holding that changes with an entry: recorded as pending with the
// entry's seq, it becomes the consumer's once acknowledged.
struct HoldingChange {
  int64_t seq = 0;
  DocKey doc;
  bool held = false;
  friend bool operator==(const HoldingChange& a, const HoldingChange& b) {
    return a.seq == b.seq && a.doc == b.doc && a.held == b.held;
  }
};

struct MembershipPlan {
  struct Step {
    Verdict verdict = Verdict::kSkip;
    std::string name;  // kSync: the current name; kRevoke: the name held
  };
  std::vector<Step> steps;             // one per entry, in order
  std::vector<HoldingChange> changes;  // in seq order
};

// `held`: the tracked documents the consumer holds as of the entries'
// start (by name); others are not held.
MembershipPlan PlanMembership(const std::vector<MemberEntry>& entries,
                              const std::set<DocKey>& held);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_MEMBERSHIP_H_
