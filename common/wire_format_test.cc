// Round trips and refusals of every proto <-> domain conversion and persisted
// encoding (common/wire_format.h), plus the golden files of old records. One
// job, long because wire_format is the single conversion point and each
// message gets its round trip and its malformed cases here.
#include "common/wire_format.h"

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ckpt/v1/ckpt.pb.h"
#include "common/chunk_id.h"
#include "common/event.h"
#include "common/manifest.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

using ::testing::HasSubstr;

constexpr DType kAllDTypes[] = {
    DType::kUint8,   DType::kInt8,    DType::kInt16,     DType::kInt32,
    DType::kInt64,   DType::kFloat16, DType::kBFloat16,  DType::kFloat32,
    DType::kFloat64, DType::kBool,    DType::kComplex64, DType::kComplex128,
};

constexpr CheckpointState kAllStates[] = {
    CheckpointState::kPending,
    CheckpointState::kCommitted,
    CheckpointState::kAborted,
};

// Times on whole microseconds: the wire keeps microseconds.
absl::Time Micros(int64_t us) { return absl::FromUnixMicros(us); }

// A shard exercising every field: several dtypes, a scalar, an empty box.
ShardManifest SampleShard() {
  ShardManifest shard;
  shard.rank = 3;
  TensorEntry weight;
  weight.name = "model.layers.0.attn.q_proj.weight";
  weight.dtype = DType::kBFloat16;
  weight.global_shape = {4096, 4096};
  weight.box = Box{{1024, 0}, {1024, 4096}};
  weight.pieces = {ChunkRef{Sha256("piece-0"), 4 << 20},
                   ChunkRef{Sha256("piece-1"), 4 << 20}};
  shard.tensors.push_back(weight);
  TensorEntry step;
  step.name = "optimizer.step";
  step.dtype = DType::kInt64;
  step.pieces = {ChunkRef{Sha256("step"), 8}};
  shard.tensors.push_back(step);
  TensorEntry empty;
  empty.name = "empty";
  empty.dtype = DType::kComplex128;
  empty.global_shape = {0, 7};
  empty.box = Box{{0, 0}, {0, 7}};
  shard.tensors.push_back(empty);
  return shard;
}

CheckpointRecord SampleRecord() {
  CheckpointRecord record;
  record.job = "research/resnet50";
  record.step = 123456789012;
  record.state = CheckpointState::kCommitted;
  record.world_size = 8;
  record.metadata.metrics = {{"loss", 0.125}, {"accuracy", 0.75}};
  record.metadata.tags = {{"git", "abc123"}, {"note", "golden"}};
  record.metadata.writer_time = Micros(1700000000123456);
  record.create_time = Micros(1700000000000001);
  record.commit_time = Micros(1700000060000002);
  record.lease_expiry = Micros(1700000300000003);
  record.logical_bytes = 5000000000;
  record.committed_ranks = {0, 1, 2, 3, 4, 5, 6, 7};
  record.abort_reason = "";
  return record;
}

// ---------------------------------------------------------------- dtypes

TEST(WireFormatTest, DTypeRoundTripsForEveryDType) {
  for (DType dtype : kAllDTypes) {
    SCOPED_TRACE(DTypeName(dtype));
    v1::DType proto = ToProto(dtype);
    EXPECT_NE(proto, v1::DTYPE_UNSPECIFIED);
    auto back = FromProto(proto);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, dtype);
  }
}

// The proto enum value name for the model's `name`: "DTYPE_" and "float32"
// give "DTYPE_FLOAT32".
std::string ProtoEnumName(absl::string_view prefix, absl::string_view name) {
  std::string out = absl::StrCat(prefix, name);
  for (char& c : out) c = static_cast<char>(std::toupper(c));
  return out;
}

TEST(WireFormatTest, DTypeMapsToTheSameNamedProtoValue) {
  for (DType dtype : kAllDTypes) {
    EXPECT_EQ(v1::DType_Name(ToProto(dtype)),
              ProtoEnumName("DTYPE_", DTypeName(dtype)));
  }
}

