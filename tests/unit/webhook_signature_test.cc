#include "libsync/rules/webhook_signature.h"

#include <string>

#include "gtest/gtest.h"
#include "tests/support/frappe_verifier.h"

namespace eventstream {
namespace {

using testing::VerifyFrappeWebhook;

TEST(WebhookSignature, KnownAnswerAndFrappeVerifier) {
  // RFC 4231 test case 2, base64 of the HMAC-SHA256.
  EXPECT_EQ(WebhookSignature("Jefe", "what do ya want for nothing?"),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
  EXPECT_TRUE(VerifyFrappeWebhook("what do ya want for nothing?",
                                  "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=",
                                  "Jefe"));
}


TEST(WebhookSignatureTest, FrappeSignatureIsBase64HmacOfTheBody) {
  // RFC 4231 test case 2, base64 of the HMAC-SHA256.
  EXPECT_EQ(WebhookSignature("Jefe", "what do ya want for nothing?"),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
}

// The example of the Standard Webhooks specification (and of its libraries'
// tests): a whsec_ secret is used base64-decoded.
TEST(WebhookSignatureTest, StandardWebhooksKnownAnswer) {
  auto key = StandardWebhookKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->size(), 24u);
  EXPECT_EQ(StandardWebhookSignature(*key, "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                     1614265330, R"({"test": 2432232314})"),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

// Any other secret is used as its bytes: what npm standardwebhooks computes
// with new Webhook("frappe-shared-secret", {format: "raw"}).
TEST(WebhookSignatureTest, APlainSecretIsTheRawKey) {
  auto key = StandardWebhookKey("frappe-shared-secret");
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(*key, "frappe-shared-secret");
  EXPECT_EQ(StandardWebhookSignature(*key, "msg_1", 1700000000, "{}"),
            "v1,U7i8jPH2uPy/hn4DWvvEEKGiC+FJkEm6838k0DMmdBQ=");
}

// The point of it (issue 13): id and timestamp are signed, so a request
// whose timestamp (or id) is changed no longer verifies.
TEST(WebhookSignatureTest, IdAndTimestampAreCovered) {
  const std::string base =
      StandardWebhookSignature("k", "msg_1", 1700000000, "{}");
  EXPECT_NE(StandardWebhookSignature("k", "msg_1", 1700000001, "{}"), base);
  EXPECT_NE(StandardWebhookSignature("k", "msg_2", 1700000000, "{}"), base);
  EXPECT_NE(StandardWebhookSignature("k", "msg_1", 1700000000, "{} "), base);
  // The separators are part of what is signed: "1.2" + "3" != "1" + "23".
  EXPECT_NE(StandardWebhookSignature("k", "msg_1.1", 700000000, "{}"), base);
}

TEST(WebhookSignatureTest, ABadWhsecSecretIsAnErrorThatDoesNotShowIt) {
  for (const char* bad : {"whsec_", "whsec_not base64!", "whsec_===",
                          "whsec_abc\n", "whsec_YWJj====", "whsec_-_-_"}) {
    auto key = StandardWebhookKey(bad);
    ASSERT_FALSE(key.ok()) << bad;
    EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string rest = bad + 6;  // after "whsec_"
    if (!rest.empty()) {
      EXPECT_EQ(std::string(key.status().message()).find(rest),
                std::string::npos)
          << key.status();
    }
  }
  // Padding may be left out.
  auto key = StandardWebhookKey("whsec_YWJj");
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(*key, "abc");
  key = StandardWebhookKey("whsec_YWI=");
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(*key, "ab");
}

}  // namespace
}  // namespace eventstream
