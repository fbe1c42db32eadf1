#include "services/producer/notifier.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace eventstream {

// One Notify call; shared by the notifier (to cancel it) and its callback.
struct Notifier::Call {
  grpc::ClientContext context;
  eventstream::v1::NotifyRequest request;
  eventstream::v1::NotifyResponse response;
};

namespace {

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    default: return "UNKNOWN_CODE";
  }
}

}  // namespace

Notifier::Notifier(std::string producer_site, Options options)
    : producer_site_(std::move(producer_site)),
      options_(options),
      clock_(options.clock != nullptr ? *options.clock : SystemClock()) {}

Notifier::~Notifier() { Stop(); }

void Notifier::Start() {
  absl::MutexLock lock(&mu_);
  if (started_ || stop_) return;
  started_ = true;
  thread_ = std::thread([this] { Run(); });
}

void Notifier::Stop() {
  std::vector<std::shared_ptr<Call>> calls;
  {
    absl::MutexLock lock(&mu_);
    if (stop_ && !thread_.joinable() && in_flight_ == 0) return;
    stop_ = true;
    for (const auto& [ptr, live] : live_calls_) calls.push_back(live.call);
  }
  cv_.SignalAll();
  // Outside mu_: a cancelled call's callback may run inside TryCancel().
  // TryCancel() before the call has started makes it fail at start.
  for (const auto& call : calls) call->context.TryCancel();
  if (thread_.joinable()) thread_.join();
  // The worker may have started calls after the snapshot above; it has
  // exited now, so this list is final.
  {
    absl::MutexLock lock(&mu_);
    calls.clear();
    for (const auto& [ptr, live] : live_calls_) calls.push_back(live.call);
  }
  for (const auto& call : calls) call->context.TryCancel();
  calls.clear();
  {
    absl::MutexLock lock(&mu_);
    while (in_flight_ != 0) idle_cv_.Wait(&mu_);
  }
  ReleaseFinished();
}

void Notifier::ReleaseFinished() {
  std::vector<InFlight> done;
  {
    absl::MutexLock lock(&mu_);
    done.swap(finished_);
  }
  // Destroyed here, outside mu_: a channel's destructor may join gRPC's
  // callback threads, which may be waiting for mu_ in OnDone.
}

std::shared_ptr<grpc::Channel> Notifier::ChannelLocked(
    const std::string& address) {
  auto& channel = channels_[address];
  if (channel == nullptr) {
    grpc::ChannelArguments args;
    // Keep gRPC's own reconnect backoff in step with ours, so a consumer
    // that comes back is reached on our next attempt rather than after the
    // channel's default (up to two minutes) reconnect delay. The minimum
    // connect timeout (GRPC_ARG_MIN_RECONNECT_BACKOFF_MS) keeps its default.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                static_cast<int>(options_.initial_backoff.count()));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                static_cast<int>(options_.max_backoff.count()));
    options_.transport.Apply(&args);
    std::shared_ptr<grpc::ChannelCredentials> credentials = options_.transport.credentials;
    if (credentials == nullptr) credentials = grpc::InsecureChannelCredentials();
    channel = grpc::CreateCustomChannel(address, credentials, args);
  }
  return channel;
}

void Notifier::SetTargets(std::vector<NotifyTarget> targets) {
  {
    absl::MutexLock lock(&mu_);
    std::map<std::string, std::shared_ptr<Target>> next;
    for (auto& config : targets) {
      if (config.address.empty()) continue;
      auto it = targets_.find(config.site);
      if (it != targets_.end() && it->second->config.address == config.address &&
          it->second->config.token == config.token) {
        next[config.site] = it->second;
        continue;
      }
      auto target = std::make_shared<Target>(RetryPolicy(options_));
      target->stub =
          eventstream::v1::Consumer::NewStub(ChannelLocked(config.address));
      target->stats.address = config.address;
      if (!options_.transport.tls && !IsLoopbackAddress(config.address)) {
        spdlog::warn("notify: consumer {} at {} is called WITHOUT TLS: its notify token "
                     "crosses the network in the clear; set producer.notify_tls",
                     config.site, config.address);
      }
      if (it != targets_.end()) {
        // New address or token: keep what is owed, forget the backoff. A
        // call in flight to the old one may yet fail, so it counts as owed
        // (an extra Notify is harmless; a lost one is not).
        target->dirty = it->second->dirty || it->second->stats.in_flight;
        target->pending_position = it->second->pending_position;
        target->stats.pending_position = target->pending_position;
        target->stats.dirty = target->dirty;
        spdlog::info("notify: consumer {} target changed, now at {}",
                     config.site, config.address);
      }
      target->config = std::move(config);
      next[target->config.site] = std::move(target);
    }
    targets_.swap(next);
    // Drop channels no target uses any more (a call in flight keeps its
    // own reference through its stub).
    for (auto it = channels_.begin(); it != channels_.end();) {
      bool used = std::any_of(targets_.begin(), targets_.end(),
                              [&](const auto& entry) {
                                return entry.second->config.address ==
                                       it->first;
                              });
      it = used ? std::next(it) : channels_.erase(it);
    }
  }
  cv_.SignalAll();
}

