// Notifier: tells consumers "there is news" by calling
// eventstream.v1.Consumer/Notify (docs/design.md "Producer / Notify / pull").
//
// Contract:
//  * Targets are the approved consumers with a notify address, given as a
//    whole by SetTargets() (site, host:port, notify token). A target with an
//    empty address is ignored (that consumer only polls). A target whose
//    address or token changes starts afresh (no backoff carried over; what
//    it was owed, or had in flight, is sent to the new address/token, which
//    may overlap a call still in flight to the old one).
//  * Signal(sites, position) marks each named target dirty with the newest
//    position and wakes the worker; it never does I/O. Sites that are not
//    targets are ignored. Calls are coalesced: per target at most one Notify
//    is in flight, and a target signalled while its call is in flight gets
//    exactly one more call afterwards, carrying the newest position. A burst
//    of any number of Signals thus causes a handful of calls.
//  * Transport: Options::transport for every target (producer.notify_tls:
//    one CA bundle and one client certificate for all consumers; each
//    consumer's certificate is checked against the host of its notify
//    address unless notify_tls.server_name says otherwise). Plaintext by
//    default; a new target called in plaintext on an address other than
//    loopback is warned about once, and a failure's log line says what a
//    TLS error likely means or that the consumer may require TLS
//    (TransportHint).
//  * Each call carries `authorization: token <producer site>:<token>` and
//    NotifyRequest{producer = producer site, log_position = newest position},
//    with a deadline of Options::rpc_timeout.
//  * Any failed call (UNAVAILABLE, DEADLINE_EXCEEDED, UNAUTHENTICATED, ...)
//    keeps the target dirty and retries it after an exponential backoff
//    (initial_backoff doubling up to max_backoff, each delay scaled by a
//    random factor in [1 - jitter, 1 + jitter]); a success resets it. The
//    timing is libsync/rules/notify_plan.h (one streak per target), read
//    from Options::clock. An
//    unreachable consumer is not an error for anyone else: other targets,
//    Signal, capture and pulls are never held up by it.
//  * Logging: one line per state change of a target (starts failing, fails
//    with a different status code, recovers), never one per attempt. The
//    token is never logged.
//  * Stop() is prompt: it cancels in-flight calls, does not wait out any
//    backoff, and returns once no callback can run any more. Signals still
//    pending at Stop() are dropped (consumers also poll).
//
// Thread-safety: all public methods are thread-safe. Signal(), SetTargets()
// and stats() only hold a mutex briefly and never wait for a call. Calls are
// started from the notifier's own thread and complete on gRPC's callback
// threads.
#ifndef EVENTSTREAM_SERVICES_PRODUCER_NOTIFIER_H_
#define EVENTSTREAM_SERVICES_PRODUCER_NOTIFIER_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "eventstream/v1/consumer.grpc.pb.h"
#include "libsync/base/backoff.h"
#include "libsync/rules/notify_plan.h"
#include "grpcpp/grpcpp.h"
#include "services/common/tls.h"

namespace eventstream {

struct NotifyTarget {
  std::string site;     // the consumer's site name
  std::string address;  // host:port of its Consumer service; "" = poll only
  std::string token;    // the notify token it registered; never logged
};

class Notifier {
 public:
  struct Options {
    std::chrono::milliseconds initial_backoff{200};
    std::chrono::milliseconds max_backoff{60000};
    std::chrono::milliseconds rpc_timeout{2000};
    double jitter = 0.2;  // each backoff delay is scaled by 1 ± jitter
    ClientTransport transport;  // credentials null = plaintext
    // Due times and backoff ends are read from it; null = SystemClock().
    Clock* clock = nullptr;
  };

  struct TargetStats {
    std::string address;
    int64_t attempts = 0;   // Notify calls started
    int64_t successes = 0;
    int64_t failures = 0;
    int consecutive_failures = 0;  // 0 = reachable (or never tried)
    int64_t delivered_position = 0;  // last position a Notify succeeded with
    int64_t pending_position = 0;    // newest position signalled
    bool dirty = false;              // a Notify is still owed
    bool in_flight = false;
    std::string last_error;  // "CODE: message" of the last failure; "" if ok
  };

  struct Stats {
    int64_t signals = 0;  // Signal() calls
    int64_t attempts = 0;
    int64_t successes = 0;
    int64_t failures = 0;
    std::map<std::string, TargetStats> targets;  // by site
  };

