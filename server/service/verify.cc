// CheckpointService, checking: Verify (with the metadata snapshot it works
// from). Chunk data is read and hashed on ServiceOptions::verify_threads
// threads.
//
// Locking: Verify reads the metadata under lifecycle_mu_ (SnapshotForVerify
// requires it), reads chunks without it, and takes it again at the end to
// drop damage of checkpoints deleted meanwhile.
#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/ordered_parallel.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "server/service/checkpoint_service.h"
#include "server/service/service_internal.h"

namespace ckpt::server {

using internal::Describe;
using internal::ValidateStep;

namespace {

// Chunks asked about per ChunkStore::Sizes call.
constexpr size_t kVerifyExistenceBatch = 4096;
// Absent ranks named in a problem before "...".
constexpr size_t kMaxNamedRanks = 8;

// Who references one distinct (tenant, chunk), and with which size.
class ChunkUse {
 public:
  // Records that snapshot checkpoint `index` references the chunk as
  // `size` bytes. REQUIRES: indices come in ascending order.
  void Add(uint32_t index, uint64_t size) {
    if (checkpoints_.empty()) size_ = size;
    if (sized_refs_.empty() && size != size_) {
      // A second size: from now on every reference keeps its size.
      for (uint32_t earlier : checkpoints_) {
        sized_refs_.emplace_back(earlier, size_);
      }
    }
    if (!sized_refs_.empty()) sized_refs_.emplace_back(index, size);
    // Shards of one checkpoint may share chunks (replicated state).
    if (checkpoints_.empty() || checkpoints_.back() != index) {
      checkpoints_.push_back(index);
    }
  }

  // The first size recorded.
  uint64_t size() const { return size_; }
  // Every referencing checkpoint, ascending.
  const std::vector<uint32_t>& checkpoints() const { return checkpoints_; }

  // The checkpoints (ascending) that record another size than `stored`,
  // and the first such size.
  std::pair<std::vector<uint32_t>, uint64_t> Disagreeing(
      uint64_t stored) const {
    if (sized_refs_.empty()) {
      if (size_ == stored) return {{}, stored};
      return {checkpoints_, size_};
    }
    std::vector<uint32_t> out;
    uint64_t wrong = stored;
    for (const auto& [index, size] : sized_refs_) {
      if (size == stored) continue;
      if (out.empty()) wrong = size;
      if (out.empty() || out.back() != index) out.push_back(index);
    }
    return {std::move(out), wrong};
  }

