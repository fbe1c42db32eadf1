// Both binaries, started as real processes, serve health and server
// reflection the way grpcurl uses them (reflection v1alpha), authenticate
// every RPC, answer --help and reject a bad config by naming the key.
#include <memory>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "eventstream/v1/consumer.grpc.pb.h"
#include "eventstream/v1/producer.grpc.pb.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/service_runner.h"
#include "tests/support/frappe_schema.h"
#include "tests/support/producer_config.h"

namespace eventstream::testing {
namespace {

namespace refl = grpc::reflection::v1alpha;

// One config both binaries start with (each reads its own section).
std::string Config(const std::string& db_url) {
  ProducerYaml yaml;
  yaml.url = db_url;
  yaml.doctypes = NoteDocType({});
  yaml.extra = R"(consumer:
  listen: "127.0.0.1:0"
  api_keys:
    - {key: ops, secret_env: ES_T_OPS, role: admin}
)";
  return ProducerConfigYaml(yaml);
}

class ServerTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto svc = StartService(GetParam(), Config(SharedCluster().Url("hq")), KeySecrets());
    ASSERT_TRUE(svc.ok()) << svc.status();
    service_ = std::move(*svc);
    channel_ = grpc::CreateChannel(service_.address(), grpc::InsecureChannelCredentials());
  }

  // One reflection request/response, as grpcurl sends them.
  refl::ServerReflectionResponse Reflect(const refl::ServerReflectionRequest& req) {
    auto stub = refl::ServerReflection::NewStub(channel_);
    grpc::ClientContext ctx;
    auto stream = stub->ServerReflectionInfo(&ctx);
    EXPECT_TRUE(stream->Write(req));
    stream->WritesDone();
    refl::ServerReflectionResponse resp;
    EXPECT_TRUE(stream->Read(&resp));
    EXPECT_TRUE(stream->Finish().ok());
    return resp;
  }

  std::set<std::string> FilesForSymbol(const std::string& symbol) {
    refl::ServerReflectionRequest req;
    req.set_file_containing_symbol(symbol);
    auto resp = Reflect(req);
    EXPECT_FALSE(resp.has_error_response())
        << symbol << ": " << resp.error_response().error_message();
    std::set<std::string> names;
    for (const auto& bytes : resp.file_descriptor_response().file_descriptor_proto()) {
      google::protobuf::FileDescriptorProto fd;
      EXPECT_TRUE(fd.ParseFromString(bytes));
      names.insert(fd.name());
    }
    return names;
  }

  RunningService service_;
  std::shared_ptr<grpc::Channel> channel_;
};

std::string ServiceName(const std::string& binary) {
  return binary == "eventstream-producer" ? "eventstream.v1.Producer"
                                          : "eventstream.v1.Consumer";
}

TEST_P(ServerTest, ListServicesNamesServiceHealthAndReflection) {
  refl::ServerReflectionRequest req;
  req.set_list_services("*");
  auto resp = Reflect(req);
  std::set<std::string> names;
  for (const auto& s : resp.list_services_response().service()) names.insert(s.name());
  EXPECT_TRUE(names.count(ServiceName(GetParam()))) << GetParam();
  EXPECT_TRUE(names.count("grpc.health.v1.Health"));
  EXPECT_TRUE(names.count("grpc.reflection.v1alpha.ServerReflection"));
}

TEST_P(ServerTest, ServesFileDescriptorsOfOurServiceAndHealth) {
  bool producer = GetParam() == "eventstream-producer";
  auto files = FilesForSymbol(ServiceName(GetParam()));
  EXPECT_TRUE(files.count(producer ? "eventstream/v1/producer.proto"
                                   : "eventstream/v1/consumer.proto"));
  EXPECT_TRUE(files.count("eventstream/v1/common.proto"));
  files = FilesForSymbol("grpc.health.v1.Health");
  EXPECT_TRUE(files.count("grpc/health/v1/health.proto"));
  files = FilesForSymbol("eventstream.v1.UpdateLogEntry");
  EXPECT_TRUE(files.count("eventstream/v1/common.proto"));
}

