// The data model's conversions to and from ckpt.v1 messages, and the
// persisted encodings built on them (the maintenance calls' reports are in
// wire_format_reports.cc). Just past 600 lines because that is its one job:
// every model message's ToProto/FromProto lives here, so no conversion is
// written anywhere else.
#include "common/wire_format.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/quote.h"
#include "common/status_macros.h"

namespace ckpt {
namespace {

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

absl::Status CheckVersion(uint32_t version, absl::string_view what) {
  if (version > kFormatVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has format_version ", version,
                     "; this build reads up to ", kFormatVersion));
  }
  return absl::OkStatus();
}

absl::Status AsDataLoss(const absl::Status& status, absl::string_view what) {
  return absl::DataLossError(
      absl::StrCat("corrupt stored ", what, ": ", status.message()));
}

// The persisted encoding of `value`: its Protobuf form, serialized.
template <typename Proto, typename T>
std::string Encode(const T& value) {
  Proto proto;
  ToProto(value, &proto);
  return proto.SerializeAsString();
}

// Parses a persisted `Proto` and converts it to the model; DATA_LOSS naming
// `what` when either step fails.
template <typename Proto>
auto Decode(absl::string_view value, absl::string_view what)
    -> decltype(FromProto(std::declval<const Proto&>())) {
  Proto proto;
  if (!proto.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(
        absl::StrCat("corrupt stored ", what, ": unparsable"));
  }
  auto decoded = FromProto(proto);
  if (!decoded.ok()) return AsDataLoss(decoded.status(), what);
  return decoded;
}

}  // namespace

v1::DType ToProto(DType dtype) { return static_cast<v1::DType>(dtype); }

absl::StatusOr<DType> FromProto(v1::DType dtype) {
  if (dtype < v1::DTYPE_UINT8 || dtype > v1::DTYPE_COMPLEX128) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown dtype ", static_cast<int>(dtype)));
  }
  return static_cast<DType>(dtype);
}

void ToProto(const ShardManifest& shard, v1::ShardManifest* out) {
  out->Clear();
  out->set_format_version(kFormatVersion);
  out->set_rank(shard.rank);
  out->mutable_tensors()->Reserve(static_cast<int>(shard.tensors.size()));
  for (const auto& tensor : shard.tensors) {
    v1::TensorEntry* entry = out->add_tensors();
    entry->set_name(tensor.name);
    entry->set_dtype(ToProto(tensor.dtype));
    for (int64_t d : tensor.global_shape) entry->add_global_shape(d);
    for (int64_t d : tensor.box.offsets) entry->mutable_box()->add_offsets(d);
    for (int64_t d : tensor.box.lengths) entry->mutable_box()->add_lengths(d);
    entry->mutable_pieces()->Reserve(static_cast<int>(tensor.pieces.size()));
    for (const auto& piece : tensor.pieces) {
      v1::ChunkRef* ref = entry->add_pieces()->mutable_chunk();
      ref->set_sha256(std::string(piece.id.bytes()));
      ref->set_size(piece.size);
    }
    for (const auto& piece : tensor.fingerprint_pieces) {
      v1::ChunkRef* ref = entry->add_fingerprint_pieces()->mutable_chunk();
      ref->set_sha256(std::string(piece.id.bytes()));
      ref->set_size(piece.size);
    }
    if (tensor.delta_base_step.has_value()) {
      entry->set_delta_base_step(*tensor.delta_base_step);
    }
    if (tensor.quantization.has_value()) {
      v1::Quantization* q = entry->mutable_quantization();
      q->set_bits(static_cast<uint32_t>(tensor.quantization->bits));
      q->set_max_abs_error(tensor.quantization->max_abs_error);
      q->set_relative_l2_error(tensor.quantization->relative_l2_error);
    }
  }
}

