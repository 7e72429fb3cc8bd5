// Round trips of the usage and garbage-collection answers (GetStats's
// job_stored, CollectGarbage's hold and held chunks) through
// common/wire_format.h, apart from wire_format_test.cc, which is long.
#include <optional>

#include "absl/time/time.h"
#include "ckpt/v1/ckpt.pb.h"
#include "common/gc_report.h"
#include "common/stats.h"
#include "common/wire_format.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

TEST(WireFormatTest, JobStoredBytesRoundTripAndStayAbsentWithoutAJob) {
  Stats stats;
  stats.stored_bytes = 9;
  v1::GetStatsResponse proto;
  ToProto(stats, &proto);
  EXPECT_FALSE(proto.has_job_stored());
  EXPECT_FALSE(FromProto(proto).job_stored.has_value());

  stats.job_stored = JobStoredBytes{150000, 2, 100000, 1};
  ToProto(stats, &proto);
  const Stats back = FromProto(proto);
  ASSERT_TRUE(back.job_stored.has_value());
  EXPECT_EQ(back.job_stored->stored_bytes, 150000u);
  EXPECT_EQ(back.job_stored->chunk_count, 2u);
  EXPECT_EQ(back.job_stored->shared_bytes, 100000u);
  EXPECT_EQ(back.job_stored->shared_chunk_count, 1u);
  EXPECT_EQ(back.stored_bytes, 9u);
}

TEST(WireFormatTest, GcHeldChunksRoundTripAndAnUnknownReasonIsKept) {
  GcReport report;
  report.hold = absl::ZeroDuration();  // present although zero
  report.chunks_held = 3;
  report.bytes_held = 30;
  report.held_group_count = 7;
  HeldChunks pending;
  pending.reason = HeldReason::kPendingCheckpoint;
  pending.tenant = "t";
  pending.job = "t/p";
  pending.step = 5;
  pending.chunk_count = 2;
  pending.bytes = 20;
  pending.until = absl::FromUnixSeconds(1'800'000'000);
  HeldChunks during;
  during.reason = HeldReason::kCommittedDuringCollection;
  during.tenant = "t";
  during.chunk_count = 1;
  during.bytes = 10;
  report.held = {pending, during};
  v1::CollectGarbageResponse proto;
  ToProto(report, &proto);
  auto back = FromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->hold, absl::ZeroDuration());
  EXPECT_EQ(back->bytes_held, 30u);
  EXPECT_EQ(back->held_group_count, 7u);
  ASSERT_EQ(back->held.size(), 2u);
  EXPECT_EQ(back->held[0].reason, HeldReason::kPendingCheckpoint);
  EXPECT_EQ(back->held[0].job, "t/p");
  EXPECT_EQ(back->held[0].step, 5);
  EXPECT_EQ(back->held[0].chunk_count, 2u);
  EXPECT_EQ(back->held[0].bytes, 20u);
  EXPECT_EQ(back->held[0].until, absl::FromUnixSeconds(1'800'000'000));
  EXPECT_EQ(back->held[1].until, std::nullopt);

  // An older server: no hold reported. A newer one's reason: kept, named.
  proto.clear_hold_seconds();
  proto.mutable_held(0)->set_reason(static_cast<v1::HeldReason>(42));
  back = FromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->hold, std::nullopt);
  EXPECT_EQ(HeldReasonName(back->held[0].reason), "unknown(42)");
  EXPECT_EQ(HeldReasonName(HeldReason::kSaveInFlight), "save_in_flight");
}

}  // namespace
}  // namespace ckpt
