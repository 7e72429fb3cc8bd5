// The reports of the maintenance calls (garbage collection, verify, stats)
// to and from their ckpt.v1 messages: apart from wire_format.cc, which
// keeps the data model's and persisted records' conversions, so each file
// stays one job. Declared in common/wire_format.h.
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "common/wire_format.h"

namespace ckpt {

void ToProto(const GcReport& report, v1::CollectGarbageResponse* out) {
  out->Clear();
  out->set_dry_run(report.dry_run);
  out->set_chunks_scanned(report.chunks_scanned);
  out->set_bytes_scanned(report.bytes_scanned);
  out->set_chunks_referenced(report.chunks_referenced);
  out->set_chunks_held(report.chunks_held);
  out->set_chunks_deleted(report.chunks_deleted);
  out->set_bytes_deleted(report.bytes_deleted);
  out->set_disk_bytes_before(report.disk_bytes_before);
  out->set_disk_bytes_after(report.disk_bytes_after);
  for (const auto& [tenant, reason] : report.skipped_tenants) {
    v1::SkippedTenant* skipped = out->add_skipped_tenants();
    skipped->set_tenant(tenant);
    skipped->set_reason(reason);
  }
  for (const DamagedCheckpoint& damaged : report.damaged) {
    v1::DamagedCheckpoint* entry = out->add_damaged();
    entry->set_job(damaged.job);
    entry->set_step(damaged.step);
    entry->set_state(static_cast<v1::CheckpointState>(damaged.state));
    for (const ChunkId& id : damaged.missing_chunks) {
      entry->add_missing_sha256(std::string(id.bytes()));
    }
  }
  out->set_duration_micros(absl::ToInt64Microseconds(report.duration));
  if (report.hold.has_value()) {
    out->set_hold_seconds(absl::ToInt64Seconds(*report.hold));
  }
  for (const HeldChunks& group : report.held) {
    v1::HeldChunks* proto = out->add_held();
    proto->set_reason(static_cast<v1::HeldReason>(group.reason));
    proto->set_tenant(group.tenant);
    proto->set_job(group.job);
    proto->set_step(group.step);
    proto->set_chunk_count(group.chunk_count);
    proto->set_bytes(group.bytes);
    if (group.until.has_value()) {
      proto->set_until_micros(absl::ToUnixMicros(*group.until));
    }
  }
  out->set_held_group_count(report.held_group_count);
  out->set_bytes_held(report.bytes_held);
}

absl::StatusOr<GcReport> FromProto(const v1::CollectGarbageResponse& report) {
  GcReport out;
  out.dry_run = report.dry_run();
  out.chunks_scanned = report.chunks_scanned();
  out.bytes_scanned = report.bytes_scanned();
  out.chunks_referenced = report.chunks_referenced();
  out.chunks_held = report.chunks_held();
  out.chunks_deleted = report.chunks_deleted();
  out.bytes_deleted = report.bytes_deleted();
  out.disk_bytes_before = report.disk_bytes_before();
  out.disk_bytes_after = report.disk_bytes_after();
  for (const v1::SkippedTenant& skipped : report.skipped_tenants()) {
    out.skipped_tenants.emplace_back(skipped.tenant(), skipped.reason());
  }
  for (const v1::DamagedCheckpoint& entry : report.damaged()) {
    DamagedCheckpoint damaged;
    damaged.job = entry.job();
    damaged.step = entry.step();
    damaged.state = static_cast<CheckpointState>(entry.state());
    for (const std::string& hash : entry.missing_sha256()) {
      CKPT_ASSIGN_OR_RETURN(ChunkId id, ChunkId::FromBytes(hash));
      damaged.missing_chunks.push_back(id);
    }
    out.damaged.push_back(std::move(damaged));
  }
  out.duration = absl::Microseconds(report.duration_micros());
  if (report.has_hold_seconds()) {
    out.hold = absl::Seconds(report.hold_seconds());
  }
  for (const v1::HeldChunks& proto : report.held()) {
    HeldChunks group;
    group.reason = static_cast<HeldReason>(proto.reason());
    group.tenant = proto.tenant();
    group.job = proto.job();
    group.step = proto.step();
    group.chunk_count = proto.chunk_count();
    group.bytes = proto.bytes();
    if (proto.until_micros() != 0)
      group.until = absl::FromUnixMicros(proto.until_micros());
    out.held.push_back(std::move(group));
  }
  out.held_group_count = report.held_group_count();
  out.bytes_held = report.bytes_held();
  return out;
}

namespace {

void ToProto(const ReadDataSubset& subset, v1::ReadDataSubset* out) {
  out->set_n(subset.n);
  out->set_t(subset.t);
}

ReadDataSubset FromProto(const v1::ReadDataSubset& subset) {
  return ReadDataSubset{subset.n(), subset.t()};
}

void ToProto(const CheckpointKey& key, v1::CheckpointKey* out) {
  out->set_job(key.job);
  out->set_step(key.step);
}

CheckpointKey FromProto(const v1::CheckpointKey& key) {
  return CheckpointKey{key.job(), key.step()};
}

}  // namespace

void ToProto(const VerifyOptions& options, v1::VerifyRequest* out) {
  out->Clear();
  out->set_job(options.job);
  if (options.step.has_value()) out->set_step(*options.step);
  out->set_read_data(options.read_data);
  if (options.read_data_subset.has_value()) {
    ToProto(*options.read_data_subset, out->mutable_read_data_subset());
  }
}

VerifyOptions FromProto(const v1::VerifyRequest& request) {
  VerifyOptions options;
  options.job = request.job();
  if (request.has_step()) options.step = request.step();
  options.read_data = request.read_data();
  if (request.has_read_data_subset()) {
    options.read_data_subset = FromProto(request.read_data_subset());
  }
  return options;
}

void ToProto(const VerifyProgress& progress, v1::VerifyProgress* out) {
  out->Clear();
  out->set_stage(static_cast<v1::VerifyStage>(progress.stage));
  out->set_chunks_done(progress.chunks_done);
  out->set_chunks_total(progress.chunks_total);
  out->set_bytes_done(progress.bytes_done);
  out->set_bytes_total(progress.bytes_total);
}

absl::StatusOr<VerifyProgress> FromProto(const v1::VerifyProgress& progress) {
  if (progress.stage() < v1::VERIFY_STAGE_EXISTENCE ||
      progress.stage() > v1::VERIFY_STAGE_READ_DATA) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown verify stage ", progress.stage()));
  }
  VerifyProgress out;
  out.stage = static_cast<VerifyStage>(progress.stage());
  out.chunks_done = progress.chunks_done();
  out.chunks_total = progress.chunks_total();
  out.bytes_done = progress.bytes_done();
  out.bytes_total = progress.bytes_total();
  return out;
}

