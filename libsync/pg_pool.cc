#include "libsync/pg_pool.h"

#include <libpq-fe.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace eventstream::pg {
namespace {

ConnectionPool::Options LegacyOptions(std::string application_name, size_t max_idle) {
  ConnectionPool::Options options;
  options.application_name = std::move(application_name);
  options.max_idle = max_idle;
  return options;
}

}  // namespace

ConnectionPool::ConnectionPool(std::string url, Options options)
    : url_(std::move(url)), options_(std::move(options)) {}

ConnectionPool::ConnectionPool(std::string url, std::string application_name,
                               size_t max_idle)
    : ConnectionPool(std::move(url), LegacyOptions(std::move(application_name), max_idle)) {}

absl::StatusOr<ConnectionPool::Lease> ConnectionPool::Acquire(absl::Time deadline) {
  const absl::Time started = absl::Now();
  const absl::Time give_up = std::min(deadline, started + options_.acquire_timeout);
  {
    absl::MutexLock lock(&mu_);
    CloseStale(started);
    while (true) {
      while (!idle_.empty()) {
        std::unique_ptr<Connection> conn = std::move(idle_.back().conn);
        idle_.pop_back();
        if (conn->ok()) return Lease(this, std::move(conn));
        --open_;  // a broken idle connection: closed here, its slot freed
      }
      if (open_ < options_.max_open) break;
      if (absl::Now() >= give_up) {
        ++refused_;
        const size_t waiting = waiting_;
        // One line a minute at most: a flood must not flood the log too.
        const bool warn = absl::Now() - warned_at_ >= absl::Minutes(1);
        if (warn) warned_at_ = absl::Now();
        const std::string key =
            options_.bound_key.empty() ? "" : absl::StrCat(" (", options_.bound_key, ")");
        if (warn) {
          spdlog::warn("database pool {}: all {} connections{} are in use; calls are refused "
                       "with RESOURCE_EXHAUSTED ({} waiting, {} refused so far)",
                       options_.application_name, options_.max_open, key, waiting, refused_);
        }
        return absl::ResourceExhaustedError(absl::StrCat(
            "busy: all ", options_.max_open, " database connections of this server", key,
            " stayed in use for ", absl::FormatDuration(absl::Trunc(absl::Now() - started,
                                                                    absl::Milliseconds(1))),
            "; try again later"));
      }
      ++waiting_;
      returned_.WaitWithDeadline(&mu_, give_up);
      --waiting_;
    }
    ++open_;  // reserved; opened below without holding the lock
  }
  auto conn = Connection::Open(url_);
  absl::Status failed;
  if (!conn.ok()) {
    failed = conn.status();
  } else if (!options_.application_name.empty()) {
    failed = (*conn)->SetApplicationName(options_.application_name);
  }
  if (!failed.ok()) {
    absl::MutexLock lock(&mu_);
    FreeSlot();
    return failed;
  }
  return Lease(this, std::move(*conn));
}

void ConnectionPool::CloseStale(absl::Time now) {
  size_t stale = 0;
  while (stale < idle_.size() && now - idle_[stale].since >= options_.idle_timeout) ++stale;
  if (stale == 0) return;
  idle_.erase(idle_.begin(), idle_.begin() + static_cast<std::ptrdiff_t>(stale));
  for (size_t i = 0; i < stale; ++i) FreeSlot();
}

void ConnectionPool::FreeSlot() {
  --open_;
  returned_.Signal();
}

void ConnectionPool::Return(std::unique_ptr<Connection> conn) {
  // Only an idle, healthy session goes back: one left inside a transaction
  // (an error path that skipped ROLLBACK) is closed, which rolls it back.
  const bool reusable = conn->ok() && PQtransactionStatus(conn->raw()) == PQTRANS_IDLE;
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  CloseStale(now);
  if (reusable && idle_.size() < options_.max_idle) {
    idle_.push_back(Idle{std::move(conn), now});
    returned_.Signal();
    return;
  }
  // Closed outside the lock would be nicer, but PQfinish only sends a
  // Terminate message; it does not wait for the server.
  conn.reset();
  FreeSlot();
}

ConnectionPool::Stats ConnectionPool::stats() const {
  absl::MutexLock lock(&mu_);
  return Stats{open_, idle_.size(), waiting_, refused_};
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
