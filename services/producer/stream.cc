// ProducerService::StreamUpdates (producer.proto; docs/design.md "Delivery"):
// push delivery over one long call. Each answer is a pull computed by
// UpdateFeed::Pull exactly as PullUpdates computes it, with after_seq = the
// last answer's next_after_seq (what was SENT) and acknowledged_seq = the
// consumer's latest acknowledgment (what it COMMITTED), so the membership
// bookkeeping (pending holding changes beyond after_seq, folded up to the
// acknowledgment), the recorded position and the retention valve are those
// of the pull path. The pacing is libsync/rules/stream_flow.h.
//
// Crash safety: the stream writes nothing of its own; every write is a
// Pull's one transaction (pull.cc). A consumer that dies with answers sent
// and not committed reconnects from its committed watermark; that first
// pull drops the pending holding changes beyond it and computes the same
// answers again.
//
// Threading: the sync gRPC server runs the handler on one of its threads
// for as long as the stream is open; a handler blocks either reading the
// consumer's acknowledgment or in StreamHub::WaitPast (at most a second at a
// time; kStreamAckPatience with an answer in flight, so entries logged while
// the consumer applies go out before its acknowledgment is read).
// StreamHub::Close (shutdown) cancels both.
#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libsync/rules/retention_plan.h"
#include "libsync/rules/stream_flow.h"
#include "services/producer/producer_service.h"
#include "spdlog/spdlog.h"

namespace eventstream {

namespace {
// How long a caught-up handler waits for this replica's log to advance
// before it looks at the database (entries another replica logged).
constexpr absl::Duration kLogRecheck = absl::Seconds(1);
}  // namespace

struct ProducerService::StreamState {
  StreamState(std::string site, int64_t after, int window, int limit, ByteBudget budget)
      : site(std::move(site)), after(after), covered(after), window(window, after),
        limit(limit), budget(budget) {}
  std::string site;
  int64_t after;        // next_after_seq of the last answer sent
  int64_t covered;      // the log's end as far as the last pull examined it
  int64_t log_end = 0;  // the log's end as last seen (hub or database)
  bool more = true;     // the last answer said more; true: pull at once
  bool ack_unrecorded = false;
  bool log_quiet = false;  // in flight, the log stayed quiet (stream_flow.h)
  AckWindow window;
  int limit;
  ByteBudget budget;
  int sent = 0;         // answers sent, for the closing log line
  bool recorded_once = false;  // a pull of this session recorded (MaySkipAckRecord)
  absl::Time recorded_at = absl::InfinitePast();
  bool ended = false;   // the caller half-closed or went away
};

grpc::Status ProducerService::StreamUpdates(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::PullUpdatesResponse, v1::StreamUpdatesRequest>* stream) {
  std::optional<CallLimiter::Slot> slot;  // held while the stream is open
  auto principal = Admit(context, &slot);
  if (!principal.ok()) return ToGrpc(principal.status());
  CallScope scope(context);
  v1::StreamUpdatesRequest first;
  if (!stream->Read(&first)) return grpc::Status::OK;  // the caller closed at once
  if (!first.has_start()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "start: the first StreamUpdatesRequest must be a StreamStart");
  }
  const v1::StreamStart& start = first.start();
  if (start.after_seq() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("start.after_seq: must be >= 0, got ", start.after_seq()));
  }
  if (start.window() < 0 || start.window() > kMaxStreamWindow) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("start.window: must be 0 (default ", kDefaultStreamWindow,
                                     ") to ", kMaxStreamWindow, ", got ", start.window()));
  }
  auto budget = ResolveBudget(start.max_bytes(), start.max_message_bytes());
  if (!budget.ok()) return ToGrpc(budget.status());
  if (!deps_.streams) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "this producer does not stream");
  }
  // One stream per site: a reconnecting consumer's old stream ends first.
  absl::StatusOr<StreamHub::Registration> open = deps_.streams->Open(principal->key, context);
  if (!open.ok()) return ToGrpc(open.status());
  if (deps_.notifier) deps_.notifier->Heard(principal->key);
  metrics::Gauge* gauge =
      deps_.metrics ? &deps_.metrics->open_streams->WithLabels({}) : nullptr;
  if (gauge != nullptr) gauge->Increment();
  const int window = start.window() == 0 ? kDefaultStreamWindow : start.window();
  StreamState state(principal->key, start.after_seq(), window, start.limit(), *budget);
  spdlog::info("site \"{}\": stream opened after seq {} (window {})", state.site,
               start.after_seq(), window);
  grpc::Status status = RunStream(stream, state);
  if (gauge != nullptr) gauge->Decrement();
  spdlog::info("site \"{}\": stream closed after seq {} ({} answers sent, acknowledged {}): {}",
               state.site, state.after, state.sent, state.window.acknowledged(),
               status.ok() ? std::string("by the consumer") : status.error_message());
  return status;
}

