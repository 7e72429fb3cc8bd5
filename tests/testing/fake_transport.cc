#include "tests/testing/fake_transport.h"

#include <unistd.h>

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace ckpt::testing {
namespace {

absl::Status Unimplemented(absl::string_view what) {
  return absl::UnimplementedError(
      absl::StrCat("FakeTransport does not implement ", what));
}

std::string CheckpointName(absl::string_view job, int64_t step) {
  return absl::StrCat("checkpoint ", step, " of job '", job, "'");
}

}  // namespace

// Stores each chunk as it is added, as a server receiving it would.
class FakeTransport::UploadStream : public client::ChunkUploadStream {
 public:
  explicit UploadStream(FakeTransport* fake) : fake_(fake) {}

  absl::Status Add(const ChunkId& id, absl::string_view data) override {
    ++chunks_sent_;
    bytes_sent_ += data.size();
    return fake_->Store(id, data);
  }
  absl::Status Close() override { return absl::OkStatus(); }
  uint64_t chunks_sent() const override { return chunks_sent_; }
  uint64_t bytes_sent() const override { return bytes_sent_; }

 private:
  FakeTransport* const fake_;
  uint64_t chunks_sent_ = 0;
  uint64_t bytes_sent_ = 0;
};

void FakeTransport::LoseChunksAtNextCommit() {
  absl::MutexLock lock(&mu_);
  lose_chunks_at_next_commit_ = true;
}

void FakeTransport::RefuseCommits(absl::Status status, int times) {
  absl::MutexLock lock(&mu_);
  commit_refusal_ = std::move(status);
  commit_refusals_left_ = times;
}

void FakeTransport::AnswerWith(const ChunkId& id, const ChunkId& answered_id,
                               std::string data) {
  absl::MutexLock lock(&mu_);
  answers_[id] = Answer{answered_id, std::move(data)};
}

void FakeTransport::FailReadsIntoFile(absl::Status status) {
  absl::MutexLock lock(&mu_);
  into_file_failure_ = std::move(status);
}

bool FakeTransport::HasChunk(const ChunkId& id) const {
  absl::MutexLock lock(&mu_);
  return chunks_.contains(id);
}

size_t FakeTransport::stored_chunks() const {
  absl::MutexLock lock(&mu_);
  return chunks_.size();
}

uint64_t FakeTransport::chunks_uploaded() const {
  absl::MutexLock lock(&mu_);
  return chunks_uploaded_;
}

int FakeTransport::UploadsOf(const ChunkId& id) const {
  absl::MutexLock lock(&mu_);
  auto it = uploads_.find(id);
  return it == uploads_.end() ? 0 : it->second;
}

std::vector<ChunkId> FakeTransport::asked_missing() const {
  absl::MutexLock lock(&mu_);
  return asked_missing_;
}

int FakeTransport::begin_calls() const {
  absl::MutexLock lock(&mu_);
  return begin_calls_;
}

int FakeTransport::commit_calls() const {
  absl::MutexLock lock(&mu_);
  return commit_calls_;
}

int FakeTransport::ManifestFetches(int64_t step) const {
  absl::MutexLock lock(&mu_);
  auto it = manifest_fetches_.find(step);
  return it == manifest_fetches_.end() ? 0 : it->second;
}

std::vector<int32_t> FakeTransport::restoring_ranks() const {
  absl::MutexLock lock(&mu_);
  return restoring_ranks_;
}

std::vector<FakeTransport::ReportedRestore> FakeTransport::reported_restores()
    const {
  absl::MutexLock lock(&mu_);
  return reported_restores_;
}

std::vector<FakeTransport::ReportedCopy> FakeTransport::reported_copies()
    const {
  absl::MutexLock lock(&mu_);
  return reported_copies_;
}

void FakeTransport::FailRestoreReports(absl::Status status) {
  absl::MutexLock lock(&mu_);
  report_failure_ = std::move(status);
}

void FakeTransport::FailCopyReports(absl::Status status) {
  absl::MutexLock lock(&mu_);
  copy_report_failure_ = std::move(status);
}

int FakeTransport::ReadsOf(const ChunkId& id) const {
  absl::MutexLock lock(&mu_);
  auto it = reads_.find(id);
  return it == reads_.end() ? 0 : it->second;
}

absl::flat_hash_map<ChunkId, int> FakeTransport::read_counts() const {
  absl::MutexLock lock(&mu_);
  return reads_;
}

std::vector<size_t> FakeTransport::read_calls() const {
  absl::MutexLock lock(&mu_);
  return read_calls_;
}

std::vector<client::ChunkSink> FakeTransport::sinks_read() const {
  absl::MutexLock lock(&mu_);
  return sinks_read_;
}

void FakeTransport::ClearReads() {
  absl::MutexLock lock(&mu_);
  reads_.clear();
  read_calls_.clear();
  sinks_read_.clear();
  into_file_calls_ = 0;
}

void FakeTransport::FailSharedFileRegistrations(absl::Status status) {
  absl::MutexLock lock(&mu_);
  registration_failure_ = std::move(status);
}

int FakeTransport::registrations() const {
  absl::MutexLock lock(&mu_);
  return registrations_;
}

size_t FakeTransport::registered_files() const {
  absl::MutexLock lock(&mu_);
  return registered_.size();
}

int FakeTransport::into_file_calls() const {
  absl::MutexLock lock(&mu_);
  return into_file_calls_;
}

absl::Status FakeTransport::Store(const ChunkId& id, absl::string_view data) {
  if (Sha256(data) != id) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk ", id.ShortHex(), ": its bytes do not match its hash"));
  }
  absl::MutexLock lock(&mu_);
  chunks_.try_emplace(id, data);
  ++uploads_[id];
  ++chunks_uploaded_;
  return absl::OkStatus();
}

