#include "tests/support/http_get.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace eventstream::testing {

HttpResponse HttpGet(int port, const std::string& path, const std::string& method) {
  HttpResponse out;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return out;
  }
  std::string req = absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  (void)!write(fd, req.data(), req.size());
  std::string all;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) all.append(buf, static_cast<size_t>(n));
  close(fd);
  size_t split = all.find("\r\n\r\n");
  if (split == std::string::npos || all.size() < 12) return out;
  out.headers = all.substr(0, split);
  out.body = all.substr(split + 4);
  (void)absl::SimpleAtoi(all.substr(9, 3), &out.status);
  return out;
}

std::optional<double> Sample(const std::string& text, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, series + " ")) {
      double v;
      if (absl::SimpleAtod(line.substr(series.size() + 1), &v)) return v;
    }
  }
  return std::nullopt;
}

std::optional<double> Scrape(int port, const std::string& series) {
  HttpResponse r = HttpGet(port, "/metrics");
  if (r.status != 200) return std::nullopt;
  return Sample(r.body, series);
}

}  // namespace eventstream::testing