grpc::Status ProducerService::RunStream(
    grpc::ServerReaderWriter<v1::PullUpdatesResponse, v1::StreamUpdatesRequest>* stream,
    StreamState& state) {
  while (true) {
    if (deps_.streams->Now().closed) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "the producer is shutting down; stream again (or pull) later");
    }
    // At most every 100 ms (call_guard.cc): the sync server's IsCancelled()
    // polls the call's completion queue, and asked on every turn of this
    // loop it was 11 % of the producer's CPU serving 50 streams.
    if (absl::Status s = CallScope::Interrupted(); !s.ok()) return ToGrpc(s);
    const StreamStep step = NextStreamStep({state.window.full(), state.window.in_flight(),
                                            state.log_end > state.covered, state.more,
                                            state.ack_unrecorded, state.log_quiet});
    grpc::Status status;
    switch (step) {
      case StreamStep::kReadAck: status = ReadAck(stream, state); break;
      case StreamStep::kPull: status = PullAndSend(stream, state); break;
      case StreamStep::kWaitForLog: status = WaitForLog(state); break;
    }
    if (!status.ok() || state.ended) return status;
  }
}

grpc::Status ProducerService::ReadAck(
    grpc::ServerReaderWriter<v1::PullUpdatesResponse, v1::StreamUpdatesRequest>* stream,
    StreamState& state) {
  v1::StreamUpdatesRequest request;
  if (!stream->Read(&request)) {
    // The caller half-closed or went away (RunStream returns OK; a
    // cancelled call's status is not delivered anyway), or Close() cancelled.
    if (deps_.streams->Now().closed) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "the producer is shutting down; stream again (or pull) later");
    }
    state.ended = true;
    return grpc::Status::OK;
  }
  if (request.kind_case() != v1::StreamUpdatesRequest::kAcknowledgedSeq) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "acknowledged_seq: every request after the StreamStart must be an "
                        "acknowledgment");
  }
  if (request.acknowledged_seq() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("acknowledged_seq: must be >= 0, got ",
                                     request.acknowledged_seq()));
  }
  // Never above what was sent (as PullUpdates clamps to after_seq).
  state.window.Acknowledged(std::min(request.acknowledged_seq(), state.after));
  state.ack_unrecorded = true;
  state.log_quiet = false;
  return grpc::Status::OK;
}

grpc::Status ProducerService::PullAndSend(
    grpc::ServerReaderWriter<v1::PullUpdatesResponse, v1::StreamUpdatesRequest>* stream,
    StreamState& state) {
  const int64_t end_before = state.log_end;
  const absl::Time started = absl::Now();
  const bool may_skip = MaySkipAckRecord(state.recorded_once, started - state.recorded_at);
  auto pulled = deps_.feed->Pull(state.site, state.after, state.limit,
                                 state.window.acknowledged(), state.budget, end_before, may_skip);
  CountPull(state.site, started, pulled);
  if (!pulled.ok()) return AnswerRpc("Producer.StreamUpdates", pulled.status());
  if (pulled->recorded) {
    state.ack_unrecorded = false;  // the pull recorded it
    state.recorded_once = true;
    state.recorded_at = started;
  }
  const bool moved = pulled->next_after_seq > state.after;
  // `more` without progress cannot happen (the first entry always fits);
  // were it to, waiting for the log beats spinning.
  state.more = pulled->more && moved;
  if (!state.more) state.covered = std::max({state.covered, end_before, pulled->next_after_seq});
  state.log_end = std::max(state.log_end, pulled->next_after_seq);
  if (!moved) return grpc::Status::OK;
  v1::PullUpdatesResponse answer;
  const int64_t next = pulled->next_after_seq;
  FillAnswer(*pulled, std::max(next, state.log_end), &answer);
  if (!stream->Write(answer)) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the consumer went away");
  }
  state.window.Sent(next);
  state.log_quiet = false;
  state.after = next;
  ++state.sent;
  return grpc::Status::OK;
}

grpc::Status ProducerService::WaitForLog(StreamState& state) {
  const bool in_flight = state.window.in_flight() > 0;
  const StreamHub::Seen seen =
      deps_.streams->WaitPast(state.covered, in_flight ? kStreamAckPatience : kLogRecheck);
  // Perhaps this stream was cancelled (a PullUpdates or a new stream of the
  // site waits for it to end): ask gRPC now, not at the next 100 ms check,
  // or the handler would wait for the log again first.
  if (seen.kicked) {
    if (absl::Status s = CallScope::InterruptedNow(); !s.ok()) return ToGrpc(s);
  }
  state.log_end = std::max(state.log_end, seen.end);
  if (seen.closed || state.log_end > state.covered) return grpc::Status::OK;
  if (in_flight) {  // collect the acknowledgment next
    state.log_quiet = true;
    return grpc::Status::OK;
  }
  // Nothing logged here for a while: another replica may have logged.
  if (auto conn = deps_.pool->Acquire(); conn.ok()) {
    auto position = ConsumerStore::LogPosition(conn->get());
    if (position.ok()) state.log_end = std::max(state.log_end, *position);
  }
  return grpc::Status::OK;
}

}  // namespace eventstream