absl::StatusOr<FakeTransport::Answer> FakeTransport::AnswerFor(
    const ChunkId& id) {
  ++reads_[id];
  if (auto it = answers_.find(id); it != answers_.end()) return it->second;
  auto it = chunks_.find(id);
  if (it == chunks_.end()) {
    return absl::NotFoundError(
        absl::StrCat("chunk ", id.ShortHex(), " is not stored"));
  }
  return Answer{id, it->second};
}

absl::StatusOr<client::BeginReply> FakeTransport::BeginCheckpoint(
    absl::string_view job, int64_t step, const client::BeginOptions& options) {
  absl::MutexLock lock(&mu_);
  ++begin_calls_;
  auto& steps = checkpoints_[std::string(job)];
  auto it = steps.find(step);
  if (it == steps.end() ||
      it->second.record.state == CheckpointState::kAborted) {
    Checkpoint& checkpoint = steps[step];
    checkpoint = Checkpoint();
    checkpoint.record.job = std::string(job);
    checkpoint.record.step = step;
    checkpoint.record.state = CheckpointState::kPending;
    checkpoint.record.world_size = options.world_size;
    checkpoint.record.metadata = options.metadata;
    checkpoint.record.create_time = absl::Now();
    checkpoint.record.pinned = options.pin;
    checkpoint.record.copied_from = options.copied_from;
    return client::BeginReply{};
  }
  const CheckpointRecord& record = it->second.record;
  if (record.state == CheckpointState::kCommitted) {
    return absl::AlreadyExistsError(
        absl::StrCat(CheckpointName(job, step), " is committed"));
  }
  if (record.world_size != options.world_size) {
    return absl::FailedPreconditionError(
        absl::StrCat(CheckpointName(job, step), " has world size ",
                     record.world_size, ", not ", options.world_size));
  }
  return client::BeginReply{};
}

absl::StatusOr<absl::flat_hash_set<ChunkId>> FakeTransport::FindMissingChunks(
    absl::string_view /*job*/, absl::Span<const ChunkId> ids) {
  absl::MutexLock lock(&mu_);
  absl::flat_hash_set<ChunkId> missing;
  for (const ChunkId& id : ids) {
    asked_missing_.push_back(id);
    if (!chunks_.contains(id)) missing.insert(id);
  }
  return missing;
}

std::unique_ptr<client::ChunkUploadStream> FakeTransport::OpenUpload(
    absl::string_view /*job*/, int64_t /*step*/) {
  return std::make_unique<UploadStream>(this);
}

