#include "services/consumer/puller.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libsync/rules/pull_due.h"
#include "libsync/rules/retention_plan.h"
#include "libsync/rules/status_refresh.h"
#include "libsync/rules/stream_flow.h"
#include "libsync/base/status_macros.h"
#include "services/consumer/resnapshot.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

// How often a pull asks the producer for initial sync progress while one runs.
constexpr absl::Duration kSyncProgressRefresh = absl::Seconds(2);


// The pull lock: a session advisory lock per producer ($1: its key), held
// on its own connection while this replica pulls; and the check that its
// session is still alive.
constexpr pg::Query kTryPullLock{"consumer_try_pull_lock",
                                 "SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked"};
constexpr pg::Query kPingSession{"consumer_ping_session", "SELECT 1"};
// The watermark after a skip past the producer's trimmed log (it only moves
// forward).
constexpr pg::Query kSkipWatermark{
    "consumer_skip_watermark",
    "INSERT INTO es_consumer.last_update AS l (producer, last_seq, updated_at)"
    " VALUES ($1, $2, now()) ON CONFLICT (producer) DO UPDATE"
    " SET last_seq = GREATEST(l.last_seq, EXCLUDED.last_seq), updated_at = now()"
    " RETURNING last_seq"};

// Marks a failure that happened on this side (the database), so it does not
// count as the producer being unreachable.
absl::Status Local(const absl::Status& status, bool* local_failure) {
  *local_failure = true;
  return absl::Status(status.code(), absl::StrCat("local database: ", status.message()));
}

// Local for a failure, OK as it is: a step on this side reads
// RETURN_IF_ERROR(LocalIfError(step, local_failure)).
absl::Status LocalIfError(const absl::Status& status, bool* local_failure) {
  return status.ok() ? status : Local(status, local_failure);
}
template <typename T>
absl::StatusOr<T> LocalIfError(absl::StatusOr<T> value, bool* local_failure) {
  if (!value.ok()) return Local(value.status(), local_failure);
  return value;
}

std::string Describe(const std::vector<ProducerDocTypeRow>& rows) {
  std::vector<std::string> parts;
  for (const ProducerDocTypeRow& r : rows) {
    parts.push_back(absl::StrCat(r.doctype, " ", StatusText(r.status),
                                 r.unsubscribe ? " unsubscribed" : ""));
  }
  return parts.empty() ? "no DocTypes" : absl::StrJoin(parts, ", ");
}

template <typename Request>
Request MakeRequest(const std::string& site, const std::string& notify_address,
                    const std::string& token, const std::vector<ProducerDocTypeRow>& rows) {
  Request request;
  request.set_consumer_site(site);
  request.set_notify_address(notify_address);
  request.set_notify_token(token);
  for (const ProducerDocTypeRow& r : rows) {
    v1::SubscriptionRequest* s = request.add_doctypes();
    s->set_doctype(r.doctype);
    s->set_condition(r.condition);
    s->set_unsubscribe(r.unsubscribe);
    s->set_skip_initial_sync(!r.initial_sync);
  }
  return request;
}

// `rows` with the statuses the producer answered (Pending when it did not
// mention a DocType).
void MergeStatuses(const google::protobuf::RepeatedPtrField<v1::DocTypeSubscription>& subs,
                   std::vector<ProducerDocTypeRow>* rows) {
  std::map<std::string, v1::SubscriptionStatus> by_doctype;
  for (const v1::DocTypeSubscription& s : subs) by_doctype[s.doctype()] = s.status();
  for (ProducerDocTypeRow& r : *rows) {
    auto it = by_doctype.find(r.doctype);
    r.status = it == by_doctype.end() ? v1::SUBSCRIPTION_STATUS_PENDING : it->second;
  }
}

bool AllApproved(const std::vector<ProducerDocTypeRow>& rows) {
  return std::all_of(rows.begin(), rows.end(), [](const ProducerDocTypeRow& r) {
    return r.unsubscribe || r.status == v1::SUBSCRIPTION_STATUS_APPROVED;
  });
}

