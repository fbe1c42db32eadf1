// Naming: how a consumer names a document it inserts when it does not keep
// the producer's name (`use_same_name: false`).
//
// A DocType's `autoname` picks the policy, as in Frappe:
//   hash                 10 random lowercase hex characters
//   uuid                 a random RFC 4122 version 4 UUID
//   field:<fieldname>    the value of that field (error if empty)
//   series:PREFIX.#####  PREFIX + a counter padded to the number of #'s,
//                        e.g. series:NOTE-.##### -> NOTE-00001
// Series counters live in the database (SeriesCounter) and are taken inside
// the caller's transaction: a rolled-back insert gives its number back, so
// the series has no gaps even under concurrent inserts (the counter row is
// locked until commit).
#ifndef EVENTSTREAM_LIBSYNC_MODEL_NAMING_H_
#define EVENTSTREAM_LIBSYNC_MODEL_NAMING_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "libsync/base/pg.h"
#include "libsync/base/value.h"

namespace eventstream {

class SeriesCounter {
 public:
  virtual ~SeriesCounter() = default;
  // The next value (1, 2, ...) of the counter called `prefix`.
  virtual absl::StatusOr<int64_t> Next(absl::string_view prefix) = 0;
};

// Keeps counters in `table` (name text primary key, current bigint), created
// by the consumer's migrations; uses the connection's current transaction.
class PgSeriesCounter : public SeriesCounter {
 public:
  PgSeriesCounter(pg::Connection* conn, std::string qualified_table)
      : conn_(conn), table_(std::move(qualified_table)) {}
  absl::StatusOr<int64_t> Next(absl::string_view prefix) override;

 private:
  pg::Connection* conn_;
  std::string table_;
};

class NamingPolicy {
 public:
  enum class Kind { kHash, kUuid, kField, kSeries };

  // INVALID_ARGUMENT naming the autoname when it is none of the forms above.
  static absl::StatusOr<NamingPolicy> Parse(absl::string_view autoname);

  // A new name for `doc`. `counter` is needed for series only.
  absl::StatusOr<std::string> NewName(const Value& doc,
                                      SeriesCounter* counter) const;

  Kind kind() const { return kind_; }
  const std::string& field() const { return arg_; }   // kField
  const std::string& prefix() const { return arg_; }  // kSeries
  int digits() const { return digits_; }              // kSeries

 private:
  Kind kind_ = Kind::kHash;
  std::string arg_;
  int digits_ = 0;
};

std::string RandomHashName();  // 10 hex chars
std::string RandomUuid();      // xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_MODEL_NAMING_H_
