#include "services/common/metrics_server.h"

#include <netdb.h>
#include <sys/socket.h>

#include <cstring>
#include <exception>
#include <vector>

#include "absl/strings/str_cat.h"
#include "CivetServer.h"  // CivetCallbacks
#include "civetweb.h"
#include "libsync/base/status_macros.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

// "host:port" as civetweb's listening_ports wants it: a numeric IPv4
// address, or just the port for every address. Debian 12's civetweb is
// built without IPv6, so an IPv6 address is refused here, by name.
absl::StatusOr<std::string> CivetListen(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics_listen: \"", listen, "\" is not host:port"));
  }
  std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty()) return port;
  if (host.find(':') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics_listen: \"", listen,
        "\": IPv6 addresses are not supported (Debian 12's civetweb has no IPv6); use "
        "0.0.0.0:PORT or an IPv4 address"));
  }
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics_listen: \"", listen, "\": ", gai_strerror(rc)));
  }
  char numeric[NI_MAXHOST];
  const int rc = getnameinfo(res->ai_addr, res->ai_addrlen, numeric, sizeof(numeric),
                             nullptr, 0, NI_NUMERICHOST);
  freeaddrinfo(res);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics_listen: \"", listen, "\": ", gai_strerror(rc)));
  }
  return absl::StrCat(numeric, ":", port);
}

// civetweb runs this before any handler: a method other than GET on
// /metrics is 405 (the Exposer's handler only answers GET, and civetweb
// would say 404; HEAD too, as Prometheus never sends it). Everything else
// goes on to the Exposer (non-zero = answered).
int RejectNonGet(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  if (info == nullptr || info->local_uri == nullptr || info->request_method == nullptr)
    return 0;
  if (std::strcmp(info->local_uri, "/metrics") != 0) return 0;
  if (std::strcmp(info->request_method, "GET") == 0) return 0;
  mg_response_header_start(conn, 405);
  mg_response_header_add(conn, "Allow", "GET", -1);
  mg_response_header_add(conn, "Content-Type", "text/plain", -1);
  mg_response_header_add(conn, "Content-Length", "28", -1);
  mg_response_header_send(conn);
  mg_write(conn, "method not allowed: use GET\n", 28);
  return 405;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen, const metrics::Registry* registry) {
  ASSIGN_OR_RETURN(std::string civet_listen, CivetListen(listen));
  static const CivetCallbacks callbacks = [] {
    CivetCallbacks c;
    c.begin_request = RejectNonGet;
    return c;
  }();
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", civet_listen, "num_threads", "2", "request_timeout_ms", "5000"},
        &callbacks);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics_listen: cannot listen on \"", listen, "\": ", e.what()));
  }
  for (const auto& c : registry->collectables()) exposer->RegisterCollectable(c);
  const std::vector<int> ports = exposer->GetListeningPorts();
  const int port = ports.empty() ? 0 : ports.front();
  spdlog::info("metrics at http://{}/metrics", listen);
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(exposer), port));
}

}  // namespace eventstream