// How the stored subscription differs from the desired one: `changed`
// (something the producer must hear: address, DocTypes, conditions ...),
// `local_changed` (only this side's columns: local DocType, naming, mapping).
struct SubscriptionChange {
  bool changed = false;
  bool local_changed = false;
};
SubscriptionChange CompareSubscription(const StoredProducer& stored, const std::string& address,
                                       const std::vector<ProducerDocTypeRow>& desired) {
  SubscriptionChange c;
  c.changed = stored.notify_address != address || stored.doctypes.size() != desired.size();
  for (size_t i = 0; !c.changed && i < desired.size(); ++i) {
    const ProducerDocTypeRow& want = desired[i];
    const ProducerDocTypeRow& have = stored.doctypes[i];
    if (!want.SameRequest(have)) c.changed = true;
    c.local_changed = c.local_changed || want.local_doctype != have.local_doctype ||
                      want.use_same_name != have.use_same_name || want.mapping != have.mapping;
  }
  return c;
}

}  // namespace

Puller::Puller(const Config& config, const EventProducerConfig& producer,
               std::unique_ptr<ProducerLink> link, Options options)
    : config_(config),
      producer_(producer),
      link_(std::move(link)),
      options_(std::move(options)),
      applier_(config, options_.database_url),
      backoff_(RetryPolicy(options_)) {}

BackoffPolicy Puller::RetryPolicy(const Options& options) {
  return {options.initial_backoff, options.max_backoff, 2.0, 0.0};
}

Puller::~Puller() { Stop(); }

void Puller::Start() {
  absl::MutexLock lock(&mu_);
  if (started_ || stopping_) return;
  SetDelivery(false);
  started_ = true;
  thread_ = std::thread([this] { Run(); });
}

void Puller::Stop() {
  std::thread thread;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    stop_batches_ = true;
    cv_.SignalAll();
    thread = std::move(thread_);
  }
  InterruptStream();
  if (thread.joinable()) thread.join();
  // Hand the producer to another replica at once.
  absl::MutexLock pull_lock(&pull_mu_);
  lock_conn_.reset();
  active_ = false;
}

void Puller::Notify() {
  absl::MutexLock lock(&mu_);
  ++requested_;
  pending_triggers_ |= kNotify;
  cv_.SignalAll();
}

int64_t Puller::RequestPull() {
  int64_t ticket;
  {
    absl::MutexLock lock(&mu_);
    ticket = ++requested_;
    pending_triggers_ |= kPullNow;
    cv_.SignalAll();
  }
  // An open stream ends, so that the pull (and its status refresh) runs now.
  InterruptStream();
  return ticket;
}

absl::StatusOr<PullOutcome> Puller::WaitForPull(int64_t ticket, absl::Time deadline,
                                                const std::function<bool()>& cancelled) {
  absl::MutexLock lock(&mu_);
  while (completed_ < ticket) {
    if (cancelled && cancelled()) {
      return absl::CancelledError(
          absl::StrCat("cancelled while waiting for the pull from producer ", name()));
    }
    if (stopping_ || !started_) {
      return absl::UnavailableError(
          absl::StrCat("the consumer is stopping; producer ", name(), " was not pulled"));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("the pull from producer ", name(), " is still running"));
    }
    // Wake up now and then to notice the deadline.
    cv_.WaitWithTimeout(&mu_, absl::Milliseconds(100));
  }
  return last_outcome_;
}

PullerState Puller::State() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

void Puller::HeardSubscriptions(
    const google::protobuf::RepeatedPtrField<v1::DocTypeSubscription>& subs) {
  absl::MutexLock lock(&mu_);
  for (const v1::DocTypeSubscription& s : subs) {
    state_.initial_sync[s.doctype()] = s.initial_sync();
  }
}

bool Puller::Syncing() const {
  absl::MutexLock lock(&mu_);
  for (const auto& [doctype, sync] : state_.initial_sync) {
    if (sync.state() == "running") return true;
  }
  return false;
}

