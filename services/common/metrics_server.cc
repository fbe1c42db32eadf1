#include "services/common/metrics_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

constexpr int kHeadTimeoutMs = 5000;
constexpr size_t kMaxHead = 8192;

void WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the client went away; nothing to do
    data.remove_prefix(static_cast<size_t>(n));
  }
}

std::string Response(const char* status, const char* content_type, const std::string& body,
                     bool head_only) {
  std::string out = absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", content_type,
                                 "\r\nContent-Length: ", body.size(),
                                 "\r\nConnection: close\r\n\r\n");
  if (!head_only) out += body;
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen, const metrics::Registry* registry) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics_listen: \"", listen, "\" is not host:port"));
  }
  std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
      rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat("metrics_listen: \"", listen,
                                                   "\": ", gai_strerror(rc)));
  }
  int fd = -1;
  std::string error = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 64) == 0) break;
    error = strerror(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("metrics_listen: cannot listen on \"", listen, "\": ", error));
  }
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int bound = addr.ss_family == AF_INET6
                  ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                  : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  std::unique_ptr<MetricsServer> server(new MetricsServer(fd, bound, registry));
  if (pipe2(server->stop_pipe_, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("metrics: pipe: ", strerror(errno)));
  }
  server->thread_ = std::thread([s = server.get()] { s->Run(); });
  spdlog::info("metrics at http://{}:{}/metrics", host.empty() ? "0.0.0.0" : host, bound);
  return server;
}

MetricsServer::MetricsServer(int fd, int port, const metrics::Registry* registry)
    : listen_fd_(fd), port_(port), registry_(registry) {}

MetricsServer::~MetricsServer() {
  Stop();
  close(listen_fd_);
  for (int fd : stop_pipe_)
    if (fd >= 0) close(fd);
}

void MetricsServer::Stop() {
  if (!thread_.joinable()) return;
  char c = 1;
  (void)!write(stop_pipe_[1], &c, 1);
  thread_.join();
}

void MetricsServer::Run() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    int n = poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::error("metrics: poll: {}", strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    if (fds[0].revents == 0) continue;
    int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;  // EAGAIN, ECONNABORTED ...: try again
    Serve(client);
    close(client);
  }
}

void MetricsServer::Serve(int client) {
  // Read the request head, waiting at most kHeadTimeoutMs in total.
  std::string head;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(kHeadTimeoutMs);
  while (head.find("\r\n\r\n") == std::string::npos &&
         head.find("\n\n") == std::string::npos) {
    if (head.size() > kMaxHead) return;
    const int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          deadline - std::chrono::steady_clock::now())
                                          .count());
    if (left <= 0) return;
    pollfd fds[2] = {{client, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (poll(fds, 2, left) <= 0 || fds[1].revents != 0) return;
    char buf[2048];
    ssize_t got = recv(client, buf, sizeof(buf), 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return;
    head.append(buf, static_cast<size_t>(got));
  }
  absl::string_view line(head);
  line = line.substr(0, line.find('\n'));
  if (absl::EndsWith(line, "\r")) line.remove_suffix(1);
  std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
  if (parts.size() != 3 || !absl::StartsWith(parts[2], "HTTP/")) {
    WriteAll(client, Response("400 Bad Request", "text/plain", "bad request\n", false));
    return;
  }
  absl::string_view path = parts[1];
  path = path.substr(0, path.find('?'));
  const bool head_only = parts[0] == "HEAD";
  if (path != "/metrics") {
    WriteAll(client, Response("404 Not Found", "text/plain",
                              "not found: this endpoint serves GET /metrics only\n",
                              head_only));
    return;
  }
  if (parts[0] != "GET" && !head_only) {
    WriteAll(client, Response("405 Method Not Allowed", "text/plain",
                              "method not allowed: use GET\n", false));
    return;
  }
  WriteAll(client, Response("200 OK", metrics::kContentType, registry_->Render(), head_only));
}

}  // namespace eventstream
