// Puller: follows one producer -- keeps this consumer's subscription there in
// line with the config and pulls its Event Update Log into the Applier.
//
// Contract:
//  * One thread per producer; one pull at a time. Triggers: Start(), Notify()
//    (a producer's Notify), PullNow() (an operator), and a timer every
//    poll_interval. Requests coalesce: any number of them arriving during a
//    pull cause exactly one more pull after it, not one each.
//  * A pull first reconciles the subscription (the first time, and until it
//    succeeds): not registered -> RegisterConsumer, storing the returned
//    watermark only if none is stored; registered but the DocTypes,
//    conditions, unsubscribe flags or notify address changed ->
//    UpdateSubscription; otherwise nothing is sent. The approval statuses
//    the producer answers are stored (producer_doctype.status). They are
//    refreshed with an (idempotent) UpdateSubscription on PullNow, on a
//    Notify or once per poll_interval while some DocType is not approved,
//    and every Options::status_refresh otherwise.
//  * Then it loops PullUpdates(after_seq = watermark, batch_limit) ->
//    Applier::ApplyBatch (which commits the batch and advances the
//    watermark) until the producer says there is no more. Stop() lets the
//    batch in flight finish, then returns.
//  * Push delivery (producer delivery: stream, the default; docs/design.md
//    "Delivery"): once a pull has caught up (and no request waits), the
//    thread opens Producer.StreamUpdates from the watermark, still holding
//    the pull lock (checked first), applies each answer with the same
//    ApplyPulled (ApplyBatch commits and moves the watermark) and then
//    acknowledges the watermark. A stream session lasts
//    StreamSessionLength (libsync/rules/stream_flow.h: the status refresh
//    intervals) and is recorded like a pull; a clean end (its deadline,
//    PullNow, Resync, Stop, a producer without StreamUpdates) pulls and
//    streams again at once, an error waits the backoff and catches up by
//    pulling before the next stream; "log trimmed:" recovers as below.
//    Notify is harmless while streaming (one more pull after the session).
//    PullNow and Resync close the open stream (Resync needs pull_mu_,
//    which the stream holds). One log line per stream opened and closed.
//  * A failed pull (producer unreachable, refused, local database down) is
//    never fatal: the next try waits an exponential backoff (initial_backoff
//    doubling up to max_backoff; Notify/PullNow try at once). Reachability,
//    the last error and the consecutive failures are in State(). One log
//    line per state change (starts failing, fails differently, recovers).
//  * Constructing one does no I/O; the thread opens its own database
//    connection (and reopens it after a failure) when it first needs it.
//  * Replicas: only the holder of the producer's pull lock pulls it (and
//    reconciles the subscription). The lock is a session-level advisory
//    lock, pg_try_advisory_lock(hashtextextended('eventstream.consumer.
//    puller:' || producer, 0)), held on a dedicated connection for as long
//    as this replica is active; it is released by Stop() or, when the
//    process dies, by PostgreSQL closing that session. Each pull first makes
//    sure the lock is (still) held, taking it when free. A replica that
//    does not get it stands by: the pull ends at once with UNAVAILABLE
//    ("another replica ... is pulling", PullOutcome::standby; not counted as
//    a failure) and it tries again every Options::standby_retry, so it takes
//    over within about that long after the active replica dies. A Notify or
//    PullNow reaching a standby replica therefore just causes such a try.
//    (ApplyBatch's own per-producer transaction lock still guarantees
//    exactly-once if two pulls ever overlap.)
//  * Retention (docs/design.md "Retention"): a pull refused with "log
//    trimmed:" (the producer's valve deleted entries this consumer still
//    needed; libsync/rules/retention_plan.h IsLogTrimmed) is recovered from at
//    once: one warning naming how far behind it was, Producer.RestartSync
//    with skip_trimmed (every DocType's initial sync again, from the log's
//    end), Resnapshot of each approved DocType (resnapshot.h: copies of
//    documents deleted there meanwhile follow on_move_out), then the
//    watermark moves to the answer's watermark and pulling goes on. Dying
//    before that, the next pull is refused again and the recovery repeats
//    (the producer keeps refusing positions below it).
//  * A pull that moved the watermark is followed at once by another, so the
//    producer records (acknowledged_seq = that pull's after_seq) that the
//    entries arrived even when no Notify or poll comes soon: the producer's
//    lag metrics return to 0 right after the consumer caught up.
//
// Thread-safety: all public methods are thread-safe.
#ifndef EVENTSTREAM_SERVICES_CONSUMER_PULLER_H_
#define EVENTSTREAM_SERVICES_CONSUMER_PULLER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libsync/base/backoff.h"
#include "libsync/config/config.h"
#include "libsync/base/pg.h"
#include "services/consumer/applier.h"
#include "services/consumer/consumer_metrics.h"
#include "services/consumer/producer_link.h"
#include "services/consumer/producer_store.h"