TEST_P(ServerTest, HealthCheckServing) {
  auto stub = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(stub->Check(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_P(ServerTest, SigtermStopsCleanly) {
  service_.process->Signal(SIGTERM);
  auto code = service_.process->Wait(absl::Seconds(15));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << service_.process->Log();
}

INSTANTIATE_TEST_SUITE_P(Binaries, ServerTest,
                         ::testing::Values("eventstream-producer", "eventstream-consumer"),
                         [](const auto& info) {
                           return info.param == "eventstream-producer" ? "Producer"
                                                                       : "Consumer";
                         });

// Calls Producer.ListConsumers (admin) with the given authorization.
grpc::StatusCode CallListConsumers(const std::shared_ptr<grpc::Channel>& channel,
                                   const std::string& authorization) {
  auto stub = v1::Producer::NewStub(channel);
  grpc::ClientContext ctx;
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  v1::ListConsumersResponse resp;
  return stub->ListConsumers(&ctx, v1::ListConsumersRequest(), &resp).error_code();
}

TEST(ProducerAuth, EveryRpcAuthenticates) {
  auto svc = StartService("eventstream-producer", Config(SharedCluster().Url("hq")), KeySecrets());
  ASSERT_TRUE(svc.ok()) << svc.status();
  auto channel = grpc::CreateChannel(svc->address(), grpc::InsecureChannelCredentials());
  EXPECT_EQ(CallListConsumers(channel, ""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(CallListConsumers(channel, "token ops:wrong"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(CallListConsumers(channel, "Bearer x"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(CallListConsumers(channel, kB1),
            grpc::StatusCode::PERMISSION_DENIED);
  // Authenticated and authorized: reaches the RPC itself.
  grpc::StatusCode admin = CallListConsumers(channel, kOps);
  EXPECT_NE(admin, grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(admin, grpc::StatusCode::PERMISSION_DENIED);
  // Secrets never reach the log.
  EXPECT_EQ(svc->process->Log().find(kOpsSecret), std::string::npos);
}

TEST(Cli, HelpExitsZeroForBothBinaries) {
  for (const char* b : {"eventstream-producer", "eventstream-consumer"}) {
    auto r = RunCommand({BinDir() + "/" + b, "--help"});
    EXPECT_EQ(r.exit_code, 0) << b;
    EXPECT_NE(r.output.find("Usage: " + std::string(b)), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("--config"), std::string::npos);
  }
}

TEST(Cli, BadConfigNamesTheKeyAndExitsNonZero) {
  ScopedTempDir tmp("badcfg");
  const std::string& dir = tmp.path();
  WriteFile(dir + "/bad.yaml", R"(site: {name: branch1}
database: {url: "postgresql:///nowhere"}
consumer:
  listen: "127.0.0.1:0"
  producers:
    - name: hq
      url: "127.0.0.1:1"
      api_key: branch1
      api_secret_env: X
      doctypes:
        - {doctype: Note, use_same_nam: true}
)");
  auto r = RunCommand({BinDir() + "/eventstream-consumer", "--config", dir + "/bad.yaml"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("consumer.producers[0].doctypes[0]"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("use_same_nam"), std::string::npos) << r.output;
}

TEST(Cli, CheckConfigNeedsNoDatabaseOrSecrets) {
  ScopedTempDir tmp("okcfg");
  const std::string& dir = tmp.path();
  WriteFile(dir + "/ok.yaml", Config("postgresql:///does-not-exist?host=/nonexistent"));
  for (const char* b : {"eventstream-producer", "eventstream-consumer"}) {
    auto r = RunCommand({BinDir() + "/" + b, "--check-config", "--config", dir + "/ok.yaml"});
    EXPECT_EQ(r.exit_code, 0) << b << ": " << r.output;
  }
}

TEST(Cli, MissingSecretIsNamed) {
  ScopedTempDir tmp("nosecret");
  const std::string& dir = tmp.path();
  WriteFile(dir + "/c.yaml", Config(SharedCluster().Url("hq")));
  auto r = RunCommand({BinDir() + "/eventstream-producer", "--config", dir + "/c.yaml"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("ES_T_B1"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace eventstream::testing
