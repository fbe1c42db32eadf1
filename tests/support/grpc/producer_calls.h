// The producer's RPCs as integration tests call them (tests/support/grpc is
// the gRPC-aware half of the support code, its own CMake target):
// registering, approving and subscribing a consumer key, pulling, and
// ProducerTest, the fixture of a test that runs the real
// eventstream-producer on its own fresh database. Each call sends the
// `authorization` it is given; none retries.
#ifndef EVENTSTREAM_TESTS_SUPPORT_GRPC_PRODUCER_CALLS_H_
#define EVENTSTREAM_TESTS_SUPPORT_GRPC_PRODUCER_CALLS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "eventstream/v1/producer.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "libsync/base/pg.h"
#include "tests/support/producer_config.h"
#include "tests/support/service_runner.h"

namespace eventstream::testing {

// A plaintext stub on `address`.
std::unique_ptr<v1::Producer::Stub> ProducerStub(const std::string& address);

v1::SubscriptionRequest Sub(const std::string& doctype, const std::string& condition = "",
                            bool unsubscribe = false, bool skip_initial_sync = false);

// RegisterConsumer of `site` for `subs` ("" token/address: none sent).
grpc::Status Register(v1::Producer::Stub* stub, const std::string& auth,
                      const std::string& site,
                      const std::vector<v1::SubscriptionRequest>& subs,
                      v1::RegisterConsumerResponse* resp, const std::string& notify_token = "",
                      const std::string& notify_address = "");

grpc::Status SetStatus(v1::Producer::Stub* stub, const std::string& auth,
                       const std::string& site, const std::string& doctype,
                       v1::SubscriptionStatus status,
                       v1::SetSubscriptionStatusResponse* resp = nullptr);

// Registers `site` for `subs` and has ops (kOps) approve each; both must
// succeed (EXPECT). Returns the registration's watermark.
int64_t SubscribeApproved(v1::Producer::Stub* stub, const std::string& auth,
                          const std::string& site,
                          const std::vector<v1::SubscriptionRequest>& subs);

grpc::Status Pull(v1::Producer::Stub* stub, const std::string& auth, int64_t after_seq,
                  v1::PullUpdatesResponse* resp, int limit = 0,
                  std::optional<int64_t> acknowledged_seq = std::nullopt);

// "CREATE:N1 UPDATE:N1 ..." of a response, for compact assertions.
std::string Summary(const v1::PullUpdatesResponse& resp);

// ListConsumers' record of `site` (an empty one when there is none); the
// call must succeed (EXPECT). 5 s deadline.
v1::ConsumerInfo ConsumerOf(v1::Producer::Stub* stub, const std::string& auth,
                            const std::string& site);

// A test of the real producer on its own database: OpenSite, then
// StartProducer (again after a stop, on the same database).
class ProducerTest : public ::testing::Test {
 protected:
  // A fresh database `prefix`_N in db_, conn_ to it, `sql` run there.
  void OpenSite(const std::string& prefix, const std::string& sql);
  std::string Url() const;
  // eventstream-producer with `config`; stub_ on it.
  void StartProducer(const std::string& config,
                     const std::map<std::string, std::string>& env = KeySecrets());
  // Runs `sql` (several statements allowed) and waits until the producer's
  // assembler consumed every raw change: the entries are then in the log.
  void Write(const std::string& sql);

  grpc::Status Pull(const std::string& auth, int64_t after_seq, v1::PullUpdatesResponse* resp,
                    int limit = 0, std::optional<int64_t> acknowledged_seq = std::nullopt) {
    return eventstream::testing::Pull(stub_.get(), auth, after_seq, resp, limit, acknowledged_seq);
  }
  int64_t SubscribeApproved(const std::string& auth, const std::string& site,
                            const std::vector<v1::SubscriptionRequest>& subs) {
    return eventstream::testing::SubscribeApproved(stub_.get(), auth, site, subs);
  }

  std::string db_;
  std::unique_ptr<pg::Connection> conn_;
  RunningService service_;
  std::unique_ptr<v1::Producer::Stub> stub_;
};

}  // namespace eventstream::testing

#endif  // EVENTSTREAM_TESTS_SUPPORT_GRPC_PRODUCER_CALLS_H_
