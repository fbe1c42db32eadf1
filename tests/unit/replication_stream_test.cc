// The pure pieces of replication_stream.h: the conninfo and the command
// texts (the I/O is tests/integration/wal_stream_test.cc's).
#include "libsync/wal/replication_stream.h"

#include "gtest/gtest.h"

namespace eventstream::wal {
namespace {

TEST(ReplicationStreamTest, ConninfoAsksForADatabaseReplicationConnection) {
  EXPECT_EQ(ReplicationConninfo("postgresql:///hq?host=/tmp&port=5"),
            "postgresql:///hq?host=/tmp&port=5&replication=database");
  EXPECT_EQ(ReplicationConninfo("postgres://u@h/hq"), "postgres://u@h/hq?replication=database");
  EXPECT_EQ(ReplicationConninfo("host=/tmp dbname=hq"),
            "host=/tmp dbname=hq replication=database");
}

TEST(ReplicationStreamTest, SlotNames) {
  EXPECT_TRUE(ValidSlotName("es_hq_1"));
  EXPECT_TRUE(ValidSlotName(std::string(63, 'a')));
  EXPECT_FALSE(ValidSlotName(std::string(64, 'a')));
  for (const char* bad : {"", "Es", "a-b", "a b", "a;DROP", "é"}) EXPECT_FALSE(ValidSlotName(bad));
}

TEST(ReplicationStreamTest, Commands) {
  EXPECT_EQ(CreateSlotCommand("es"), "CREATE_REPLICATION_SLOT es LOGICAL pgoutput (SNAPSHOT 'nothing')");
  EXPECT_EQ(StartReplicationCommand("es", 0x16B374D848, {"pub"}),
            "START_REPLICATION SLOT es LOGICAL 16/B374D848 (proto_version '1', "
            "messages 'true', publication_names '\"pub\"')");
  EXPECT_EQ(StartReplicationCommand("es", 0, {"a", "it's \"b\""}),
            "START_REPLICATION SLOT es LOGICAL 0/0 (proto_version '1', "
            "messages 'true', publication_names '\"a\",\"it''s \"\"b\"\"\"')");
}

}  // namespace
}  // namespace eventstream::wal
