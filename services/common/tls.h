// TLS for both services: the servers (producer.tls, consumer.tls) and the
// client channels (consumer.producers[].tls for pulls, producer.notify_tls
// for Notify). Schema: libsync/config/config.h; the picture: docs/design.md
// "Protocol / Transport".
//
// Contract:
//  * Check*Tls reads the configured files once, at start, and says what is
//    wrong in one line naming the config key and the file: unreadable, not
//    PEM, no certificate in it, or a private key that does not belong to the
//    certificate. Key material never appears in a message or a log line. A
//    certificate that is expired or not yet valid is only warned about by
//    Describe* (a rotation may be on its way); its peers will refuse it.
//  * *Credentials build gRPC credentials over
//    grpc::experimental::FileWatcherCertificateProvider: gRPC re-reads the
//    files every refresh_interval on a thread of its own, and each new
//    connection's handshake uses what they held at the last read.
//    Connections already open keep their session, so a stream going on is
//    not cut by a rotation. cert-manager rotating a mounted Secret therefore
//    needs no restart. The files must change atomically (Kubernetes swaps a
//    Secret volume's symlink); a key and certificate read half-way through
//    a non-atomic rewrite fail handshakes until the next read.
//  * A server with client_ca_file asks for, requires and verifies a client
//    certificate signed by one of those CAs (mutual TLS); without it no
//    client certificate is asked for.
//  * A client verifies the server's chain against ca_file (the system's
//    roots when "") and the server's name: server_name when set, else the
//    host of the address dialled. With cert_file/key_file it presents that
//    certificate when the server asks for one.
//
// Thread-safe: plain functions; the providers run their own threads.
#ifndef EVENTSTREAM_SERVICES_COMMON_TLS_H_
#define EVENTSTREAM_SERVICES_COMMON_TLS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "libsync/config/config.h"

namespace eventstream {

// FAILED_PRECONDITION naming `<file>: <key path>` and the file at fault.
absl::Status CheckServerTls(const TlsServerConfig& tls);
absl::Status CheckClientTls(const TlsClientConfig& tls);

// Checks the files (as above), then builds the credentials.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const TlsServerConfig& tls);

// A client channel's transport: credentials plus the channel arguments that
// go with them (the server name override). Plaintext when built from no
// TLS config.
struct ClientTransport {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  std::string server_name;  // "" = the host dialled
  bool tls = false;
  // Sets what the transport needs on `args` (before CreateCustomChannel).
  void Apply(grpc::ChannelArguments* args) const;
};

// `tls` null = plaintext. Checks the files first when set.
absl::StatusOr<ClientTransport> MakeClientTransport(const TlsClientConfig* tls);

// What to add to a failed call's message: " (TLS: <likely cause>)" for a
// TLS failure (libsync/base/tls_reasons.h); " (<plaintext_hint>)" when the
// channel is plaintext and the server closed the connection unanswered, as
// a TLS server does with a plaintext client; else "".
std::string TransportHint(const grpc::Status& status, bool tls,
                          const std::string& plaintext_hint);

// One line for the start-up log: "TLS, certificate CN=..., serial ...,
// valid until ...; client certificates required". Warns (spdlog) when the
// certificate is expired or not yet valid. "" when the file cannot be read
// (Check* has said why).
std::string DescribeServerTls(const TlsServerConfig& tls);

// The leaf certificate of a PEM chain, as "CN=..., serial <hex>, valid
// until <time>"; an error when `pem` holds no certificate.
absl::StatusOr<std::string> DescribeCertificate(const std::string& pem);

// The serial number of the first certificate in `pem`, in upper-case hex
// (as `openssl x509 -serial` prints it).
absl::StatusOr<std::string> CertificateSerial(const std::string& pem);

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_COMMON_TLS_H_
