// MetricsServer: the /metrics endpoint Prometheus scrapes, served by
// prometheus-cpp's Exposer (civetweb; docs/design.md "Dependencies").
//
// Contract:
//  * Listens on `listen` ("host:port"; "0.0.0.0:9090", "127.0.0.1:9090",
//    "localhost:9090": the host is resolved to its first IPv4 address here,
//    civetweb takes numeric addresses only; port 0 picks a free one, see
//    port()). IPv6 is refused (Debian 12's civetweb is built without it),
//    as is a value that is not host:port or an address that cannot be
//    bound: errors naming `metrics_listen`.
//  * `GET /metrics` answers 200 with the registry's families (Registry::
//    Render(), Content-Type "text/plain; charset=utf-8", gzip when the
//    scraper accepts it) plus the Exposer's own exposer_* families. Another
//    method on /metrics (HEAD included) is 405 (our begin_request
//    callback), any other path 404 (civetweb).
//  * civetweb serves with 2 threads; a client that sends no complete
//    request within 5 s (request_timeout_ms) is dropped.
//  * Stop() stops serving and is idempotent; the destructor stops.
// The registry must outlive the server.
#ifndef EVENTSTREAM_SERVICES_COMMON_METRICS_SERVER_H_
#define EVENTSTREAM_SERVICES_COMMON_METRICS_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "libsync/base/metrics.h"
#include "prometheus/exposer.h"

namespace eventstream {

class MetricsServer {
 public:
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen, const metrics::Registry* registry);
  ~MetricsServer() { Stop(); }
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const { return port_; }
  void Stop() { exposer_.reset(); }

 private:
  MetricsServer(std::unique_ptr<prometheus::Exposer> exposer, int port)
      : exposer_(std::move(exposer)), port_(port) {}

  std::unique_ptr<prometheus::Exposer> exposer_;
  const int port_;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_COMMON_METRICS_SERVER_H_