 private:
  uint64_t size_ = 0;
  std::vector<uint32_t> checkpoints_;
  // (checkpoint, size) of every reference, ascending checkpoint; kept only
  // once two sizes are seen, which only manifests committed before commit
  // checked sizes can do.
  std::vector<std::pair<uint32_t, uint64_t>> sized_refs_;
};

struct FoundDamage {
  std::string tenant;
  ChunkId id;
  ChunkProblem problem;
  std::string detail;
  std::vector<uint32_t> checkpoints;  // those it damages, ascending
  uint64_t size = 0;                  // as the manifests record it
};

// "no stored shard for rank(s) 1, 3" when some of [0, world_size) lack one.
std::optional<std::string> AbsentShards(
    int32_t world_size, const std::vector<ShardManifest>& shards) {
  absl::flat_hash_set<int32_t> present;
  for (const ShardManifest& shard : shards) present.insert(shard.rank);
  std::vector<int32_t> absent;
  int32_t absent_count = 0;
  for (int32_t rank = 0; rank < world_size; ++rank) {
    if (present.contains(rank)) continue;
    ++absent_count;
    if (absent.size() < kMaxNamedRanks) absent.push_back(rank);
  }
  if (absent_count == 0) return std::nullopt;
  return absl::StrCat("no stored shard for rank(s) ",
                      absl::StrJoin(absent, ", "),
                      absent_count > static_cast<int32_t>(absent.size())
                          ? absl::StrCat(", ... (", absent_count, " in all)")
                          : "",
                      " of world_size ", world_size);
}

// Which of `keys` are committed now. REQUIRES: the caller holds the
// lifecycle lock.
absl::StatusOr<std::vector<bool>> StillCommitted(
    MetadataStore& metadata, const std::vector<CheckpointKey>& keys) {
  std::vector<bool> alive;
  alive.reserve(keys.size());
  for (const CheckpointKey& key : keys) {
    absl::StatusOr<CheckpointRecord> record =
        metadata.GetCheckpoint(key.job, key.step);
    if (absl::IsNotFound(record.status())) {
      alive.push_back(false);
      continue;
    }
    CKPT_RETURN_IF_ERROR(record.status());
    alive.push_back(record->state == CheckpointState::kCommitted);
  }
  return alive;
}

// One chunk read back: the store's status, and when it is OK the bytes'
// size and SHA-256 (the bytes themselves are dropped at once).
struct ReadOutcome {
  absl::Status status;
  uint64_t size = 0;
  ChunkId actual;
};

ReadOutcome ReadAndHash(ChunkStore& chunks, const std::string& tenant,
                        const ChunkId& id) {
  absl::StatusOr<std::string> bytes = chunks.Get(tenant, id);
  ReadOutcome outcome;
  outcome.status = bytes.status();
  if (bytes.ok()) {
    outcome.size = bytes->size();
    outcome.actual = Sha256(*bytes);
  }
  return outcome;
}

}  // namespace

struct CheckpointService::VerifySnapshot {
  std::vector<Checkpoint> checkpoints;  // committed, with readable shards
  // Damage in the metadata itself (absent or unreadable shards).
  std::map<CheckpointKey, std::vector<std::string>> metadata_problems;
  int64_t checkpoints_checked = 0;
  int64_t pending_skipped = 0;
};

absl::StatusOr<CheckpointService::VerifySnapshot>
CheckpointService::SnapshotForVerify(const VerifyOptions& options,
                                     const JobScope& scope) {
  std::vector<std::string> jobs;
  if (options.job.empty()) {
    CKPT_ASSIGN_OR_RETURN(std::vector<JobRecord> records,
                          metadata_->ListJobs());
    for (auto& record : records) {
      if (scope.Covers(record.name)) jobs.push_back(std::move(record.name));
    }
  } else {
    CKPT_ASSIGN_OR_RETURN(JobRecord record, GetJobRecord(options.job));
    jobs.push_back(std::move(record.name));
  }
  VerifySnapshot snapshot;
  std::optional<CheckpointState> step_state;  // of options.step, if found
  for (const std::string& job : jobs) {
    CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                          metadata_->ListCheckpoints(job));
    for (CheckpointRecord& record : records) {
      if (options.step.has_value() && record.step != *options.step) continue;
      step_state = record.state;
      if (record.state == CheckpointState::kPending) {
        ++snapshot.pending_skipped;
        continue;
      }
      if (record.state != CheckpointState::kCommitted) continue;
      ++snapshot.checkpoints_checked;
      const CheckpointKey key{job, record.step};
      absl::StatusOr<std::vector<ShardManifest>> shards =
          metadata_->GetShards(job, record.step);
      if (absl::IsDataLoss(shards.status())) {
        snapshot.metadata_problems[key].push_back(
            absl::StrCat("unreadable manifest: ", shards.status().message()));
        continue;
      }
      CKPT_RETURN_IF_ERROR(shards.status());
      if (std::optional<std::string> absent =
              AbsentShards(record.world_size, *shards)) {
        snapshot.metadata_problems[key].push_back(*std::move(absent));
      }
      snapshot.checkpoints.push_back(
          Checkpoint{std::move(record), *std::move(shards)});
    }
  }
  if (options.step.has_value() && step_state != CheckpointState::kCommitted) {
    if (!step_state.has_value()) {
      return absl::NotFoundError(absl::StrCat(
          "job '", options.job, "' has no checkpoint ", *options.step));
    }
    return absl::NotFoundError(
        absl::StrCat(Describe(options.job, *options.step), " is ",
                     CheckpointStateName(*step_state), ", not committed"));
  }
  return snapshot;
}

