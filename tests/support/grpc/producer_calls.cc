#include "tests/support/grpc/producer_calls.h"

#include <chrono>
#include <utility>

#include "tests/support/pg_cluster.h"

namespace eventstream::testing {

std::unique_ptr<v1::Producer::Stub> ProducerStub(const std::string& address) {
  return v1::Producer::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

v1::SubscriptionRequest Sub(const std::string& doctype, const std::string& condition,
                            bool unsubscribe, bool skip_initial_sync) {
  v1::SubscriptionRequest s;
  s.set_doctype(doctype);
  s.set_condition(condition);
  s.set_unsubscribe(unsubscribe);
  s.set_skip_initial_sync(skip_initial_sync);
  return s;
}

grpc::Status Register(v1::Producer::Stub* stub, const std::string& auth,
                      const std::string& site,
                      const std::vector<v1::SubscriptionRequest>& subs,
                      v1::RegisterConsumerResponse* resp, const std::string& notify_token,
                      const std::string& notify_address) {
  grpc::ClientContext ctx;
  if (!auth.empty()) ctx.AddMetadata("authorization", auth);
  v1::RegisterConsumerRequest req;
  req.set_consumer_site(site);
  req.set_notify_address(notify_address);
  req.set_notify_token(notify_token);
  for (const auto& s : subs) *req.add_doctypes() = s;
  return stub->RegisterConsumer(&ctx, req, resp);
}

grpc::Status SetStatus(v1::Producer::Stub* stub, const std::string& auth,
                       const std::string& site, const std::string& doctype,
                       v1::SubscriptionStatus status, v1::SetSubscriptionStatusResponse* resp) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", auth);
  v1::SetSubscriptionStatusRequest req;
  req.set_consumer_site(site);
  req.set_doctype(doctype);
  req.set_status(status);
  v1::SetSubscriptionStatusResponse local;
  return stub->SetSubscriptionStatus(&ctx, req, resp != nullptr ? resp : &local);
}

int64_t SubscribeApproved(v1::Producer::Stub* stub, const std::string& auth,
                          const std::string& site,
                          const std::vector<v1::SubscriptionRequest>& subs) {
  v1::RegisterConsumerResponse resp;
  grpc::Status s = Register(stub, auth, site, subs, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  for (const auto& sub : subs) {
    grpc::Status a =
        SetStatus(stub, kOps, site, sub.doctype(), v1::SUBSCRIPTION_STATUS_APPROVED);
    EXPECT_TRUE(a.ok()) << a.error_message();
  }
  return resp.last_seq();
}

grpc::Status Pull(v1::Producer::Stub* stub, const std::string& auth, int64_t after_seq,
                  v1::PullUpdatesResponse* resp, int limit,
                  std::optional<int64_t> acknowledged_seq) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", auth);
  v1::PullUpdatesRequest req;
  req.set_after_seq(after_seq);
  req.set_limit(limit);
  if (acknowledged_seq) req.set_acknowledged_seq(*acknowledged_seq);
  return stub->PullUpdates(&ctx, req, resp);
}

std::string Summary(const v1::PullUpdatesResponse& resp) {
  static const size_t kPrefix = std::string("UPDATE_TYPE_").size();
  std::string out;
  for (const auto& e : resp.entries()) {
    if (!out.empty()) out += " ";
    out += v1::UpdateType_Name(e.update_type()).substr(kPrefix) + ":" + e.docname();
  }
  return out;
}

v1::ConsumerInfo ConsumerOf(v1::Producer::Stub* stub, const std::string& auth,
                            const std::string& site) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", auth);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ListConsumersResponse resp;
  grpc::Status s = stub->ListConsumers(&ctx, {}, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  for (const auto& c : resp.consumers())
    if (c.site() == site) return c;
  return {};
}

void ProducerTest::OpenSite(const std::string& prefix, const std::string& sql) {
  db_ = FreshSite(prefix, sql, &conn_);
  ASSERT_NE(conn_, nullptr);
}

std::string ProducerTest::Url() const { return SharedCluster().Url(db_); }

void ProducerTest::StartProducer(const std::string& config,
                                 const std::map<std::string, std::string>& env) {
  auto svc = StartService("eventstream-producer", config, env);
  ASSERT_TRUE(svc.ok()) << svc.status();
  service_ = std::move(*svc);
  stub_ = ProducerStub(service_.address());
}

void ProducerTest::Write(const std::string& sql) {
  ASSERT_TRUE(conn_->ExecScript(sql).ok()) << sql;
  ASSERT_TRUE(Assembled(conn_.get())) << "the assembler did not run";
}

}  // namespace eventstream::testing