namespace {

// A tensor entry's pieces (or fingerprint pieces) as chunk references.
absl::StatusOr<std::vector<ChunkRef>> ChunkRefsFromProto(
    const std::string& tensor_name,
    const google::protobuf::RepeatedPtrField<v1::Piece>& pieces) {
  std::vector<ChunkRef> refs;
  refs.reserve(pieces.size());
  for (const auto& piece : pieces) {
    if (piece.kind_case() != v1::Piece::kChunk) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", QuoteTruncated(tensor_name), ": a piece without a chunk"));
    }
    auto id = ChunkId::FromBytes(piece.chunk().sha256());
    if (!id.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", QuoteTruncated(tensor_name), ": ", id.status().message()));
    }
    refs.push_back(ChunkRef{*id, piece.chunk().size()});
  }
  return refs;
}

}  // namespace

absl::StatusOr<ShardManifest> FromProto(const v1::ShardManifest& shard) {
  CKPT_RETURN_IF_ERROR(CheckVersion(shard.format_version(), "shard manifest"));
  ShardManifest out;
  out.rank = shard.rank();
  out.tensors.reserve(shard.tensors_size());
  for (const auto& entry : shard.tensors()) {
    TensorEntry tensor;
    tensor.name = entry.name();
    auto dtype = FromProto(entry.dtype());
    if (!dtype.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", QuoteTruncated(entry.name()), ": ",
                       dtype.status().message()));
    }
    tensor.dtype = *dtype;
    tensor.global_shape.assign(entry.global_shape().begin(),
                               entry.global_shape().end());
    tensor.box.offsets.assign(entry.box().offsets().begin(),
                              entry.box().offsets().end());
    tensor.box.lengths.assign(entry.box().lengths().begin(),
                              entry.box().lengths().end());
    CKPT_ASSIGN_OR_RETURN(tensor.pieces,
                          ChunkRefsFromProto(entry.name(), entry.pieces()));
    CKPT_ASSIGN_OR_RETURN(
        tensor.fingerprint_pieces,
        ChunkRefsFromProto(entry.name(), entry.fingerprint_pieces()));
    if (entry.has_delta_base_step()) {
      tensor.delta_base_step = entry.delta_base_step();
    }
    if (entry.has_quantization()) {
      const v1::Quantization& q = entry.quantization();
      // Clamped: an out-of-range width stays invalid (manifest validation
      // names it) instead of wrapping into a valid one.
      tensor.quantization = Quantization{
          .bits = static_cast<int>(std::min<uint32_t>(q.bits(), 1u << 16)),
          .max_abs_error = q.max_abs_error(),
          .relative_l2_error = q.relative_l2_error()};
    }
    out.tensors.push_back(std::move(tensor));
  }
  return out;
}

void ToProto(const CheckpointMetadata& metadata, v1::CheckpointMetadata* out) {
  out->Clear();
  for (const auto& [name, value] : metadata.metrics) {
    (*out->mutable_metrics())[name] = value;
  }
  for (const auto& [name, value] : metadata.tags) {
    (*out->mutable_tags())[name] = value;
  }
  if (metadata.writer_time.has_value()) {
    out->set_writer_time_micros(ToMicros(*metadata.writer_time));
  }
}

CheckpointMetadata FromProto(const v1::CheckpointMetadata& metadata) {
  CheckpointMetadata out;
  out.metrics.insert(metadata.metrics().begin(), metadata.metrics().end());
  out.tags.insert(metadata.tags().begin(), metadata.tags().end());
  if (metadata.has_writer_time_micros()) {
    out.writer_time = FromMicros(metadata.writer_time_micros());
  }
  return out;
}

void ToProto(const CopyPeer& peer, v1::CopyPeer* out) {
  out->Clear();
  out->set_server(peer.server);
  out->set_job(peer.job);
  out->set_step(peer.step);
}

CopyPeer FromProto(const v1::CopyPeer& peer) {
  return CopyPeer{
      .server = peer.server(), .job = peer.job(), .step = peer.step()};
}

