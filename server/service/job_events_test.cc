// The job event builders (job_events.h) on their own, without a service or a
// store: detail texts, truncation, and which decisions become events.
// checkpoint_service_events_test.cc checks that the service records them.
#include "server/service/job_events.h"

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/event.h"
#include "common/manifest.h"
#include "common/retention.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/storage/metadata_store.h"

namespace ckpt::server {
namespace {

using ::testing::ElementsAre;

constexpr char kJob[] = "team/model";
const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);
constexpr char kWho[] = "alice";

// Whether `text` is a sequence of whole UTF-8 characters (lead byte, then as
// many continuation bytes as it announces). Structural only: enough to tell
// a character cut in two.
bool IsWholeUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<uint8_t>(text[i]);
    size_t length = 0;
    if (lead < 0x80) {
      length = 1;
    } else if ((lead & 0xe0) == 0xc0) {
      length = 2;
    } else if ((lead & 0xf0) == 0xe0) {
      length = 3;
    } else if ((lead & 0xf8) == 0xf0) {
      length = 4;
    } else {
      return false;  // a continuation byte where a character should start
    }
    if (i + length > text.size()) return false;
    for (size_t j = 1; j < length; ++j) {
      if ((static_cast<uint8_t>(text[i + j]) & 0xc0) != 0x80) return false;
    }
    i += length;
  }
  return true;
}

// The events `batch` appends, in order.
std::vector<JobEvent> EventsIn(const MetadataBatch& batch) {
  std::vector<JobEvent> events;
  for (const MetadataBatch::Op& op : batch.ops()) {
    if (const auto* append = std::get_if<MetadataBatch::AppendEventOp>(&op)) {
      events.push_back(append->event);
    }
  }
  return events;
}

RetentionDecision Decision(int64_t step, bool keep,
                           std::vector<std::string> reasons) {
  RetentionDecision decision;
  decision.step = step;
  decision.keep = keep;
  decision.reasons = std::move(reasons);
  return decision;
}

RetentionPolicy MaxToKeep(int n) {
  RetentionPolicy policy;
  policy.max_to_keep = n;
  return policy;
}

TEST(TruncateUtf8Test, LeavesTextThatFitsUnchanged) {
  EXPECT_EQ(TruncateUtf8("", 3), "");
  EXPECT_EQ(TruncateUtf8("abcdef", 6), "abcdef");
  EXPECT_EQ(TruncateUtf8("h\xc3\xa9", 3), "h\xc3\xa9");  // "hé", 3 bytes
}

TEST(TruncateUtf8Test, CutsAsciiToTheLimitAndMarksTheCut) {
  EXPECT_EQ(TruncateUtf8("abcdefgh", 7), "abcd...");
  EXPECT_EQ(TruncateUtf8("abcd", 3), "...");
}

TEST(TruncateUtf8Test, NeverSplitsAMultiByteCharacter) {
  // 1-, 2-, 3- and 4-byte characters in turn: "a", "é", "€", "𝄞".
  std::string text;
  for (int i = 0; i < 8; ++i) {
    text += "a\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e";
  }
  ASSERT_TRUE(IsWholeUtf8(text));
  for (size_t max_bytes = 3; max_bytes < text.size(); ++max_bytes) {
    SCOPED_TRACE(absl::StrCat("max_bytes ", max_bytes));
    const std::string cut = TruncateUtf8(text, max_bytes);
    EXPECT_LE(cut.size(), max_bytes);
    ASSERT_TRUE(absl::EndsWith(cut, "..."));
    const absl::string_view kept =
        absl::string_view(cut).substr(0, cut.size() - 3);
    EXPECT_TRUE(absl::StartsWith(text, kept));
    EXPECT_TRUE(IsWholeUtf8(kept));
    // It keeps every whole character that fits before the mark.
    size_t longest = max_bytes - 3;
    while (!IsWholeUtf8(absl::string_view(text).substr(0, longest))) {
      --longest;
    }
    EXPECT_EQ(kept.size(), longest);
  }
}