TEST(WireFormatTest, FromProtoRejectsUnknownDType) {
  for (int raw : {0, 13, 99, -1}) {
    SCOPED_TRACE(raw);
    auto dtype = FromProto(static_cast<v1::DType>(raw));
    EXPECT_EQ(dtype.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

// ---------------------------------------------------------------- shards

TEST(WireFormatTest, ShardRoundTrips) {
  ShardManifest shard = SampleShard();
  v1::ShardManifest proto;
  ToProto(shard, &proto);
  EXPECT_EQ(proto.format_version(), kFormatVersion);
  EXPECT_EQ(proto.rank(), 3);
  ASSERT_EQ(proto.tensors_size(), 3);
  EXPECT_EQ(proto.tensors(0).dtype(), v1::DTYPE_BFLOAT16);
  ASSERT_EQ(proto.tensors(0).pieces_size(), 2);
  EXPECT_EQ(proto.tensors(0).pieces(1).chunk().sha256(),
            Sha256("piece-1").bytes());
  EXPECT_EQ(proto.tensors(0).pieces(1).chunk().size(), 4u << 20);

  auto back = FromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, shard);
}

TEST(WireFormatTest, ShardRoundTripsFingerprintPieces) {
  ShardManifest shard = SampleShard();
  shard.tensors[0].fingerprint_pieces = {
      ChunkRef{Sha256("fingerprints-0"), 64},
      ChunkRef{Sha256("fingerprints-1"), 32}};
  v1::ShardManifest proto;
  ToProto(shard, &proto);
  ASSERT_EQ(proto.tensors(0).fingerprint_pieces_size(), 2);
  EXPECT_EQ(proto.tensors(0).fingerprint_pieces(1).chunk().sha256(),
            Sha256("fingerprints-1").bytes());
  EXPECT_EQ(proto.tensors(1).fingerprint_pieces_size(), 0);
  auto back = FromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, shard);
  // A malformed hash in a fingerprint piece is refused like a piece's.
  proto.mutable_tensors(0)
      ->mutable_fingerprint_pieces(0)
      ->mutable_chunk()
      ->set_sha256("short");
  EXPECT_EQ(FromProto(proto).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(WireFormatTest, EmptyShardRoundTrips) {
  ShardManifest shard;
  v1::ShardManifest proto;
  ToProto(shard, &proto);
  auto back = FromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, shard);
}

TEST(WireFormatTest, ShardRoundTripsEveryDType) {
  ShardManifest shard;
  for (DType dtype : kAllDTypes) {
    TensorEntry t;
    t.name = std::string(DTypeName(dtype));
    t.dtype = dtype;
    t.global_shape = {3};
    t.box = Box{{1}, {2}};
    t.pieces = {ChunkRef{Sha256(t.name), 2 * DTypeSize(dtype)}};
    shard.tensors.push_back(t);
  }
  auto back = DecodeShard(EncodeShard(shard));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, shard);
}

TEST(WireFormatTest, ShardEncodeDecodeRoundTrips) {
  ShardManifest shard = SampleShard();
  auto back = DecodeShard(EncodeShard(shard));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, shard);
}

TEST(WireFormatTest, ShardFromProtoAcceptsOlderFormatVersion) {
  v1::ShardManifest proto;
  ToProto(SampleShard(), &proto);
  proto.set_format_version(0);  // written before versioning
  auto back = FromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, SampleShard());
}

TEST(WireFormatTest, DeltaEntryRoundTripsItsBaseStep) {
  ShardManifest shard = SampleShard();
  shard.tensors[0].delta_base_step = 5;
  v1::ShardManifest proto;
  ToProto(shard, &proto);
  EXPECT_TRUE(proto.tensors(0).has_delta_base_step());
  EXPECT_FALSE(proto.tensors(1).has_delta_base_step());
  auto back = FromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, shard);
  ASSERT_TRUE(back->tensors[0].delta_base_step.has_value());
  EXPECT_EQ(*back->tensors[0].delta_base_step, 5);
  // Step 0 is a base like any other: present, not absent.
  shard.tensors[0].delta_base_step = 0;
  auto zero = DecodeShard(EncodeShard(shard));
  ASSERT_TRUE(zero.ok()) << zero.status();
  EXPECT_EQ(zero->tensors[0].delta_base_step, std::optional<int64_t>(0));
}

TEST(WireFormatTest, QuantizedEntryRoundTripsWidthAndErrors) {
  ShardManifest shard = SampleShard();
  shard.tensors[1].quantization = Quantization{
      .bits = 3, .max_abs_error = 0.125, .relative_l2_error = 0.0625};
  v1::ShardManifest proto;
  ToProto(shard, &proto);
  EXPECT_FALSE(proto.tensors(0).has_quantization());
  ASSERT_TRUE(proto.tensors(1).has_quantization());
  EXPECT_EQ(proto.tensors(1).quantization().bits(), 3u);
  auto back = DecodeShard(EncodeShard(shard));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, shard);
  EXPECT_FALSE(back->tensors[0].quantization.has_value());
  // A width beyond int stays invalid instead of wrapping into a valid one.
  proto.mutable_tensors(1)->mutable_quantization()->set_bits((1ull << 32) - 4);
  auto huge = FromProto(proto);
  ASSERT_TRUE(huge.ok()) << huge.status();
  EXPECT_NE(huge->tensors[1].quantization->bits, 4);
}