void ToProto(const CheckpointRecord& record, v1::CheckpointInfo* out) {
  out->Clear();
  out->set_format_version(kFormatVersion);
  out->set_job(record.job);
  out->set_step(record.step);
  out->set_state(static_cast<v1::CheckpointState>(record.state));
  out->set_world_size(record.world_size);
  ToProto(record.metadata, out->mutable_metadata());
  out->set_create_time_micros(ToMicros(record.create_time));
  out->set_commit_time_micros(ToMicros(record.commit_time));
  out->set_lease_expiry_micros(ToMicros(record.lease_expiry));
  out->set_logical_bytes(record.logical_bytes);
  for (int32_t rank : record.committed_ranks) out->add_committed_ranks(rank);
  out->set_abort_reason(record.abort_reason);
  out->set_lease_duration_micros(
      absl::ToInt64Microseconds(record.lease_duration));
  out->set_pinned(record.pinned);
  for (int64_t base : record.base_steps) out->add_base_steps(base);
  out->set_bytes_added(record.bytes_added);
  if (record.copied_from.has_value()) {
    ToProto(*record.copied_from, out->mutable_copied_from());
  }
}

absl::StatusOr<CheckpointRecord> FromProto(const v1::CheckpointInfo& info) {
  CKPT_RETURN_IF_ERROR(CheckVersion(info.format_version(), "checkpoint"));
  if (info.state() < v1::CHECKPOINT_STATE_PENDING ||
      info.state() > v1::CHECKPOINT_STATE_ABORTED) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown checkpoint state ", info.state()));
  }
  CheckpointRecord out;
  out.job = info.job();
  out.step = info.step();
  out.state = static_cast<CheckpointState>(info.state());
  out.world_size = info.world_size();
  out.metadata = FromProto(info.metadata());
  out.create_time = FromMicros(info.create_time_micros());
  out.commit_time = FromMicros(info.commit_time_micros());
  out.lease_expiry = FromMicros(info.lease_expiry_micros());
  out.logical_bytes = info.logical_bytes();
  out.committed_ranks.assign(info.committed_ranks().begin(),
                             info.committed_ranks().end());
  out.abort_reason = info.abort_reason();
  out.lease_duration = absl::Microseconds(info.lease_duration_micros());
  out.pinned = info.pinned();
  out.base_steps.assign(info.base_steps().begin(), info.base_steps().end());
  out.bytes_added = info.bytes_added();
  if (info.has_copied_from()) out.copied_from = FromProto(info.copied_from());
  return out;
}

void ToProto(const RetentionPolicy& policy, v1::RetentionPolicy* out) {
  out->Clear();
  if (policy.max_to_keep.has_value()) {
    out->set_max_to_keep(*policy.max_to_keep);
  }
  if (policy.keep_every.has_value()) {
    out->set_keep_every_micros(absl::ToInt64Microseconds(*policy.keep_every));
  }
  if (policy.keep_best.has_value()) {
    v1::RetentionPolicy::KeepBest* best = out->mutable_keep_best();
    best->set_k(policy.keep_best->k);
    best->set_metric(policy.keep_best->metric);
    switch (policy.keep_best->mode) {
      case RetentionPolicy::KeepBest::Mode::kMin:
        best->set_mode(v1::METRIC_MODE_MIN);
        break;
      case RetentionPolicy::KeepBest::Mode::kMax:
        best->set_mode(v1::METRIC_MODE_MAX);
        break;
      case RetentionPolicy::KeepBest::Mode::kAuto:
        best->set_mode(v1::METRIC_MODE_AUTO);
        break;
    }
  }
  if (policy.keep_within.has_value()) {
    out->set_keep_within_micros(absl::ToInt64Microseconds(*policy.keep_within));
  }
  if (policy.keep_hourly.has_value()) out->set_keep_hourly(*policy.keep_hourly);
  if (policy.keep_daily.has_value()) out->set_keep_daily(*policy.keep_daily);
  if (policy.keep_weekly.has_value()) out->set_keep_weekly(*policy.keep_weekly);
  if (policy.keep_monthly.has_value()) {
    out->set_keep_monthly(*policy.keep_monthly);
  }
  for (const std::string& tag : policy.keep_tags) out->add_keep_tags(tag);
}

