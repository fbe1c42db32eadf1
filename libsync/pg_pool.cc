#include "libsync/pg_pool.h"

#include <libpq-fe.h>

namespace eventstream::pg {

ConnectionPool::ConnectionPool(std::string url, std::string application_name,
                               size_t max_idle)
    : url_(std::move(url)),
      application_name_(std::move(application_name)),
      max_idle_(max_idle) {}

absl::StatusOr<ConnectionPool::Lease> ConnectionPool::Acquire() {
  {
    absl::MutexLock lock(&mu_);
    while (!idle_.empty()) {
      std::unique_ptr<Connection> conn = std::move(idle_.back());
      idle_.pop_back();
      if (conn->ok()) return Lease(this, std::move(conn));
    }
  }
  auto conn = Connection::Open(url_);
  if (!conn.ok()) return conn.status();
  if (!application_name_.empty()) {
    if (absl::Status s = (*conn)->SetApplicationName(application_name_); !s.ok())
      return s;
  }
  return Lease(this, std::move(*conn));
}

void ConnectionPool::Return(std::unique_ptr<Connection> conn) {
  // Only an idle, healthy session goes back: one left inside a transaction
  // (an error path that skipped ROLLBACK) is closed, which rolls it back.
  if (!conn->ok() || PQtransactionStatus(conn->raw()) != PQTRANS_IDLE) return;
  absl::MutexLock lock(&mu_);
  if (idle_.size() < max_idle_) idle_.push_back(std::move(conn));
}

ConnectionPool::Lease::Lease(Lease&& other) noexcept
    : pool_(other.pool_), conn_(std::move(other.conn_)) {}

ConnectionPool::Lease& ConnectionPool::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    pool_ = other.pool_;
    conn_ = std::move(other.conn_);
  }
  return *this;
}

ConnectionPool::Lease::~Lease() { Release(); }

void ConnectionPool::Lease::Release() {
  if (conn_ != nullptr) pool_->Return(std::move(conn_));
}

}  // namespace eventstream::pg
