#include "libsync/wal/replication_stream.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "libsync/base/status_macros.h"

namespace eventstream::wal {
namespace {

constexpr char kDuplicateObject[] = "42710";  // CREATE_REPLICATION_SLOT: it exists
constexpr char kObjectInUse[] = "55006";      // the slot is held by another walsender
constexpr char kSetDateStyle[] = "SET DateStyle = ISO";

// The server's error of `res` (or of the connection), as pg.h writes them.
absl::Status ServerError(PGconn* conn, PGresult* res, const char* what) {
  const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  std::string message(absl::StripTrailingAsciiWhitespace(
      res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res) : PQerrorMessage(conn)));
  if (state == nullptr)
    return absl::UnavailableError(absl::StrCat(what, ": PostgreSQL: ", message));
  return absl::UnavailableError(absl::StrCat(what, ": SQLSTATE ", state, ": ", message));
}

// Creates the slot; OK when it already exists.
absl::StatusOr<bool> EnsureSlot(pg::Connection* conn, std::string_view slot) {
  absl::Status s = conn->ExecScript(CreateSlotCommand(slot));
  if (s.ok()) return true;
  if (pg::SqlStateOf(s) == kDuplicateObject) return false;
  return s;
}

// START_REPLICATION, retried while the previous walsender still holds the
// slot (it exits shortly after its client went away).
absl::Status StartCopyBoth(PGconn* conn, const std::string& command, absl::Duration wait) {
  const absl::Time deadline = absl::Now() + wait;
  for (;;) {
    PGresult* res = PQexec(conn, command.c_str());
    if (PQresultStatus(res) == PGRES_COPY_BOTH) {
      PQclear(res);
      return absl::OkStatus();
    }
    const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
    const bool busy = state != nullptr && std::strcmp(state, kObjectInUse) == 0;
    absl::Status error = ServerError(conn, res, "START_REPLICATION");
    PQclear(res);
    if (!busy || absl::Now() >= deadline) return error;
    absl::SleepFor(absl::Milliseconds(50));
  }
}

}  // namespace

std::string ReplicationConninfo(const std::string& conninfo) {
  const bool uri = absl::StartsWith(conninfo, "postgresql://") ||
                   absl::StartsWith(conninfo, "postgres://");
  if (!uri) return absl::StrCat(conninfo, " replication=database");
  const char* sep = conninfo.find('?') == std::string::npos ? "?" : "&";
  return absl::StrCat(conninfo, sep, "replication=database");
}

