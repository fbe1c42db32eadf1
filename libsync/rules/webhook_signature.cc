#include "libsync/rules/webhook_signature.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace eventstream {
namespace {

std::string HmacSha256Base64(absl::string_view key, absl::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac,
       &mac_len);
  return absl::Base64Escape(
      absl::string_view(reinterpret_cast<const char*>(mac), mac_len));
}

bool IsBase64Char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '/';
}

}  // namespace

std::string WebhookSignature(absl::string_view secret, absl::string_view body) {
  return HmacSha256Base64(secret, body);
}

absl::StatusOr<std::string> StandardWebhookKey(absl::string_view secret) {
  if (!absl::ConsumePrefix(&secret, kStandardWebhooksSecretPrefix)) {
    return std::string(secret);
  }
  // The standard alphabet with optional '=' padding, nothing else (absl
  // alone would also skip whitespace).
  absl::string_view digits = secret;
  while (absl::ConsumeSuffix(&digits, "=")) {
  }
  bool valid = !digits.empty() && secret.size() - digits.size() <= 2;
  for (char c : digits) valid = valid && IsBase64Char(c);
  std::string key;
  if (!valid || !absl::Base64Unescape(secret, &key) || key.empty()) {
    return absl::InvalidArgumentError(
        "the webhook secret starts with whsec_ but the rest is not base64 "
        "(a Standard Webhooks secret is whsec_ + base64 of 24 to 64 random "
        "bytes)");
  }
  return key;
}

std::string StandardWebhookSignature(absl::string_view key,
                                     absl::string_view id, int64_t timestamp,
                                     absl::string_view body) {
  std::string signed_content = absl::StrCat(id, ".", timestamp, ".", body);
  return absl::StrCat("v1,", HmacSha256Base64(key, signed_content));
}

}  // namespace eventstream
