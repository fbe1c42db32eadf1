// LogTail: the newest entries of the Event Update Log, kept in memory once
// per producer process and shared by every pull and stream it serves
// (docs/design.md "The log tail"). At fan-out each logged entry is read
// from the database (its jsonb rendered as text) once, not once per consumer.
//
// Contract:
//  * The tail holds every entry with seq in (lo, hi] as the log has it;
//    entries are never changed once logged, and the log's readers always
//    see a prefix (seq is taken in commit order under the assembler's lock),
//    so an entry read once stays right. Retention's deletes do not matter:
//    the pull still checks the cut-off after reading its window.
//  * Read(after) answers from the tail when `after` is inside it. When the
//    window would reach the tail's end, the tail first reads the log past
//    its end, unless a read that started after this call did so already,
//    or the tail reaches `known_end` (the log's end as the caller knows it,
//    0 = unknown; a stream knows it from StreamHub): an answer that says
//    "no more" saw every entry committed before the call began, or up to
//    known_end, exactly like a read of the database.
//  * nullopt: `after` is below the tail (a lagging consumer); the caller
//    reads the database itself. A position past the tail's end restarts the
//    tail there.
//  * Memory: at most Options::max_bytes of records (oldest dropped first
//    when a Read returns), plus the records answers still hold, plus what
//    one Read reads: up to two reads of the log of fill_entries entries /
//    fill_bytes of data each (the first entry of a read always comes,
//    however large).
//
// Thread-safe; a read of the log holds the tail's mutex, so the streams
// woken by one logged batch cause one read, not one each.
#ifndef EVENTSTREAM_SERVICES_PRODUCER_LOG_TAIL_H_
#define EVENTSTREAM_SERVICES_PRODUCER_LOG_TAIL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "libsync/base/pg.h"
#include "libsync/rules/log_window.h"

namespace eventstream {

class LogTail {
 public:
  struct Options {
    int64_t max_bytes = 64 << 20;
    int fill_entries = 2000;
    int64_t fill_bytes = 8 << 20;
  };
  struct Window {
    std::vector<std::shared_ptr<const LogRecord>> wanted;
    std::vector<int64_t> examined;  // ascending
    bool more = false;              // entries follow the window
  };
  struct Stats {
    int64_t hits = 0;     // windows answered from memory
    int64_t misses = 0;   // positions below the tail
    int64_t fills = 0;    // reads of the log
    int64_t appended = 0;  // records handed over by their writer (Append)
  };

  LogTail() : LogTail(Options()) {}
  explicit LogTail(Options options) : options_(options) {}

  absl::StatusOr<std::optional<Window>> Read(pg::Connection* conn, int64_t after,
                                             const WindowAsk& ask, int64_t known_end = 0);
  // Entries a log writer (capture, initial sync) just committed
  // (ascending), `prev_end` the newest entry before them: they join the
  // tail when it ends exactly there (else a later read of the log brings
  // them). The writer's text of their data then serves, and the log is not
  // read for them.
  void Append(int64_t prev_end, std::vector<std::shared_ptr<const LogRecord>> records);
  Stats stats() const;

 private:
  // Reads entries past hi_ into the tail.
  absl::Status Fill(pg::Connection* conn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Restart(int64_t at) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the oldest records while over max_bytes.
  void Trim() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Window Answer(int64_t after, const WindowAsk& ask, bool* reached_end) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  std::atomic<int64_t> calls_{0};  // Read calls begun (each one's ticket)
  mutable absl::Mutex mu_;
  // Ascending seq: every entry with seq in (lo_, hi_].
  std::vector<std::shared_ptr<const LogRecord>> records_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  int64_t lo_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t hi_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // The calls begun before the last read of the log started: that read saw
  // everything they may ask for.
  int64_t fresh_for_ ABSL_GUARDED_BY(mu_) = 0;
  // The last read stopped at its limits: the log goes on past hi_.
  bool truncated_ ABSL_GUARDED_BY(mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_LOG_TAIL_H_