bool Notifier::MarkDirtyLocked(Target& target, int64_t log_position) {
  target.pending_position = std::max(target.pending_position, log_position);
  target.stats.pending_position = target.pending_position;
  if (target.dirty) return false;
  target.dirty = true;
  target.stats.dirty = true;
  return true;  // only on the clean -> dirty transition, so a burst wakes once
}

void Notifier::Signal(const std::set<std::string>& sites,
                      int64_t log_position) {
  bool wake = false;
  {
    absl::MutexLock lock(&mu_);
    ++totals_.signals;
    for (const auto& site : sites) {
      auto it = targets_.find(site);
      if (it == targets_.end()) continue;
      wake = MarkDirtyLocked(*it->second, log_position) || wake;
    }
  }
  if (wake) cv_.SignalAll();
}

void Notifier::SignalAll(int64_t log_position, const std::set<std::string>& except) {
  bool wake = false;
  {
    absl::MutexLock lock(&mu_);
    ++totals_.signals;
    for (auto& [site, target] : targets_) {
      if (except.count(site) > 0) continue;
      wake = MarkDirtyLocked(*target, log_position) || wake;
    }
  }
  if (wake) cv_.SignalAll();
}

void Notifier::Heard(const std::string& site) {
  std::shared_ptr<grpc::Channel> channel;
  bool wake = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = targets_.find(site);
    if (it == targets_.end()) return;
    Target& target = *it->second;
    if (target.retry.failures() == 0) return;  // not backing off: the hot path
    target.retry.Reset();
    target.wait_for_ready = true;
    wake = target.dirty;
    auto ch = channels_.find(target.config.address);
    if (ch != channels_.end()) channel = ch->second;
  }
  if (channel) grpc::experimental::ChannelResetConnectionBackoff(channel.get());
  if (wake) cv_.SignalAll();
}

Notifier::Stats Notifier::stats() const {
  absl::MutexLock lock(&mu_);
  Stats stats = totals_;
  for (const auto& [site, target] : targets_) {
    stats.targets[site] = target->stats;
  }
  return stats;
}

BackoffPolicy Notifier::RetryPolicy(const Options& options) {
  return {absl::FromChrono(options.initial_backoff),
          absl::FromChrono(options.max_backoff), 2.0, options.jitter};
}

std::vector<std::pair<std::shared_ptr<Notifier::Target>, std::shared_ptr<Notifier::Call>>>
Notifier::TakeDueLocked(absl::Time* wake_at) {
  std::vector<std::shared_ptr<Target>> order;
  std::vector<NotifyCandidate> candidates;
  for (auto& [site, target] : targets_) {
    order.push_back(target);
    candidates.push_back({target->dirty, target->stats.in_flight, target->retry.next_attempt()});
  }
  const NotifyPlan plan = PlanNotify(candidates, clock_.Now());
  *wake_at = plan.wake_at;
  std::vector<std::pair<std::shared_ptr<Target>, std::shared_ptr<Call>>> to_start;
  for (size_t i : plan.start) {
    const std::shared_ptr<Target>& target = order[i];
    auto call = std::make_shared<Call>();
    // A gRPC deadline, not a decision of ours: the real clock.
    call->context.set_deadline(std::chrono::system_clock::now() + options_.rpc_timeout);
    call->context.set_wait_for_ready(target->wait_for_ready);
    target->wait_for_ready = false;
    call->context.AddMetadata(
        "authorization", absl::StrCat("token ", producer_site_, ":", target->config.token));
    call->request.set_producer(producer_site_);
    call->request.set_log_position(target->pending_position);
    target->dirty = false;
    target->stats.dirty = false;
    target->stats.in_flight = true;
    ++target->stats.attempts;
    ++totals_.attempts;
    ++in_flight_;
    live_calls_[call.get()] = InFlight{target, call};
    to_start.emplace_back(target, std::move(call));
  }
  return to_start;
}

