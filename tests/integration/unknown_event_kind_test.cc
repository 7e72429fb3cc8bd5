// Event kinds this build does not know (a newer server's, or a newer
// server's history read by an older one after a downgrade): an event of
// kind 77 planted in the real server's RocksDB history is served by the
// real ckpt-server and shown by the real `ckpt events` as unknown(77), in
// the table and in --json, next to the kinds it knows, instead of failing.
#include <fstream>
#include <string>

#include "absl/time/clock.h"
#include "common/event.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/storage/metadata_store.h"
#include "server/storage/rocksdb_store.h"
#include "tests/testing/real_server_test.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;

class UnknownEventKindTest : public RealServerTest {};

TEST_F(UnknownEventKindTest, CliShowsAnUnknownKindAsUnknownN) {
  constexpr char kJob[] = "it/kinds";
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const std::string file = dir_->path() + "/w.bin";
  std::ofstream(file) << "weights";
  CommandResult put = Ckpt(absl::StrCat("put ", kJob, " 1 ", file));
  ASSERT_EQ(put.exit_code, 0) << put.err;

  // The history as a newer server would have left it.
  client_.reset();
  absl::StatusOr<int> stopped = server_->Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  ASSERT_EQ(*stopped, 0);
  {
    auto store = server::RocksDbStore::Open(db_path());
    ASSERT_TRUE(store.ok()) << store.status();
    JobEvent event;
    event.job = kJob;
    event.time = absl::Now();
    event.kind = static_cast<EventKind>(77);
    event.step = 1;
    event.detail = "from the future";
    event.principal = "newer-server";
    server::MetadataBatch batch;
    batch.AppendEvent(event);
    ASSERT_TRUE((*store)->Apply(batch).ok());
  }
  ASSERT_NO_FATAL_FAILURE(StartServer());

  CommandResult json_run = Ckpt(absl::StrCat("events ", kJob, " --json"));
  ASSERT_EQ(json_run.exit_code, 0) << json_run.err;
  const nlohmann::json events = nlohmann::json::parse(json_run.out);
  ASSERT_EQ(events.size(), 2u) << json_run.out;
  EXPECT_EQ(events[0]["kind"], "committed");
  EXPECT_EQ(events[1]["kind"], "unknown(77)");
  EXPECT_EQ(events[1]["step"], 1);
  EXPECT_EQ(events[1]["detail"], "from the future");
  EXPECT_EQ(events[1]["principal"], "newer-server");

  CommandResult table = Ckpt(absl::StrCat("events ", kJob));
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("unknown(77)"));
  EXPECT_THAT(table.out, HasSubstr("from the future"));
}

}  // namespace
}  // namespace ckpt::testing
