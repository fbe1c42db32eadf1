// ReplicationStream: one logical replication connection reading pgoutput
// (protocol 1) from a slot, for WAL capture. The decoding is pgoutput.h's
// and transaction_builder.h's; this is only the libpq I/O.
//
// Contract:
//  * Start() connects with `replication=database` added to the caller's
//    conninfo (URI or key=value, as pg::Connection::Open takes), sets
//    DateStyle ISO (transaction_builder.h's JSON relies on it), creates the
//    slot if missing and runs START_REPLICATION. The slot is detected by
//    trying CREATE_REPLICATION_SLOT and reading SQLSTATE 42710
//    (duplicate_object) as "it exists": no race between a look-up and the
//    creation, and no SQL query on the replication connection.
//  * Next() waits at most `timeout` (poll on the socket, PQgetCopyData in
//    async mode) and returns one XLogData payload or nullopt, so a caller
//    can check its stop flag between calls. Keepalives are answered inside
//    Next (at once when the server asks, else every `status_interval`).
//  * The flushed LSN the server hears is ONLY what Confirm() was given:
//    nothing is confirmed on the caller's behalf, so a stream killed at any
//    point restarts (a new Start) at the last confirmed transaction and the
//    server sends every later one again. A caller confirms a transaction's
//    end LSN once the entries it became are committed; when idle (nothing
//    in flight) it may confirm server_end() so the slot does not hold WAL
//    that tables outside the publication wrote.
//  * Errors are absl::Status with the server's message (SQLSTATE first, as
//    pg.h writes them). A stream that failed is dropped and started again.
//  * One thread at a time. The destructor closes the connection; the
//    server's walsender exits soon after (Start retries START_REPLICATION
//    while the slot is still held by the previous one, up to slot_wait).
#ifndef EVENTSTREAM_LIBSYNC_WAL_REPLICATION_STREAM_H_
#define EVENTSTREAM_LIBSYNC_WAL_REPLICATION_STREAM_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libsync/base/pg.h"
#include "libsync/wal/pgoutput.h"

namespace eventstream::wal {

struct ReplicationOptions {
  std::string conninfo;                   // the site's database
  std::string slot;                       // [a-z0-9_]{1,63}
  std::vector<std::string> publications;  // at least one
  // 0: from the slot's confirmed position. A later LSN counts as confirmed
  // (the server moves the slot there with the first status update).
  Lsn start = 0;
  absl::Duration status_interval = absl::Seconds(10);
  absl::Duration slot_wait = absl::Seconds(10);
};

// One XLogData message of the stream.
struct WalMessage {
  Lsn start = 0;  // the WAL position of the payload
  std::string payload;  // one pgoutput message (DecodePgOutput)
};

class ReplicationStream {
 public:
  static absl::StatusOr<std::unique_ptr<ReplicationStream>> Start(
      const ReplicationOptions& options);
  ~ReplicationStream();

  // The next message within `timeout`, or nullopt.
  absl::StatusOr<std::optional<WalMessage>> Next(absl::Duration timeout);
  // Everything up to `lsn` is durable on the caller's side: the slot may
  // move there. Sent at once; a smaller LSN than before is ignored.
  absl::Status Confirm(Lsn lsn);
  // For a caller that reads nothing for a while (it waits on something
  // else): a status update once status_interval has passed since the last,
  // so the server's wal_sender_timeout does not end the stream. Next()
  // does the same while it reads.
  absl::Status KeepAlive();

  Lsn confirmed() const { return confirmed_; }
  Lsn server_end() const { return server_end_; }  // the last end of WAL heard
  bool created_slot() const { return created_slot_; }  // Start created it

 private:
  ReplicationStream(std::unique_ptr<pg::Connection> conn, absl::Duration status_interval)
      : conn_(std::move(conn)), status_interval_(status_interval) {}
  absl::Status SendStatus(bool reply_requested);
  // Handles one CopyData message; a payload for the caller, else nullopt.
  absl::StatusOr<std::optional<WalMessage>> Handle(std::string_view data);
  // Waits for the socket to be readable until `deadline`; false on timeout.
  absl::StatusOr<bool> Wait(absl::Time deadline);
  absl::Status StreamEnded();

  std::unique_ptr<pg::Connection> conn_;
  absl::Duration status_interval_;
  Lsn confirmed_ = 0;
  Lsn received_ = 0;
  Lsn server_end_ = 0;
  absl::Time last_status_ = absl::InfinitePast();
  bool created_slot_ = false;
};

// ---- pure pieces (tests/unit/replication_stream_test.cc) ---------------------

// `conninfo` with replication=database added (a URI gets a query
// parameter, key=value text one more pair).
std::string ReplicationConninfo(const std::string& conninfo);
// Slot names PostgreSQL accepts: 1..63 of [a-z0-9_]. They go into the
// command text (replication commands take no parameters), so others are
// refused before they get there.
bool ValidSlotName(std::string_view name);
std::string CreateSlotCommand(std::string_view slot);
// START_REPLICATION SLOT s LOGICAL 0/0 (proto_version '1', messages 'true',
// publication_names '"a","b"'): each publication a quoted identifier, the
// list a quoted string literal. Transactional logical messages come in
// their transactions (initial sync's markers, initial_sync.h).
std::string StartReplicationCommand(std::string_view slot, Lsn start,
                                    const std::vector<std::string>& publications);

}  // namespace eventstream::wal

#endif  // EVENTSTREAM_LIBSYNC_WAL_REPLICATION_STREAM_H_