absl::StatusOr<std::vector<SyncLogRow>> Puller::Resync(int64_t id) {
  // An open stream holds pull_mu_: end it, and open none until done.
  ++resync_waiting_;
  InterruptStream();
  absl::StatusOr<std::vector<SyncLogRow>> rows = ResyncLocked(id);
  --resync_waiting_;
  if (producer_.delivery == EventProducerConfig::Delivery::kStream) {
    absl::MutexLock lock(&mu_);
    ++requested_;  // catch up and stream again
    pending_triggers_ |= kResume;
    cv_.SignalAll();
  }
  return rows;
}

absl::StatusOr<std::vector<SyncLogRow>> Puller::ResyncLocked(int64_t id) {
  absl::MutexLock pull_lock(&pull_mu_);
  ASSIGN_OR_RETURN(pg::Connection * conn, Connection());
  ProducerLink* link = link_.get();
  const std::string& own = name();
  return applier_.Resync(conn, id, [link, &own](const std::string& producer) {
    return producer == own ? static_cast<DependencySource*>(link) : nullptr;
  });
}

absl::StatusOr<pg::Connection*> Puller::Connection() {
  if (conn_ == nullptr || !conn_->ok()) {
    conn_.reset();
    ASSIGN_OR_RETURN(conn_, pg::Connection::Open(options_.database_url));
    (void)conn_->SetApplicationName("eventstream-consumer");
  }
  return conn_.get();
}

absl::StatusOr<bool> Puller::HoldPullLock() {
  if (lock_conn_ != nullptr && active_) {
    // The lock lives as long as its session: check the session.
    if (lock_conn_->Exec(kPingSession).ok()) return true;
    spdlog::warn("producer {}: the pull lock's database session broke; taking the lock "
                 "again",
                 name());
    lock_conn_.reset();
    active_ = false;
  }
  if (lock_conn_ == nullptr || !lock_conn_->ok()) {
    lock_conn_.reset();
    ASSIGN_OR_RETURN(lock_conn_, pg::Connection::Open(options_.database_url));
    (void)lock_conn_->SetApplicationName("eventstream-consumer pull lock");
  }
  auto r = lock_conn_->Exec(kTryPullLock, {absl::StrCat("eventstream.consumer.puller:", name())});
  if (!r.ok()) {
    lock_conn_.reset();
    return r.status();
  }
  active_ = r->GetBool(0, r->ColumnIndex("locked"));
  return active_;
}

void Puller::Run() {
  mu_.Lock();
  while (true) {
    // Due: a request not yet served, or the timer (poll or retry).
    while (!stopping_ && requested_ <= completed_ && Now() < next_due_) {
      cv_.WaitWithTimeout(&mu_, next_due_ - Now() + absl::Milliseconds(1));
    }
    if (stopping_) break;
    const int64_t ticket = requested_;
    const unsigned triggers = pending_triggers_;
    pending_triggers_ = 0;
    const int64_t number = ++state_.pulls;
    mu_.Unlock();
    {
      // An interruption asked for before this pull is served by it.
      absl::MutexLock lock(&stream_mu_);
      interrupt_ = false;
    }

    spdlog::debug("pull #{} from producer {} started ({})", number, name(),
                  (triggers & kPullNow) ? "PullNow"
                  : (triggers & kNotify) ? "Notify"
                                         : "timer");
    bool local_failure = false;
    PullOutcome outcome;
    bool active = false;
    {
      absl::MutexLock pull_lock(&pull_mu_);
      outcome = PullOnce(triggers, &local_failure);
      active = active_;
    }
    spdlog::debug("pull #{} from producer {} done: {} entries, watermark {}", number,
                  name(), outcome.pulled, outcome.last_seq);
    NoteApplied(outcome);

    mu_.Lock();
    Record(outcome, local_failure, active);
    completed_ = std::max(completed_, ticket);
    last_outcome_ = outcome;
    cv_.SignalAll();
    // Caught up: stream from here (delivery: stream) until the session
    // ends, an error, Stop, PullNow or Resync. A Notify that came meanwhile
    // does not hold the stream back (under steady writes one always does);
    // it makes one more pull after the session.
    if (producer_.delivery == EventProducerConfig::Delivery::kStream && !stream_unsupported_ &&
        outcome.status.ok() && !outcome.standby && !stopping_ &&
        (pending_triggers_ & (kPullNow | kResume)) == 0 && resync_waiting_ == 0) {
      mu_.Unlock();
      StreamSession();
      mu_.Lock();
    }
  }
  mu_.Unlock();
}