namespace eventstream {

// The result of one pull (all its batches).
struct PullOutcome {
  absl::Status status;  // OK, or why the pull stopped
  int64_t pulled = 0;   // entries received
  int64_t synced = 0;
  int64_t failed = 0;
  int64_t parked = 0;
  int64_t last_seq = 0;  // the watermark afterwards
  bool standby = false;  // another replica holds the pull lock; nothing done
  bool advanced = false;  // the watermark moved (a follow-up pull acks it)
};

// What ListProducers reports about a producer's reachability.
struct PullerState {
  bool reachable = false;  // the last pull reached the producer
  std::string last_error;  // "" after a successful pull
  int consecutive_failures = 0;
  absl::Time last_pull_at = absl::InfinitePast();  // last successful pull
  int64_t pulls = 0;  // pulls started since the process started
  bool active = false;  // this replica holds the pull lock
  // Per producer DocType, its initial sync as the producer last answered.
  std::map<std::string, v1::InitialSync> initial_sync;
};

class Puller {
 public:
  struct Options {
    std::string database_url;
    std::string site;            // this consumer's site name
    std::string notify_address;  // consumer.advertise ("" = poll only)
    absl::Duration poll_interval = absl::Seconds(30);
    absl::Duration initial_backoff = absl::Milliseconds(200);
    absl::Duration max_backoff = absl::Seconds(30);
    absl::Duration status_refresh = absl::Minutes(10);
    int batch_limit = 500;
    // How often a standby replica tries to take the pull lock.
    absl::Duration standby_retry = absl::Seconds(1);
    // Counters and the log position for /metrics; null = none. Must
    // outlive the Puller.
    ConsumerMetrics* metrics = nullptr;
    // The clock of its timing decisions (next pull, status refresh, stream
    // sessions, log limits); null = SystemClock(). Must outlive the Puller.
    Clock* clock = nullptr;
  };

  // `config` (with a consumer section) and `producer` (one of its
  // consumer.producers) must outlive the Puller.
  Puller(const Config& config, const EventProducerConfig& producer,
         std::unique_ptr<ProducerLink> link, Options options);
  ~Puller();
  Puller(const Puller&) = delete;
  Puller& operator=(const Puller&) = delete;

  const std::string& name() const { return producer_.name; }
  ProducerLink* link() { return link_.get(); }

  // Starts the thread, which pulls at once.
  void Start();
  // Stops the thread after the batch in flight; idempotent.
  void Stop();

  // Schedules a pull (a producer's Notify); returns at once.
  void Notify();
  // Returns a ticket; a pull that starts after this call will complete it.
  // Also refreshes the approval statuses in that pull.
  int64_t RequestPull();
  // Waits until the pull for `ticket` finished (its outcome) or `deadline`
  // (DEADLINE_EXCEEDED) or Stop() (UNAVAILABLE) or `cancelled()` returns
  // true (CANCELLED; checked every 100 ms, e.g. the RPC was cancelled).
  absl::StatusOr<PullOutcome> WaitForPull(
      int64_t ticket, absl::Time deadline,
      const std::function<bool()>& cancelled = nullptr);

