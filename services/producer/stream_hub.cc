#include "services/producer/stream_hub.h"

#include <algorithm>

namespace eventstream {

void StreamHub::Advance(int64_t last_seq) {
  absl::MutexLock lock(&mu_);
  end_ = std::max(end_, last_seq);
}

StreamHub::Seen StreamHub::WaitPast(int64_t seq, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto past = [this, seq]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closed_ || end_ > seq;
  };
  mu_.AwaitWithTimeout(absl::Condition(&past), timeout);
  return {end_, closed_};
}

StreamHub::Seen StreamHub::Now() const {
  absl::MutexLock lock(&mu_);
  return {end_, closed_};
}

std::optional<StreamHub::Registration> StreamHub::Open(grpc::ServerContext* context) {
  absl::MutexLock lock(&mu_);
  if (closed_) return std::nullopt;
  open_.insert(context);
  return Registration(this, context);
}

StreamHub::Registration::~Registration() {
  if (hub_ == nullptr) return;
  absl::MutexLock lock(&hub_->mu_);
  hub_->open_.erase(context_);
}

void StreamHub::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  // Under mu_: a registration ends (and its context may go) only after this.
  for (grpc::ServerContext* context : open_) context->TryCancel();
}

int StreamHub::open_streams() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(open_.size());
}

}  // namespace eventstream
