// MetricsServer: a minimal HTTP/1.1 endpoint for Prometheus scrapes.
//
// Contract:
//  * Listens on `listen` ("host:port"; "0.0.0.0:9090", "127.0.0.1:0",
//    "[::]:9090"; port 0 picks a free one, see port()).
//  * `GET /metrics` (a query string is ignored) answers 200 with the
//    registry's Render() as text/plain; version=0.0.4. `HEAD /metrics`
//    answers the headers only. Any other path is 404, any other method on
//    /metrics 405. Every response closes the connection.
//  * One thread serves connections one after the other (concurrent scrapes
//    wait their turn in the listen backlog). A client that sends no complete
//    request head within 5 s, or more than 8 KiB of it, is dropped, so a
//    stuck client delays other scrapes by at most that.
//  * Stop() is prompt (the thread polls a stop pipe alongside the socket)
//    and idempotent; the destructor stops.
// The registry must outlive the server.
#ifndef EVENTSTREAM_SERVICES_COMMON_METRICS_SERVER_H_
#define EVENTSTREAM_SERVICES_COMMON_METRICS_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "libsync/metrics.h"

namespace eventstream {

class MetricsServer {
 public:
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen, const metrics::Registry* registry);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const { return port_; }
  void Stop();

 private:
  MetricsServer(int fd, int port, const metrics::Registry* registry);
  void Run();
  void Serve(int client);

  const int listen_fd_;
  const int port_;
  const metrics::Registry* registry_;
  int stop_pipe_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_COMMON_METRICS_SERVER_H_
