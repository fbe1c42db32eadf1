// ProducerService: the gRPC face of the producer (proto/eventstream/v1/
// producer.proto). Every RPC authenticates first; consumer-role keys are
// bound to the consumer site of the same name (RegisterConsumer and
// UpdateSubscription for another site are PERMISSION_DENIED), admin keys
// may call the admin RPCs.
//
// The consumer registry RPCs delegate to ConsumerStore (consumer_store.h),
// PullUpdates / GetDocument / FindDocuments to UpdateFeed (update_feed.h);
// this layer only checks the caller and maps absl::Status to gRPC codes.
// PullUpdates, StreamUpdates and the dependency RPCs act for the site the
// caller's consumer key is bound to.
//
// Limits (issue 13 item 3): every RPC, once authenticated, takes a slot of
// its api key (CallLimiter, producer.max_concurrent_calls_per_key) and is
// RESOURCE_EXHAUSTED at once beyond it; it runs in a CallScope, so the
// feed's long loops stop when its deadline passes or its caller goes away
// (a StreamUpdates call holds its slot for as long as it is open);
// the database pool is bounded (producer.database_pool) and a call that
// finds it full for acquire_timeout is RESOURCE_EXHAUSTED too. Answers
// fit the caller's max_message_bytes (libsync/rules/batch_budget.h).
#ifndef EVENTSTREAM_SERVICES_PRODUCER_PRODUCER_SERVICE_H_
#define EVENTSTREAM_SERVICES_PRODUCER_PRODUCER_SERVICE_H_

#include <memory>
#include <optional>

#include "eventstream/v1/producer.grpc.pb.h"
#include "libsync/config/config.h"
#include "libsync/base/pg_pool.h"
#include "libsync/rules/batch_budget.h"
#include "services/common/auth.h"
#include "services/common/call_guard.h"
#include "services/common/service_main.h"
#include "services/producer/consumer_store.h"
#include "services/producer/notifier.h"
#include "services/producer/producer_metrics.h"
#include "services/producer/stream_hub.h"
#include "services/producer/update_feed.h"
#include "services/producer/webhooks/webhook_service.h"

namespace eventstream {

class ProducerService final : public v1::Producer::Service {
 public:
  // What the RPCs need; each must outlive the service.
  struct Deps {
    std::shared_ptr<const Authenticator> auth;
    std::shared_ptr<const Config> config;
    std::shared_ptr<pg::ConnectionPool> pool;
    std::shared_ptr<ConsumerStore> consumers;
    std::shared_ptr<UpdateFeed> feed;
    // Null in tests that need no notifies.
    std::shared_ptr<Notifier> notifier;
    // Outgoing webhooks (webhook_service.h); null = none.
    std::shared_ptr<WebhookRuntime> webhooks;
    // /metrics (producer_metrics.h); null = none.
    std::shared_ptr<ProducerMetrics> metrics;
    // Concurrent calls per api key (call_guard.h); null = no limit.
    std::shared_ptr<CallLimiter> limiter;
    // StreamUpdates' log watch and open streams (stream_hub.h); null =
    // StreamUpdates is UNAVAILABLE.
    std::shared_ptr<StreamHub> streams;
  };
  explicit ProducerService(Deps deps) : deps_(std::move(deps)) {}

  grpc::Status RegisterConsumer(grpc::ServerContext* context,
                                const v1::RegisterConsumerRequest* request,
                                v1::RegisterConsumerResponse* response) override;
  grpc::Status UpdateSubscription(grpc::ServerContext* context,
                                  const v1::UpdateSubscriptionRequest* request,
                                  v1::UpdateSubscriptionResponse* response) override;
  grpc::Status PullUpdates(grpc::ServerContext* context,
                           const v1::PullUpdatesRequest* request,
                           v1::PullUpdatesResponse* response) override;
  // stream.cc (docs/design.md "Delivery").
  grpc::Status StreamUpdates(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::PullUpdatesResponse, v1::StreamUpdatesRequest>* stream)
      override;
  grpc::Status GetDocument(grpc::ServerContext* context,
                           const v1::GetDocumentRequest* request,
                           v1::GetDocumentResponse* response) override;
  grpc::Status FindDocuments(grpc::ServerContext* context,
                             const v1::FindDocumentsRequest* request,
                             v1::FindDocumentsResponse* response) override;
  grpc::Status ListVisibleDocuments(grpc::ServerContext* context,
                                    const v1::ListVisibleDocumentsRequest* request,
                                    v1::ListVisibleDocumentsResponse* response) override;
  grpc::Status ListConsumers(grpc::ServerContext* context,
                             const v1::ListConsumersRequest* request,
                             v1::ListConsumersResponse* response) override;
  grpc::Status SetSubscriptionStatus(grpc::ServerContext* context,
                                     const v1::SetSubscriptionStatusRequest* request,
                                     v1::SetSubscriptionStatusResponse* response) override;
  grpc::Status RestartSync(grpc::ServerContext* context, const v1::RestartSyncRequest* request,
                           v1::RestartSyncResponse* response) override;