TEST(WireFormatTest, CheckpointRecordRoundTripsBasesAndBytesAdded) {
  CheckpointRecord record;
  record.job = "team/model";
  record.step = 12;
  record.base_steps = {4, 8};
  record.bytes_added = 123456;
  auto back = DecodeCheckpointRecord(EncodeCheckpointRecord(record));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->base_steps, (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(back->bytes_added, 123456u);
  EXPECT_EQ(*back, record);
}

TEST(WireFormatTest, CheckpointRecordRoundTripsWhereItWasCopiedFrom) {
  CheckpointRecord record;
  record.job = "team/model";
  record.step = 12;
  record.copied_from =
      CopyPeer{.server = "a.example:7000", .job = "old/model", .step = 0};
  v1::CheckpointInfo proto;
  ToProto(record, &proto);
  EXPECT_EQ(proto.copied_from().server(), "a.example:7000");
  EXPECT_EQ(proto.copied_from().job(), "old/model");
  auto back = DecodeCheckpointRecord(EncodeCheckpointRecord(record));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, record);
  // Not a copy: absent, not an empty peer.
  record.copied_from.reset();
  ToProto(record, &proto);
  EXPECT_FALSE(proto.has_copied_from());
  back = DecodeCheckpointRecord(EncodeCheckpointRecord(record));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_FALSE(back->copied_from.has_value());
}

