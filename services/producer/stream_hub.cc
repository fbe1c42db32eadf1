#include "services/producer/stream_hub.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace eventstream {

void StreamHub::Advance(int64_t last_seq) {
  absl::MutexLock lock(&mu_);
  end_ = std::max(end_, last_seq);
}

StreamHub::Seen StreamHub::WaitPast(int64_t seq, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const int64_t kicks = kicks_;
  auto past = [this, seq, kicks]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closed_ || end_ > seq || kicks_ != kicks;
  };
  mu_.AwaitWithTimeout(absl::Condition(&past), timeout);
  return {end_, closed_, kicks_ != kicks};
}

StreamHub::Seen StreamHub::Now() const {
  absl::MutexLock lock(&mu_);
  return {end_, closed_};
}

absl::StatusOr<StreamHub::Registration> StreamHub::Open(const std::string& site,
                                                         grpc::ServerContext* context,
                                                         absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  if (!EndLocked(site, timeout)) {
    return absl::UnavailableError(absl::StrCat(
        "the previous stream of site \"", site, "\" is still closing; try again"));
  }
  if (closed_) {
    return absl::UnavailableError(
        "the producer is shutting down; stream from another replica or later");
  }
  open_[site] = context;
  return Registration(this, context, site);
}

bool StreamHub::EndStreamOf(const std::string& site, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return EndLocked(site, timeout);
}

bool StreamHub::EndLocked(const std::string& site, absl::Duration timeout) {
  auto it = open_.find(site);
  if (it == open_.end()) return true;
  it->second->TryCancel();  // under mu_: its registration cannot end meanwhile
  ++kicks_;                 // a handler waiting for the log sees the cancel now
  auto gone = [this, &site]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return open_.count(site) == 0;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&gone), timeout);
}

StreamHub::Registration::~Registration() {
  if (hub_ == nullptr) return;
  absl::MutexLock lock(&hub_->mu_);
  auto it = hub_->open_.find(site_);
  if (it != hub_->open_.end() && it->second == context_) hub_->open_.erase(it);
}

void StreamHub::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  // Under mu_: a registration ends (and its context may go) only after this.
  for (const auto& [site, context] : open_) context->TryCancel();
}

int StreamHub::open_streams() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(open_.size());
}

std::set<std::string> StreamHub::open_sites() const {
  absl::MutexLock lock(&mu_);
  std::set<std::string> sites;
  for (const auto& [site, context] : open_) sites.insert(site);
  return sites;
}

}  // namespace eventstream
