// ConsumerService: the gRPC face of the consumer (proto/eventstream/v1/
// consumer.proto). Notify is called by producers with the token this
// consumer gave them at registration; the operator RPCs need an admin key
// from consumer.api_keys. RPCs not built yet answer UNIMPLEMENTED after
// authentication.
#ifndef EVENTSTREAM_SERVICES_CONSUMER_CONSUMER_SERVICE_H_
#define EVENTSTREAM_SERVICES_CONSUMER_CONSUMER_SERVICE_H_

#include <memory>

#include "eventstream/v1/consumer.grpc.pb.h"
#include "libsync/config.h"
#include "services/common/auth.h"
#include "services/common/service_main.h"

namespace eventstream {

class ConsumerService final : public v1::Consumer::Service {
 public:
  explicit ConsumerService(std::shared_ptr<const Authenticator> auth)
      : auth_(std::move(auth)) {}

  grpc::Status Notify(grpc::ServerContext* context, const v1::NotifyRequest* request,
                      v1::NotifyResponse* response) override;
  grpc::Status ListProducers(grpc::ServerContext* context,
                             const v1::ListProducersRequest* request,
                             v1::ListProducersResponse* response) override;
  grpc::Status PullNow(grpc::ServerContext* context, const v1::PullNowRequest* request,
                       v1::PullNowResponse* response) override;
  grpc::Status ListSyncLog(grpc::ServerContext* context,
                           const v1::ListSyncLogRequest* request,
                           v1::ListSyncLogResponse* response) override;
  grpc::Status Resync(grpc::ServerContext* context, const v1::ResyncRequest* request,
                      v1::ResyncResponse* response) override;

 private:
  grpc::Status Check(grpc::ServerContext* context, std::initializer_list<Role> roles);
  std::shared_ptr<const Authenticator> auth_;
};

// Builds the consumer from its config (resolving api key secrets).
absl::StatusOr<std::unique_ptr<ServiceInstance>> CreateConsumer(const Config& config);

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_CONSUMER_CONSUMER_SERVICE_H_
