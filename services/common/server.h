// GrpcServer: what both services' servers have in common.
//
// Serves the given services plus the standard health service and server
// reflection (so `grpcurl -plaintext HOST:PORT list` works with nothing but
// the address; with TLS, `grpcurl -cacert ... HOST:PORT list`), on `listen`
// ("0.0.0.0:50051"; port 0 picks a free one and the log line "listening on
// HOST:PORT" names it). Wait() returns after Shutdown(), which
// SIGTERM/SIGINT trigger through WaitForSignal().
//
// Transport: TLS when `tls` is given (services/common/tls.h: files checked
// before listening, re-read while serving), else plaintext; plaintext on an
// address other than loopback logs a warning at start, since API keys and
// notify tokens would cross the network in the clear.
#ifndef EVENTSTREAM_SERVICES_COMMON_SERVER_H_
#define EVENTSTREAM_SERVICES_COMMON_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "libsync/config/config.h"

namespace eventstream {

class GrpcServer {
 public:
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(
      const std::string& name, const std::string& listen,
      const std::vector<grpc::Service*>& services,
      const TlsServerConfig* tls = nullptr);

  int port() const { return port_; }
  // Marks the server NOT_SERVING in health, then drains in-flight RPCs for
  // up to `grace_seconds` and stops.
  void Shutdown(int grace_seconds = 10);
  void Wait() { server_->Wait(); }

 private:
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// Call first thing in main(), before any thread starts: blocks SIGTERM and
// SIGINT in every thread so WaitForSignal() receives them.
void BlockShutdownSignals();
// Blocks until SIGTERM or SIGINT arrives; returns the signal number.
int WaitForSignal();

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_COMMON_SERVER_H_
