// VerifyFrappeWebhook: a webhook receiver's check of X-Frappe-Webhook-Signature
// written from Frappe's documented algorithm (not from ours), for the unit
// and integration tests. Header-only (unit_tests link only libsync).
#ifndef EVENTSTREAM_TESTS_SUPPORT_FRAPPE_VERIFIER_H_
#define EVENTSTREAM_TESTS_SUPPORT_FRAPPE_VERIFIER_H_

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>

namespace eventstream::testing {

// From the documented receiver (seed 003):
//   computed = base64.b64encode(hmac.new(secret.encode("utf-8"), payload,
//                                        hashlib.sha256).digest()).decode()
//   return hmac.compare_digest(computed, signature_header)
inline bool VerifyFrappeWebhook(const std::string& payload, const std::string& header,
                                const std::string& secret) {
  unsigned char digest[32];
  unsigned int digest_len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(payload.data()), payload.size(),
       digest, &digest_len);
  static const char kB64[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string computed;
  for (unsigned int i = 0; i < digest_len; i += 3) {
    unsigned int n = digest[i] << 16;
    if (i + 1 < digest_len) n |= digest[i + 1] << 8;
    if (i + 2 < digest_len) n |= digest[i + 2];
    computed += kB64[(n >> 18) & 63];
    computed += kB64[(n >> 12) & 63];
    computed += i + 1 < digest_len ? kB64[(n >> 6) & 63] : '=';
    computed += i + 2 < digest_len ? kB64[n & 63] : '=';
  }
  if (computed.size() != header.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < computed.size(); ++i) diff |= computed[i] ^ header[i];
  return diff == 0;
}

}  // namespace eventstream::testing

#endif  // EVENTSTREAM_TESTS_SUPPORT_FRAPPE_VERIFIER_H_
