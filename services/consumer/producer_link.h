// ProducerLink: this consumer's gRPC client to one producer
// (proto/eventstream/v1/producer.proto).
//
// Contract:
//  * Every call carries `authorization: token API_KEY:SECRET` (the
//    producer's consumer key for this site) and a deadline
//    (Options::rpc_timeout; a StreamUpdates call: the deadline it is given).
//    The secret is never logged nor put in a status.
//  * Failures come back as absl::Status with the gRPC code kept (UNAVAILABLE
//    and DEADLINE_EXCEEDED mean "unreachable", see IsUnreachable) and a
//    message naming the producer, its address and the RPC.
//  * As a DependencySource (dependency_source.h): GetDocument answers nullopt when the
//    producer has no such document or may not show it (NOT_FOUND,
//    PERMISSION_DENIED); documents are parsed from their JSON text.
//  * Sizes (issue 13 item 2; libsync/rules/batch_budget.h): the channel accepts
//    answers up to Options::max_message_bytes (consumer.max_message_mb), and
//    every request says so (max_message_bytes), so the producer never sends
//    more; pulls also ask for about Options::batch_bytes per answer. An
//    answer refused for its size (RESOURCE_EXHAUSTED) comes back naming
//    consumer.max_message_mb.
//  * Transport: Options::transport (services/common/tls.h): plaintext by
//    default, or TLS verifying the producer (consumer.producers[].tls), with
//    this site's client certificate when configured. A plaintext call whose
//    connection the producer closed unanswered ("Socket closed", as a TLS
//    server does) says that the producer may require TLS and where to set
//    it; a TLS failure keeps gRPC's reason (e.g. "certificate verify
//    failed") and adds what it likely means (libsync/base/tls_reasons.h).
//  * Constructing one does no I/O (the channel connects on first use), so
//    tests can build it for an address nothing listens on.
//
// Thread-safe (gRPC stubs are).
#ifndef EVENTSTREAM_SERVICES_CONSUMER_PRODUCER_LINK_H_
#define EVENTSTREAM_SERVICES_CONSUMER_PRODUCER_LINK_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "eventstream/v1/producer.grpc.pb.h"
#include "libsync/base/metrics.h"
#include "services/common/tls.h"
#include "services/consumer/dependency_source.h"

namespace eventstream {

class ProducerLink;

// One Producer.StreamUpdates call (docs/design.md "Delivery"), made by
// ProducerLink::StreamUpdates. Read and Acknowledge on one thread, in turn;
// Cancel from any thread.
class UpdateStream {
 public:
  // Blocks for the next answer; false once the call ended (Finish says why).
  bool Read(v1::PullUpdatesResponse* answer);
  // Tells the producer everything up to `committed` is committed; false
  // once the call ended.
  bool Acknowledge(int64_t committed);
  // Ends the call: a Read blocked now or later returns false.
  void Cancel();
  // After Read returned false: the call's status, converted as the other
  // calls' (CANCELLED after Cancel, DEADLINE_EXCEEDED past the deadline).
  absl::Status Finish();

 private:
  friend class ProducerLink;
  explicit UpdateStream(const ProducerLink* link) : link_(link) {}
  const ProducerLink* link_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::StreamUpdatesRequest, v1::PullUpdatesResponse>>
      call_;
};

// True for the codes that mean the producer could not be reached (or did
// not answer in time), as opposed to an answer that refused the call.
bool IsUnreachable(const absl::Status& status);

class ProducerLink : public DependencySource {
 public:
  struct Options {
    absl::Duration rpc_timeout = absl::Seconds(15);
    // The largest answer accepted (the channel's receive limit).
    int64_t max_message_bytes = 64 * 1024 * 1024;
    // The soft size of a pull's answer (PullUpdatesRequest.max_bytes).
    int64_t batch_bytes = 4 * 1024 * 1024;
    // Counts GetDocument / FindDocuments calls; null = not counted.
    metrics::Counter* dependency_calls = nullptr;
    // How the channel is secured; credentials null = plaintext.
    ClientTransport transport;
  };

  // `name` is the producer's name (for messages), `url` its host:port.
  ProducerLink(std::string name, std::string url, std::string api_key,
               std::string api_secret, Options options);
  ProducerLink(std::string name, std::string url, std::string api_key,
               std::string api_secret)
      : ProducerLink(std::move(name), std::move(url), std::move(api_key),
                     std::move(api_secret), Options()) {}
  ~ProducerLink() override = default;

  const std::string& name() const { return name_; }
  const std::string& url() const { return url_; }

  virtual absl::StatusOr<v1::RegisterConsumerResponse> Register(
      const v1::RegisterConsumerRequest& request);
  virtual absl::StatusOr<v1::UpdateSubscriptionResponse> UpdateSubscription(
      const v1::UpdateSubscriptionRequest& request);
  // Producer.RestartSync of the producer's DocType `doctype` (Resnapshot).
  absl::StatusOr<v1::RestartSyncResponse> RestartSync(const std::string& doctype);
  // Producer.RestartSync with skip_trimmed: every DocType again, from the
  // log's end (the answer's watermark); after a pull refused "log trimmed:".
  virtual absl::StatusOr<v1::RestartSyncResponse> SkipTrimmed();
  // One page of Producer.ListVisibleDocuments (Resnapshot's comparison;
  // names_only: the recovery's search for extra copies).
  absl::StatusOr<v1::ListVisibleDocumentsResponse> ListVisibleDocuments(
      const std::string& doctype, const std::string& after_name, int limit,
      bool names_only = false);
  // Thread-safe (the puller fetches the next batch on another thread while
  // applying one). acknowledged_seq: see PullUpdatesRequest.
  virtual absl::StatusOr<v1::PullUpdatesResponse> PullUpdates(
      int64_t after_seq, int limit, std::optional<int64_t> acknowledged_seq = std::nullopt);

  // Opens Producer.StreamUpdates from `after_seq` (the watermark), with
  // answers sized as PullUpdates' and a deadline of `deadline` (the
  // puller's stream session; the call then ends DEADLINE_EXCEEDED). Errors
  // come from Read/Finish. Never null.
  virtual std::unique_ptr<UpdateStream> StreamUpdates(int64_t after_seq, int limit,
                                                      absl::Time deadline);

  // DependencySource.
  // Asks for the document's dependencies too (one round trip for a chain).
  absl::StatusOr<std::optional<FetchedDocument>> GetDocument(const std::string& doctype,
                                                             const std::string& name) override;
  absl::StatusOr<std::vector<Value>> FindDocuments(
      const std::string& doctype, const std::map<std::string, std::string>& filters,
      int limit) override;

 private:
  friend class UpdateStream;
  void Prepare(grpc::ClientContext* context) const;
  absl::Status Convert(const char* rpc, const grpc::Status& status) const;
  // Producer.RestartSync with `request` (RestartSync, SkipTrimmed).
  absl::StatusOr<v1::RestartSyncResponse> CallRestartSync(const v1::RestartSyncRequest& request);

  const std::string name_;
  const std::string url_;
  const std::string authorization_;  // "token KEY:SECRET"; never logged
  const Options options_;
  std::unique_ptr<v1::Producer::Stub> stub_;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_CONSUMER_PRODUCER_LINK_H_
