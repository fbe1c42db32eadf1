// ConsumerService: the gRPC face of the consumer (proto/eventstream/v1/
// consumer.proto). Notify is called by producers with the token this
// consumer gave them at registration; the operator RPCs need an admin key
// from consumer.api_keys.
//
// Producers are known by their config `name` (consumer.producers[].name),
// which must be the producer's site name: its Notify calls authenticate as
// `token <producer site>:<notify token>`, and the consumer registers each
// producer's notify token with the Authenticator under that name (role
// producer). A producer name may therefore not also be an api key id.
//
// The work is done by one Puller per producer (puller.h); this layer checks
// the caller, reads the consumer's tables for the listings and maps
// absl::Status to gRPC codes.
#ifndef EVENTSTREAM_SERVICES_CONSUMER_CONSUMER_SERVICE_H_
#define EVENTSTREAM_SERVICES_CONSUMER_CONSUMER_SERVICE_H_

#include <map>
#include <memory>
#include <string>

#include "eventstream/v1/consumer.grpc.pb.h"
#include "libsync/config/config.h"
#include "libsync/base/pg_pool.h"
#include "services/common/auth.h"
#include "services/common/service_main.h"
#include "services/consumer/consumer_metrics.h"
#include "services/consumer/puller.h"

namespace eventstream {

class ConsumerService final : public v1::Consumer::Service {
 public:
  // What the RPCs need; each must outlive the service.
  struct Deps {
    std::shared_ptr<const Authenticator> auth;
    std::shared_ptr<const Config> config;  // with a consumer section
    std::shared_ptr<pg::ConnectionPool> pool;
    // By producer name; the same set as config->consumer->producers.
    std::map<std::string, Puller*> pullers;
    // /metrics (consumer_metrics.h); null = none.
    std::shared_ptr<ConsumerMetrics> metrics;
  };
  explicit ConsumerService(Deps deps) : deps_(std::move(deps)) {}

  grpc::Status Notify(grpc::ServerContext* context, const v1::NotifyRequest* request,
                      v1::NotifyResponse* response) override;
  grpc::Status ListProducers(grpc::ServerContext* context,
                             const v1::ListProducersRequest* request,
                             v1::ListProducersResponse* response) override;
  // For one producer: its pull's outcome, or the pull's error as the RPC's
  // status (UNAVAILABLE when unreachable). For every producer (empty name):
  // OK with each one's outcome, errors in PullResult.error.
  grpc::Status PullNow(grpc::ServerContext* context, const v1::PullNowRequest* request,
                       v1::PullNowResponse* response) override;
  grpc::Status ListSyncLog(grpc::ServerContext* context,
                           const v1::ListSyncLogRequest* request,
                           v1::ListSyncLogResponse* response) override;
  grpc::Status Resync(grpc::ServerContext* context, const v1::ResyncRequest* request,
                      v1::ResyncResponse* response) override;
  grpc::Status Resnapshot(grpc::ServerContext* context, const v1::ResnapshotRequest* request,
                          v1::ResnapshotResponse* response) override;

 private:
  Deps deps_;
};

// Builds the consumer from its config: resolves secrets, creates each
// configured producer's Event Producer record (and notify token), and starts
// one Puller per producer, which registers or updates the subscription and
// pulls; an unreachable producer is retried in the background. Stop() stops
// the pullers after their batch in flight. With several replicas on one
// database, one pulls each producer at a time (puller.h "Replicas").
absl::StatusOr<std::unique_ptr<ServiceInstance>> CreateConsumer(const Config& config);

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_CONSUMER_CONSUMER_SERVICE_H_
