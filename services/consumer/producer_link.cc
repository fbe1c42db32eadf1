#include "services/consumer/producer_link.h"

#include <algorithm>
#include <chrono>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "libsync/base/status_macros.h"

namespace eventstream {

bool IsUnreachable(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kDeadlineExceeded;
}

ProducerLink::ProducerLink(std::string name, std::string url, std::string api_key,
                           std::string api_secret, Options options)
    : name_(std::move(name)),
      url_(std::move(url)),
      authorization_(absl::StrCat("token ", api_key, ":", api_secret)),
      options_(options) {
  grpc::ChannelArguments args;
  // Reconnect promptly once a producer comes back; the puller's own backoff
  // decides how often we try.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
  // Large documents come whole in one answer; the producer keeps every
  // answer within this (the requests say it), so none is refused on arrival.
  args.SetMaxReceiveMessageSize(static_cast<int>(
      std::min<int64_t>(options_.max_message_bytes, std::numeric_limits<int>::max())));
  options_.transport.Apply(&args);
  std::shared_ptr<grpc::ChannelCredentials> credentials = options_.transport.credentials;
  if (credentials == nullptr) credentials = grpc::InsecureChannelCredentials();
  stub_ = v1::Producer::NewStub(grpc::CreateCustomChannel(url_, credentials, args));
}

void ProducerLink::Prepare(grpc::ClientContext* context) const {
  context->AddMetadata("authorization", authorization_);
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(options_.rpc_timeout));
}

absl::Status ProducerLink::Convert(const char* rpc, const grpc::Status& status) const {
  if (status.ok()) return absl::OkStatus();
  std::string hint;
  if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
      absl::StrContains(status.error_message(), "larger than max")) {
    // Refused on arrival by our own channel (an older producer that does
    // not read max_message_bytes).
    hint = absl::StrCat(" (this consumer accepts answers up to ", options_.max_message_bytes,
                        " bytes: consumer.max_message_mb)");
  }
  absl::StrAppend(&hint, TransportHint(status, options_.transport.tls,
                                       "this consumer connects without TLS; if the producer "
                                       "serves TLS, set tls under this producer's entry in "
                                       "consumer.producers"));
  // gRPC and absl share the numeric codes.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("producer ", name_, " (", url_, "): Producer.", rpc,
                                   ": ", status.error_message(), hint));
}

absl::StatusOr<v1::RegisterConsumerResponse> ProducerLink::Register(
    const v1::RegisterConsumerRequest& request) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::RegisterConsumerResponse response;
  RETURN_IF_ERROR(
      Convert("RegisterConsumer", stub_->RegisterConsumer(&context, request, &response)));
  return response;
}

absl::StatusOr<v1::UpdateSubscriptionResponse> ProducerLink::UpdateSubscription(
    const v1::UpdateSubscriptionRequest& request) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::UpdateSubscriptionResponse response;
  RETURN_IF_ERROR(
      Convert("UpdateSubscription", stub_->UpdateSubscription(&context, request, &response)));
  return response;
}

absl::StatusOr<v1::RestartSyncResponse> ProducerLink::RestartSync(const std::string& doctype) {
  v1::RestartSyncRequest request;
  request.set_doctype(doctype);
  return CallRestartSync(request);
}

absl::StatusOr<v1::RestartSyncResponse> ProducerLink::CallRestartSync(
    const v1::RestartSyncRequest& request) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::RestartSyncResponse response;
  RETURN_IF_ERROR(Convert("RestartSync", stub_->RestartSync(&context, request, &response)));
  return response;
}

absl::StatusOr<v1::RestartSyncResponse> ProducerLink::SkipTrimmed() {
  v1::RestartSyncRequest request;
  request.set_skip_trimmed(true);
  return CallRestartSync(request);
}

absl::StatusOr<v1::ListVisibleDocumentsResponse> ProducerLink::ListVisibleDocuments(
    const std::string& doctype, const std::string& after_name, int limit, bool names_only) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::ListVisibleDocumentsRequest request;
  request.set_doctype(doctype);
  request.set_after_name(after_name);
  request.set_limit(limit);
  request.set_names_only(names_only);
  request.set_max_message_bytes(options_.max_message_bytes);
  v1::ListVisibleDocumentsResponse response;
  RETURN_IF_ERROR(Convert("ListVisibleDocuments",
                          stub_->ListVisibleDocuments(&context, request, &response)));
  return response;
}