  PullerState State() const;
  // Records subscriptions the producer answered outside a pull (Resnapshot's
  // RestartSync): their initial sync progress, refreshed while it runs.
  void HeardSubscriptions(
      const google::protobuf::RepeatedPtrField<v1::DocTypeSubscription>& subs);

  // Runs Applier::Resync for a sync log row of this producer, never at the
  // same time as a pull of it (an open stream is closed first).
  absl::StatusOr<std::vector<SyncLogRow>> Resync(int64_t id);

 private:
  // kResume: streaming resumes after a Resync (a pull first).
  enum Trigger : unsigned { kTimer = 0, kNotify = 1, kPullNow = 2, kResume = 4 };

  // initial_backoff doubling up to max_backoff, no jitter.
  static BackoffPolicy RetryPolicy(const Options& options);
  absl::Time Now() const { return (options_.clock ? *options_.clock : SystemClock()).Now(); }
  void Run();
  PullOutcome PullOnce(unsigned triggers, bool* local_failure)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pull_mu_);
  // PullOnce's first steps: the pull lock (a standby replica stops here,
  // outcome->standby), the connection, Reconcile (with `triggers`; none
  // before a stream) and the watermark (into outcome->last_seq).
  absl::StatusOr<pg::Connection*> BeginPull(std::optional<unsigned> triggers,
                                            PullOutcome* outcome, bool* local_failure)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pull_mu_);
  // PullOnce's loop: PullUpdates -> ApplyPulled (the next batch prefetched
  // meanwhile) until the producer has no more; the result in `outcome`.
  void PullBatches(pg::Connection* conn, PullOutcome* outcome, bool* local_failure)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pull_mu_);
  absl::Status Reconcile(pg::Connection* conn, unsigned triggers, bool* local_failure)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pull_mu_);
  // Reconcile's first run with a subscription unchanged since the last
  // process: the stored statuses kept (local-only columns saved).
  absl::Status AdoptStored(pg::Connection* conn, const StoredProducer& stored,
                           std::vector<ProducerDocTypeRow>& desired, bool local_changed,
                           absl::Time now, bool* local_failure)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pull_mu_);
  // Reconcile's UpdateSubscription (a change, or a status refresh) and the
  // statuses answered stored; a producer that forgot this site (NOT_FOUND)
  // is registered with again on the next pull.
  absl::Status SendSubscription(pg::Connection* conn, const StoredProducer& stored,
                                std::vector<ProducerDocTypeRow>& desired, bool changed,
                                absl::Time now, bool* local_failure)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pull_mu_);
  // Reconcile's first step for a producer not registered with yet:
  // RegisterConsumer, then the statuses and watermark it returns stored.
  absl::Status Register(pg::Connection* conn, const StoredProducer& stored,
                        std::vector<ProducerDocTypeRow>& desired, bool* local_failure)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pull_mu_);
  // Applies one pulled answer (its entries moved out of `batch`) and adds
  // it to `outcome`; a failure is Local.
  absl::Status ApplyPulled(pg::Connection* conn, v1::PullUpdatesResponse& batch,
                           PullOutcome* outcome, bool* local_failure)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pull_mu_);
  // After a pull refused "log trimmed:" (`refused`): skips to the
  // producer's new watermark, stored in `outcome`.
  absl::Status RecoverFromTrim(pg::Connection* conn, const absl::Status& refused,
                               PullOutcome* outcome, bool* local_failure)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pull_mu_);
  absl::StatusOr<pg::Connection*> Connection() ABSL_EXCLUSIVE_LOCKS_REQUIRED(pull_mu_);
  // The "pulled N entries" info line, at most once a minute (loop thread).
  void NoteApplied(const PullOutcome& outcome);
  // Push delivery (delivery: stream; see the file comment): one stream
  // session run and recorded like a pull (loop thread, mu_ not held).
  void StreamSession();
  PullOutcome StreamOnce(bool* local_failure) ABSL_EXCLUSIVE_LOCKS_REQUIRED(pull_mu_);
  // Applies and acknowledges each answer until the stream ends; a local
  // failure cancels it and is returned.
  absl::Status ReceiveStream(pg::Connection* conn, UpdateStream* stream, PullOutcome* outcome,
                             bool* local_failure) ABSL_EXCLUSIVE_LOCKS_REQUIRED(pull_mu_);
  // Why the stream ended, as the session's status: OK for a clean end (the
  // session's deadline, an interruption, a producer without streams), the
  // trim recovery's for "log trimmed:", else the failure.
  absl::Status StreamEnd(pg::Connection* conn, const absl::Status& applied,
                         const absl::Status& finished, bool interrupted, absl::Time deadline,
                         PullOutcome* outcome, bool* local_failure)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pull_mu_);
  // Ends the open stream (or the next one to open, until the next pull
  // starts): PullNow, Resync, Stop.
  void InterruptStream();
  // eventstream_consumer_delivery{mode} of this producer.
  void SetDelivery(bool streaming);
  absl::StatusOr<std::vector<SyncLogRow>> ResyncLocked(int64_t id);
  // Whether this replica holds (or just took) the pull lock.
  absl::StatusOr<bool> HoldPullLock() ABSL_EXCLUSIVE_LOCKS_REQUIRED(pull_mu_);
  // `active`: whether the pull just recorded ran holding the pull lock.
  void Record(const PullOutcome& outcome, bool local_failure, bool active)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether some initial sync was running when last heard.
  bool Syncing() const;

  const Config& config_;
  const EventProducerConfig& producer_;
  std::unique_ptr<ProducerLink> link_;
  const Options options_;
  // Held for a whole pull (and a Resync): the connection and applier.
  absl::Mutex pull_mu_;
  Applier applier_ ABSL_GUARDED_BY(pull_mu_);
  std::unique_ptr<pg::Connection> conn_ ABSL_GUARDED_BY(pull_mu_);
  // Holds the session-level pull lock while active_ (see file comment).
  std::unique_ptr<pg::Connection> lock_conn_ ABSL_GUARDED_BY(pull_mu_);
  bool active_ ABSL_GUARDED_BY(pull_mu_) = false;
  bool reconciled_ ABSL_GUARDED_BY(pull_mu_) = false;
  absl::Time refreshed_at_ ABSL_GUARDED_BY(pull_mu_) = absl::InfinitePast();
  bool all_approved_ ABSL_GUARDED_BY(pull_mu_) = false;

  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Not guarded: set by Stop() (under mu_), read by the loop thread
  // between batches while it holds only pull_mu_.
  std::atomic<bool> stop_batches_{false};
  int64_t requested_ ABSL_GUARDED_BY(mu_) = 0;  // tickets handed out
  int64_t completed_ ABSL_GUARDED_BY(mu_) = 0;  // the highest ticket whose pull finished
  unsigned pending_triggers_ ABSL_GUARDED_BY(mu_) = 0;
  PullOutcome last_outcome_ ABSL_GUARDED_BY(mu_);
  PullerState state_ ABSL_GUARDED_BY(mu_);
  Backoff backoff_ ABSL_GUARDED_BY(mu_);
  absl::Time next_due_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // The open stream, for InterruptStream (see there).
  absl::Mutex stream_mu_ ABSL_ACQUIRED_AFTER(mu_, pull_mu_);
  std::shared_ptr<UpdateStream> stream_ ABSL_GUARDED_BY(stream_mu_);
  bool interrupt_ ABSL_GUARDED_BY(stream_mu_) = false;
  // Resync calls waiting for pull_mu_: no stream opens meanwhile.
  std::atomic<int> resync_waiting_{0};
  // The producer answered StreamUpdates UNIMPLEMENTED: pull only.
  std::atomic<bool> stream_unsupported_{false};
  // Loop thread only: what was applied since the last "pulled ..." info
  // line (at most one a minute, so a live stream of pulls does not flood
  // the log).
  PullOutcome unlogged_;
  absl::Time logged_at_ = absl::InfinitePast();
  std::thread thread_ ABSL_GUARDED_BY(mu_);
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_CONSUMER_PULLER_H_