TEST(TruncateUtf8Test, BacksOffToTheStartOfACharacterAtTheCut) {
  const std::string text = "ab\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac";  // "ab€€€"
  // Room for "ab" and the first byte of "€": the "€" goes.
  EXPECT_EQ(TruncateUtf8(text, 6), "ab...");
  EXPECT_EQ(TruncateUtf8(text, 7), "ab...");
  // Room for "ab€" exactly.
  EXPECT_EQ(TruncateUtf8(text, 8), "ab\xe2\x82\xac...");
}

TEST(MakeEventTest, CapsTheDetailAndKeepsTheRest) {
  const std::string long_reason(5000, 'x');
  const JobEvent event =
      MakeEvent(kJob, 7, kNow, kWho, EventKind::kAborted, long_reason);
  EXPECT_EQ(event.job, kJob);
  EXPECT_EQ(event.step, 7);
  EXPECT_EQ(event.time, kNow);
  EXPECT_EQ(event.principal, kWho);
  EXPECT_EQ(event.kind, EventKind::kAborted);
  EXPECT_EQ(event.detail.size(), kMaxEventDetailBytes);
  EXPECT_TRUE(absl::EndsWith(event.detail, "..."));
  EXPECT_EQ(event.sequence, 0u);  // the store assigns it

  // Two-byte characters straddling the cap: cut before the one it splits.
  std::string accents;
  for (int i = 0; i < 1000; ++i) accents += "\xc3\xa9";
  const JobEvent cut =
      MakeEvent(kJob, std::nullopt, kNow, kWho, EventKind::kPolicySet, accents);
  EXPECT_EQ(cut.step, std::nullopt);
  EXPECT_LE(cut.detail.size(), kMaxEventDetailBytes);
  EXPECT_TRUE(IsWholeUtf8(cut.detail));
  EXPECT_TRUE(absl::EndsWith(cut.detail, "..."));
}

TEST(JobEventsTest, EachKindSaysWhatHappened) {
  const JobEvent one_rank = CommittedEvent(kJob, 5, kNow, kWho, 1, 10);
  EXPECT_EQ(one_rank.kind, EventKind::kCommitted);
  EXPECT_EQ(one_rank.step, 5);
  EXPECT_EQ(one_rank.detail, "1 rank, 10 bytes");
  EXPECT_EQ(CommittedEvent(kJob, 5, kNow, kWho, 4, 40).detail,
            "4 ranks, 40 bytes");

  const JobEvent aborted = AbortedEvent(kJob, 6, kNow, kWho, "rank 3 crashed");
  EXPECT_EQ(aborted.kind, EventKind::kAborted);
  EXPECT_EQ(aborted.detail, "rank 3 crashed");
  EXPECT_EQ(
      AbortedEvent(kJob, 6, kNow, kWho, std::string(2000, 'r')).detail.size(),
      kMaxEventDetailBytes);

  const JobEvent deleted =
      DeletedEvent(kJob, 7, kNow, kWho, CheckpointState::kCommitted, true);
  EXPECT_EQ(deleted.kind, EventKind::kDeleted);
  EXPECT_EQ(deleted.detail,
            "was committed and pinned; the pin was overridden (force)");
  EXPECT_EQ(DeletedEvent(kJob, 7, kNow, kWho, CheckpointState::kAborted, false)
                .detail,
            "was aborted");

  EXPECT_EQ(PinEvent(kJob, 8, kNow, kWho, true).kind, EventKind::kPinned);
  EXPECT_EQ(PinEvent(kJob, 8, kNow, kWho, false).kind, EventKind::kUnpinned);
  EXPECT_EQ(PinEvent(kJob, 8, kNow, kWho, true).detail, "");

  const JobEvent restored = RestoredEvent(kJob, 9, kNow, kWho, 3);
  EXPECT_EQ(restored.kind, EventKind::kRestored);
  EXPECT_EQ(restored.step, 9);
  EXPECT_EQ(restored.detail, "rank 3");
}

