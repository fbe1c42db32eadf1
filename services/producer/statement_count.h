// StatementCount: tells a callback how many statements were run on a
// connection during its scope (UpdateFeed::Options::on_statements, the
// producer's eventstream_producer_dependency_statements_total).
#ifndef EVENTSTREAM_SERVICES_PRODUCER_STATEMENT_COUNT_H_
#define EVENTSTREAM_SERVICES_PRODUCER_STATEMENT_COUNT_H_

#include <cstdint>
#include <functional>

#include "libsync/base/pg.h"

namespace eventstream {

// Tells `*told` (when set) the statements run on `conn` from construction
// to destruction.
class StatementCount {
 public:
  StatementCount(const pg::Connection* conn, const std::function<void(int64_t)>* told)
      : conn_(conn), told_(told), start_(conn->statements()) {}
  ~StatementCount() {
    if (*told_) (*told_)(conn_->statements() - start_);
  }
  StatementCount(const StatementCount&) = delete;
  StatementCount& operator=(const StatementCount&) = delete;

 private:
  const pg::Connection* conn_;
  const std::function<void(int64_t)>* told_;
  int64_t start_;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_STATEMENT_COUNT_H_