 private:
  // OK, or the UNAUTHENTICATED / PERMISSION_DENIED status to return; then
  // takes a slot of the caller's key in `slot` (RESOURCE_EXHAUSTED when the
  // key has max_concurrent_calls_per_key calls running).
  grpc::Status Check(grpc::ServerContext* context, std::initializer_list<Role> roles,
                     std::optional<CallLimiter::Slot>* slot);
  // As Check for role consumer, and the key must be bound to `site`.
  grpc::Status CheckSite(grpc::ServerContext* context, const std::string& site,
                         std::string* key, std::optional<CallLimiter::Slot>* slot);
  // Authorizes a consumer-role call and takes its slot; the principal.
  absl::StatusOr<Principal> Admit(grpc::ServerContext* context,
                                  std::optional<CallLimiter::Slot>* slot);
  // A consumer's document call (GetDocument, FindDocuments,
  // ListVisibleDocuments): admitted (Admit), its deadline in scope for the
  // feed's work (CallScope), and the answer's byte budget.
  struct DocumentCall {
    std::optional<CallLimiter::Slot> slot;
    std::optional<CallScope> scope;
    std::string site;  // the caller key's
    ByteBudget budget;
  };
  grpc::Status BeginDocumentCall(grpc::ServerContext* context, int64_t max_message_bytes,
                                 DocumentCall* call);
  // PullUpdates' and StreamUpdates' metrics for one pull of `site`.
  void CountPull(const std::string& site, absl::Time started,
                 const absl::StatusOr<PullResult>& pulled);
  // A pull's answer, its entries moved out of `pulled`.
  static void FillAnswer(PullResult& pulled, int64_t log_position,
                         v1::PullUpdatesResponse* response);
  // StreamUpdates after its StreamStart (stream.cc).
  struct StreamState;
  grpc::Status RunStream(
      grpc::ServerReaderWriter<v1::PullUpdatesResponse, v1::StreamUpdatesRequest>* stream,
      StreamState& state);
  grpc::Status ReadAck(
      grpc::ServerReaderWriter<v1::PullUpdatesResponse, v1::StreamUpdatesRequest>* stream,
      StreamState& state);
  grpc::Status PullAndSend(
      grpc::ServerReaderWriter<v1::PullUpdatesResponse, v1::StreamUpdatesRequest>* stream,
      StreamState& state);
  grpc::Status WaitForLog(StreamState& state);
  // A slot of `key` in deps_.limiter (none without a limiter).
  absl::Status TakeSlot(const std::string& key, std::optional<CallLimiter::Slot>* slot);
  Deps deps_;
};

// Points the notifier at the consumers that have an approval now. Called on
// start and after every RPC that changes registrations or approvals; a
// failure only delays notifies (consumers also poll), so it is logged.
void RefreshNotifyTargets(ConsumerStore* consumers, Notifier* notifier);

// Builds the producer from its config (resolving api key secrets), applies
// the config's pre-approvals and syncs capture with the approvals; an error
// there (e.g. an approved DocType's table is missing) stops the start. The
// instance runs the assembler (AssemblerLoop, assembler.h) on its own
// thread until Stop().
absl::StatusOr<std::unique_ptr<ServiceInstance>> CreateProducer(const Config& config);

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_PRODUCER_SERVICE_H_
