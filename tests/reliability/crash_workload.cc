#include "tests/reliability/crash_workload.h"

#include <cstring>
#include <deque>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "tests/testing/client_tensors.h"

namespace ckpt::reliability {

// One rank's shard of a job: its bytes, rewritten in part every step.
struct RankShard {
  std::string bytes;
  std::mt19937_64 rng;
};

struct CrashWorkload::Job {
  std::string name;
  int index = 0;
  int64_t next_step = 1;
  std::vector<RankShard> ranks;
  // Acknowledged steps not yet removed, oldest first (delete candidates).
  std::deque<int64_t> acked;
  int64_t last_copied = 0;
};

namespace {

void FillRandom(std::mt19937_64& rng, char* out, size_t size) {
  for (size_t at = 0; at < size; at += sizeof(uint64_t)) {
    const uint64_t word = rng();
    std::memcpy(out + at, &word, std::min(sizeof(word), size - at));
  }
}

// Rewrites a share of the shard's chunks (all of them on the first step).
void NextStepBytes(RankShard& shard, size_t chunk_bytes, double fraction,
                   bool first) {
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  for (size_t at = 0; at < shard.bytes.size(); at += chunk_bytes) {
    if (!first && coin(shard.rng) >= fraction) continue;
    FillRandom(shard.rng, shard.bytes.data() + at,
               std::min(chunk_bytes, shard.bytes.size() - at));
  }
}

Record EndOf(const absl::Status& status) {
  Record end;
  if (status.ok()) {
    end.type = RecordType::kOk;
  } else {
    end.type =
        OutcomeUnknown(status) ? RecordType::kUnknown : RecordType::kFail;
    end.status = status.ToString();
  }
  return end;
}

}  // namespace

CrashWorkload::CrashWorkload(const WorkloadOptions& options, uint64_t seed,
                             HistoryRecorder& history)
    : options_(options), history_(history) {
  std::mt19937_64 sizes(seed);
  std::uniform_int_distribution<size_t> size(options.min_shard_bytes,
                                             options.max_shard_bytes);
  for (int j = 0; j < options.jobs; ++j) {
    auto job = std::make_unique<Job>();
    job->name = absl::StrCat("crash/j", j);
    job->index = j;
    for (int r = 0; r < options.ranks; ++r) {
      RankShard shard;
      shard.bytes.resize(size(sizes));
      shard.rng.seed(seed ^ (0x9e3779b97f4a7c15ULL * (j * 1000 + r + 1)));
      job->ranks.push_back(std::move(shard));
    }
    jobs_.push_back(std::move(job));
  }
}

CrashWorkload::~CrashWorkload() = default;

std::vector<std::string> CrashWorkload::JobNames() const {
  std::vector<std::string> names;
  for (const auto& job : jobs_) {
    names.push_back(job->name);
    if (options_.copy_every > 0) names.push_back(job->name + "-copy");
  }
  return names;
}

void CrashWorkload::RunCycle(client::Client& client,
                             const std::atomic<bool>& stop) {
  std::vector<std::thread> threads;
  for (auto& job : jobs_) {
    threads.emplace_back(
        [this, &job, &client, &stop] { RunJob(*job, client, stop); });
  }
  for (std::thread& thread : threads) thread.join();
}

void CrashWorkload::RunJob(Job& job, client::Client& client,
                           const std::atomic<bool>& stop) {
  while (!stop.load()) {
    const int64_t step = job.next_step++;
    if (!SaveStep(job, step, client)) return;
    if (options_.max_to_keep > 0 && options_.prune_every > 0 &&
        step % options_.prune_every == 0 &&
        !Prune(job.name, job.acked, client)) {
      return;
    }
    if (options_.delete_every > 0 && step % options_.delete_every == 0 &&
        !DeleteOldest(job, client)) {
      return;
    }
    if (options_.copy_every > 0 && step % options_.copy_every == 0 &&
        !CopyNewest(job, client)) {
      return;
    }
    if (job.index == 0 && options_.gc_every > 0 &&
        step % options_.gc_every == 0 && !CollectGarbage(client)) {
      return;
    }
  }
}

bool CrashWorkload::SaveStep(Job& job, int64_t step, client::Client& client) {
  const int32_t ranks = static_cast<int32_t>(job.ranks.size());
  const bool abandon =
      options_.abandon_every > 0 && step % options_.abandon_every == 0;
  const int32_t world_size = abandon ? ranks + 1 : ranks;
  const absl::Duration lease = abandon ? absl::Seconds(1) : options_.lease;
  for (RankShard& shard : job.ranks) {
    NextStepBytes(shard, options_.chunk_bytes, options_.change_fraction,
                  step == 1);
  }
  std::vector<Record> ends(ranks);
  std::atomic<int64_t> refused{0};
  std::vector<std::thread> threads;
  for (int32_t rank = 0; rank < ranks; ++rank) {
    threads.emplace_back([&, rank] {
      const std::string& bytes = job.ranks[rank].bytes;
      const std::string info = absl::StrCat(job.name, "@", step, "/", rank);
      const std::vector<client::TensorData> tensors = {
          testing::Uint8Tensor("weights", bytes),
          testing::Uint8Tensor("step_info", info)};
      Record invoke;
      invoke.op = OpKind::kSave;
      invoke.job = job.name;
      invoke.step = step;
      invoke.rank = rank;
      invoke.world_size = world_size;
      invoke.sent = {{"weights", Sha256(bytes).ToHex()},
                     {"step_info", Sha256(info).ToHex()}};
      const uint64_t id = history_.Invoke(std::move(invoke));
      client::SaveOptions options;
      options.rank = rank;
      options.world_size = world_size;
      options.chunk_bytes = options_.chunk_bytes;
      options.hash_threads = 1;
      options.lease = lease;
      absl::StatusOr<client::SaveResult> saved =
          client.SaveShard(job.name, step, tensors, options);
      Record end = EndOf(saved.status());
      if (absl::IsResourceExhausted(saved.status())) ++refused;
      if (saved.ok()) {
        end.checkpoint_committed = saved->checkpoint_committed;
        stats_.bytes_sent += static_cast<int64_t>(saved->bytes_sent);
        stats_.bytes_saved += static_cast<int64_t>(saved->logical_bytes);
      }
      ends[rank] = end;
      history_.End(id, std::move(end));
    });
  }
  for (std::thread& thread : threads) thread.join();
  bool acked = false;
  bool all_known = true;
  for (const Record& end : ends) {
    switch (end.type) {
      case RecordType::kOk:
        ++stats_.saves_ok;
        acked = acked || end.checkpoint_committed;
        break;
      case RecordType::kFail:
        ++stats_.saves_failed;
        break;
      default:
        ++stats_.saves_unknown;
        all_known = false;
    }
  }
  stats_.saves_refused += refused.load();
  if (acked) job.acked.push_back(step);
  return all_known;
}

bool CrashWorkload::Prune(const std::string& name, std::deque<int64_t>& acked,
                          client::Client& client) {
  Record invoke;
  invoke.op = OpKind::kPrune;
  invoke.job = name;
  invoke.max_to_keep = options_.max_to_keep;
  const uint64_t id = history_.Invoke(std::move(invoke));
  RetentionPolicy policy;
  policy.max_to_keep = options_.max_to_keep;
  auto decisions = client.PruneCheckpoints(name, policy, false);
  Record end = EndOf(decisions.status());
  if (decisions.ok()) {
    for (const RetentionDecision& decision : *decisions) {
      if (decision.keep) continue;
      end.removed_steps.push_back(decision.step);
      std::erase(acked, decision.step);
    }
  }
  const bool known = end.type != RecordType::kUnknown;
  history_.End(id, std::move(end));
  ++stats_.prunes;
  return known;
}

bool CrashWorkload::DeleteOldest(Job& job, client::Client& client) {
  if (job.acked.size() < 2) return true;  // keep the newest
  const int64_t step = job.acked.front();
  job.acked.pop_front();
  Record invoke;
  invoke.op = OpKind::kDelete;
  invoke.job = job.name;
  invoke.step = step;
  const uint64_t id = history_.Invoke(std::move(invoke));
  const absl::Status deleted = client.DeleteCheckpoint(job.name, step);
  Record end = EndOf(deleted);
  if (deleted.ok()) end.removed_steps = {step};
  const bool known = end.type != RecordType::kUnknown;
  history_.End(id, std::move(end));
  ++stats_.deletes;
  return known;
}

bool CrashWorkload::CollectGarbage(client::Client& client) {
  Record invoke;
  invoke.op = OpKind::kGc;
  const uint64_t id = history_.Invoke(std::move(invoke));
  auto report = client.CollectGarbage(GcOptions{});
  Record end = EndOf(report.status());
  if (report.ok()) {
    if (!report->skipped_tenants.empty()) ++stats_.gcs_skipped;
    for (const DamagedCheckpoint& damaged : report->damaged) {
      end.gc_missing_chunks += damaged.missing_chunks.size();
    }
  }
  const bool known = end.type != RecordType::kUnknown;
  history_.End(id, std::move(end));
  ++stats_.gcs;
  return known;
}

bool CrashWorkload::CopyNewest(Job& job, client::Client& client) {
  if (job.acked.empty() || job.acked.back() == job.last_copied) return true;
  const int64_t step = job.acked.back();
  job.last_copied = step;
  Record invoke;
  invoke.op = OpKind::kCopy;
  invoke.job = job.name + "-copy";
  invoke.source_job = job.name;
  invoke.step = step;
  const uint64_t id = history_.Invoke(std::move(invoke));
  client::CopyRequest request;
  request.job = job.name;
  request.target_job = job.name + "-copy";
  request.steps = {step};
  request.source_label = "self";
  request.target_label = "self";
  auto report = client::Client::Copy(client, client, request);
  Record end = EndOf(report.status());
  const bool known = end.type != RecordType::kUnknown;
  history_.End(id, std::move(end));
  ++stats_.copies;
  // The copies are pruned like their job, so the observations stay small.
  if (!known || options_.max_to_keep <= 0) return known;
  std::deque<int64_t> untracked;
  return Prune(job.name + "-copy", untracked, client);
}

}  // namespace ckpt::reliability
