// Per-call limits at the RPC edge (issue 13 item 3: 250 concurrent calls of
// one key held every database session of the site for minutes, long after
// their callers had given up).
//
// CallLimiter: at most `max_per_key` calls of one api key run at once;
// Enter() for one more is RESOURCE_EXHAUSTED at once, naming the limit and
// the config key that sets it. The slot is held until the returned Slot is
// destroyed. Thread-safe.
//
// CallScope: while it lives, Interrupted() on the same thread says whether
// the RPC it was made for is still wanted -- DEADLINE_EXCEEDED once its
// deadline passed, CANCELLED once the client went away -- so that deep,
// gRPC-free code (UpdateFeed's loops) can stop abandoned work between two
// statements without carrying the ServerContext. The sync gRPC server runs
// each handler on one thread, which is what makes a thread-local scope
// right here. Outside any scope Interrupted() is always OK. A cancellation is
// noticed within 100 ms (gRPC's check is costly; the deadline is exact);
// InterruptedNow() asks gRPC at once, for a caller told that a cancel came.
#ifndef EVENTSTREAM_SERVICES_COMMON_CALL_GUARD_H_
#define EVENTSTREAM_SERVICES_COMMON_CALL_GUARD_H_

#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"

namespace eventstream {

class CallLimiter {
 public:
  // `config_key` names the setting in messages ("producer.max_concurrent_
  // calls_per_key"). max_per_key <= 0: no limit.
  CallLimiter(int max_per_key, std::string config_key)
      : max_per_key_(max_per_key), config_key_(std::move(config_key)) {}
  CallLimiter(const CallLimiter&) = delete;
  CallLimiter& operator=(const CallLimiter&) = delete;

  class Slot {
   public:
    Slot(Slot&& other) noexcept : limiter_(other.limiter_), key_(std::move(other.key_)) {
      other.limiter_ = nullptr;
    }
    Slot& operator=(Slot&&) = delete;
    ~Slot();

   private:
    friend class CallLimiter;
    Slot(CallLimiter* limiter, std::string key) : limiter_(limiter), key_(std::move(key)) {}
    CallLimiter* limiter_;
    std::string key_;
  };

  absl::StatusOr<Slot> Enter(const std::string& key);
  int running(const std::string& key) const;

 private:
  void Leave(const std::string& key);

  const int max_per_key_;
  const std::string config_key_;
  mutable absl::Mutex mu_;
  std::map<std::string, int> running_ ABSL_GUARDED_BY(mu_);
  int64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time warned_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

class CallScope {
 public:
  explicit CallScope(grpc::ServerContext* context);
  ~CallScope();
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

  // See the file comment.
  static absl::Status Interrupted();
  static absl::Status InterruptedNow();
  // The deadline of the RPC served on this thread (InfiniteFuture outside
  // a scope or without a deadline).
  static absl::Time Deadline();

 private:
  grpc::ServerContext* context_;
  absl::Time deadline_;
  CallScope* outer_;
  // IsCancelled() is asked at most every few milliseconds (call_guard.cc).
  absl::Time next_cancel_check_ = absl::InfinitePast();
  bool cancelled_ = false;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_COMMON_CALL_GUARD_H_