void Puller::NoteApplied(const PullOutcome& outcome) {
  if (!outcome.status.ok() || outcome.pulled == 0) return;
  unlogged_.pulled += outcome.pulled;
  unlogged_.synced += outcome.synced;
  unlogged_.failed += outcome.failed;
  unlogged_.parked += outcome.parked;
  if (Now() - logged_at_ < absl::Minutes(1)) return;
  spdlog::info("producer {}: pulled {} entries ({} synced, {} failed, {} parked){}, "
               "watermark {}",
               name(), unlogged_.pulled, unlogged_.synced, unlogged_.failed, unlogged_.parked,
               logged_at_ == absl::InfinitePast() ? "" : " in the last minute",
               outcome.last_seq);
  unlogged_ = PullOutcome();
  logged_at_ = Now();
}

void Puller::StreamSession() {
  bool local_failure = false;
  PullOutcome outcome;
  bool active = false;
  {
    absl::MutexLock pull_lock(&pull_mu_);
    outcome = StreamOnce(&local_failure);
    active = active_;
  }
  NoteApplied(outcome);
  absl::MutexLock lock(&mu_);
  Record(outcome, local_failure, active);
  cv_.SignalAll();
}

void Puller::InterruptStream() {
  absl::MutexLock lock(&stream_mu_);
  interrupt_ = true;
  if (stream_ != nullptr) stream_->Cancel();
}

void Puller::SetDelivery(bool streaming) {
  if (options_.metrics == nullptr) return;
  options_.metrics->delivery->WithLabels({name(), "stream"}).Set(streaming ? 1 : 0);
  options_.metrics->delivery->WithLabels({name(), "pull"}).Set(streaming ? 0 : 1);
}

void Puller::Record(const PullOutcome& outcome, bool local_failure, bool active) {
  const absl::Time now = Now();
  next_due_ = NextPullDue(now, {outcome.standby, outcome.status.ok(), outcome.advanced},
                          {options_.poll_interval, options_.standby_retry}, backoff_);
  if (options_.metrics != nullptr) {
    options_.metrics->active->WithLabels({name()}).Set(active ? 1 : 0);
  }
  if (outcome.standby) {
    // Once per change (active -> standby, failing -> standby, start).
    if (state_.last_error != outcome.status.message()) {
      spdlog::info("producer {}: another replica is pulling it; this one stands by "
                   "(trying to take over every {}ms)",
                   name(), absl::ToInt64Milliseconds(options_.standby_retry));
    }
    state_.active = false;
    state_.last_error = std::string(outcome.status.message());
    return;
  }
  if (active && !state_.active) {
    spdlog::info("producer {}: this replica holds the pull lock and pulls it", name());
  }
  state_.active = active;
  if (!outcome.status.ok() && options_.metrics != nullptr) {
    options_.metrics->pull_errors->WithLabels({name()}).Increment();
  }
  if (outcome.status.ok()) {
    if (state_.consecutive_failures > 0) {
      spdlog::info("producer {} ({}): pulling again after {} failed attempts", name(),
                   link_->url(), state_.consecutive_failures);
    }
    state_.reachable = true;
    state_.last_error.clear();
    state_.consecutive_failures = 0;
    // After news, the next pull is due at once (NextPullDue): its after_seq
    // tells the producer the news arrived (its acknowledged_seq, hence its lag).
    state_.last_pull_at = now;
    return;
  }
  const std::string error(outcome.status.message());
  const bool unreachable = !local_failure && IsUnreachable(outcome.status);
  // One line per state change, not one per retry.
  if (state_.consecutive_failures == 0 || state_.reachable == unreachable ||
      state_.last_error.substr(0, 60) != error.substr(0, 60)) {
    spdlog::warn("producer {}: pull failed ({}), retrying with backoff up to {}s: {}",
                 name(), absl::StatusCodeToString(outcome.status.code()),
                 absl::ToInt64Seconds(options_.max_backoff), error);
  }
  state_.reachable = !unreachable;
  state_.last_error = error;
  ++state_.consecutive_failures;
}

