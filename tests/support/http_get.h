// Plain HTTP/1.1 on loopback for tests: GET a path of a service's /metrics
// or health endpoint, and read one Prometheus sample out of a scrape.
#ifndef EVENTSTREAM_TESTS_SUPPORT_HTTP_GET_H_
#define EVENTSTREAM_TESTS_SUPPORT_HTTP_GET_H_

#include <optional>
#include <string>

namespace eventstream::testing {

struct HttpResponse {
  int status = -1;  // -1 = no answer
  std::string headers;
  std::string body;
};
// One request to 127.0.0.1:`port` (10 s receive timeout).
HttpResponse HttpGet(int port, const std::string& path, const std::string& method = "GET");

// The value of the sample `series` (`name{labels}` exactly as rendered) in
// the Prometheus text `text`.
std::optional<double> Sample(const std::string& text, const std::string& series);
// Sample() of a GET /metrics on `port`; nullopt when it fails.
std::optional<double> Scrape(int port, const std::string& series);

}  // namespace eventstream::testing

#endif  // EVENTSTREAM_TESTS_SUPPORT_HTTP_GET_H_