absl::StatusOr<RetentionPolicy> FromProto(const v1::RetentionPolicy& policy) {
  RetentionPolicy out;
  if (policy.has_max_to_keep()) out.max_to_keep = policy.max_to_keep();
  if (policy.has_keep_every_micros()) {
    out.keep_every = absl::Microseconds(policy.keep_every_micros());
  }
  if (policy.has_keep_best()) {
    RetentionPolicy::KeepBest best;
    best.k = policy.keep_best().k();
    best.metric = policy.keep_best().metric();
    switch (policy.keep_best().mode()) {
      case v1::METRIC_MODE_UNSPECIFIED:
      case v1::METRIC_MODE_AUTO:
        best.mode = RetentionPolicy::KeepBest::Mode::kAuto;
        break;
      case v1::METRIC_MODE_MIN:
        best.mode = RetentionPolicy::KeepBest::Mode::kMin;
        break;
      case v1::METRIC_MODE_MAX:
        best.mode = RetentionPolicy::KeepBest::Mode::kMax;
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("unknown metric mode ",
                         static_cast<int>(policy.keep_best().mode())));
    }
    out.keep_best = std::move(best);
  }
  if (policy.has_keep_within_micros()) {
    out.keep_within = absl::Microseconds(policy.keep_within_micros());
  }
  if (policy.has_keep_hourly()) out.keep_hourly = policy.keep_hourly();
  if (policy.has_keep_daily()) out.keep_daily = policy.keep_daily();
  if (policy.has_keep_weekly()) out.keep_weekly = policy.keep_weekly();
  if (policy.has_keep_monthly()) out.keep_monthly = policy.keep_monthly();
  out.keep_tags.assign(policy.keep_tags().begin(), policy.keep_tags().end());
  return out;
}

void ToProto(const JobEvent& event, v1::JobEvent* out) {
  out->Clear();
  out->set_format_version(kFormatVersion);
  out->set_job(event.job);
  out->set_sequence(event.sequence);
  out->set_time_micros(ToMicros(event.time));
  out->set_kind(static_cast<v1::EventKind>(event.kind));
  if (event.step.has_value()) out->set_step(*event.step);
  out->set_detail(event.detail);
  out->set_principal(event.principal);
}

absl::StatusOr<JobEvent> FromProto(const v1::JobEvent& event) {
  CKPT_RETURN_IF_ERROR(CheckVersion(event.format_version(), "job event"));
  JobEvent out;
  out.job = event.job();
  out.sequence = event.sequence();
  out.time = FromMicros(event.time_micros());
  // Kept as is when unknown (a newer server's kind): see EventKind.
  out.kind = static_cast<EventKind>(event.kind());
  if (event.has_step()) out.step = event.step();
  out.detail = event.detail();
  out.principal = event.principal();
  return out;
}

std::string EncodeShard(const ShardManifest& shard) {
  return Encode<v1::ShardManifest>(shard);
}

absl::StatusOr<ShardManifest> DecodeShard(absl::string_view value) {
  return Decode<v1::ShardManifest>(value, "shard manifest");
}

std::string EncodeCheckpointRecord(const CheckpointRecord& record) {
  return Encode<v1::CheckpointInfo>(record);
}

absl::StatusOr<CheckpointRecord> DecodeCheckpointRecord(
    absl::string_view value) {
  return Decode<v1::CheckpointInfo>(value, "checkpoint record");
}

void ToProto(const PolicyOrigin& origin, v1::PolicyOrigin* out) {
  out->Clear();
  switch (origin.source) {
    case PolicyOrigin::Source::kOperator:
      out->set_source(v1::POLICY_SOURCE_OPERATOR);
      break;
    case PolicyOrigin::Source::kWriter:
      out->set_source(v1::POLICY_SOURCE_WRITER);
      break;
    case PolicyOrigin::Source::kTenantDefault:
      out->set_source(v1::POLICY_SOURCE_TENANT_DEFAULT);
      break;
  }
  out->set_principal(origin.principal);
  if (origin.time.has_value()) out->set_time_micros(ToMicros(*origin.time));
  out->set_inferred(origin.inferred);
}