void ToProto(const VerifyReport& report, v1::VerifyReport* out) {
  out->Clear();
  out->set_read_data(report.read_data);
  if (report.read_data_subset.has_value()) {
    ToProto(*report.read_data_subset, out->mutable_read_data_subset());
  }
  out->set_checkpoints_checked(report.checkpoints_checked);
  out->set_pending_skipped(report.pending_skipped);
  out->set_chunks_checked(report.chunks_checked);
  out->set_chunks_read(report.chunks_read);
  out->set_bytes_read(report.bytes_read);
  for (const VerifyReport::DamagedChunk& chunk : report.damaged_chunks) {
    v1::VerifyReport::DamagedChunk* proto = out->add_damaged_chunks();
    proto->set_tenant(chunk.tenant);
    proto->set_sha256(std::string(chunk.id.bytes()));
    proto->set_size(chunk.size);
    proto->set_problem(static_cast<v1::ChunkProblem>(chunk.problem));
    proto->set_detail(chunk.detail);
    for (const CheckpointKey& key : chunk.checkpoints) {
      ToProto(key, proto->add_checkpoints());
    }
  }
  out->set_damaged_chunk_count(report.damaged_chunk_count);
  for (const VerifyReport::DamagedCheckpoint& checkpoint :
       report.damaged_checkpoints) {
    v1::VerifyReport::DamagedCheckpoint* proto = out->add_damaged_checkpoints();
    ToProto(checkpoint.checkpoint, proto->mutable_checkpoint());
    proto->set_missing_chunks(checkpoint.missing_chunks);
    proto->set_corrupt_chunks(checkpoint.corrupt_chunks);
    for (const std::string& problem : checkpoint.problems) {
      proto->add_problems(problem);
    }
  }
}

