// ConnectionPool: a bounded pool of pg::Connections to one database, for
// services that answer RPCs on several threads.
//
// Contract:
//  * At most `max_open` connections exist at once, idle and leased together
//    (issue 13 item 3: an unbounded pool let one caller's flood take every
//    session of the server). Acquire() hands out an idle connection, opens a
//    new one while fewer than `max_open` exist, and otherwise waits for one
//    to come back -- at most `acquire_timeout`, or until the `deadline`
//    given, whichever is sooner -- and then fails with RESOURCE_EXHAUSTED
//    naming the bound. It never opens past the bound.
//  * At most `max_idle` idle connections are kept (the rest are closed when
//    given back), and an idle one unused for `idle_timeout` is closed the
//    next time the pool is used, so after a burst the server's sessions go
//    back down, while steady traffic reuses its sessions instead of opening
//    one per call (tools/bench-membership found 905 sessions opened for 50
//    consumers when only 4 were kept).
//  * A Lease gives its connection back when destroyed, but only if it is
//    still usable and not inside a transaction; otherwise the connection is
//    closed (and its slot freed), so a broken or half-used connection never
//    reaches the next caller.
//  * A caller that holds a lease and acquires another can wait on itself;
//    the timeout ends such a wait with RESOURCE_EXHAUSTED, never a hang.
//  * Thread-safe. The pool must outlive its leases.
#ifndef EVENTSTREAM_LIBSYNC_PG_POOL_H_
#define EVENTSTREAM_LIBSYNC_PG_POOL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libsync/pg.h"

namespace eventstream::pg {

class ConnectionPool {
 public:
  struct Options {
    std::string application_name;  // set on each new connection when not ""
                                   // (it shows in pg_stat_activity)
    size_t max_open = 20;          // connections at once, idle + leased
    size_t max_idle = 20;          // idle connections kept at most
    absl::Duration idle_timeout = absl::Minutes(1);  // then an idle one is closed
    absl::Duration acquire_timeout = absl::Seconds(5);
    // Names the config key that sets max_open in RESOURCE_EXHAUSTED
    // messages ("" = none).
    std::string bound_key;
  };
  // `url` as for Connection::Open.
  ConnectionPool(std::string url, Options options);
  // The default Options with these two set.
  explicit ConnectionPool(std::string url, std::string application_name = "",
                          size_t max_idle = 20);
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    ~Lease();
    Connection* get() const { return conn_.get(); }
    Connection* operator->() const { return conn_.get(); }

   private:
    friend class ConnectionPool;
    Lease(ConnectionPool* pool, std::unique_ptr<Connection> conn)
        : pool_(pool), conn_(std::move(conn)) {}
    void Release();
    ConnectionPool* pool_;
    std::unique_ptr<Connection> conn_;
  };

  // An idle connection, a new one, or one given back within the wait (see
  // the file comment). UNAVAILABLE when it cannot connect;
  // RESOURCE_EXHAUSTED when the pool stayed at its bound.
  absl::StatusOr<Lease> Acquire(absl::Time deadline = absl::InfiniteFuture());

  struct Stats {
    size_t open = 0;    // idle + leased
    size_t idle = 0;
    size_t waiting = 0;  // callers waiting in Acquire
    int64_t refused = 0;  // Acquire calls that gave up at the bound
  };
  Stats stats() const;
  size_t max_open() const { return options_.max_open; }

 private:
  void Return(std::unique_ptr<Connection> conn);
  // Closes idle connections unused for idle_timeout (the oldest first).
  void CloseStale(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Called with mu_ held: a connection was closed or never opened.
  void FreeSlot() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string url_;
  const Options options_;
  mutable absl::Mutex mu_;
  struct Idle {
    std::unique_ptr<Connection> conn;
    absl::Time since;  // given back at
  };
  // Oldest first; Acquire takes the newest (the warmest session).
  std::vector<Idle> idle_ ABSL_GUARDED_BY(mu_);
  size_t open_ ABSL_GUARDED_BY(mu_) = 0;  // idle + leased + being opened
  size_t waiting_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time warned_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::CondVar returned_;  // a connection went idle or a slot was freed
};

}  // namespace eventstream::pg

#endif  // EVENTSTREAM_LIBSYNC_PG_POOL_H_