bool ValidSlotName(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::string CreateSlotCommand(std::string_view slot) {
  return absl::StrCat("CREATE_REPLICATION_SLOT ", std::string(slot),
                      " LOGICAL pgoutput (SNAPSHOT 'nothing')");
}

std::string StartReplicationCommand(std::string_view slot, Lsn start,
                                    const std::vector<std::string>& publications) {
  std::vector<std::string> quoted;
  for (const std::string& p : publications) quoted.push_back(pg::QuoteIdentifier(p));
  std::string names = absl::StrJoin(quoted, ",");
  // The list is a string literal: its single quotes doubled.
  std::string literal;
  for (char c : names) {
    literal.push_back(c);
    if (c == '\'') literal.push_back('\'');
  }
  return absl::StrCat("START_REPLICATION SLOT ", std::string(slot), " LOGICAL ",
                      FormatLsn(start),
                      " (proto_version '1', messages 'true', publication_names '", literal, "')");
}

absl::StatusOr<std::unique_ptr<ReplicationStream>> ReplicationStream::Start(
    const ReplicationOptions& options) {
  if (!ValidSlotName(options.slot))
    return absl::InvalidArgumentError(
        absl::StrCat("replication slot name \"", options.slot, "\": use 1-63 of [a-z0-9_]"));
  if (options.publications.empty())
    return absl::InvalidArgumentError("a replication stream needs a publication");
  ASSIGN_OR_RETURN(std::unique_ptr<pg::Connection> conn,
                   pg::Connection::Open(ReplicationConninfo(options.conninfo)));
  RETURN_IF_ERROR(conn->ExecScript(kSetDateStyle));
  ASSIGN_OR_RETURN(bool created, EnsureSlot(conn.get(), options.slot));
  RETURN_IF_ERROR(StartCopyBoth(
      conn->raw(), StartReplicationCommand(options.slot, options.start, options.publications),
      options.slot_wait));
  auto stream = std::unique_ptr<ReplicationStream>(
      new ReplicationStream(std::move(conn), options.status_interval));
  stream->created_slot_ = created;
  stream->confirmed_ = options.start;
  return stream;
}

ReplicationStream::~ReplicationStream() = default;  // pg::Connection closes it

absl::Status ReplicationStream::SendStatus(bool reply_requested) {
  StandbyStatus status;
  status.written = std::max(received_, confirmed_);
  status.flushed = confirmed_;  // only what the caller confirmed
  status.applied = confirmed_;
  status.time_us = ToPgTime(absl::Now());
  status.reply_requested = reply_requested;
  const std::string bytes = EncodeStandbyStatus(status);
  PGconn* conn = conn_->raw();
  if (PQputCopyData(conn, bytes.data(), static_cast<int>(bytes.size())) != 1 ||
      PQflush(conn) != 0) {
    return ServerError(conn, nullptr, "standby status update");
  }
  last_status_ = absl::Now();
  return absl::OkStatus();
}

absl::Status ReplicationStream::Confirm(Lsn lsn) {
  if (lsn <= confirmed_) return absl::OkStatus();
  confirmed_ = lsn;
  return SendStatus(false);
}

absl::Status ReplicationStream::KeepAlive() {
  if (absl::Now() - last_status_ < status_interval_) return absl::OkStatus();
  return SendStatus(false);
}

absl::StatusOr<std::optional<WalMessage>> ReplicationStream::Handle(std::string_view data) {
  ASSIGN_OR_RETURN(CopyMessage message, DecodeCopyData(data));
  if (auto* k = std::get_if<PrimaryKeepalive>(&message)) {
    server_end_ = std::max(server_end_, k->end);
    if (k->reply_requested) RETURN_IF_ERROR(SendStatus(false));
    return std::nullopt;
  }
  const XLogData& x = std::get<XLogData>(message);
  received_ = std::max(received_, x.start);
  server_end_ = std::max(server_end_, x.end);
  return WalMessage{x.start, std::string(x.payload)};
}

absl::StatusOr<bool> ReplicationStream::Wait(absl::Time deadline) {
  pollfd pfd{PQsocket(conn_->raw()), POLLIN, 0};
  if (pfd.fd < 0) return absl::UnavailableError("replication connection: no socket");
  const absl::Duration left = std::max(deadline - absl::Now(), absl::ZeroDuration());
  int n = poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left + absl::Microseconds(999))));
  if (n < 0 && errno != EINTR)
    return absl::UnavailableError(absl::StrCat("poll: ", std::strerror(errno)));
  if (n <= 0) return false;
  if (PQconsumeInput(conn_->raw()) != 1)
    return ServerError(conn_->raw(), nullptr, "replication stream");
  return true;
}

absl::Status ReplicationStream::StreamEnded() {
  PGresult* res = PQgetResult(conn_->raw());
  absl::Status s = PQresultStatus(res) == PGRES_COMMAND_OK
                       ? absl::UnavailableError("the server ended the replication stream")
                       : ServerError(conn_->raw(), res, "replication stream");
  PQclear(res);
  return s;
}

absl::StatusOr<std::optional<WalMessage>> ReplicationStream::Next(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    RETURN_IF_ERROR(KeepAlive());
    char* buffer = nullptr;
    const int n = PQgetCopyData(conn_->raw(), &buffer, /*async=*/1);
    if (n > 0) {
      auto handled = Handle(std::string_view(buffer, n));
      PQfreemem(buffer);
      if (!handled.ok() || *handled) return handled;
      continue;  // a keepalive
    }
    if (n == -1) return StreamEnded();
    if (n == -2) return ServerError(conn_->raw(), nullptr, "replication stream");
    ASSIGN_OR_RETURN(bool readable, Wait(deadline));
    if (!readable) return std::nullopt;
  }
}

}  // namespace eventstream::wal