absl::StatusOr<client::CommitResult> FakeTransport::CommitShard(
    absl::string_view job, int64_t step, int32_t world_size,
    const ShardManifest& shard) {
  absl::MutexLock lock(&mu_);
  ++commit_calls_;
  if (commit_refusals_left_ > 0) {
    --commit_refusals_left_;
    return commit_refusal_;
  }
  if (lose_chunks_at_next_commit_) {
    lose_chunks_at_next_commit_ = false;
    chunks_.clear();
  }
  auto job_it = checkpoints_.find(job);
  if (job_it == checkpoints_.end() || !job_it->second.contains(step)) {
    return absl::NotFoundError(
        absl::StrCat(CheckpointName(job, step), " was not begun"));
  }
  Checkpoint& checkpoint = job_it->second[step];
  CheckpointRecord& record = checkpoint.record;
  if (record.state != CheckpointState::kPending ||
      record.world_size != world_size) {
    return absl::FailedPreconditionError(
        absl::StrCat(CheckpointName(job, step),
                     " is not pending with world size ", world_size));
  }
  for (const ChunkRef& ref : ReferencedChunks(shard)) {
    if (!chunks_.contains(ref.id)) {
      return absl::FailedPreconditionError(
          absl::StrCat("shard of rank ", shard.rank,
                       " references missing chunk ", ref.id.ShortHex()));
    }
  }
  auto same_rank = std::find_if(
      checkpoint.shards.begin(), checkpoint.shards.end(),
      [&](const ShardManifest& s) { return s.rank == shard.rank; });
  if (same_rank == checkpoint.shards.end()) {
    checkpoint.shards.push_back(shard);
    record.committed_ranks.push_back(shard.rank);
    std::sort(record.committed_ranks.begin(), record.committed_ranks.end());
    record.logical_bytes += shard.ByteSize();
  }
  client::CommitResult result;
  if (static_cast<int32_t>(checkpoint.shards.size()) == world_size) {
    std::sort(checkpoint.shards.begin(), checkpoint.shards.end(),
              [](const ShardManifest& a, const ShardManifest& b) {
                return a.rank < b.rank;
              });
    record.state = CheckpointState::kCommitted;
    record.commit_time = absl::Now();
    std::set<int64_t> bases;
    for (const ShardManifest& committed : checkpoint.shards) {
      for (const TensorEntry& tensor : committed.tensors) {
        if (tensor.IsDelta()) bases.insert(*tensor.delta_base_step);
      }
    }
    record.base_steps.assign(bases.begin(), bases.end());
    result.checkpoint_committed = true;
  }
  result.checkpoint = record;
  return result;
}

absl::StatusOr<Checkpoint> FakeTransport::GetManifest(
    absl::string_view job, std::optional<int64_t> step,
    std::optional<int32_t> restoring_rank) {
  absl::MutexLock lock(&mu_);
  if (step.has_value()) ++manifest_fetches_[*step];
  if (restoring_rank.has_value()) restoring_ranks_.push_back(*restoring_rank);
  auto job_it = checkpoints_.find(job);
  if (job_it != checkpoints_.end()) {
    const auto& steps = job_it->second;
    for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
      if (it->second.record.state == CheckpointState::kCommitted &&
          (!step.has_value() || it->first == *step)) {
        return it->second;
      }
    }
  }
  return absl::NotFoundError(
      step.has_value()
          ? absl::StrCat("no committed ", CheckpointName(job, *step))
          : absl::StrCat("job '", job, "' has no committed checkpoint"));
}

absl::Status FakeTransport::CheckCommitted(absl::string_view job,
                                           int64_t step) const {
  auto job_it = checkpoints_.find(job);
  if (job_it == checkpoints_.end() || !job_it->second.contains(step) ||
      job_it->second.at(step).record.state != CheckpointState::kCommitted) {
    return absl::NotFoundError(
        absl::StrCat("no committed ", CheckpointName(job, step)));
  }
  return absl::OkStatus();
}

absl::Status FakeTransport::ReportCopy(absl::string_view job, int64_t step,
                                       const CopyPeer& destination) {
  absl::MutexLock lock(&mu_);
  CKPT_RETURN_IF_ERROR(copy_report_failure_);
  CKPT_RETURN_IF_ERROR(CheckCommitted(job, step));
  reported_copies_.push_back({std::string(job), step, destination});
  return absl::OkStatus();
}

absl::Status FakeTransport::ReportRestore(absl::string_view job, int64_t step,
                                          int32_t rank) {
  absl::MutexLock lock(&mu_);
  if (!report_failure_.ok()) return report_failure_;
  CKPT_RETURN_IF_ERROR(CheckCommitted(job, step));
  reported_restores_.push_back({std::string(job), step, rank});
  return absl::OkStatus();
}