PolicyOrigin FromProto(const v1::PolicyOrigin& origin) {
  PolicyOrigin out;
  switch (origin.source()) {
    case v1::POLICY_SOURCE_WRITER:
      out.source = PolicyOrigin::Source::kWriter;
      break;
    case v1::POLICY_SOURCE_TENANT_DEFAULT:
      out.source = PolicyOrigin::Source::kTenantDefault;
      break;
    default:  // an unknown source is read as the safe one
      out.source = PolicyOrigin::Source::kOperator;
      break;
  }
  out.principal = origin.principal();
  if (origin.time_micros() != 0) out.time = FromMicros(origin.time_micros());
  out.inferred = origin.inferred();
  return out;
}

namespace {

// The format_version of a stored record holding `policy`: servers that
// predate restic's rules would drop them and apply the rest of the policy,
// so a version they refuse to read is safer.
uint32_t RecordVersionFor(const std::optional<RetentionPolicy>& policy) {
  return policy.has_value() && UsesResticRules(*policy)
             ? kRecordWithResticRulesVersion
             : kFormatVersion;
}

void ToProto(const JobRecord& job, v1::JobInfo* out) {
  out->Clear();
  out->set_format_version(RecordVersionFor(job.retention_policy));
  out->set_name(job.name);
  out->set_create_time_micros(ToMicros(job.create_time));
  if (job.retention_policy.has_value()) {
    ToProto(*job.retention_policy, out->mutable_retention_policy());
  }
  if (job.first_checkpoint_time.has_value()) {
    out->set_first_checkpoint_time_micros(ToMicros(*job.first_checkpoint_time));
  }
  if (job.policy_origin.has_value()) {
    ToProto(*job.policy_origin, out->mutable_policy_origin());
  }
  // Kept in the origin message (JobInfo has one field for ownership); with
  // no policy, the message carries only these (source unspecified).
  for (const std::string& digest : job.ignored_policy_digests) {
    out->mutable_policy_origin()->add_ignored_policy_digests(digest);
  }
}

}  // namespace

void ToProto(const JobSummary& summary, v1::JobInfo* out) {
  ToProto(summary.job, out);
  // Bookkeeping of the server's, not the job's description.
  if (!summary.job.policy_origin.has_value()) {
    out->clear_policy_origin();
  } else {
    out->mutable_policy_origin()->clear_ignored_policy_digests();
  }
  out->set_checkpoint_count(summary.checkpoint_count);
  out->set_logical_bytes(summary.logical_bytes);
  out->set_latest_step(summary.latest_step.value_or(-1));
}

JobSummary FromProto(const v1::JobInfo& info) {
  JobSummary summary;
  summary.job =
      MakeJobRecord(info.name(), FromMicros(info.create_time_micros()));
  if (info.has_retention_policy()) {
    absl::StatusOr<RetentionPolicy> policy = FromProto(info.retention_policy());
    if (policy.ok()) summary.job.retention_policy = *std::move(policy);
  }
  if (info.has_first_checkpoint_time_micros()) {
    summary.job.first_checkpoint_time =
        FromMicros(info.first_checkpoint_time_micros());
  }
  if (summary.job.retention_policy.has_value() && info.has_policy_origin()) {
    summary.job.policy_origin = FromProto(info.policy_origin());
  }
  summary.checkpoint_count = info.checkpoint_count();
  summary.logical_bytes = info.logical_bytes();
  if (info.latest_step() >= 0) summary.latest_step = info.latest_step();
  return summary;
}

void ToProto(const RetentionDecision& decision, v1::RetentionDecision* out) {
  out->Clear();
  out->set_step(decision.step);
  out->set_keep(decision.keep);
  for (const std::string& reason : decision.reasons) out->add_reasons(reason);
}

RetentionDecision FromProto(const v1::RetentionDecision& decision) {
  RetentionDecision out;
  out.step = decision.step();
  out.keep = decision.keep();
  out.reasons.assign(decision.reasons().begin(), decision.reasons().end());
  return out;
}

void ToProto(const SharedFileEndpoint& endpoint,
             v1::GetSharedFileEndpointResponse* out) {
  out->Clear();
  out->set_socket_name(endpoint.socket_name);
  out->set_ticket_id(endpoint.ticket_id);
  out->set_ticket(endpoint.ticket);
}

