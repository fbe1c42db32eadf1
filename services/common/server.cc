#include "services/common/server.h"

#include <signal.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "libsync/base/status_macros.h"
#include "services/common/tls.h"
#include "spdlog/spdlog.h"

namespace eventstream {

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(
    const std::string& name, const std::string& listen,
    const std::vector<grpc::Service*>& services, const TlsServerConfig* tls) {
  // The default health service answers from gRPC core, which does not put
  // grpc.health.v1's descriptors in the protobuf pool. Touching the
  // compiled health.proto links them in, so reflection can serve them and
  // `grpcurl ... grpc.health.v1.Health/Check` works.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  std::string transport = "plaintext";
  if (tls != nullptr) {
    ASSIGN_OR_RETURN(credentials, ServerCredentials(*tls));
    transport = DescribeServerTls(*tls);
  }
  auto server = std::unique_ptr<GrpcServer>(new GrpcServer());
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, credentials, &server->port_);
  for (grpc::Service* s : services) builder.RegisterService(s);
  server->server_ = builder.BuildAndStart();
  if (!server->server_ || server->port_ == 0)
    return absl::UnavailableError(
        absl::StrCat(name, ": cannot listen on \"", listen,
                     "\" (address in use, or not a host:port?)"));
  std::string host = listen.substr(0, listen.rfind(':'));
  spdlog::info("{} listening on {}:{} ({})", name, host, server->port_, transport);
  if (tls == nullptr && !IsLoopbackAddress(listen)) {
    spdlog::warn("{}: serving WITHOUT TLS on {}: API keys, notify tokens and documents "
                 "cross the network in the clear; set tls (cert_file, key_file) in this "
                 "service's config section, or listen on 127.0.0.1 only",
                 name, listen);
  }
  return server;
}

void GrpcServer::Shutdown(int grace_seconds) {
  if (auto* health = server_->GetHealthCheckService()) health->Shutdown();
  server_->Shutdown(std::chrono::system_clock::now() +
                    std::chrono::seconds(grace_seconds));
}

void BlockShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

}  // namespace eventstream
