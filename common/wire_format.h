// The one place where the data model converts to and from its Protobuf
// form (ckpt.v1), used by the gRPC edge, the client and persisted records.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ckpt/v1/ckpt.pb.h"
#include "common/event.h"
#include "common/gc_report.h"
#include "common/manifest.h"
#include "common/retention.h"
#include "common/shared_file.h"
#include "common/stats.h"
#include "common/verify.h"

namespace ckpt {

v1::DType ToProto(DType dtype);
absl::StatusOr<DType> FromProto(v1::DType dtype);

// Each ToProto replaces *out entirely.
void ToProto(const ShardManifest& shard, v1::ShardManifest* out);
// INVALID_ARGUMENT for malformed hashes, unknown dtypes, quantization
// widths that do not fit an int, or a format_version newer than this build
// reads. (Row deltas and quantized entries are carried; their rules are
// ValidateShardManifest's.)
absl::StatusOr<ShardManifest> FromProto(const v1::ShardManifest& shard);

void ToProto(const CheckpointMetadata& metadata, v1::CheckpointMetadata* out);
CheckpointMetadata FromProto(const v1::CheckpointMetadata& metadata);

// Not validated (ValidateCopyPeer is the server's check).
void ToProto(const CopyPeer& peer, v1::CopyPeer* out);
CopyPeer FromProto(const v1::CopyPeer& peer);

void ToProto(const CheckpointRecord& record, v1::CheckpointInfo* out);
absl::StatusOr<CheckpointRecord> FromProto(const v1::CheckpointInfo& info);

void ToProto(const RetentionPolicy& policy, v1::RetentionPolicy* out);
// INVALID_ARGUMENT for an unknown metric mode. Does not validate the values
// (ValidateRetentionPolicy does).
absl::StatusOr<RetentionPolicy> FromProto(const v1::RetentionPolicy& policy);

// Who set a policy (JobInfo.policy_origin, GetRetentionPolicyResponse).
// FromProto reads an unknown source as an operator's.
void ToProto(const PolicyOrigin& origin, v1::PolicyOrigin* out);
PolicyOrigin FromProto(const v1::PolicyOrigin& origin);

// ListJobs's entries. FromProto is lenient about the policy: one the server
// stored is valid, and an unknown future mode is not worth failing a
// listing over, so such a policy is left out.
void ToProto(const JobSummary& summary, v1::JobInfo* out);
JobSummary FromProto(const v1::JobInfo& info);

void ToProto(const RetentionDecision& decision, v1::RetentionDecision* out);
RetentionDecision FromProto(const v1::RetentionDecision& decision);

// GetSharedFileEndpoint's answer and ReadChunksIntoFile's placements
// (common/shared_file.h). FromProto of a placement is INVALID_ARGUMENT for
// a malformed hash; it does not check sizes or offsets (the service does,
// against the file).
void ToProto(const SharedFileEndpoint& endpoint,
             v1::GetSharedFileEndpointResponse* out);
SharedFileEndpoint FromProto(const v1::GetSharedFileEndpointResponse& proto);
void ToProto(const ChunkPlacement& placement, v1::ChunkPlacement* out);
absl::StatusOr<ChunkPlacement> FromProto(const v1::ChunkPlacement& placement);

void ToProto(const GcReport& report, v1::CollectGarbageResponse* out);
// INVALID_ARGUMENT for a malformed chunk hash.
absl::StatusOr<GcReport> FromProto(const v1::CollectGarbageResponse& report);
void ToProto(const JobEvent& event, v1::JobEvent* out);
// INVALID_ARGUMENT for a format_version newer than this build reads. A kind
// this build does not know keeps its number (EventKindName: "unknown(N)").
absl::StatusOr<JobEvent> FromProto(const v1::JobEvent& event);

// Persisted encodings (RocksDB values). Decoding a corrupt or newer-format
// value is DATA_LOSS naming `what`.
std::string EncodeShard(const ShardManifest& shard);
absl::StatusOr<ShardManifest> DecodeShard(absl::string_view value);
std::string EncodeCheckpointRecord(const CheckpointRecord& record);
absl::StatusOr<CheckpointRecord> DecodeCheckpointRecord(
    absl::string_view value);
// A stored job record whose retention policy, or tenant record whose
// default policy, uses restic's rules (UsesResticRules) has this
// format_version, so that a server that predates them refuses the record
// (DATA_LOSS) instead of dropping the rules and deleting what they keep.
// Other records keep kFormatVersion; DecodeJobRecord and
// DecodeTenantRecord read both.
inline constexpr uint32_t kRecordWithResticRulesVersion = 2;
std::string EncodeJobRecord(const JobRecord& job);
absl::StatusOr<JobRecord> DecodeJobRecord(absl::string_view value);
// A tenant's record (persisted only). FromProto: INVALID_ARGUMENT for a
// newer format_version or an unknown metric mode.
void ToProto(const TenantRecord& tenant, v1::TenantInfo* out);
absl::StatusOr<TenantRecord> FromProto(const v1::TenantInfo& tenant);
std::string EncodeTenantRecord(const TenantRecord& tenant);
absl::StatusOr<TenantRecord> DecodeTenantRecord(absl::string_view value);
std::string EncodeJobEvent(const JobEvent& event);
absl::StatusOr<JobEvent> DecodeJobEvent(absl::string_view value);

// GetStats's answer (common/stats.h).
void ToProto(const Stats& stats, v1::GetStatsResponse* out);
Stats FromProto(const v1::GetStatsResponse& stats);

// Verify (common/verify.h). FromProto does not validate the subset (the
// service does); it is INVALID_ARGUMENT only for what cannot be represented:
// malformed hashes, unknown stages or problems.
void ToProto(const VerifyOptions& options, v1::VerifyRequest* out);
VerifyOptions FromProto(const v1::VerifyRequest& request);
void ToProto(const VerifyProgress& progress, v1::VerifyProgress* out);
absl::StatusOr<VerifyProgress> FromProto(const v1::VerifyProgress& progress);
void ToProto(const VerifyReport& report, v1::VerifyReport* out);
absl::StatusOr<VerifyReport> FromProto(const v1::VerifyReport& report);

}  // namespace ckpt