  Notifier(std::string producer_site, Options options);
  explicit Notifier(std::string producer_site)
      : Notifier(std::move(producer_site), Options()) {}
  ~Notifier();  // Stop()

  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // Starts the worker thread. Call at most once.
  void Start();
  // Cancels in-flight calls, joins the worker and waits for their callbacks.
  // Idempotent; not to be called concurrently with itself.
  void Stop();

  // Replaces the set of targets (keyed by site; see file comment). Targets
  // that stay keep their pending signal.
  void SetTargets(std::vector<NotifyTarget> targets);

  // Marks `sites` as owed a Notify with `log_position` (the newest seq; a
  // lower position than one already pending is kept at the higher one).
  void Signal(const std::set<std::string>& sites, int64_t log_position);
  // Same, for every target but `except` (consumers streaming from this
  // replica: their stream delivers the entries).
  void SignalAll(int64_t log_position, const std::set<std::string>& except = {});

  // `site` just called us (it pulled), so it is up: if its target is
  // backing off after failures, the backoff (ours and the gRPC channel's
  // reconnect delay) is dropped and a Notify still owed goes at once.
  void Heard(const std::string& site);

  Stats stats() const;

 private:
  struct Call;
  // Every field but `stub` (immutable) is guarded by Notifier::mu_.
  struct Target {
    explicit Target(BackoffPolicy policy) : retry(policy) {}
    NotifyTarget config;
    std::unique_ptr<eventstream::v1::Consumer::Stub> stub;  // immutable
    bool dirty = false;
    int64_t pending_position = 0;
    NotifyRetry retry;  // failures() == 0: not backing off
    grpc::StatusCode last_code = grpc::StatusCode::OK;
    // Heard() after failures: the next call waits for the channel to
    // reconnect (within its deadline) instead of failing fast.
    bool wait_for_ready = false;
    TargetStats stats;
  };

  void Run();
  // Requires mu_. Marks `target` dirty at `log_position`; true if it was
  // clean (the worker needs waking).
  bool MarkDirtyLocked(Target& target, int64_t log_position)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<grpc::Channel> ChannelLocked(const std::string& address)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs on a gRPC thread when a call finishes. Releases nothing: the
  // call (and with it possibly the last reference to a channel) goes to
  // finished_, freed by the worker or Stop(). A channel freed on gRPC's own
  // callback thread shuts down the queue that thread is serving (gRPC 1.51
  // then aborts: "ref_counted.h assertion failed: prior > 0").
  void OnDone(Call* call, const grpc::Status& status);
  // Frees finished_ outside mu_ (never on a gRPC callback thread).
  void ReleaseFinished() ABSL_LOCKS_EXCLUDED(mu_);
  // Requires mu_. Marks the targets PlanNotify says are due as calling and
  // returns their calls, to be started outside mu_; `wake_at` is when the
  // worker looks again (InfiniteFuture: at the next signal).
  std::vector<std::pair<std::shared_ptr<Target>, std::shared_ptr<Call>>> TakeDueLocked(
      absl::Time* wake_at) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // initial_backoff doubling up to max_backoff, scaled by 1 ± jitter.
  static BackoffPolicy RetryPolicy(const Options& options);

  const std::string producer_site_;
  const Options options_;
  Clock& clock_;  // options_.clock or SystemClock()

  mutable absl::Mutex mu_;
  absl::CondVar cv_;       // wakes the worker
  absl::CondVar idle_cv_;  // in_flight_ reached 0
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // shared_ptr: a call's completion may outlive the target's removal.
  std::map<std::string, std::shared_ptr<Target>> targets_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mu_);
  // A call and the target it was made for (which SetTargets may already
  // have replaced), owned here from start to release.
  struct InFlight {
    std::shared_ptr<Target> target;
    std::shared_ptr<Call> call;
  };
  std::map<Call*, InFlight> live_calls_ ABSL_GUARDED_BY(mu_);  // started, not done
  std::vector<InFlight> finished_ ABSL_GUARDED_BY(mu_);        // done, not yet freed
  Stats totals_ ABSL_GUARDED_BY(mu_);  // targets is filled in by stats()
  std::thread thread_;  // started under mu_ in Start(); joined by Stop()
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_NOTIFIER_H_
