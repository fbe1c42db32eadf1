#include "services/consumer/consumer_service.h"

namespace eventstream {
namespace {

grpc::Status NotBuiltYet(const char* rpc) {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                      std::string("Consumer.") + rpc + " is not implemented yet");
}

class ConsumerInstance : public ServiceInstance {
 public:
  explicit ConsumerInstance(std::shared_ptr<const Authenticator> auth)
      : service_(std::move(auth)) {}
  std::vector<grpc::Service*> services() override { return {&service_}; }

 private:
  ConsumerService service_;
};

}  // namespace

grpc::Status ConsumerService::Check(grpc::ServerContext* context,
                                    std::initializer_list<Role> roles) {
  auto principal = auth_->Authorize(context, roles);
  return principal.ok() ? grpc::Status::OK : ToGrpc(principal.status());
}

#define ES_AUTHORIZE(...)                                   \
  if (grpc::Status s = Check(context, {__VA_ARGS__}); !s.ok()) return s

grpc::Status ConsumerService::Notify(grpc::ServerContext* context,
                                     const v1::NotifyRequest*, v1::NotifyResponse*) {
  ES_AUTHORIZE(Role::kProducer);
  return NotBuiltYet("Notify");
}

grpc::Status ConsumerService::ListProducers(grpc::ServerContext* context,
                                            const v1::ListProducersRequest*,
                                            v1::ListProducersResponse*) {
  ES_AUTHORIZE(Role::kAdmin);
  return NotBuiltYet("ListProducers");
}

grpc::Status ConsumerService::PullNow(grpc::ServerContext* context,
                                      const v1::PullNowRequest*, v1::PullNowResponse*) {
  ES_AUTHORIZE(Role::kAdmin);
  return NotBuiltYet("PullNow");
}

grpc::Status ConsumerService::ListSyncLog(grpc::ServerContext* context,
                                          const v1::ListSyncLogRequest*,
                                          v1::ListSyncLogResponse*) {
  ES_AUTHORIZE(Role::kAdmin);
  return NotBuiltYet("ListSyncLog");
}

grpc::Status ConsumerService::Resync(grpc::ServerContext* context,
                                     const v1::ResyncRequest*, v1::ResyncResponse*) {
  ES_AUTHORIZE(Role::kAdmin);
  return NotBuiltYet("Resync");
}

absl::StatusOr<std::unique_ptr<ServiceInstance>> CreateConsumer(const Config& config) {
  auto credentials = ResolveCredentials(config.consumer->api_keys);
  if (!credentials.ok()) return credentials.status();
  auto auth = std::make_shared<Authenticator>(std::move(*credentials));
  return std::unique_ptr<ServiceInstance>(new ConsumerInstance(std::move(auth)));
}

}  // namespace eventstream
