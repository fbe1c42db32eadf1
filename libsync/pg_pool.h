// ConnectionPool: a small pool of pg::Connections to one database, for
// services that answer RPCs on several threads.
//
// Contract:
//  * Acquire() hands out an idle connection or opens a new one; there is no
//    upper bound on connections in use (RPC concurrency bounds it), only on
//    how many idle ones are kept (`max_idle`).
//  * A Lease gives its connection back when destroyed, but only if it is
//    still usable and not inside a transaction; otherwise the connection is
//    closed, so a broken or half-used connection never reaches the next
//    caller.
//  * Thread-safe. The pool must outlive its leases.
#ifndef EVENTSTREAM_LIBSYNC_PG_POOL_H_
#define EVENTSTREAM_LIBSYNC_PG_POOL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "libsync/pg.h"

namespace eventstream::pg {

class ConnectionPool {
 public:
  // `url` as for Connection::Open; `application_name` is set on each new
  // connection when non-empty (it shows in pg_stat_activity).
  ConnectionPool(std::string url, std::string application_name = "",
                 size_t max_idle = 4);
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

  // An idle connection, or a new one (UNAVAILABLE when it cannot connect).
  absl::StatusOr<Lease> Acquire();

 private:
  void Return(std::unique_ptr<Connection> conn);

  const std::string url_;
  const std::string application_name_;
  const size_t max_idle_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace eventstream::pg

#endif  // EVENTSTREAM_LIBSYNC_PG_POOL_H_
