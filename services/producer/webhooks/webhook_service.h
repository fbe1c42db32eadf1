// WebhooksService: the gRPC face of outgoing webhooks
// (proto/eventstream/v1/webhooks.proto), admin keys only. Definitions and
// the request log live in WebhookStore (webhook_store.h); delivery in
// WebhookDelivery (delivery.h).
//
// WebhookRuntime bundles the three for the producer: ProducerInstance
// registers service() next to the Producer service, Start()s delivery with
// the assembler and Stop()s it on shutdown.
#ifndef EVENTSTREAM_SERVICES_PRODUCER_WEBHOOKS_WEBHOOK_SERVICE_H_
#define EVENTSTREAM_SERVICES_PRODUCER_WEBHOOKS_WEBHOOK_SERVICE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "eventstream/v1/webhooks.grpc.pb.h"
#include "libsync/config/config.h"
#include "libsync/base/pg_pool.h"
#include "services/common/auth.h"
#include "services/producer/webhooks/delivery.h"
#include "services/producer/webhooks/webhook_store.h"

namespace eventstream {

class WebhooksService final : public v1::Webhooks::Service {
 public:
  // Each must outlive the service.
  WebhooksService(std::shared_ptr<const Authenticator> auth,
                  std::shared_ptr<const Config> config,
                  std::shared_ptr<pg::ConnectionPool> pool,
                  std::shared_ptr<WebhookStore> store)
      : auth_(std::move(auth)),
        config_(std::move(config)),
        pool_(std::move(pool)),
        store_(std::move(store)) {}

  grpc::Status ListWebhooks(grpc::ServerContext* context,
                            const v1::ListWebhooksRequest* request,
                            v1::ListWebhooksResponse* response) override;
  grpc::Status UpsertWebhook(grpc::ServerContext* context,
                             const v1::UpsertWebhookRequest* request,
                             v1::UpsertWebhookResponse* response) override;
  grpc::Status DeleteWebhook(grpc::ServerContext* context,
                             const v1::DeleteWebhookRequest* request,
                             v1::DeleteWebhookResponse* response) override;
  grpc::Status PreviewWebhook(grpc::ServerContext* context,
                              const v1::PreviewWebhookRequest* request,
                              v1::PreviewWebhookResponse* response) override;
  grpc::Status ListWebhookRequests(
      grpc::ServerContext* context,
      const v1::ListWebhookRequestsRequest* request,
      v1::ListWebhookRequestsResponse* response) override;
  grpc::Status RetryWebhookRequest(
      grpc::ServerContext* context,
      const v1::RetryWebhookRequestRequest* request,
      v1::RetryWebhookRequestResponse* response) override;

 private:
  std::shared_ptr<const Authenticator> auth_;
  std::shared_ptr<const Config> config_;
  std::shared_ptr<pg::ConnectionPool> pool_;
  std::shared_ptr<WebhookStore> store_;
};

// proto <-> definition. FromProto names the webhook in the secret origins.
WebhookConfig WebhookFromProto(const v1::Webhook& proto);
void WebhookToProto(const WebhookConfig& hook, v1::Webhook* out);

class WebhookRuntime {
 public:
  // Writes the config's webhooks (WebhookStore::SyncConfig, which installs
  // capture for their DocTypes through `ensure_capture`).
  static absl::StatusOr<std::shared_ptr<WebhookRuntime>> Create(
      std::shared_ptr<const Authenticator> auth,
      std::shared_ptr<const Config> config,
      std::shared_ptr<pg::ConnectionPool> pool,
      WebhookStore::EnsureCapture ensure_capture);

  grpc::Service* service() { return service_.get(); }
  void Start() { delivery_->Start(); }
  void Stop() { delivery_->Stop(); }
  // New log entries: dispatch now rather than at the next poll.
  void Wake() { delivery_->Wake(); }

 private:
  WebhookRuntime() = default;
  std::shared_ptr<WebhookStore> store_;
  std::unique_ptr<WebhooksService> service_;
  std::unique_ptr<WebhookDelivery> delivery_;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_WEBHOOKS_WEBHOOK_SERVICE_H_
