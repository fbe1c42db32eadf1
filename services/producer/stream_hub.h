// StreamHub: what the producer's StreamUpdates handlers share (docs/design.md
// "Delivery"): where this replica's update log ends, and the streams open.
//
//  * Advance(last_seq) is called after entries were committed (the
//    assembler, WAL capture and initial sync loops' on_entries hook);
//    WaitPast(seq, timeout) blocks a handler until the end known here is
//    past `seq`, the hub closes, a stream is cancelled (EndStreamOf: the
//    waiter checks its call) or `timeout` passes. Entries another
//    producer replica logged are not seen here: handlers look at the
//    database when WaitPast times out (at least once a second).
//  * One stream per site at a time: UpdateFeed::Pull's bookkeeping assumes
//    one pull of a site at a time (a cancelled stream's last pull must not
//    drop what its successor recorded). Open(site, ...) and EndStreamOf(site)
//    (before a PullUpdates) cancel the site's open stream and wait, up to
//    `timeout`, until its handler has returned.
//  * Open(site, context) registers a stream; Close() (server shutdown, called
//    before the gRPC server drains) refuses new ones, wakes every waiter and
//    cancels every open stream's call (TryCancel), so a handler blocked
//    reading the consumer's acknowledgment returns at once and the
//    producer's shutdown never waits for open streams.
//  * open_streams() is the gauge eventstream_producer_open_streams.
//
// Thread-safe.
#ifndef EVENTSTREAM_SERVICES_PRODUCER_STREAM_HUB_H_
#define EVENTSTREAM_SERVICES_PRODUCER_STREAM_HUB_H_

#include <cstdint>
#include <optional>
#include <map>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"

namespace eventstream {

class StreamHub {
 public:
  // Entries up to `last_seq` are committed.
  void Advance(int64_t last_seq);
  struct Seen {
    int64_t end = 0;      // the log's end as known here
    bool closed = false;  // Close() was called
    bool kicked = false;  // a stream was cancelled meanwhile (EndStreamOf, Open)
  };
  Seen WaitPast(int64_t seq, absl::Duration timeout);
  Seen Now() const;

  // While it lives, the stream counts as open and Close() cancels it.
  class Registration {
   public:
    Registration(Registration&& other) noexcept
        : hub_(other.hub_), context_(other.context_), site_(std::move(other.site_)) {
      other.hub_ = nullptr;
    }
    Registration& operator=(Registration&&) = delete;
    ~Registration();

   private:
    friend class StreamHub;
    Registration(StreamHub* hub, grpc::ServerContext* context, std::string site)
        : hub_(hub), context_(context), site_(std::move(site)) {}
    StreamHub* hub_;
    grpc::ServerContext* context_;
    std::string site_;
  };
  // UNAVAILABLE after Close(), or when the site's previous stream did not
  // end within `timeout`.
  absl::StatusOr<Registration> Open(const std::string& site, grpc::ServerContext* context,
                                    absl::Duration timeout = absl::Seconds(5));
  // Ends the site's open stream, if any; false when it is still running
  // after `timeout`.
  bool EndStreamOf(const std::string& site, absl::Duration timeout = absl::Seconds(5));
  void Close();
  int open_streams() const;
  // The sites with a stream open here (they need no Notify: notifier.h).
  std::set<std::string> open_sites() const;

 private:
  mutable absl::Mutex mu_;
  int64_t end_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  int64_t kicks_ ABSL_GUARDED_BY(mu_) = 0;  // EndLocked's cancels: waiters look again
  // Cancels the site's stream and waits until it is gone (or the timeout).
  bool EndLocked(const std::string& site, absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::map<std::string, grpc::ServerContext*> open_ ABSL_GUARDED_BY(mu_);  // by site
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_STREAM_HUB_H_
