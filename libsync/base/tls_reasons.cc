#include "libsync/base/tls_reasons.h"

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace eventstream {
namespace {

struct Reason {
  const char* openssl;  // OpenSSL's reason text, as it ends gRPC's message
  const char* meaning;
};

// Most specific first: "tlsv1 alert unknown ca" must not read as
// "unknown ca" of our own verification.
constexpr Reason kReasons[] = {
    {"wrong version number",
     "the peer does not speak TLS (a plaintext client such as grpcurl -plaintext, or a "
     "consumer without tls for this producer), or this side dialled TLS to a plaintext "
     "server"},
    {"http request", "the peer sent plain HTTP to a TLS port"},
    {"peer did not return a certificate",
     "the client presented no certificate, and this server requires one (tls.client_ca_file "
     "is set): give the client cert_file and key_file"},
    {"alert unknown ca",
     "the peer does not trust this side's certificate: add the CA that signed it to the "
     "peer's ca_file / client_ca_file"},
    {"alert bad certificate", "the peer refused this side's certificate"},
    {"alert certificate required",
     "the server requires a client certificate: give this side cert_file and key_file"},
    {"alert certificate expired", "the peer says this side's certificate has expired"},
    {"certificate verify failed",
     "the peer's certificate is not signed by a CA in this side's ca_file / client_ca_file, "
     "or it has expired"},
    {"is not in peer certificate",
     "the server's certificate does not carry the name dialled: set server_name to a name "
     "it carries, or add the name to the certificate"},
    {"no shared cipher", "the peer and this side share no cipher suite"},
    {"unsupported protocol", "the peer and this side share no TLS version"},
};

}  // namespace

bool IsTlsHandshakeFailure(std::string_view text_sv) {
  absl::string_view text(text_sv.data(), text_sv.size());
  return absl::StrContains(text, "Handshake failed") ||
         absl::StrContains(text, "handshake failed");
}

std::string ExplainTlsFailure(std::string_view text_sv) {
  absl::string_view text(text_sv.data(), text_sv.size());
  for (const Reason& r : kReasons) {
    if (absl::StrContains(text, r.openssl)) return r.meaning;
  }
  return "";
}

}  // namespace eventstream
