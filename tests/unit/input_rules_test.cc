// libsync/base/input_rules: log escaping, client message truncation, NUL and
// notify address rules.
#include "libsync/base/input_rules.h"

#include <string>

#include "gtest/gtest.h"

namespace eventstream {
namespace {

TEST(EscapeForLog, ControlCharactersCannotForgeALine) {
  EXPECT_EQ(EscapeForLog("a:1\n2026-01-01 00:00:00.000 info forged"),
            "a:1\\n2026-01-01 00:00:00.000 info forged");
  EXPECT_EQ(EscapeForLog(std::string("x\r\t\x01\x7f", 5)), "x\\r\\t\\x01\\x7f");
  EXPECT_EQ(EscapeForLog("naïve \"quoted\""), "naïve \"quoted\"");
  EXPECT_EQ(EscapeForLog(std::string("n\0j", 3)), "n\\x00j");
}

TEST(TruncateForClient, LongMessagesAreCutAtACharacterBoundary) {
  EXPECT_EQ(TruncateForClient("short"), "short");
  std::string big(20000, 'x');
  std::string cut = TruncateForClient("unknown DocType \"" + big + "\"");
  EXPECT_LE(cut.size(), kMaxClientMessage + 40);
  EXPECT_EQ(cut.substr(cut.size() - 18), "(18994 more bytes)");
  // 'é' is two bytes; a cut inside it backs up to before it.
  EXPECT_EQ(TruncateForClient("aé", 2), "a ... (2 more bytes)");
}

TEST(NulProblem, NamesWhereTheNulIs) {
  EXPECT_EQ(NulProblem("N-pub"), "");
  EXPECT_EQ(NulProblem(std::string("N-pub\0junk", 10)),
            "contains a NUL byte (at byte 5), which PostgreSQL text cannot hold");
}

TEST(NotifyAddressProblem, HostPortWithoutLinkLocal) {
  for (const char* ok : {"", "branch1-consumer:50052", "127.0.0.1:7", "10.0.0.5:50052",
                         "[::1]:50052", "consumer.branch.svc.cluster.local:443"}) {
    EXPECT_EQ(NotifyAddressProblem(ok), "") << ok;
  }
  for (const char* bad : {"branch1", "host:0", "host:70000", "host:x", "ho st:1",
                          "host\n2026-01-01 info forged:1", "[zz]:1", "-host:1"}) {
    EXPECT_NE(NotifyAddressProblem(bad), "") << bad;
  }
  for (const char* meta : {"169.254.169.254:80", "[fe80::1]:80", "0.0.0.0:50052", "[::]:1"}) {
    EXPECT_EQ(NotifyAddressProblem(meta),
              "link-local and unspecified addresses are not allowed") << meta;
  }
}

}  // namespace
}  // namespace eventstream
