#include "libsync/rules/log_window.h"

namespace eventstream {

int64_t LogRecord::bytes() const {
  // The strings' contents plus a fixed guess for the object, its shared_ptr
  // control block and the deque slot.
  return static_cast<int64_t>(doctype.size() + docname.size() + update_type.size() +
                              (data ? data->size() : 0) + origin.size() + for_site.size() +
                              created_at.size()) +
         256;
}

bool Wanted(const LogRecord& r, const WindowAsk& ask) {
  const bool for_this_site = r.for_site == ask.site;
  if (for_this_site && r.update_type == "Revoke") return true;
  return ask.doctypes->count(r.doctype) > 0 && r.origin != ask.site &&
         (r.for_site.empty() || for_this_site);
}

WindowPick PickWindow(absl::Span<const std::shared_ptr<const LogRecord>> records,
                      const WindowAsk& ask) {
  WindowPick pick;
  int64_t wanted_bytes = 0;  // data of the wanted entries taken so far
  for (size_t i = 0; i < records.size(); ++i) {
    const LogRecord* r = records[i].get();
    if (static_cast<int>(pick.examined.size()) >= ask.limit) {
      pick.cut = true;
      break;
    }
    const bool wanted = Wanted(*r, ask);
    if (wanted && !pick.wanted.empty() && wanted_bytes >= ask.max_bytes) {
      pick.cut = true;
      break;
    }
    pick.examined.push_back(r->seq);
    if (!wanted) continue;
    pick.wanted.push_back(i);
    wanted_bytes += r->data ? static_cast<int64_t>(r->data->size()) : 0;
  }
  return pick;
}

}  // namespace eventstream
