#include "services/common/tls.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "libsync/base/status_macros.h"
#include "libsync/base/tls_reasons.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BnFree {
  void operator()(BIGNUM* b) const { BN_free(b); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

// A PEM passphrase callback that has none: an encrypted key fails to load
// instead of OpenSSL prompting on the terminal.
int NoPassphrase(char*, int, int, void*) { return 0; }

absl::Status Problem(const std::string& origin, const char* key,
                     const std::string& what) {
  return absl::FailedPreconditionError(absl::StrCat(origin, ".", key, ": ", what));
}

absl::StatusOr<std::string> ReadFile(const std::string& origin, const char* key,
                                     const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Problem(origin, key,
                   absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Problem(origin, key, absl::StrCat("cannot read ", path));
  return text.str();
}

// Every certificate of a PEM text, in order.
std::vector<X509Ptr> ParseCertificates(const std::string& pem) {
  std::vector<X509Ptr> out;
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  while (bio) {
    X509* cert = PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr);
    if (cert == nullptr) break;
    out.emplace_back(cert);
  }
  ERR_clear_error();  // the read past the last one leaves an error behind
  return out;
}

absl::StatusOr<std::vector<X509Ptr>> LoadCertificates(const std::string& origin,
                                                      const char* key,
                                                      const std::string& path) {
  ASSIGN_OR_RETURN(std::string pem, ReadFile(origin, key, path));
  std::vector<X509Ptr> certs = ParseCertificates(pem);
  if (certs.empty()) {
    return Problem(origin, key,
                   absl::StrCat("no PEM certificate in ", path,
                                " (expected -----BEGIN CERTIFICATE-----)"));
  }
  return certs;
}

// Checks that key_file holds an unencrypted private key that belongs to the
// first certificate of cert_file.
absl::Status CheckKeyPair(const std::string& origin, const std::string& cert_file,
                          const std::string& key_file) {
  ASSIGN_OR_RETURN(std::vector<X509Ptr> certs,
                   LoadCertificates(origin, "cert_file", cert_file));
  ASSIGN_OR_RETURN(std::string pem, ReadFile(origin, "key_file", key_file));
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::unique_ptr<EVP_PKEY, KeyFree> key(
      bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr) : nullptr);
  ERR_clear_error();
  if (key == nullptr) {
    return Problem(origin, "key_file",
                   absl::StrCat("no unencrypted PEM private key in ", key_file));
  }
  if (X509_check_private_key(certs.front().get(), key.get()) != 1) {
    ERR_clear_error();
    return Problem(origin, "key_file",
                   absl::StrCat("the private key in ", key_file,
                                " does not belong to the certificate in ", cert_file));
  }
  return absl::OkStatus();
}

std::string NameText(X509_NAME* name) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) return "?";
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string SerialText(X509* cert) {
  std::unique_ptr<BIGNUM, BnFree> bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  if (!bn) return "?";
  char* hex = BN_bn2hex(bn.get());
  std::string out = hex ? hex : "?";
  OPENSSL_free(hex);
  return out;
}

std::string TimeText(const ASN1_TIME* t) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return "?";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromTM(tm, absl::UTCTimeZone()),
                          absl::UTCTimeZone());
}

std::string Describe(X509* cert) {
  return absl::StrCat(NameText(X509_get_subject_name(cert)), ", serial ", SerialText(cert),
                      ", valid until ", TimeText(X509_get0_notAfter(cert)));
}

unsigned int RefreshSeconds(absl::Duration d) {
  return static_cast<unsigned int>(std::max<int64_t>(1, absl::ToInt64Seconds(d)));
}

}  // namespace

absl::Status CheckServerTls(const TlsServerConfig& tls) {
  RETURN_IF_ERROR(CheckKeyPair(tls.origin, tls.cert_file, tls.key_file));
  if (!tls.client_ca_file.empty()) {
    RETURN_IF_ERROR(
        LoadCertificates(tls.origin, "client_ca_file", tls.client_ca_file).status());
  }
  return absl::OkStatus();
}