TEST(JobEventsTest, PolicySetIsAJobLevelEventNamingPolicyAndSource) {
  const JobEvent event = PolicySetEvent(kJob, MaxToKeep(3), kNow, kWho,
                                        " (from BeginCheckpoint of step 5)");
  EXPECT_EQ(event.job, kJob);
  EXPECT_EQ(event.kind, EventKind::kPolicySet);
  EXPECT_EQ(event.step, std::nullopt);
  EXPECT_EQ(event.time, kNow);
  EXPECT_EQ(event.detail, "max_to_keep=3 (from BeginCheckpoint of step 5)");
  EXPECT_EQ(PolicySetEvent(kJob, RetentionPolicy{}, kNow, kWho, "").detail,
            "keep everything");
}

TEST(AppendPrunedEventsTest, OneEventPerDeletedCheckpointNamingWhy) {
  const std::vector<RetentionDecision> decisions = {
      Decision(1, false, {"not among the 2 most recent"}),
      Decision(2, true, {"pinned"}),
      Decision(3, false, {"not among the 2 most recent", "not the best"}),
      Decision(4, true, {"newest"}),
  };
  MetadataBatch batch;
  AppendPrunedEvents(kJob, "retention at commit of step 4", MaxToKeep(2),
                     decisions, kNow, kWho, &batch);

  // Events only: the deletions themselves are the caller's to add.
  ASSERT_EQ(batch.ops().size(), 2u);
  const std::vector<JobEvent> events = EventsIn(batch);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].step, 1);
  EXPECT_EQ(events[1].step, 3);
  for (const JobEvent& event : events) {
    EXPECT_EQ(event.job, kJob);
    EXPECT_EQ(event.kind, EventKind::kPruned);
    EXPECT_EQ(event.time, kNow);
    EXPECT_EQ(event.principal, kWho);
  }
  EXPECT_EQ(events[0].detail,
            "retention at commit of step 4 (max_to_keep=2): "
            "not among the 2 most recent");
  EXPECT_EQ(events[1].detail,
            "retention at commit of step 4 (max_to_keep=2): "
            "not among the 2 most recent; not the best");
}

TEST(AppendPrunedEventsTest, NothingDeletedAppendsNothing) {
  // Prune relies on this: an empty batch means there is nothing to apply.
  MetadataBatch batch;
  AppendPrunedEvents(kJob, "prune with the stored policy", MaxToKeep(5),
                     {Decision(1, true, {"among the 5 most recent"})}, kNow,
                     kWho, &batch);
  AppendPrunedEvents(kJob, "prune with the stored policy", MaxToKeep(5), {},
                     kNow, kWho, &batch);
  EXPECT_TRUE(batch.empty());
}

TEST(AppendPrunedEventsTest, LongReasonsAreCutLikeAnyDetail) {
  MetadataBatch batch;
  AppendPrunedEvents(kJob, "prune with a one-off policy", MaxToKeep(1),
                     {Decision(1, false, {std::string(3000, 'w')})}, kNow, kWho,
                     &batch);
  const std::vector<JobEvent> events = EventsIn(batch);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].detail.size(), kMaxEventDetailBytes);
  EXPECT_TRUE(absl::StartsWith(
      events[0].detail, "prune with a one-off policy (max_to_keep=1): "));
  EXPECT_TRUE(absl::EndsWith(events[0].detail, "..."));
}

TEST(AppendPrunedEventsTest, AppendsAfterWhatTheBatchHolds) {
  MetadataBatch batch;
  batch.DeleteCheckpoint(kJob, 1);
  AppendPrunedEvents(kJob, "retention as the policy was set", MaxToKeep(1),
                     {Decision(1, false, {"old"})}, kNow, kWho, &batch);
  ASSERT_EQ(batch.ops().size(), 2u);
  EXPECT_TRUE(std::holds_alternative<MetadataBatch::DeleteCheckpointOp>(
      batch.ops()[0]));
  EXPECT_THAT(EventsIn(batch),
              ElementsAre(::testing::Field(&JobEvent::step,
                                           std::optional<int64_t>(1))));
}

}  // namespace
}  // namespace ckpt::server