absl::Status Puller::Register(pg::Connection* conn, const StoredProducer& stored,
                              std::vector<ProducerDocTypeRow>& desired, bool* local_failure) {
  const std::string& address = options_.notify_address;
  auto response = link_->Register(MakeRequest<v1::RegisterConsumerRequest>(
      options_.site, address, stored.notify_token, desired));
  if (!response.ok()) {
    if (response.status().code() == absl::StatusCode::kAlreadyExists) {
      return absl::AlreadyExistsError(absl::StrCat(
          response.status().message(),
          " -- another consumer deployment registered site ", options_.site,
          " there with another notify token, or this consumer's database was reset; "
          "an operator of producer ", name(), " must remove the old registration"));
    }
    return response.status();
  }
  MergeStatuses(response->subscriptions(), &desired);
  HeardSubscriptions(response->subscriptions());
  RETURN_IF_ERROR(LocalIfError(
      SaveSubscription(conn, name(), address, desired, response->last_seq()), local_failure));
  spdlog::info("registered with producer {} ({}) as site {}: {}; watermark {}", name(),
               link_->url(), options_.site, Describe(desired), response->last_seq());
  reconciled_ = true;
  refreshed_at_ = Now();
  all_approved_ = AllApproved(desired);
  return absl::OkStatus();
}

absl::Status Puller::Reconcile(pg::Connection* conn, unsigned triggers,
                               bool* local_failure) {
  ASSIGN_OR_RETURN(std::vector<ProducerDocTypeRow> desired,
                   DesiredDocTypes(*config_.consumer, producer_));
  ASSIGN_OR_RETURN(std::optional<StoredProducer> stored,
                   LocalIfError(LoadProducer(conn, name()), local_failure));
  if (!stored.has_value()) {
    return Local(absl::NotFoundError(absl::StrCat("no event_producer row for ", name(),
                                                  " (the consumer creates it at start)")),
                 local_failure);
  }
  const StoredProducer& p = *stored;
  const std::string& address = options_.notify_address;
  if (!p.registered) return Register(conn, p, desired, local_failure);

  const auto [changed, local_changed] = CompareSubscription(p, address, desired);
  const absl::Time now = Now();
  const bool refresh = StatusRefreshDue(
      {(triggers & kPullNow) != 0, (triggers & kNotify) != 0, reconciled_, all_approved_,
       Syncing(), now - refreshed_at_},
      {options_.poll_interval, options_.status_refresh, kSyncProgressRefresh});

  if (!reconciled_ && !changed) {
    RETURN_IF_ERROR(AdoptStored(conn, p, desired, local_changed, now, local_failure));
    if (!refresh) return absl::OkStatus();
  }
  if (reconciled_ && !changed && !refresh) return absl::OkStatus();
  return SendSubscription(conn, p, desired, changed, now, local_failure);
}

absl::Status Puller::AdoptStored(pg::Connection* conn, const StoredProducer& stored,
                                 std::vector<ProducerDocTypeRow>& desired, bool local_changed,
                                 absl::Time now, bool* local_failure) {
  // Unchanged since the last run: keep everything (statuses as stored).
  for (size_t i = 0; i < desired.size(); ++i) desired[i].status = stored.doctypes[i].status;
  if (local_changed) {
    RETURN_IF_ERROR(LocalIfError(SaveSubscription(conn, name(), options_.notify_address,
                                                  desired, std::nullopt),
                                 local_failure));
  }
  reconciled_ = true;
  refreshed_at_ = now;
  all_approved_ = AllApproved(desired);
  return absl::OkStatus();
}

