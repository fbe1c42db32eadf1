#include "libsync/input_rules.h"

#include <arpa/inet.h>

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace eventstream {
namespace {

bool IsDnsName(absl::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  for (char c : host) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '.' && c != '_') return false;
  }
  return host.front() != '-' && host.front() != '.';
}

}  // namespace

std::string EscapeForLog(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      absl::StrAppendFormat(&out, "\\x%02x", u);
    } else {
      out += c;
    }
  }
  return out;
}

std::string TruncateForClient(absl::string_view message, size_t max) {
  if (message.size() <= max) return std::string(message);
  size_t cut = max;
  // Do not split a UTF-8 sequence: back up over continuation bytes.
  while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat(message.substr(0, cut), " ... (", message.size() - cut, " more bytes)");
}

std::string Quoted(absl::string_view text) { return absl::StrCat("\"", text, "\""); }

std::string NulProblem(absl::string_view value) {
  size_t at = value.find('\0');
  if (at == absl::string_view::npos) return "";
  return absl::StrCat("contains a NUL byte (at byte ", at,
                      "), which PostgreSQL text cannot hold");
}

std::string NotifyAddressProblem(absl::string_view address) {
  if (address.empty()) return "";
  const std::string expected =
      "expected host:port (a DNS name, an IPv4 address or a [bracketed] IPv6 address)";
  size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return expected;
  absl::string_view host = address.substr(0, colon);
  int port = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 1 || port > 65535) {
    return absl::StrCat(expected, "; the port must be 1-65535");
  }
  in_addr v4;
  in6_addr v6;
  std::string h(host);
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') {
    std::string inner = h.substr(1, h.size() - 2);
    if (inet_pton(AF_INET6, inner.c_str(), &v6) != 1) return expected;
    if (IN6_IS_ADDR_LINKLOCAL(&v6) || IN6_IS_ADDR_UNSPECIFIED(&v6)) {
      return "link-local and unspecified addresses are not allowed";
    }
    return "";
  }
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) {
    uint32_t a = ntohl(v4.s_addr);
    if ((a >> 16) == ((169u << 8) | 254u) || a == 0) {
      return "link-local and unspecified addresses are not allowed";
    }
    return "";
  }
  return IsDnsName(host) ? "" : expected;
}

}  // namespace eventstream
