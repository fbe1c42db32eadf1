#include "services/common/call_guard.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

thread_local CallScope* current_scope = nullptr;

// The sync server's IsCancelled() drives the call's completion queue (a poll
// and a wait on a condition variable): asked before every entry of a pull it
// was 45 % of the producer's CPU at fan-out, and every 10 ms still 6 % of it
// at N = 50 (streams turn often). So it is asked at most this often; the
// deadline is still checked on every call.
constexpr absl::Duration kCancelCheckEvery = absl::Milliseconds(100);

}  // namespace

CallLimiter::Slot::~Slot() {
  if (limiter_ != nullptr) limiter_->Leave(key_);
}

absl::StatusOr<CallLimiter::Slot> CallLimiter::Enter(const std::string& key) {
  absl::MutexLock lock(&mu_);
  int& running = running_[key];
  if (max_per_key_ > 0 && running >= max_per_key_) {
    ++refused_;
    if (running == 0) running_.erase(key);
    // One line a minute at most: the flood is the caller's, not the log's.
    if (absl::Now() - warned_at_ >= absl::Minutes(1)) {
      warned_at_ = absl::Now();
      spdlog::warn("key \"{}\" has {} calls running, the most {} allows; further calls are "
                   "refused with RESOURCE_EXHAUSTED ({} refused so far, all keys)",
                   key, running, config_key_, refused_);
    }
    return absl::ResourceExhaustedError(
        absl::StrCat("too many calls at once: key \"", key, "\" already has ", running,
                     " running, the most this server allows (", config_key_, " = ",
                     max_per_key_, "); wait for them to finish"));
  }
  ++running;
  return Slot(this, key);
}

int CallLimiter::running(const std::string& key) const {
  absl::MutexLock lock(&mu_);
  auto it = running_.find(key);
  return it == running_.end() ? 0 : it->second;
}

void CallLimiter::Leave(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = running_.find(key);
  if (it != running_.end() && --it->second <= 0) running_.erase(it);
}

CallScope::CallScope(grpc::ServerContext* context)
    : context_(context), outer_(current_scope) {
  const auto deadline = context->deadline();
  deadline_ = deadline == std::chrono::system_clock::time_point::max()
                  ? absl::InfiniteFuture()
                  : absl::FromChrono(deadline);
  current_scope = this;
}

CallScope::~CallScope() { current_scope = outer_; }

absl::Status CallScope::Interrupted() {
  CallScope* scope = current_scope;
  if (scope == nullptr) return absl::OkStatus();
  const absl::Time now = absl::Now();
  if (now >= scope->deadline_) {
    return absl::DeadlineExceededError(
        "the call's deadline passed; the work for it was stopped");
  }
  if (!scope->cancelled_ && now >= scope->next_cancel_check_) {
    scope->cancelled_ = scope->context_->IsCancelled();
    scope->next_cancel_check_ = now + kCancelCheckEvery;
  }
  if (scope->cancelled_) {
    return absl::CancelledError("the caller cancelled the call; the work for it was stopped");
  }
  return absl::OkStatus();
}

absl::Status CallScope::InterruptedNow() {
  if (current_scope != nullptr) current_scope->next_cancel_check_ = absl::InfinitePast();
  return Interrupted();
}

absl::Time CallScope::Deadline() {
  const CallScope* scope = current_scope;
  return scope == nullptr ? absl::InfiniteFuture() : scope->deadline_;
}

}  // namespace eventstream