absl::Status Puller::SendSubscription(pg::Connection* conn, const StoredProducer& stored,
                                      std::vector<ProducerDocTypeRow>& desired, bool changed,
                                      absl::Time now, bool* local_failure) {
  const std::string& address = options_.notify_address;
  auto response = link_->UpdateSubscription(MakeRequest<v1::UpdateSubscriptionRequest>(
      options_.site, address, stored.notify_token, desired));
  if (!response.ok()) {
    if (response.status().code() == absl::StatusCode::kNotFound) {
      // The producer forgot us (its database was reset): register again next
      // time; the stored watermark stays.
      spdlog::warn("producer {} does not know site {} any more; registering again",
                   name(), options_.site);
      RETURN_IF_ERROR(LocalIfError(ClearRegistration(conn, name()), local_failure));
      reconciled_ = false;
    }
    return response.status();
  }
  MergeStatuses(response->subscriptions(), &desired);
  HeardSubscriptions(response->subscriptions());
  RETURN_IF_ERROR(LocalIfError(
      SaveSubscription(conn, name(), address, desired, std::nullopt), local_failure));
  if (changed) {
    spdlog::info("updated subscription at producer {}: {}", name(), Describe(desired));
  } else if (AllApproved(desired) != all_approved_) {
    spdlog::info("producer {} statuses: {}", name(), Describe(desired));
  }
  reconciled_ = true;
  refreshed_at_ = now;
  all_approved_ = AllApproved(desired);
  return absl::OkStatus();
}

PullOutcome Puller::PullOnce(unsigned triggers, bool* local_failure) {
  PullOutcome outcome;
  absl::StatusOr<pg::Connection*> conn = BeginPull(triggers, &outcome, local_failure);
  if (!conn.ok()) {
    outcome.status = conn.status();
    return outcome;
  }
  PullBatches(*conn, &outcome, local_failure);
  return outcome;
}

absl::StatusOr<pg::Connection*> Puller::BeginPull(std::optional<unsigned> triggers,
                                                  PullOutcome* outcome, bool* local_failure) {
  ASSIGN_OR_RETURN(const bool held, LocalIfError(HoldPullLock(), local_failure));
  if (!held) {
    outcome->standby = true;
    return absl::UnavailableError(
        absl::StrCat("another replica of this consumer is pulling producer ", name(),
                     "; this one stands by"));
  }
  ASSIGN_OR_RETURN(pg::Connection * conn, LocalIfError(Connection(), local_failure));
  if (triggers) RETURN_IF_ERROR(Reconcile(conn, *triggers, local_failure));
  ASSIGN_OR_RETURN(outcome->last_seq, LocalIfError(LoadWatermark(conn, name()), local_failure));
  return conn;
}

void Puller::PullBatches(pg::Connection* conn, PullOutcome* outcome, bool* local_failure) {
  const int64_t start_seq = outcome->last_seq;
  ConsumerMetrics* metrics = options_.metrics;
  // While a batch applies, the next one is already being fetched (on
  // another thread): the producer's serving and our applying overlap
  // instead of adding up. The prefetch acknowledges only what is committed
  // (acknowledged_seq), so a crash before the batch commits loses nothing
  // the producer would then no longer send (its Delete records).
  auto batch = link_->PullUpdates(outcome->last_seq, options_.batch_limit);
  while (true) {
    const int64_t before = outcome->last_seq;
    if (metrics != nullptr) metrics->pulls->WithLabels({name()}).Increment();
    if (!batch.ok() && IsLogTrimmed(batch.status())) {
      outcome->status = RecoverFromTrim(conn, batch.status(), outcome, local_failure);
      outcome->advanced = outcome->status.ok();
      return;
    }
    if (!batch.ok()) {
      outcome->status = batch.status();
      return;
    }
    if (metrics != nullptr) metrics->NotePosition(name(), batch->log_position());
    const bool go_on =
        batch->more() && !stop_batches_ && batch->next_after_seq() > before;
    std::future<absl::StatusOr<v1::PullUpdatesResponse>> next;
    if (go_on) {
      next = std::async(std::launch::async,
                        [link = link_.get(), after = batch->next_after_seq(),
                         limit = options_.batch_limit, committed = outcome->last_seq] {
                          return link->PullUpdates(after, limit, committed);
                        });
    }
    if (absl::Status s = ApplyPulled(conn, *batch, outcome, local_failure); !s.ok()) {
      if (next.valid()) next.wait();  // its answer is dropped
      outcome->status = s;
      return;
    }
    if (!next.valid()) break;
    batch = next.get();
  }
  outcome->advanced = outcome->last_seq > start_seq;
}

