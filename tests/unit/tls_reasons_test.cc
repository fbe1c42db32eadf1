#include "libsync/base/tls_reasons.h"

#include <string>

#include "gtest/gtest.h"

namespace eventstream {
namespace {

// The texts as gRPC 1.51 with OpenSSL 3 writes them (log lines and status
// messages seen in tests/integration/tls_test.cc).
constexpr char kPlaintextClient[] =
    "Handshake failed with fatal error SSL_ERROR_SSL: error:0A00010B:SSL "
    "routines::wrong version number.";
constexpr char kUntrusted[] =
    "Handshake failed with fatal error SSL_ERROR_SSL: error:0A000086:SSL "
    "routines::certificate verify failed.";
constexpr char kNoClientCert[] =
    "Handshake failed with fatal error SSL_ERROR_SSL: error:0A0000C7:SSL "
    "routines::peer did not return a certificate.";
constexpr char kClientRefusedUs[] =
    "Handshake failed with fatal error SSL_ERROR_SSL: error:0A000418:SSL "
    "routines::tlsv1 alert unknown ca.";

TEST(TlsReasons, RecognisesHandshakeFailures) {
  EXPECT_TRUE(IsTlsHandshakeFailure(kPlaintextClient));
  EXPECT_TRUE(IsTlsHandshakeFailure(
      "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Ssl "
      "handshake failed: SSL_ERROR_SSL: error:0A000086:SSL routines::certificate verify "
      "failed"));
  EXPECT_FALSE(IsTlsHandshakeFailure("No match found for server name: hq.example.com."));
  EXPECT_FALSE(IsTlsHandshakeFailure(""));
}

TEST(TlsReasons, ExplainsTheCausesSeen) {
  EXPECT_EQ(ExplainTlsFailure(kPlaintextClient).rfind("the peer does not speak TLS (a "
                                                      "plaintext client such as grpcurl "
                                                      "-plaintext",
                                                      0),
            0u);
  EXPECT_EQ(ExplainTlsFailure(kUntrusted).rfind("the peer's certificate is not signed by a CA",
                                                0),
            0u);
  EXPECT_EQ(ExplainTlsFailure(kNoClientCert).rfind("the client presented no certificate", 0),
            0u);
  // The peer's alert, not our own verification.
  EXPECT_EQ(ExplainTlsFailure(kClientRefusedUs)
                .rfind("the peer does not trust this side's certificate", 0),
            0u);
  EXPECT_EQ(ExplainTlsFailure("ipv4:127.0.0.1:1: Peer name hq.example.com is not in peer "
                              "certificate")
                .rfind("the server's certificate does not carry the name dialled", 0),
            0u);
}

TEST(TlsReasons, UnknownTextsHaveNoExplanation) {
  EXPECT_EQ(ExplainTlsFailure("Socket closed"), "");
  EXPECT_EQ(ExplainTlsFailure("Connection refused"), "");
  EXPECT_EQ(ExplainTlsFailure(""), "");
}

}  // namespace
}  // namespace eventstream