absl::StatusOr<std::vector<JobSummary>> FakeTransport::ListJobs() {
  absl::MutexLock lock(&mu_);
  std::vector<JobSummary> jobs;
  for (const auto& [name, steps] : checkpoints_) {
    JobSummary& summary = jobs.emplace_back();
    summary.job.name = name;
    for (const auto& [step, checkpoint] : steps) {
      if (checkpoint.record.state != CheckpointState::kCommitted) continue;
      ++summary.checkpoint_count;
      summary.logical_bytes += checkpoint.record.logical_bytes;
      summary.latest_step = step;
    }
  }
  return jobs;
}

absl::StatusOr<std::vector<client::CheckpointUsage>>
FakeTransport::ListCheckpoints(absl::string_view job, bool include_uncommitted,
                               bool /*with_unique_bytes*/) {
  absl::MutexLock lock(&mu_);
  auto job_it = checkpoints_.find(job);
  if (job_it == checkpoints_.end()) {
    return absl::NotFoundError(absl::StrCat("no job '", job, "'"));
  }
  std::vector<client::CheckpointUsage> listed;
  for (const auto& [step, checkpoint] : job_it->second) {
    if (include_uncommitted ||
        checkpoint.record.state == CheckpointState::kCommitted) {
      listed.push_back(client::CheckpointUsage{checkpoint.record, {}});
    }
  }
  return listed;
}

absl::Status FakeTransport::ReadChunks(
    absl::string_view /*job*/, absl::Span<const client::ChunkSink> sinks,
    const std::function<void(uint64_t)>& on_chunk) {
  {
    absl::MutexLock lock(&mu_);
    read_calls_.push_back(sinks.size());
    sinks_read_.insert(sinks_read_.end(), sinks.begin(), sinks.end());
  }
  for (size_t i = 0; i < sinks.size(); ++i) {
    Answer answer;
    {
      absl::MutexLock lock(&mu_);
      CKPT_ASSIGN_OR_RETURN(answer, AnswerFor(sinks[i].id));
    }
    CKPT_RETURN_IF_ERROR(
        client::DeliverChunk(sinks[i], i, answer.id.bytes(), answer.data));
    if (on_chunk) on_chunk(sinks[i].size);
  }
  return absl::OkStatus();
}

// Ends its registration when destroyed, as closing the socket does.
class FakeTransport::Registration : public client::SharedFileRegistration {
 public:
  Registration(FakeTransport* fake, std::string handle)
      : fake_(fake), handle_(std::move(handle)) {}
  ~Registration() override {
    absl::MutexLock lock(&fake_->mu_);
    fake_->registered_.erase(handle_);
  }
  absl::string_view handle() const override { return handle_; }

 private:
  FakeTransport* const fake_;
  const std::string handle_;
};

absl::StatusOr<std::unique_ptr<client::SharedFileRegistration>>
FakeTransport::RegisterSharedFile(int memfd) {
  absl::MutexLock lock(&mu_);
  if (!registration_failure_.ok()) return registration_failure_;
  UniqueFd copy(dup(memfd));
  if (!copy.valid()) return absl::FailedPreconditionError("not a descriptor");
  std::string handle = absl::StrCat("handle-", ++registrations_);
  registered_.emplace(handle, std::move(copy));
  return std::make_unique<Registration>(this, std::move(handle));
}

absl::Status FakeTransport::ReadChunksIntoFile(
    absl::string_view /*job*/, absl::string_view file_handle,
    absl::Span<const client::ChunkPlacement> chunks) {
  absl::MutexLock lock(&mu_);
  if (!into_file_failure_.ok()) return into_file_failure_;
  auto file = registered_.find(file_handle);
  if (file == registered_.end()) {
    return absl::FailedPreconditionError("no file registered under the handle");
  }
  const int fd = file->second.get();
  ++into_file_calls_;
  for (const client::ChunkPlacement& chunk : chunks) {
    CKPT_ASSIGN_OR_RETURN(Answer answer, AnswerFor(chunk.id));
    if (answer.id != chunk.id || answer.data.size() != chunk.size) {
      return absl::DataLossError(
          absl::StrCat("chunk ", chunk.id.ShortHex(), " is corrupt"));
    }
    for (uint64_t offset : chunk.offsets) {
      if (pwrite(fd, answer.data.data(), answer.data.size(),
                 static_cast<off_t>(offset)) !=
          static_cast<ssize_t>(answer.data.size())) {
        return absl::InternalError("cannot write the shared file");
      }
    }
  }
  return absl::OkStatus();
}