PullOutcome Puller::StreamOnce(bool* local_failure) {
  PullOutcome outcome;
  // Only the holder of the pull lock streams (its session is checked).
  absl::StatusOr<pg::Connection*> conn = BeginPull(std::nullopt, &outcome, local_failure);
  if (!conn.ok()) {
    outcome.status = conn.status();
    return outcome;
  }
  const absl::Time deadline =
      Now() + StreamSessionLength(Syncing(), all_approved_, options_.poll_interval,
                                        options_.status_refresh, kSyncProgressRefresh);
  std::shared_ptr<UpdateStream> stream =
      link_->StreamUpdates(outcome.last_seq, options_.batch_limit, deadline);
  {
    absl::MutexLock lock(&stream_mu_);
    if (interrupt_) {  // PullNow, Resync or Stop came first
      outcome.advanced = true;
      return outcome;
    }
    stream_ = stream;
  }
  SetDelivery(true);
  const int64_t opened_at = outcome.last_seq;
  spdlog::info("producer {}: streaming after watermark {}", name(), opened_at);
  const absl::Status applied = ReceiveStream(*conn, stream.get(), &outcome, local_failure);
  const absl::Status finished = stream->Finish();
  bool interrupted = false;
  {
    absl::MutexLock lock(&stream_mu_);
    interrupted = interrupt_;
    stream_.reset();
  }
  SetDelivery(false);
  outcome.status = StreamEnd(*conn, applied, finished, interrupted, deadline, &outcome,
                             local_failure);
  spdlog::info("producer {}: stream closed at watermark {} ({} entries since {}): {}", name(),
               outcome.last_seq, outcome.pulled, opened_at,
               outcome.status.ok() && finished.ok() ? std::string("ended")
               : outcome.status.ok() && interrupted ? std::string("closed by this consumer")
               : outcome.status.ok() ? std::string(finished.message())
                                     : std::string(outcome.status.message()));
  // A clean end: catch up and stream again at once.
  outcome.advanced = outcome.status.ok();
  return outcome;
}

absl::Status Puller::ReceiveStream(pg::Connection* conn, UpdateStream* stream,
                                   PullOutcome* outcome, bool* local_failure) {
  v1::PullUpdatesResponse answer;
  while (stream->Read(&answer)) {
    if (options_.metrics != nullptr) {
      options_.metrics->NotePosition(name(), answer.log_position());
    }
    // ApplyPulled commits the answer and moves the watermark in one
    // transaction (Applier::ApplyBatch); only then is it acknowledged.
    // Killed before the commit, this consumer reconnects from its old
    // watermark and the producer (which recorded no acknowledgment past it)
    // sends the same entries again; killed after the commit and before the
    // acknowledgment, they come again too, and ApplyBatch skips every seq
    // at or below the committed watermark: applied once either way.
    if (absl::Status s = ApplyPulled(conn, answer, outcome, local_failure); !s.ok()) {
      stream->Cancel();
      while (stream->Read(&answer)) {
      }
      return s;
    }
    if (!stream->Acknowledge(outcome->last_seq)) break;
    answer.Clear();
  }
  return absl::OkStatus();
}

absl::Status Puller::StreamEnd(pg::Connection* conn, const absl::Status& applied,
                               const absl::Status& finished, bool interrupted,
                               absl::Time deadline, PullOutcome* outcome, bool* local_failure) {
  if (!applied.ok()) return applied;
  if (finished.ok() || interrupted) return absl::OkStatus();
  // The session's own deadline (a little early: the producer may notice it first).
  if (absl::IsDeadlineExceeded(finished) && Now() >= deadline - absl::Seconds(1)) {
    return absl::OkStatus();
  }
  if (IsLogTrimmed(finished)) return RecoverFromTrim(conn, finished, outcome, local_failure);
  if (absl::IsUnimplemented(finished)) {
    spdlog::warn("producer {} does not serve StreamUpdates (an older version?); pulling it "
                 "instead (delivery: pull) until this consumer restarts: {}",
                 name(), std::string(finished.message()));
    stream_unsupported_ = true;
    return absl::OkStatus();
  }
  return finished;
}