absl::StatusOr<VerifyReport> FromProto(const v1::VerifyReport& report) {
  VerifyReport out;
  out.read_data = report.read_data();
  if (report.has_read_data_subset()) {
    out.read_data_subset = FromProto(report.read_data_subset());
  }
  out.checkpoints_checked = report.checkpoints_checked();
  out.pending_skipped = report.pending_skipped();
  out.chunks_checked = report.chunks_checked();
  out.chunks_read = report.chunks_read();
  out.bytes_read = report.bytes_read();
  for (const v1::VerifyReport::DamagedChunk& proto : report.damaged_chunks()) {
    VerifyReport::DamagedChunk chunk;
    chunk.tenant = proto.tenant();
    CKPT_ASSIGN_OR_RETURN(chunk.id, ChunkId::FromBytes(proto.sha256()));
    chunk.size = proto.size();
    if (proto.problem() < v1::CHUNK_PROBLEM_MISSING ||
        proto.problem() > v1::CHUNK_PROBLEM_SIZE_MISMATCH) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown chunk problem ", proto.problem()));
    }
    chunk.problem = static_cast<ChunkProblem>(proto.problem());
    chunk.detail = proto.detail();
    for (const v1::CheckpointKey& key : proto.checkpoints()) {
      chunk.checkpoints.push_back(FromProto(key));
    }
    out.damaged_chunks.push_back(std::move(chunk));
  }
  out.damaged_chunk_count = report.damaged_chunk_count();
  for (const v1::VerifyReport::DamagedCheckpoint& proto :
       report.damaged_checkpoints()) {
    VerifyReport::DamagedCheckpoint checkpoint;
    checkpoint.checkpoint = FromProto(proto.checkpoint());
    checkpoint.missing_chunks = proto.missing_chunks();
    checkpoint.corrupt_chunks = proto.corrupt_chunks();
    checkpoint.problems.assign(proto.problems().begin(),
                               proto.problems().end());
    out.damaged_checkpoints.push_back(std::move(checkpoint));
  }
  return out;
}

void ToProto(const Stats& stats, v1::GetStatsResponse* out) {
  out->Clear();
  out->set_logical_bytes(stats.logical_bytes);
  out->set_stored_bytes(stats.stored_bytes);
  out->set_chunk_count(stats.chunk_count);
  out->set_job_count(stats.job_count);
  out->set_checkpoint_count(stats.checkpoint_count);
  for (const JobStats& job : stats.jobs) {
    v1::JobStats* proto = out->add_jobs();
    proto->set_job(job.job);
    proto->set_checkpoint_count(job.checkpoint_count);
    proto->set_logical_bytes(job.logical_bytes);
  }
  for (const TenantStats& tenant : stats.tenants) {
    v1::TenantStats* proto = out->add_tenants();
    proto->set_tenant(tenant.tenant);
    proto->set_job_count(tenant.job_count);
    proto->set_checkpoint_count(tenant.checkpoint_count);
    proto->set_logical_bytes(tenant.logical_bytes);
    proto->set_stored_bytes(tenant.stored_bytes);
    proto->set_chunk_count(tenant.chunk_count);
  }
  if (stats.job_stored.has_value()) {
    v1::JobStoredBytes* proto = out->mutable_job_stored();
    proto->set_stored_bytes(stats.job_stored->stored_bytes);
    proto->set_chunk_count(stats.job_stored->chunk_count);
    proto->set_shared_bytes(stats.job_stored->shared_bytes);
    proto->set_shared_chunk_count(stats.job_stored->shared_chunk_count);
  }
}

Stats FromProto(const v1::GetStatsResponse& stats) {
  Stats out;
  out.logical_bytes = stats.logical_bytes();
  out.stored_bytes = stats.stored_bytes();
  out.chunk_count = stats.chunk_count();
  out.job_count = stats.job_count();
  out.checkpoint_count = stats.checkpoint_count();
  for (const v1::JobStats& job : stats.jobs()) {
    out.jobs.push_back(
        JobStats{job.job(), job.checkpoint_count(), job.logical_bytes()});
  }
  for (const v1::TenantStats& tenant : stats.tenants()) {
    out.tenants.push_back(TenantStats{
        tenant.tenant(), tenant.job_count(), tenant.checkpoint_count(),
        tenant.logical_bytes(), tenant.stored_bytes(), tenant.chunk_count()});
  }
  if (stats.has_job_stored()) {
    const v1::JobStoredBytes& job = stats.job_stored();
    out.job_stored =
        JobStoredBytes{job.stored_bytes(), job.chunk_count(),
                       job.shared_bytes(), job.shared_chunk_count()};
  }
  return out;
}

}  // namespace ckpt