absl::Status FakeTransport::AbortCheckpoint(absl::string_view job, int64_t step,
                                            absl::string_view reason) {
  absl::MutexLock lock(&mu_);
  auto job_it = checkpoints_.find(job);
  if (job_it == checkpoints_.end() || !job_it->second.contains(step)) {
    return absl::NotFoundError(absl::StrCat("no ", CheckpointName(job, step)));
  }
  Checkpoint& checkpoint = job_it->second[step];
  if (checkpoint.record.state == CheckpointState::kCommitted) {
    return absl::FailedPreconditionError(
        absl::StrCat(CheckpointName(job, step), " is committed"));
  }
  checkpoint.record.state = CheckpointState::kAborted;
  checkpoint.record.abort_reason = std::string(reason);
  checkpoint.shards.clear();
  return absl::OkStatus();
}

absl::Status FakeTransport::DeleteCheckpoint(absl::string_view job,
                                             int64_t step, bool /*force*/) {
  absl::MutexLock lock(&mu_);
  auto job_it = checkpoints_.find(job);
  if (job_it == checkpoints_.end() || !job_it->second.contains(step)) {
    return absl::NotFoundError(absl::StrCat("no ", CheckpointName(job, step)));
  }
  if (job_it->second[step].record.state == CheckpointState::kPending) {
    return absl::FailedPreconditionError(
        absl::StrCat(CheckpointName(job, step), " is pending"));
  }
  job_it->second.erase(step);
  return absl::OkStatus();
}

absl::StatusOr<Stats> FakeTransport::GetStats(absl::string_view /*job*/) {
  return Unimplemented("GetStats");
}

absl::StatusOr<std::vector<int64_t>> FakeTransport::SetRetentionPolicy(
    absl::string_view /*job*/, const RetentionPolicy& /*policy*/,
    std::vector<std::string>* /*warnings*/) {
  return Unimplemented("SetRetentionPolicy");
}

absl::StatusOr<client::PolicyInfo> FakeTransport::GetRetentionPolicy(
    absl::string_view /*job*/) {
  return Unimplemented("GetRetentionPolicy");
}

absl::Status FakeTransport::SetTenantDefaultPolicy(
    absl::string_view /*tenant*/, const RetentionPolicy& /*policy*/) {
  return Unimplemented("SetTenantDefaultPolicy");
}

absl::Status FakeTransport::ClearRetentionPolicy(absl::string_view /*name*/,
                                                 bool /*tenant_default*/) {
  return Unimplemented("ClearRetentionPolicy");
}

absl::StatusOr<client::PolicyInfo> FakeTransport::GetTenantDefaultPolicy(
    absl::string_view /*tenant*/) {
  return Unimplemented("GetTenantDefaultPolicy");
}

absl::StatusOr<CheckpointRecord> FakeTransport::PinCheckpoint(
    absl::string_view /*job*/, int64_t /*step*/, bool /*pinned*/) {
  return Unimplemented("PinCheckpoint");
}

absl::StatusOr<CheckpointRecord> FakeTransport::SetCheckpointTags(
    absl::string_view /*job*/, int64_t /*step*/,
    const std::map<std::string, std::string>& /*set*/,
    const std::vector<std::string>& /*remove*/) {
  return Unimplemented("SetCheckpointTags");
}

absl::StatusOr<std::vector<RetentionDecision>> FakeTransport::PruneCheckpoints(
    absl::string_view /*job*/, const std::optional<RetentionPolicy>& /*policy*/,
    bool /*dry_run*/, std::vector<std::string>* /*warnings*/) {
  return Unimplemented("PruneCheckpoints");
}

absl::StatusOr<GcReport> FakeTransport::CollectGarbage(
    const GcOptions& /*options*/) {
  return Unimplemented("CollectGarbage");
}

absl::StatusOr<VerifyReport> FakeTransport::VerifyCheckpoints(
    const VerifyOptions& /*options*/,
    const client::VerifyProgressFn& /*progress*/) {
  return Unimplemented("VerifyCheckpoints");
}

absl::StatusOr<std::vector<JobEvent>> FakeTransport::ListEvents(
    absl::string_view /*job*/, int /*limit*/) {
  return Unimplemented("ListEvents");
}

}  // namespace ckpt::testing