absl::StatusOr<VerifyReport> CheckpointService::Verify(
    const VerifyOptions& options, const VerifyProgressFn& progress,
    const JobScope& scope) {
  if (!options.job.empty()) CKPT_RETURN_IF_ERROR(ValidateJobName(options.job));
  if (options.step.has_value()) {
    if (options.job.empty()) {
      return absl::InvalidArgumentError(
          "a step to verify needs its job; give the job too");
    }
    CKPT_RETURN_IF_ERROR(ValidateStep(*options.step));
  }
  if (options.read_data_subset.has_value()) {
    CKPT_RETURN_IF_ERROR(ValidateReadDataSubset(*options.read_data_subset));
  }
  auto report_progress = [&](const VerifyProgress& now) {
    return progress ? progress(now) : absl::OkStatus();
  };

  VerifySnapshot snapshot;
  {
    absl::MutexLock lock(&lifecycle_mu_);
    CKPT_ASSIGN_OR_RETURN(snapshot, SnapshotForVerify(options, scope));
  }
  VerifyReport report;
  report.read_data = options.reads_data();
  report.read_data_subset = options.read_data_subset;
  report.checkpoints_checked = snapshot.checkpoints_checked;
  report.pending_skipped = snapshot.pending_skipped;

  std::map<std::string, absl::flat_hash_map<ChunkId, ChunkUse>> uses;
  for (uint32_t i = 0; i < snapshot.checkpoints.size(); ++i) {
    const Checkpoint& checkpoint = snapshot.checkpoints[i];
    auto& tenant_uses = uses[std::string(TenantOf(checkpoint.record.job))];
    for (const ShardManifest& shard : checkpoint.shards) {
      for (const ChunkRef& ref : ReferencedChunks(shard)) {
        tenant_uses[ref.id].Add(i, ref.size);
      }
    }
  }

  // Existence and size, in batches (no chunk body read); collects what the
  // data read covers meanwhile.
  std::vector<FoundDamage> found;
  struct ToRead {
    std::string tenant;
    ChunkId id;
    uint64_t size;  // as stored
  };
  std::vector<ToRead> to_read;
  VerifyProgress existence{.stage = VerifyStage::kExistence};
  VerifyProgress reading{.stage = VerifyStage::kReadData};
  for (const auto& [tenant, tenant_uses] : uses) {
    existence.chunks_total += tenant_uses.size();
  }
  report.chunks_checked = existence.chunks_total;
  CKPT_RETURN_IF_ERROR(report_progress(existence));
  for (const auto& [tenant, tenant_uses] : uses) {
    std::vector<ChunkId> ids;
    ids.reserve(tenant_uses.size());
    for (const auto& [id, use] : tenant_uses) ids.push_back(id);
    // Key order: the store's own order, so reads are mostly sequential.
    std::sort(ids.begin(), ids.end());
    for (size_t begin = 0; begin < ids.size(); begin += kVerifyExistenceBatch) {
      const absl::Span<const ChunkId> batch =
          absl::MakeConstSpan(ids).subspan(begin, kVerifyExistenceBatch);
      CKPT_ASSIGN_OR_RETURN(std::vector<std::optional<uint64_t>> sizes,
                            chunks_->Sizes(tenant, batch));
      for (size_t i = 0; i < batch.size(); ++i) {
        const ChunkUse& use = tenant_uses.at(batch[i]);
        if (!sizes[i].has_value()) {
          found.push_back({tenant, batch[i], ChunkProblem::kMissing,
                           "not in the store", use.checkpoints(), use.size()});
          continue;
        }
        if (auto [disagreeing, recorded] = use.Disagreeing(*sizes[i]);
            !disagreeing.empty()) {
          found.push_back(
              {tenant, batch[i], ChunkProblem::kSizeMismatch,
               absl::StrCat("manifests record ", recorded,
                            " bytes but the store holds ", *sizes[i]),
               std::move(disagreeing), recorded});
        }
        if (options.reads_data() &&
            (!options.read_data_subset.has_value() ||
             options.read_data_subset->Contains(batch[i]))) {
          to_read.push_back({tenant, batch[i], *sizes[i]});
          ++reading.chunks_total;
          reading.bytes_total += *sizes[i];
        }
      }
      existence.chunks_done += batch.size();
      CKPT_RETURN_IF_ERROR(report_progress(existence));
    }
  }

  // Data, without the lifecycle lock: read and hashed on up to
  // verify_threads threads, taken in to_read's order, so that progress, the
  // findings and the first error are those of a one-thread loop.
  if (options.reads_data()) {
    CKPT_RETURN_IF_ERROR(report_progress(reading));
    std::vector<ReadOutcome> outcomes(to_read.size());
    const absl::Status read = OrderedParallelFor(
        to_read.size(), VerifyThreads(options_),
        [&](size_t i) {
          outcomes[i] = ReadAndHash(*chunks_, to_read[i].tenant, to_read[i].id);
        },
        [&](size_t i) -> absl::Status {
          const auto& [tenant, id, stored_size] = to_read[i];
          ReadOutcome outcome = std::move(outcomes[i]);
          const ChunkUse& use = uses[tenant][id];
          if (absl::IsNotFound(outcome.status)) {
            found.push_back({tenant, id, ChunkProblem::kMissing,
                             "gone from the store since the existence check",
                             use.checkpoints(), use.size()});
          } else if (absl::IsDataLoss(outcome.status)) {
            found.push_back({tenant, id, ChunkProblem::kCorrupt,
                             std::string(outcome.status.message()),
                             use.checkpoints(), use.size()});
          } else {
            CKPT_RETURN_IF_ERROR(outcome.status);
            ++report.chunks_read;
            report.bytes_read += outcome.size;
            if (outcome.actual != id) {
              found.push_back(
                  {tenant, id, ChunkProblem::kCorrupt,
                   absl::StrCat("its ", outcome.size, " stored bytes hash to ",
                                outcome.actual.ShortHex()),
                   use.checkpoints(), use.size()});
            }
          }
          ++reading.chunks_done;
          reading.bytes_done += stored_size;
          return report_progress(reading);
        });
    CKPT_RETURN_IF_ERROR(read);
  }

  // Damage per checkpoint; then only what is still committed counts: GC may
  // rightly have removed the chunks of a checkpoint deleted meanwhile.
  std::map<CheckpointKey, VerifyReport::DamagedCheckpoint> damaged;
  auto key_of = [&](uint32_t index) {
    const CheckpointRecord& record = snapshot.checkpoints[index].record;
    return CheckpointKey{record.job, record.step};
  };
  for (const FoundDamage& damage : found) {
    for (uint32_t index : damage.checkpoints) {
      VerifyReport::DamagedCheckpoint& checkpoint = damaged[key_of(index)];
      // A chunk whose recorded size disagrees is corrupt for the checkpoint:
      // its restore would fail.
      if (damage.problem == ChunkProblem::kMissing) {
        ++checkpoint.missing_chunks;
      } else {
        ++checkpoint.corrupt_chunks;
      }
    }
  }
  for (auto& [key, problems] : snapshot.metadata_problems) {
    damaged[key].problems = std::move(problems);
  }
  if (!damaged.empty()) {
    std::vector<CheckpointKey> keys;
    keys.reserve(damaged.size());
    for (const auto& [key, checkpoint] : damaged) keys.push_back(key);
    std::vector<bool> alive;
    {
      absl::MutexLock lock(&lifecycle_mu_);
      CKPT_ASSIGN_OR_RETURN(alive, StillCommitted(*metadata_, keys));
    }
    for (size_t i = 0; i < keys.size(); ++i) {
      if (!alive[i]) damaged.erase(keys[i]);
    }
  }
  for (auto& [key, checkpoint] : damaged) {
    checkpoint.checkpoint = key;
    report.damaged_checkpoints.push_back(std::move(checkpoint));
  }

  std::sort(found.begin(), found.end(),
            [](const FoundDamage& a, const FoundDamage& b) {
              return std::tie(a.tenant, a.id, a.problem) <
                     std::tie(b.tenant, b.id, b.problem);
            });
  for (FoundDamage& damage : found) {
    std::vector<CheckpointKey> referencing;
    for (uint32_t index : damage.checkpoints) {
      CheckpointKey key = key_of(index);
      if (damaged.contains(key)) referencing.push_back(std::move(key));
    }
    if (referencing.empty()) continue;
    ++report.damaged_chunk_count;
    if (report.damaged_chunks.size() >= kMaxListedDamagedChunks) continue;
    report.damaged_chunks.push_back(VerifyReport::DamagedChunk{
        std::move(damage.tenant), damage.id, damage.size, damage.problem,
        std::move(damage.detail), std::move(referencing)});
  }
  if (report.ok()) {
    CKPT_LOG(Info, "verify: ", report.checkpoints_checked,
             " checkpoint(s) intact (", report.chunks_checked, " chunks, ",
             report.bytes_read, " bytes read)");
  } else {
    CKPT_LOG(Error, "verify: ", report.damaged_chunk_count,
             " damaged chunk(s), ", report.damaged_checkpoints.size(),
             " damaged checkpoint(s)");
  }
  return report;
}

}  // namespace ckpt::server
