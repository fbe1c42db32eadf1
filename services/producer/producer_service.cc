#include "services/producer/producer_service.h"

namespace eventstream {
namespace {

grpc::Status NotBuiltYet(const char* rpc) {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                      std::string("Producer.") + rpc + " is not implemented yet");
}

class ProducerInstance : public ServiceInstance {
 public:
  explicit ProducerInstance(std::shared_ptr<const Authenticator> auth)
      : service_(std::move(auth)) {}
  std::vector<grpc::Service*> services() override { return {&service_}; }

 private:
  ProducerService service_;
};

}  // namespace

grpc::Status ProducerService::Check(grpc::ServerContext* context,
                                    std::initializer_list<Role> roles) {
  auto principal = auth_->Authorize(context, roles);
  return principal.ok() ? grpc::Status::OK : ToGrpc(principal.status());
}

#define ES_AUTHORIZE(...)                                   \
  if (grpc::Status s = Check(context, {__VA_ARGS__}); !s.ok()) return s

grpc::Status ProducerService::RegisterConsumer(grpc::ServerContext* context,
                                               const v1::RegisterConsumerRequest*,
                                               v1::RegisterConsumerResponse*) {
  ES_AUTHORIZE(Role::kConsumer);
  return NotBuiltYet("RegisterConsumer");
}

grpc::Status ProducerService::UpdateSubscription(grpc::ServerContext* context,
                                                 const v1::UpdateSubscriptionRequest*,
                                                 v1::UpdateSubscriptionResponse*) {
  ES_AUTHORIZE(Role::kConsumer);
  return NotBuiltYet("UpdateSubscription");
}

grpc::Status ProducerService::PullUpdates(grpc::ServerContext* context,
                                          const v1::PullUpdatesRequest*,
                                          v1::PullUpdatesResponse*) {
  ES_AUTHORIZE(Role::kConsumer);
  return NotBuiltYet("PullUpdates");
}

grpc::Status ProducerService::GetDocument(grpc::ServerContext* context,
                                          const v1::GetDocumentRequest*,
                                          v1::GetDocumentResponse*) {
  ES_AUTHORIZE(Role::kConsumer);
  return NotBuiltYet("GetDocument");
}

grpc::Status ProducerService::FindDocuments(grpc::ServerContext* context,
                                            const v1::FindDocumentsRequest*,
                                            v1::FindDocumentsResponse*) {
  ES_AUTHORIZE(Role::kConsumer);
  return NotBuiltYet("FindDocuments");
}

grpc::Status ProducerService::ListConsumers(grpc::ServerContext* context,
                                            const v1::ListConsumersRequest*,
                                            v1::ListConsumersResponse*) {
  ES_AUTHORIZE(Role::kAdmin);
  return NotBuiltYet("ListConsumers");
}

grpc::Status ProducerService::SetSubscriptionStatus(
    grpc::ServerContext* context, const v1::SetSubscriptionStatusRequest*,
    v1::SetSubscriptionStatusResponse*) {
  ES_AUTHORIZE(Role::kAdmin);
  return NotBuiltYet("SetSubscriptionStatus");
}

absl::StatusOr<std::unique_ptr<ServiceInstance>> CreateProducer(const Config& config) {
  auto credentials = ResolveCredentials(config.producer->api_keys);
  if (!credentials.ok()) return credentials.status();
  auto auth = std::make_shared<Authenticator>(std::move(*credentials));
  return std::unique_ptr<ServiceInstance>(new ProducerInstance(std::move(auth)));
}

}  // namespace eventstream
