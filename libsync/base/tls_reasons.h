// What a failed TLS handshake means for whoever configures eventstream.
//
// gRPC reports a failed handshake with OpenSSL's reason at the end of a log
// line or status message ("Handshake failed with fatal error SSL_ERROR_SSL:
// error:0A00010B:SSL routines::wrong version number."). These pure functions
// turn the reasons seen in practice into a sentence naming the likely cause
// and the config key to look at, for the services' logs (service_main.cc)
// and the consumer's errors (producer_link.cc). No I/O, no gRPC.
#ifndef EVENTSTREAM_LIBSYNC_BASE_TLS_REASONS_H_
#define EVENTSTREAM_LIBSYNC_BASE_TLS_REASONS_H_

#include <string>
#include <string_view>

namespace eventstream {

// True when `text` is gRPC's report of a failed TLS handshake.
bool IsTlsHandshakeFailure(std::string_view text);

// The likely cause of the TLS failure `text` reports, e.g. for "wrong
// version number": "the peer does not speak TLS (a plaintext client such as
// grpcurl -plaintext, or a consumer without tls for this producer)". "" when
// `text` names no reason known here.
std::string ExplainTlsFailure(std::string_view text);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_BASE_TLS_REASONS_H_