absl::StatusOr<v1::PullUpdatesResponse> ProducerLink::PullUpdates(
    int64_t after_seq, int limit, std::optional<int64_t> acknowledged_seq) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::PullUpdatesRequest request;
  request.set_after_seq(after_seq);
  request.set_limit(limit);
  request.set_max_bytes(options_.batch_bytes);
  request.set_max_message_bytes(options_.max_message_bytes);
  if (acknowledged_seq) request.set_acknowledged_seq(*acknowledged_seq);
  v1::PullUpdatesResponse response;
  RETURN_IF_ERROR(
      Convert("PullUpdates", stub_->PullUpdates(&context, request, &response)));
  return response;
}

std::unique_ptr<UpdateStream> ProducerLink::StreamUpdates(int64_t after_seq, int limit,
                                                         absl::Time deadline) {
  std::unique_ptr<UpdateStream> stream(new UpdateStream(this));
  stream->context_.AddMetadata("authorization", authorization_);
  stream->context_.set_deadline(absl::ToChronoTime(deadline));
  stream->call_ = stub_->StreamUpdates(&stream->context_);
  v1::StreamUpdatesRequest first;
  v1::StreamStart* start = first.mutable_start();
  start->set_after_seq(after_seq);
  start->set_limit(limit);
  start->set_max_bytes(options_.batch_bytes);
  start->set_max_message_bytes(options_.max_message_bytes);
  (void)stream->call_->Write(first);  // a failure shows in Read and Finish
  return stream;
}

bool UpdateStream::Read(v1::PullUpdatesResponse* answer) { return call_->Read(answer); }

bool UpdateStream::Acknowledge(int64_t committed) {
  v1::StreamUpdatesRequest ack;
  ack.set_acknowledged_seq(committed);
  return call_->Write(ack);
}

void UpdateStream::Cancel() { context_.TryCancel(); }

absl::Status UpdateStream::Finish() { return link_->Convert("StreamUpdates", call_->Finish()); }

absl::StatusOr<std::optional<FetchedDocument>> ProducerLink::GetDocument(
    const std::string& doctype, const std::string& name) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::GetDocumentRequest request;
  request.set_doctype(doctype);
  request.set_name(name);
  request.set_with_dependencies(true);
  request.set_max_message_bytes(options_.max_message_bytes);
  v1::GetDocumentResponse response;
  if (options_.dependency_calls != nullptr) options_.dependency_calls->Increment();
  grpc::Status status = stub_->GetDocument(&context, request, &response);
  if (status.error_code() == grpc::StatusCode::NOT_FOUND ||
      status.error_code() == grpc::StatusCode::PERMISSION_DENIED)
    return std::optional<FetchedDocument>();
  RETURN_IF_ERROR(Convert("GetDocument", status));
  auto parse = [&](const std::string& json) -> absl::StatusOr<Value> {
    auto doc = Value::ParseJson(json);
    if (doc.ok()) return doc;
    return absl::DataLossError(absl::StrCat("producer ", name_, ": GetDocument(", doctype,
                                            ", ", name, ") sent invalid JSON: ",
                                            doc.status().message()));
  };
  FetchedDocument out;
  ASSIGN_OR_RETURN(out.document, parse(response.document_json()));
  for (const std::string& json : response.dependencies_json()) {
    ASSIGN_OR_RETURN(Value dep, parse(json));
    out.dependencies.push_back(std::move(dep));
  }
  return std::optional<FetchedDocument>(std::move(out));
}

absl::StatusOr<std::vector<Value>> ProducerLink::FindDocuments(
    const std::string& doctype, const std::map<std::string, std::string>& filters,
    int limit) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::FindDocumentsRequest request;
  request.set_doctype(doctype);
  for (const auto& [field, value] : filters) (*request.mutable_filters())[field] = value;
  request.set_limit(limit);
  request.set_max_message_bytes(options_.max_message_bytes);
  v1::FindDocumentsResponse response;
  if (options_.dependency_calls != nullptr) options_.dependency_calls->Increment();
  RETURN_IF_ERROR(
      Convert("FindDocuments", stub_->FindDocuments(&context, request, &response)));
  std::vector<Value> out;
  out.reserve(response.documents_json_size());
  for (const std::string& json : response.documents_json()) {
    auto doc = Value::ParseJson(json);
    if (!doc.ok()) {
      return absl::DataLossError(absl::StrCat("producer ", name_, ": FindDocuments(",
                                              doctype, ") sent invalid JSON: ",
                                              doc.status().message()));
    }
    out.push_back(std::move(*doc));
  }
  return out;
}

}  // namespace eventstream