// One failure streak per target (NotifyRetry), so not RunLoop (one per
// loop); the worker waits on cv_, which Signal(), SetTargets(), Heard(),
// finished calls and Stop() notify.
void Notifier::Run() {
  mu_.Lock();
  while (!stop_) {
    if (!finished_.empty()) {
      mu_.Unlock();
      ReleaseFinished();
      mu_.Lock();
      continue;
    }
    absl::Time wake_at;
    auto to_start = TakeDueLocked(&wake_at);
    if (!to_start.empty()) {
      // Start outside mu_: a callback may run before Notify() returns.
      // Target::stub is immutable once the target is created. The callback
      // owns nothing (see OnDone); live_calls_ keeps the call alive.
      mu_.Unlock();
      for (auto& [target, call] : to_start) {
        Call* raw = call.get();
        target->stub->async()->Notify(
            &call->context, &call->request, &call->response,
            [this, raw](grpc::Status status) { OnDone(raw, status); });
      }
      to_start.clear();
      mu_.Lock();
      continue;
    }
    if (wake_at == absl::InfiniteFuture()) {
      cv_.Wait(&mu_);
    } else {
      cv_.WaitWithTimeout(&mu_, wake_at - clock_.Now());
    }
  }
  mu_.Unlock();
}

void Notifier::OnDone(Call* raw, const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  auto live = live_calls_.find(raw);
  finished_.push_back(std::move(live->second));
  live_calls_.erase(live);
  const std::shared_ptr<Target>& target = finished_.back().target;
  const Call* call = raw;
  TargetStats& stats = target->stats;
  stats.in_flight = false;
  const int64_t position = call->request.log_position();
  auto it = targets_.find(target->config.site);
  const bool current = it != targets_.end() && it->second == target;
  if (status.ok()) {
    ++stats.successes;
    ++totals_.successes;
    stats.delivered_position = std::max(stats.delivered_position, position);
    if (stats.consecutive_failures > 0 && current) {
      spdlog::info("notify: consumer {} at {} reachable again after {} failed "
                   "attempt(s)",
                   target->config.site, target->config.address,
                   stats.consecutive_failures);
    }
    stats.consecutive_failures = 0;
    stats.last_error.clear();
    target->last_code = grpc::StatusCode::OK;
    target->retry.Reset();
  } else {
    ++stats.failures;
    ++totals_.failures;
    ++stats.consecutive_failures;
    stats.last_error =
        absl::StrCat(CodeName(status.error_code()), ": ", status.error_message());
    // Still owed: retry with the newest position after the backoff.
    target->dirty = true;
    stats.dirty = true;
    target->pending_position = std::max(target->pending_position, position);
    stats.pending_position = target->pending_position;
    const absl::Duration delay = target->retry.Failed(clock_.Now());
    if (!stop_ && current && status.error_code() != target->last_code) {
      spdlog::warn("notify: consumer {} at {} failing ({}: {}{}); retrying with "
                   "backoff from {} ms up to {} ms",
                   target->config.site, target->config.address,
                   CodeName(status.error_code()), status.error_message(),
                   TransportHint(status, options_.transport.tls,
                                 "this producer notifies without TLS; if the consumer "
                                 "serves TLS, set producer.notify_tls"),
                   absl::ToInt64Milliseconds(delay), options_.max_backoff.count());
    }
    target->last_code = status.error_code();
  }
  --in_flight_;
  // Notified under mu_: once Stop() sees in_flight_ == 0 it may destroy us,
  // and this callback touches nothing after releasing mu_.
  cv_.SignalAll();
  idle_cv_.SignalAll();
}

}  // namespace eventstream