SharedFileEndpoint FromProto(const v1::GetSharedFileEndpointResponse& proto) {
  return SharedFileEndpoint{proto.socket_name(), proto.ticket_id(),
                            proto.ticket()};
}

void ToProto(const ChunkPlacement& placement, v1::ChunkPlacement* out) {
  out->Clear();
  out->set_sha256(placement.id.bytes().data(), placement.id.bytes().size());
  out->set_size(placement.size);
  out->mutable_offsets()->Add(placement.offsets.begin(),
                              placement.offsets.end());
}

absl::StatusOr<ChunkPlacement> FromProto(const v1::ChunkPlacement& placement) {
  CKPT_ASSIGN_OR_RETURN(ChunkId id, ChunkId::FromBytes(placement.sha256()));
  return ChunkPlacement{
      id,
      placement.size(),
      {placement.offsets().begin(), placement.offsets().end()}};
}

std::string EncodeJobRecord(const JobRecord& job) {
  v1::JobInfo proto;
  ToProto(job, &proto);
  return proto.SerializeAsString();
}

absl::StatusOr<JobRecord> DecodeJobRecord(absl::string_view value) {
  v1::JobInfo proto;
  if (!proto.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError("corrupt stored job record: unparsable");
  }
  if (proto.format_version() > kRecordWithResticRulesVersion) {
    return absl::DataLossError("stored job record has a newer format_version");
  }
  JobRecord job =
      MakeJobRecord(proto.name(), FromMicros(proto.create_time_micros()));
  if (proto.has_retention_policy()) {
    auto policy = FromProto(proto.retention_policy());
    if (!policy.ok()) return AsDataLoss(policy.status(), "job record");
    job.retention_policy = *std::move(policy);
  }
  if (proto.has_first_checkpoint_time_micros()) {
    job.first_checkpoint_time =
        FromMicros(proto.first_checkpoint_time_micros());
  }
  if (proto.has_policy_origin()) {
    if (proto.policy_origin().source() != v1::POLICY_SOURCE_UNSPECIFIED) {
      job.policy_origin = FromProto(proto.policy_origin());
    }
    job.ignored_policy_digests.assign(
        proto.policy_origin().ignored_policy_digests().begin(),
        proto.policy_origin().ignored_policy_digests().end());
  }
  return job;
}

void ToProto(const TenantRecord& tenant, v1::TenantInfo* out) {
  out->Clear();
  out->set_format_version(RecordVersionFor(tenant.default_policy));
  out->set_name(tenant.name);
  if (tenant.default_policy.has_value()) {
    ToProto(*tenant.default_policy, out->mutable_default_policy());
  }
  if (tenant.default_policy_origin.has_value()) {
    ToProto(*tenant.default_policy_origin,
            out->mutable_default_policy_origin());
  }
}

absl::StatusOr<TenantRecord> FromProto(const v1::TenantInfo& tenant) {
  if (tenant.format_version() > kRecordWithResticRulesVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tenant record has format_version ", tenant.format_version(),
        "; this build reads up to ", kRecordWithResticRulesVersion));
  }
  TenantRecord out;
  out.name = tenant.name();
  if (tenant.has_default_policy()) {
    CKPT_ASSIGN_OR_RETURN(out.default_policy,
                          FromProto(tenant.default_policy()));
  }
  if (tenant.has_default_policy_origin()) {
    out.default_policy_origin = FromProto(tenant.default_policy_origin());
  }
  return out;
}

std::string EncodeTenantRecord(const TenantRecord& tenant) {
  return Encode<v1::TenantInfo>(tenant);
}

absl::StatusOr<TenantRecord> DecodeTenantRecord(absl::string_view value) {
  return Decode<v1::TenantInfo>(value, "tenant record");
}

std::string EncodeJobEvent(const JobEvent& event) {
  return Encode<v1::JobEvent>(event);
}

absl::StatusOr<JobEvent> DecodeJobEvent(absl::string_view value) {
  return Decode<v1::JobEvent>(value, "job event");
}

}  // namespace ckpt
