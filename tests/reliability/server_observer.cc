#include "tests/reliability/server_observer.h"

#include "absl/strings/str_cat.h"
#include "common/event.h"
#include "common/sha256.h"

namespace ckpt::reliability {
namespace {

void ObserveJob(client::Client& client, const std::string& name,
                Observation& observation, ObserveStats& stats) {
  ObservedJob& job = observation.jobs[name];
  auto listed = client.ListCheckpoints(name);
  if (absl::IsNotFound(listed.status())) return;  // never began a save
  if (!listed.ok()) {
    observation.errors.push_back(absl::StrCat(
        "ListCheckpoints(", name, "): ", listed.status().ToString()));
    return;
  }
  for (const CheckpointRecord& record : *listed) {
    if (record.state != CheckpointState::kCommitted) continue;
    ObservedCheckpoint& checkpoint = job.committed[record.step];
    checkpoint.world_size = record.world_size;
    checkpoint.committed_ranks = record.committed_ranks;
    // Restored from one manifest without recording `restored` events, so
    // the job's history keeps to what the workload did.
    auto manifest = client.GetManifest(name, record.step);
    for (int32_t rank = 0; rank < record.world_size; ++rank) {
      if (!manifest.ok()) {
        checkpoint.restore_errors[rank] =
            absl::StrCat("GetManifest: ", manifest.status().ToString());
        continue;
      }
      auto restored = client.RestoreShard(*manifest, rank);
      if (!restored.ok()) {
        checkpoint.restore_errors[rank] = restored.status().ToString();
        continue;
      }
      TensorHashes& hashes = checkpoint.restored[rank];
      for (const client::RestoredTensor& tensor : *restored) {
        const absl::string_view bytes(tensor.bytes.data(), tensor.bytes.size());
        hashes[tensor.entry.name] = Sha256(bytes).ToHex();
        stats.bytes_restored += bytes.size();
      }
      ++stats.ranks_restored;
    }
  }
  auto events = client.ListEvents(name);
  if (!events.ok()) {
    observation.errors.push_back(
        absl::StrCat("ListEvents(", name, "): ", events.status().ToString()));
    return;
  }
  for (const JobEvent& event : *events) {
    if ((event.kind == EventKind::kPruned ||
         event.kind == EventKind::kDeleted) &&
        event.step.has_value()) {
      job.removed_by_events.push_back(*event.step);
    }
  }
}

}  // namespace

Observation ObserveServer(client::Client& client,
                          const std::vector<std::string>& jobs, int64_t cycle,
                          ObserveStats& stats) {
  Observation observation;
  observation.cycle = cycle;
  for (const std::string& job : jobs) {
    ObserveJob(client, job, observation, stats);
  }
  auto gc = client.CollectGarbage(GcOptions{});
  if (gc.ok()) {
    for (const DamagedCheckpoint& damaged : gc->damaged) {
      observation.gc_missing_chunks += damaged.missing_chunks.size();
    }
  } else {
    observation.errors.push_back(
        absl::StrCat("CollectGarbage: ", gc.status().ToString()));
  }
  VerifyOptions verify;
  verify.read_data = true;
  auto report = client.VerifyCheckpoints(verify);
  if (report.ok()) {
    observation.verify_damaged_chunks = report->damaged_chunk_count;
    observation.verify_damaged_checkpoints = report->damaged_checkpoints.size();
  } else {
    observation.errors.push_back(
        absl::StrCat("VerifyCheckpoints: ", report.status().ToString()));
  }
  return observation;
}

}  // namespace ckpt::reliability