absl::Status Puller::RecoverFromTrim(pg::Connection* conn, const absl::Status& refused,
                                     PullOutcome* outcome, bool* local_failure) {
  spdlog::warn("producer {}: this consumer fell behind its retention valve at watermark {} "
               "({}); restarting the initial sync of every DocType from the log's end",
               name(), outcome->last_seq, std::string(refused.message()));
  ASSIGN_OR_RETURN(v1::RestartSyncResponse skipped, link_->SkipTrimmed());
  HeardSubscriptions(skipped.subscriptions());
  // Copies of documents deleted there while this consumer was cut off:
  // the sync walks only what exists, so they are looked for by name (the
  // skip restarted the sync already; no comparison, so this is quick and the
  // sync's entries do not age past the valve meanwhile) and follow
  // on_move_out. Before the watermark moves: dying here, the next pull is
  // refused again and all of this repeats.
  for (const v1::DocTypeSubscription& sub : skipped.subscriptions()) {
    if (sub.status() != v1::SUBSCRIPTION_STATUS_APPROVED || sub.unsubscribed()) continue;
    absl::StatusOr<int64_t> moved = MoveOutExtras(config_, conn, link_.get(), sub.doctype());
    if (absl::IsNotFound(moved.status())) continue;  // not followed from here
    RETURN_IF_ERROR(moved.status());
    if (*moved > 0) {
      spdlog::info("producer {}: {} copies of {} deleted there while cut off moved out", name(),
                   *moved, sub.doctype());
    }
  }
  RETURN_IF_ERROR(LocalIfError(
      conn->ExecPrepared(kSkipWatermark, {name(), skipped.watermark()}).status(),
      local_failure));
  spdlog::info("producer {}: watermark moved from {} to {} past the trimmed log; the "
               "initial sync brings every document",
               name(), outcome->last_seq, skipped.watermark());
  outcome->last_seq = skipped.watermark();
  if (options_.metrics != nullptr) {
    options_.metrics->trim_recoveries->WithLabels({name()}).Increment();
  }
  return absl::OkStatus();
}

absl::Status Puller::ApplyPulled(pg::Connection* conn, v1::PullUpdatesResponse& batch,
                                 PullOutcome* outcome, bool* local_failure) {
  // Moved, not copied: an entry may carry a document of many megabytes.
  std::vector<v1::UpdateLogEntry> entries;
  entries.reserve(batch.entries_size());
  for (v1::UpdateLogEntry& e : *batch.mutable_entries()) entries.push_back(std::move(e));
  if (entries.empty() && batch.next_after_seq() <= outcome->last_seq) return absl::OkStatus();
  ConsumerMetrics* metrics = options_.metrics;
  const absl::Time started = absl::Now();
  auto applied =
      applier_.ApplyBatch(conn, name(), entries, batch.next_after_seq(), link_.get());
  if (metrics != nullptr) {
    metrics->apply_seconds->WithLabels({name()})
        .Observe(absl::ToDoubleSeconds(absl::Now() - started));
    if (applied.ok()) {
      metrics->applied->WithLabels({name(), "synced"}).Increment(applied->synced);
      metrics->applied->WithLabels({name(), "failed"}).Increment(applied->failed);
      metrics->applied->WithLabels({name(), "parked"}).Increment(applied->parked);
    }
  }
  if (!applied.ok()) return Local(applied.status(), local_failure);
  outcome->pulled += static_cast<int64_t>(entries.size());
  outcome->synced += applied->synced;
  outcome->failed += applied->failed;
  outcome->parked += applied->parked;
  outcome->last_seq = applied->last_seq;
  return absl::OkStatus();
}

}  // namespace eventstream