TEST(WireFormatTest, ShardFromProtoRejectsEmptyPiece) {
  // A Piece with no kind set is neither a chunk nor supported.
  v1::ShardManifest proto;
  ToProto(SampleShard(), &proto);
  proto.mutable_tensors(1)->add_pieces();
  EXPECT_EQ(FromProto(proto).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(WireFormatTest, ShardFromProtoRejectsMalformedHash) {
  for (size_t size : {0, 31, 33}) {
    SCOPED_TRACE(size);
    v1::ShardManifest proto;
    ToProto(SampleShard(), &proto);
    proto.mutable_tensors(1)->mutable_pieces(0)->mutable_chunk()->set_sha256(
        std::string(size, 'h'));
    auto shard = FromProto(proto);
    EXPECT_EQ(shard.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(shard.status().message(), HasSubstr("optimizer.step"));
  }
}

TEST(WireFormatTest, ShardFromProtoRejectsUnknownDType) {
  for (int raw : {0, 13, 1000}) {
    SCOPED_TRACE(raw);
    v1::ShardManifest proto;
    ToProto(SampleShard(), &proto);
    proto.mutable_tensors(2)->set_dtype(static_cast<v1::DType>(raw));
    auto shard = FromProto(proto);
    EXPECT_EQ(shard.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(shard.status().message(), HasSubstr("tensor 'empty'"));
  }
}

TEST(WireFormatTest, ShardFromProtoRejectsNewerFormatVersion) {
  v1::ShardManifest proto;
  ToProto(SampleShard(), &proto);
  proto.set_format_version(kFormatVersion + 1);
  auto shard = FromProto(proto);
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(shard.status().message(), HasSubstr("format_version"));
}

TEST(WireFormatTest, DecodeShardOfNewerOrInvalidContentIsDataLoss) {
  v1::ShardManifest proto;
  ToProto(SampleShard(), &proto);
  proto.set_format_version(kFormatVersion + 1);
  auto newer = DecodeShard(proto.SerializeAsString());
  EXPECT_EQ(newer.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(newer.status().message(), HasSubstr("shard manifest"));

  proto.Clear();
  ToProto(SampleShard(), &proto);
  proto.mutable_tensors(0)->mutable_pieces(0)->mutable_chunk()->set_sha256(
      "short");
  EXPECT_EQ(DecodeShard(proto.SerializeAsString()).status().code(),
            absl::StatusCode::kDataLoss);
}

// ---------------------------------------------------------------- records

TEST(WireFormatTest, CheckpointRecordRoundTripsEveryState) {
  for (CheckpointState state : kAllStates) {
    SCOPED_TRACE(CheckpointStateName(state));
    CheckpointRecord record = SampleRecord();
    record.state = state;
    if (state == CheckpointState::kAborted) record.abort_reason = "rank 3 died";

    v1::CheckpointInfo proto;
    ToProto(record, &proto);
    EXPECT_EQ(proto.format_version(), kFormatVersion);
    auto back = FromProto(proto);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, record);

    auto decoded = DecodeCheckpointRecord(EncodeCheckpointRecord(record));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, record);
  }
}

TEST(WireFormatTest, CheckpointRecordFieldsMapToProto) {
  v1::CheckpointInfo proto;
  ToProto(SampleRecord(), &proto);
  EXPECT_EQ(proto.job(), "research/resnet50");
  EXPECT_EQ(proto.step(), 123456789012);
  EXPECT_EQ(proto.state(), v1::CHECKPOINT_STATE_COMMITTED);
  EXPECT_EQ(proto.world_size(), 8);
  EXPECT_EQ(proto.metadata().metrics().at("loss"), 0.125);
  EXPECT_EQ(proto.metadata().tags().at("note"), "golden");
  ASSERT_TRUE(proto.metadata().has_writer_time_micros());
  EXPECT_EQ(proto.metadata().writer_time_micros(), 1700000000123456);
  EXPECT_EQ(proto.create_time_micros(), 1700000000000001);
  EXPECT_EQ(proto.commit_time_micros(), 1700000060000002);
  EXPECT_EQ(proto.lease_expiry_micros(), 1700000300000003);
  EXPECT_EQ(proto.logical_bytes(), 5000000000u);
  EXPECT_THAT(proto.committed_ranks(),
              testing::ElementsAre(0, 1, 2, 3, 4, 5, 6, 7));
}

TEST(WireFormatTest, StateEnumValuesMatchProto) {
  v1::CheckpointInfo proto;
  CheckpointRecord record = SampleRecord();
  record.state = CheckpointState::kPending;
  ToProto(record, &proto);
  EXPECT_EQ(proto.state(), v1::CHECKPOINT_STATE_PENDING);
  record.state = CheckpointState::kAborted;
  ToProto(record, &proto);
  EXPECT_EQ(proto.state(), v1::CHECKPOINT_STATE_ABORTED);
}

TEST(WireFormatTest, AbsentWriterTimeStaysAbsent) {
  CheckpointRecord record = SampleRecord();
  record.metadata.writer_time.reset();
  v1::CheckpointInfo proto;
  ToProto(record, &proto);
  EXPECT_FALSE(proto.metadata().has_writer_time_micros());
  auto back = DecodeCheckpointRecord(EncodeCheckpointRecord(record));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_FALSE(back->metadata.writer_time.has_value());
  EXPECT_EQ(*back, record);
  EXPECT_EQ(back->EffectiveTime(), record.commit_time);
}

TEST(WireFormatTest, WriterTimeAtEpochIsPresentNotAbsent) {
  // Zero is a real time, distinct from "not given".
  CheckpointRecord record = SampleRecord();
  record.metadata.writer_time = absl::UnixEpoch();
  v1::CheckpointInfo proto;
  ToProto(record, &proto);
  EXPECT_TRUE(proto.metadata().has_writer_time_micros());
  auto back = DecodeCheckpointRecord(EncodeCheckpointRecord(record));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_TRUE(back->metadata.writer_time.has_value());
  EXPECT_EQ(*back->metadata.writer_time, absl::UnixEpoch());
}

TEST(WireFormatTest, DefaultAndEdgeRecordsRoundTrip) {
  CheckpointRecord defaults;
  auto back = DecodeCheckpointRecord(EncodeCheckpointRecord(defaults));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, defaults);

  CheckpointRecord edges = SampleRecord();
  edges.step = -1;
  edges.create_time = Micros(-1);  // before the epoch
  edges.logical_bytes = std::numeric_limits<uint64_t>::max();
  edges.committed_ranks = {};
  edges.metadata.metrics = {{"nan-free", -0.5}, {"big", 1e300}};
  edges.metadata.tags = {{"", ""}, {"unicode", "\xc3\xa9t\xc3\xa9"}};
  back = DecodeCheckpointRecord(EncodeCheckpointRecord(edges));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, edges);
}

TEST(WireFormatTest, CheckpointFromProtoRejectsNewerFormatVersion) {
  v1::CheckpointInfo proto;
  ToProto(SampleRecord(), &proto);
  proto.set_format_version(kFormatVersion + 1);
  auto record = FromProto(proto);
  EXPECT_EQ(record.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(record.status().message(), HasSubstr("format_version"));
  EXPECT_EQ(DecodeCheckpointRecord(proto.SerializeAsString()).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(WireFormatTest, CheckpointFromProtoRejectsUnknownState) {
  for (int raw : {0, 4, 77}) {
    SCOPED_TRACE(raw);
    v1::CheckpointInfo proto;
    ToProto(SampleRecord(), &proto);
    proto.set_state(static_cast<v1::CheckpointState>(raw));
    EXPECT_EQ(FromProto(proto).status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(DecodeCheckpointRecord(proto.SerializeAsString()).status().code(),
              absl::StatusCode::kDataLoss);
  }
}

TEST(WireFormatTest, JobRecordRoundTrips) {
  for (const JobRecord& job :
       {MakeJobRecord("research/resnet50", Micros(1700000000654321)),
        MakeJobRecord("t/a/b.c_d-1", absl::UnixEpoch()), JobRecord{}}) {
    SCOPED_TRACE(job.name);
    std::string encoded = EncodeJobRecord(job);
    v1::JobInfo proto;
    ASSERT_TRUE(proto.ParseFromString(encoded));
    EXPECT_EQ(proto.format_version(), kFormatVersion);
    EXPECT_EQ(proto.name(), job.name);
    auto back = DecodeJobRecord(encoded);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, job);
  }
}

TEST(WireFormatTest, JobSummaryRoundTrips) {
  JobSummary summary;
  summary.job = MakeJobRecord("research/resnet50", Micros(1700000000654321));
  RetentionPolicy policy;
  policy.max_to_keep = 2;
  summary.job.retention_policy = policy;
  summary.job.first_checkpoint_time = Micros(1700000001000000);
  summary.checkpoint_count = 7;
  summary.logical_bytes = uint64_t{5} << 40;
  summary.latest_step = 0;  // step 0 is a step, not "none"
  v1::JobInfo proto;
  ToProto(summary, &proto);
  EXPECT_EQ(proto.latest_step(), 0);
  EXPECT_EQ(FromProto(proto), summary);

  summary.latest_step.reset();
  summary.job.retention_policy.reset();
  ToProto(summary, &proto);
  EXPECT_EQ(proto.latest_step(), -1);
  EXPECT_FALSE(proto.has_retention_policy());
  EXPECT_EQ(FromProto(proto), summary);
}

TEST(WireFormatTest, JobSummaryLeavesOutAPolicyItCannotRead) {
  v1::JobInfo proto;
  proto.set_name("t/job");
  proto.set_latest_step(-1);
  proto.mutable_retention_policy()->set_max_to_keep(3);
  proto.mutable_retention_policy()->mutable_keep_best()->set_mode(
      static_cast<v1::MetricMode>(99));
  JobSummary summary = FromProto(proto);
  EXPECT_EQ(summary.job.name, "t/job");
  EXPECT_FALSE(summary.job.retention_policy.has_value());
}

TEST(WireFormatTest, RetentionDecisionRoundTrips) {
  RetentionDecision decision;
  decision.step = 12;
  decision.keep = true;
  decision.reasons = {"pinned", "base of step 14"};
  v1::RetentionDecision proto;
  proto.add_reasons("stale");  // replaced, not appended to
  ToProto(decision, &proto);
  ASSERT_EQ(proto.reasons_size(), 2);
  RetentionDecision back = FromProto(proto);
  EXPECT_EQ(back.step, 12);
  EXPECT_TRUE(back.keep);
  EXPECT_EQ(back.reasons, decision.reasons);
}

TEST(WireFormatTest, SharedFileEndpointAndPlacementsRoundTrip) {
  const SharedFileEndpoint endpoint{"ckpt-shm-0123", std::string(16, 'i'),
                                    std::string(32, 't')};
  v1::GetSharedFileEndpointResponse endpoint_proto;
  ToProto(endpoint, &endpoint_proto);
  EXPECT_EQ(endpoint_proto.socket_name(), "ckpt-shm-0123");
  EXPECT_EQ(FromProto(endpoint_proto), endpoint);

  const ChunkPlacement placement{Sha256("chunk"), 5, {4096, 8192}};
  v1::ChunkPlacement proto;
  proto.add_offsets(1);  // replaced, not appended to
  ToProto(placement, &proto);
  auto back = FromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, placement);

  proto.set_sha256("short");
  EXPECT_EQ(FromProto(proto).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(WireFormatTest, JobRecordWithPolicyAndClockStartRoundTrips) {
  JobRecord job = MakeJobRecord("research/resnet50", Micros(1700000000654321));
  RetentionPolicy policy;
  policy.max_to_keep = 3;
  policy.keep_every = absl::Hours(6);
  policy.keep_best = RetentionPolicy::KeepBest{
      2, "val_loss", RetentionPolicy::KeepBest::Mode::kMin};
  job.retention_policy = policy;
  job.first_checkpoint_time = Micros(1700000001000000);
  auto back = DecodeJobRecord(EncodeJobRecord(job));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, job);

  // An empty policy is present, not absent: it means "keep everything" as
  // set by an operator.
  job.retention_policy = RetentionPolicy{};
  job.first_checkpoint_time = absl::UnixEpoch();
  back = DecodeJobRecord(EncodeJobRecord(job));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, job);
}

TEST(WireFormatTest, RetentionPolicyRoundTripsEveryMode) {
  using Mode = RetentionPolicy::KeepBest::Mode;
  for (Mode mode : {Mode::kMin, Mode::kMax, Mode::kAuto}) {
    RetentionPolicy policy;
    policy.keep_best = RetentionPolicy::KeepBest{1, "acc", mode};
    v1::RetentionPolicy proto;
    ToProto(policy, &proto);
    EXPECT_FALSE(proto.has_max_to_keep());
    EXPECT_FALSE(proto.has_keep_every_micros());
    auto back = FromProto(proto);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, policy);
  }
  RetentionPolicy partial;
  partial.keep_every = absl::Minutes(30);
  v1::RetentionPolicy proto;
  ToProto(partial, &proto);
  EXPECT_EQ(proto.keep_every_micros(), 30LL * 60 * 1000000);
  EXPECT_FALSE(proto.has_keep_best());
  auto back = FromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, partial);
}

TEST(WireFormatTest, RetentionPolicyUnspecifiedModeIsAutoAndUnknownRejected) {
  v1::RetentionPolicy proto;
  proto.mutable_keep_best()->set_k(1);
  proto.mutable_keep_best()->set_metric("loss");
  auto back = FromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->keep_best->mode, RetentionPolicy::KeepBest::Mode::kAuto);
  proto.mutable_keep_best()->set_mode(static_cast<v1::MetricMode>(42));
  EXPECT_EQ(FromProto(proto).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(WireFormatTest, PinnedRoundTrips) {
  CheckpointRecord record;
  record.job = "t/j";
  record.state = CheckpointState::kCommitted;
  record.pinned = true;
  v1::CheckpointInfo proto;
  ToProto(record, &proto);
  EXPECT_TRUE(proto.pinned());
  auto back = DecodeCheckpointRecord(EncodeCheckpointRecord(record));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, record);
}

TEST(WireFormatTest, DecodeJobRecordOfNewerFormatIsDataLoss) {
  v1::JobInfo proto;
  proto.set_format_version(kRecordWithResticRulesVersion + 1);
  proto.set_name("a/b");
  EXPECT_EQ(DecodeJobRecord(proto.SerializeAsString()).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(WireFormatTest, DecodeOfGarbageIsDataLoss) {
  const std::vector<std::string> garbage = {
      std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11),
      std::string("\x0a\x05"
                  "ab",
                  4),          // truncated length-delimited field
      std::string("\x07", 1),  // field 0, invalid wire type
      std::string("\x08", 1),  // a tag without its value
      "garbage bytes",
  };
  for (const std::string& bytes : garbage) {
    SCOPED_TRACE(testing::PrintToString(bytes));
    auto shard = DecodeShard(bytes);
    EXPECT_EQ(shard.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(shard.status().message(), HasSubstr("shard manifest"));
    auto record = DecodeCheckpointRecord(bytes);
    EXPECT_EQ(record.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(record.status().message(), HasSubstr("checkpoint record"));
    auto job = DecodeJobRecord(bytes);
    EXPECT_EQ(job.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(job.status().message(), HasSubstr("job record"));
    auto event = DecodeJobEvent(bytes);
    EXPECT_EQ(event.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(event.status().message(), HasSubstr("job event"));
  }
}

TEST(WireFormatTest, DecodeOfEmptyBytesIsTheDefault) {
  // Proto3 encodes all-default messages as no bytes at all.
  auto shard = DecodeShard("");
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(*shard, ShardManifest());
  auto job = DecodeJobRecord("");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(*job, JobRecord());
  // A record needs a state; the default (unspecified) is corrupt.
  EXPECT_EQ(DecodeCheckpointRecord("").status().code(),
            absl::StatusCode::kDataLoss);
}

// ---------------------------------------------------------------- events

constexpr EventKind kAllEventKinds[] = {
    EventKind::kCommitted,     EventKind::kAborted,     EventKind::kDeleted,
    EventKind::kPruned,        EventKind::kPinned,      EventKind::kUnpinned,
    EventKind::kRestored,      EventKind::kPolicySet,   EventKind::kCopied,
    EventKind::kPolicyIgnored, EventKind::kTagsChanged,
};

JobEvent SampleEvent(EventKind kind) {
  JobEvent event;
  event.job = "research/resnet50";
  event.sequence = 12345678901;
  event.time = Micros(1700000000123456);
  event.kind = kind;
  event.step = 42;
  event.detail = "retention at commit of step 45: not among the 3 most recent";
  event.principal = "trainer-7";
  return event;
}

TEST(WireFormatTest, JobEventRoundTripsForEveryKind) {
  for (EventKind kind : kAllEventKinds) {
    SCOPED_TRACE(EventKindName(kind));
    const JobEvent event = SampleEvent(kind);
    v1::JobEvent proto;
    ToProto(event, &proto);
    EXPECT_EQ(proto.format_version(), kFormatVersion);
    EXPECT_NE(proto.kind(), v1::EVENT_KIND_UNSPECIFIED);
    auto back = DecodeJobEvent(EncodeJobEvent(event));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, event);
  }
}

TEST(WireFormatTest, EventRecordedBeforePrincipalsDecodesWithNone) {
  // An event stored by an older server has no field 8.
  v1::JobEvent proto;
  ToProto(SampleEvent(EventKind::kCommitted), &proto);
  EXPECT_EQ(proto.principal(), "trainer-7");
  proto.clear_principal();
  auto back = DecodeJobEvent(proto.SerializeAsString());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->principal, "");
  EXPECT_EQ(back->detail, SampleEvent(EventKind::kCommitted).detail);
}

TEST(WireFormatTest, EventKindMapsToTheSameNamedProtoValue) {
  for (EventKind kind : kAllEventKinds) {
    v1::JobEvent proto;
    ToProto(SampleEvent(kind), &proto);
    EXPECT_EQ(v1::EventKind_Name(proto.kind()),
              ProtoEnumName("EVENT_KIND_", EventKindName(kind)));
  }
}

TEST(WireFormatTest, JobLevelEventHasNoStepAndStepZeroIsPresent) {
  JobEvent event = SampleEvent(EventKind::kPolicySet);
  event.step.reset();
  v1::JobEvent proto;
  ToProto(event, &proto);
  EXPECT_FALSE(proto.has_step());
  auto back = DecodeJobEvent(EncodeJobEvent(event));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_FALSE(back->step.has_value());

  event.step = 0;
  back = DecodeJobEvent(EncodeJobEvent(event));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->step, std::optional<int64_t>(0));
}

TEST(WireFormatTest, EventKindsMapToTheSameNamedProtoValue) {
  for (EventKind kind : kAllEventKinds) {
    v1::JobEvent proto;
    ToProto(SampleEvent(kind), &proto);
    EXPECT_EQ(v1::EventKind_Name(proto.kind()),
              absl::AsciiStrToUpper(
                  absl::StrCat("EVENT_KIND_", EventKindName(kind))));
  }
}

TEST(WireFormatTest, JobEventOfUnknownKindKeepsItsNumber) {
  // A newer server's kind: decoded, shown as unknown(N), sent on unchanged.
  for (int raw : {0, 77, 100000}) {
    SCOPED_TRACE(raw);
    v1::JobEvent proto;
    ToProto(SampleEvent(EventKind::kPinned), &proto);
    proto.set_kind(static_cast<v1::EventKind>(raw));
    auto event = DecodeJobEvent(proto.SerializeAsString());
    ASSERT_TRUE(event.ok()) << event.status();
    EXPECT_EQ(EventKindName(event->kind), absl::StrCat("unknown(", raw, ")"));
    EXPECT_EQ(event->detail, SampleEvent(EventKind::kPinned).detail);
    v1::JobEvent again;
    ToProto(*event, &again);
    EXPECT_EQ(again.kind(), raw);
  }
}

TEST(WireFormatTest, JobEventFromProtoRejectsNewerVersion) {
  v1::JobEvent proto;
  ToProto(SampleEvent(EventKind::kPinned), &proto);
  proto.set_format_version(kFormatVersion + 1);
  auto event = FromProto(proto);
  EXPECT_EQ(event.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(event.status().message(), HasSubstr("format_version"));
  EXPECT_EQ(DecodeJobEvent(proto.SerializeAsString()).status().code(),
            absl::StatusCode::kDataLoss);
}

// ---------------------------------------------------------------- golden
//
// Bytes written by format version 1, checked in. The current decoder must
// keep reading them into exactly these values. Regenerate (only when adding
// a new golden file, never to paper over a decoder change) with
//   CKPT_REGENERATE_GOLDEN=1 build/.../common_test --gtest_filter='*Golden*'

CheckpointRecord GoldenRecord() {
  CheckpointRecord record;
  record.job = "research/resnet50";
  record.step = 42000;
  record.state = CheckpointState::kCommitted;
  record.world_size = 4;
  record.metadata.metrics = {{"loss", 1.5}};
  record.metadata.tags = {{"run", "golden-v1"}};
  record.metadata.writer_time = Micros(1700000000123456);
  record.create_time = Micros(1700000000000000);
  record.commit_time = Micros(1700000123000000);
  record.lease_expiry = Micros(1700000600000000);
  record.logical_bytes = 1048592;
  record.committed_ranks = {0, 1, 2, 3};
  return record;
}

ShardManifest GoldenShard() {
  ShardManifest shard;
  shard.rank = 2;
  TensorEntry weight;
  weight.name = "fc.weight";
  weight.dtype = DType::kFloat32;
  weight.global_shape = {1024, 1024};
  weight.box = Box{{512, 0}, {256, 1024}};
  weight.pieces = {
      ChunkRef{*ChunkId::FromHex("ba7816bf8f01cfea414140de5dae2223"
                                 "b00361a396177a9cb410ff61f20015ad"),
               1 << 20}};
  shard.tensors.push_back(weight);
  TensorEntry bias;
  bias.name = "fc.bias";
  bias.dtype = DType::kBFloat16;
  bias.global_shape = {8};
  bias.box = Box{{0}, {8}};
  bias.pieces = {ChunkRef{*ChunkId::FromHex("e3b0c44298fc1c149afbf4c8996fb924"
                                            "27ae41e4649b934ca495991b7852b855"),
                          16}};
  shard.tensors.push_back(bias);
  return shard;
}

JobEvent GoldenEvent() {
  JobEvent event;
  event.job = "research/resnet50";
  event.sequence = 7;
  event.time = Micros(1700000200000000);
  event.kind = EventKind::kPruned;
  event.step = 41000;
  event.detail =
      "retention at commit of step 44000 (max_to_keep=3): not among the 3 "
      "most recent";
  return event;
}

std::string GoldenPath(absl::string_view name) {
  return absl::StrCat(CKPT_COMMON_TESTDATA, "/", name);
}

// Reads the golden file, first rewriting it when CKPT_REGENERATE_GOLDEN=1.
std::string Golden(absl::string_view name, const std::string& fresh) {
  std::string path = GoldenPath(name);
  const char* regenerate = std::getenv("CKPT_REGENERATE_GOLDEN");
  if (regenerate != nullptr && std::string(regenerate) == "1") {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << fresh;
    EXPECT_TRUE(out.good()) << "cannot write " << path;
  }
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(WireFormatGoldenTest, DecodesCheckpointRecordV1) {
  std::string bytes = Golden("checkpoint_record_v1.binpb",
                             EncodeCheckpointRecord(GoldenRecord()));
  ASSERT_FALSE(bytes.empty());
  auto record = DecodeCheckpointRecord(bytes);
  ASSERT_TRUE(record.ok()) << record.status();
  // Field by field, so a failure says which one drifted.
  EXPECT_EQ(record->job, "research/resnet50");
  EXPECT_EQ(record->step, 42000);
  EXPECT_EQ(record->state, CheckpointState::kCommitted);
  EXPECT_EQ(record->world_size, 4);
  EXPECT_THAT(record->metadata.metrics,
              testing::ElementsAre(testing::Pair("loss", 1.5)));
  EXPECT_THAT(record->metadata.tags,
              testing::ElementsAre(testing::Pair("run", "golden-v1")));
  ASSERT_TRUE(record->metadata.writer_time.has_value());
  EXPECT_EQ(absl::ToUnixMicros(*record->metadata.writer_time),
            1700000000123456);
  EXPECT_EQ(absl::ToUnixMicros(record->create_time), 1700000000000000);
  EXPECT_EQ(absl::ToUnixMicros(record->commit_time), 1700000123000000);
  EXPECT_EQ(absl::ToUnixMicros(record->lease_expiry), 1700000600000000);
  EXPECT_EQ(record->logical_bytes, 1048592u);
  EXPECT_THAT(record->committed_ranks, testing::ElementsAre(0, 1, 2, 3));
  EXPECT_EQ(record->abort_reason, "");
  EXPECT_FALSE(record->pinned);  // written before pins existed
  EXPECT_EQ(*record, GoldenRecord());

  // The raw proto says version 1, whatever kFormatVersion becomes.
  v1::CheckpointInfo proto;
  ASSERT_TRUE(proto.ParseFromString(bytes));
  EXPECT_EQ(proto.format_version(), 1u);
}

TEST(WireFormatGoldenTest, DecodesShardManifestV1) {
  std::string bytes =
      Golden("shard_manifest_v1.binpb", EncodeShard(GoldenShard()));
  ASSERT_FALSE(bytes.empty());
  auto shard = DecodeShard(bytes);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(shard->rank, 2);
  ASSERT_EQ(shard->tensors.size(), 2u);
  const TensorEntry& weight = shard->tensors[0];
  EXPECT_EQ(weight.name, "fc.weight");
  EXPECT_EQ(weight.dtype, DType::kFloat32);
  EXPECT_THAT(weight.global_shape, testing::ElementsAre(1024, 1024));
  EXPECT_THAT(weight.box.offsets, testing::ElementsAre(512, 0));
  EXPECT_THAT(weight.box.lengths, testing::ElementsAre(256, 1024));
  ASSERT_EQ(weight.pieces.size(), 1u);
  EXPECT_EQ(weight.pieces[0].id.ToHex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(weight.pieces[0].size, 1u << 20);
  const TensorEntry& bias = shard->tensors[1];
  EXPECT_EQ(bias.name, "fc.bias");
  EXPECT_EQ(bias.dtype, DType::kBFloat16);
  EXPECT_THAT(bias.global_shape, testing::ElementsAre(8));
  EXPECT_THAT(bias.box.offsets, testing::ElementsAre(0));
  EXPECT_THAT(bias.box.lengths, testing::ElementsAre(8));
  ASSERT_EQ(bias.pieces.size(), 1u);
  EXPECT_EQ(bias.pieces[0].id.ToHex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(bias.pieces[0].size, 16u);
  EXPECT_EQ(*shard, GoldenShard());
  // The golden shard is itself valid.
  EXPECT_TRUE(ValidateShardManifest(*shard, 4).ok());

  v1::ShardManifest proto;
  ASSERT_TRUE(proto.ParseFromString(bytes));
  EXPECT_EQ(proto.format_version(), 1u);
}

TEST(WireFormatGoldenTest, DecodesJobEventV1) {
  std::string bytes =
      Golden("job_event_v1.binpb", EncodeJobEvent(GoldenEvent()));
  ASSERT_FALSE(bytes.empty());
  auto event = DecodeJobEvent(bytes);
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_EQ(event->job, "research/resnet50");
  EXPECT_EQ(event->sequence, 7u);
  EXPECT_EQ(absl::ToUnixMicros(event->time), 1700000200000000);
  EXPECT_EQ(event->kind, EventKind::kPruned);
  EXPECT_EQ(event->step, std::optional<int64_t>(41000));
  EXPECT_EQ(event->detail,
            "retention at commit of step 44000 (max_to_keep=3): not among the "
            "3 most recent");
  EXPECT_EQ(*event, GoldenEvent());

  v1::JobEvent proto;
  ASSERT_TRUE(proto.ParseFromString(bytes));
  EXPECT_EQ(proto.format_version(), 1u);
  EXPECT_EQ(proto.kind(), v1::EVENT_KIND_PRUNED);
}

}  // namespace
}  // namespace ckpt