absl::Status CheckClientTls(const TlsClientConfig& tls) {
  if (!tls.ca_file.empty()) {
    RETURN_IF_ERROR(LoadCertificates(tls.origin, "ca_file", tls.ca_file).status());
  }
  if (!tls.cert_file.empty()) {
    RETURN_IF_ERROR(CheckKeyPair(tls.origin, tls.cert_file, tls.key_file));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const TlsServerConfig& tls) {
  RETURN_IF_ERROR(CheckServerTls(tls));
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      tls.key_file, tls.cert_file, tls.client_ca_file, RefreshSeconds(tls.refresh_interval));
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (tls.client_ca_file.empty()) {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

void ClientTransport::Apply(grpc::ChannelArguments* args) const {
  if (!server_name.empty()) args->SetSslTargetNameOverride(server_name);
}

absl::StatusOr<ClientTransport> MakeClientTransport(const TlsClientConfig* tls) {
  ClientTransport out;
  if (tls == nullptr) {
    out.credentials = grpc::InsecureChannelCredentials();
    return out;
  }
  RETURN_IF_ERROR(CheckClientTls(*tls));
  grpc::experimental::TlsChannelCredentialsOptions options;
  if (!tls->ca_file.empty() || !tls->cert_file.empty()) {
    options.set_certificate_provider(
        std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
            tls->key_file, tls->cert_file, tls->ca_file,
            RefreshSeconds(tls->refresh_interval)));
  }
  // Without a ca_file, gRPC verifies against the system's roots.
  if (!tls->ca_file.empty()) options.watch_root_certs();
  if (!tls->cert_file.empty()) options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  options.set_certificate_verifier(
      std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  out.credentials = grpc::experimental::TlsCredentials(options);
  out.server_name = tls->server_name;
  out.tls = true;
  return out;
}

std::string TransportHint(const grpc::Status& status, bool tls,
                          const std::string& plaintext_hint) {
  const std::string& message = status.error_message();
  if (std::string why = ExplainTlsFailure(message); !why.empty()) {
    return absl::StrCat(" (TLS: ", why, ")");
  }
  if (!tls && status.error_code() == grpc::StatusCode::UNAVAILABLE &&
      (absl::StrContains(message, "Socket closed") ||
       absl::StrContains(message, "Connection reset"))) {
    return absl::StrCat(" (", plaintext_hint, ")");
  }
  return "";
}

absl::StatusOr<std::string> DescribeCertificate(const std::string& pem) {
  std::vector<X509Ptr> certs = ParseCertificates(pem);
  if (certs.empty()) return absl::InvalidArgumentError("no PEM certificate");
  return Describe(certs.front().get());
}

absl::StatusOr<std::string> CertificateSerial(const std::string& pem) {
  std::vector<X509Ptr> certs = ParseCertificates(pem);
  if (certs.empty()) return absl::InvalidArgumentError("no PEM certificate");
  return SerialText(certs.front().get());
}

std::string DescribeServerTls(const TlsServerConfig& tls) {
  auto certs = LoadCertificates(tls.origin, "cert_file", tls.cert_file);
  if (!certs.ok()) return "";
  X509* leaf = certs->front().get();
  if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0) {
    spdlog::warn("{}.cert_file: the certificate in {} expired at {}; clients will refuse "
                 "it until it is replaced",
                 tls.origin, tls.cert_file, TimeText(X509_get0_notAfter(leaf)));
  } else if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) {
    spdlog::warn("{}.cert_file: the certificate in {} is not valid before {}", tls.origin,
                 tls.cert_file, TimeText(X509_get0_notBefore(leaf)));
  }
  return absl::StrCat("TLS, certificate ", Describe(leaf),
                      tls.client_ca_file.empty()
                          ? std::string("; no client certificate asked for")
                          : absl::StrCat("; client certificates required (CAs in ",
                                         tls.client_ca_file, ")"),
                      "; files re-read every ", RefreshSeconds(tls.refresh_interval), " s");
}

}  // namespace eventstream
