// T23: the stateful sequence fuzzer. The input is a program of checkpoint
// operations (Begin, Put, Commit, Abort, Delete, Prune, Restore, GC, lease
// expiry and a restart of the service over the same store) on two jobs of
// one tenant, ranks 0-1, a few steps and a pool of shared chunk contents,
// run against the real CheckpointService on a real RocksDB store
// (fuzz_store.h). A reference model of "committed checkpoints per job"
// judges every answer:
//  - an acknowledged commit restores exactly (every rank's bytes), until a
//    delete or prune the model also made removes it;
//  - nothing partial is visible: listings and manifests show committed
//    checkpoints only, and exactly the model's;
//  - Begin, Abort and Delete answer as documented for the state the model
//    holds (join, ALREADY_EXISTS, FAILED_PRECONDITION, NOT_FOUND, ...);
//  - Prune with max_to_keep N removes exactly the committed checkpoints
//    below the N highest steps;
//  - GC removes nothing a committed checkpoint references (every one is
//    restored after it), and lease expiry aborts exactly the pending ones.
// A violation prints the operation and traps (fuzz_check.h).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "server/service/checkpoint_service.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_store.h"

namespace ckpt::fuzz {
namespace {

constexpr int kJobs = 2;
constexpr int kSteps = 6;
constexpr int kContents = 6;
constexpr int kMaxOps = 64;

// Chunk contents, some shared between jobs and ranks so that deduplication,
// GC and deletes meet shared chunks.
std::string Content(int i) {
  std::string bytes(1 + (i * 97) % 300, '\0');
  for (size_t j = 0; j < bytes.size(); ++j) {
    bytes[j] = static_cast<char>(i * 31 + j * 7);
  }
  return bytes;
}

// The input, read a byte at a time (zeros once it is used up).
class Program {
 public:
  Program(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return size_ == 0; }
  uint8_t Next() {
    if (size_ == 0) return 0;
    --size_;
    return *data_++;
  }

 private:
  const uint8_t* data_;
  size_t size_;
};

struct ModelCheckpoint {
  CheckpointState state = CheckpointState::kPending;
  int32_t world_size = 1;
  std::map<int32_t, ShardManifest> shards;  // committed ones
};

// The reference model: per job, its checkpoints by step.
struct Model {
  std::map<int64_t, ModelCheckpoint> jobs[kJobs];

  std::vector<int64_t> Committed(int job) const {
    std::vector<int64_t> steps;
    for (const auto& [step, checkpoint] : jobs[job]) {
      if (checkpoint.state == CheckpointState::kCommitted) {
        steps.push_back(step);
      }
    }
    return steps;
  }
};

class Run {
 public:
  explicit Run(FuzzStore& fuzz) : fuzz_(fuzz) {
    const std::string tenant = fuzz.FreshTenant();
    for (int j = 0; j < kJobs; ++j) {
      names_[j] = absl::StrCat(tenant, "/job", j);
    }
  }

  void Execute(Program& program) {
    for (int op = 0; op < kMaxOps && !program.done(); ++op) {
      const uint8_t code = program.Next();
      const int job = code >> 7;
      const int64_t step = 1 + program.Next() % kSteps;
      const uint8_t arg = program.Next();
      switch (code % 11) {
        case 0:
        case 1:
          Begin(job, step, 1 + arg % 2);
          break;
        case 2:
          Put(job, arg % kContents);
          break;
        case 3:
        case 4:
          Commit(job, step, arg);
          break;
        case 5:
          Abort(job, step);
          break;
        case 6:
          Delete(job, step);
          break;
        case 7:
          Prune(job, 1 + arg % 3, (arg & 0x80) != 0);
          break;
        case 8:
          Restore(job, (arg & 1) ? std::nullopt : std::optional(step));
          break;
        case 9:
          if (arg % 4 == 0) {
            Expire();
          } else if (arg % 4 == 1) {
            Reopen();
          } else {
            CollectGarbage(arg % 4 == 3);
          }
          break;
        default:
          Put(job, arg % kContents);
          Put(job, (arg / kContents) % kContents);
          break;
      }
      CheckListings();
    }
    for (int j = 0; j < kJobs; ++j) {
      for (int64_t step : model_.Committed(j)) RestoreStep(j, step);
    }
    // Leave nothing pending for the inputs after this one (lease expiry
    // counts every pending checkpoint of the store).
    for (int j = 0; j < kJobs; ++j) {
      for (auto& [step, checkpoint] : model_.jobs[j]) {
        if (checkpoint.state != CheckpointState::kPending) continue;
        Check(service().AbortCheckpoint(names_[j], step, "fuzz end").ok(),
              "abort of a pending checkpoint at the end");
      }
    }
  }

 private:
  server::CheckpointService& service() { return fuzz_.service(); }

  void Check(bool ok, const char* what) {
    if (ok) return;
    std::fprintf(stderr, "after: %s\n", last_.c_str());
    FUZZ_CHECK(ok, what);
  }

  void Begin(int job, int64_t step, int32_t world) {
    last_ = absl::StrCat("Begin ", names_[job], "@", step, " world ", world);
    absl::StatusOr<server::BeginResult> result = service().BeginCheckpoint(
        names_[job], step, world, {}, absl::ZeroDuration());
    auto it = model_.jobs[job].find(step);
    if (it == model_.jobs[job].end() ||
        it->second.state == CheckpointState::kAborted) {
      Check(result.ok(), "Begin of an absent or aborted step succeeds");
      ModelCheckpoint fresh;
      fresh.world_size = world;
      model_.jobs[job][step] = fresh;
      return;
    }
    ModelCheckpoint& checkpoint = it->second;
    if (checkpoint.state == CheckpointState::kCommitted) {
      Check(result.status().code() == absl::StatusCode::kAlreadyExists,
            "Begin of a committed step is ALREADY_EXISTS");
    } else if (checkpoint.world_size != world) {
      Check(result.status().code() == absl::StatusCode::kFailedPrecondition,
            "Begin with another world size is FAILED_PRECONDITION");
    } else {
      Check(result.ok() && !result->created, "Begin joins a pending step");
    }
  }

  void Put(int job, int content) {
    last_ = absl::StrCat("Put ", names_[job], " content ", content);
    const std::string bytes = Content(content);
    Check(service().PutChunk(names_[job], Sha256(bytes), bytes).ok(),
          "a chunk whose hash is right is stored");
  }

  // Rank `arg % 2` commits its one tensor "r<rank>", made of one or two
  // contents, as world size 1 + bit 6 of `arg` says.
  void Commit(int job, int64_t step, uint8_t arg) {
    const int32_t rank = arg % 2;
    const int32_t world = 1 + ((arg >> 6) & 1);
    ShardManifest shard;
    shard.rank = rank;
    TensorEntry entry;
    entry.name = absl::StrCat("r", rank);
    for (int c : {(arg >> 1) % kContents, (arg >> 4) % (kContents + 1)}) {
      if (c == kContents) continue;  // one piece only
      const std::string bytes = Content(c);
      entry.pieces.push_back({Sha256(bytes), bytes.size()});
    }
    const auto size = static_cast<int64_t>(entry.StoredBytes());
    entry.global_shape = {size};
    entry.box = Box{{0}, {size}};
    shard.tensors.push_back(entry);
    last_ = absl::StrCat("Commit ", names_[job], "@", step, " rank ", rank,
                         " world ", world, " arg ", arg);
    absl::StatusOr<server::CommitResult> result =
        service().CommitShard(names_[job], step, world, shard);
    auto it = model_.jobs[job].find(step);
    if (it == model_.jobs[job].end() ||
        it->second.state == CheckpointState::kAborted) {
      Check(!result.ok(), "a commit without a pending checkpoint fails");
      return;
    }
    ModelCheckpoint& checkpoint = it->second;
    if (checkpoint.state == CheckpointState::kCommitted) {
      if (result.ok()) {
        Check(checkpoint.world_size == world &&
                  checkpoint.shards.count(rank) == 1 &&
                  checkpoint.shards[rank] == shard,
              "only an identical shard recommits a committed checkpoint");
      }
      return;
    }
    if (checkpoint.world_size != world || rank >= world) {
      Check(!result.ok(), "a commit of another world size or rank fails");
      return;
    }
    auto previous = checkpoint.shards.find(rank);
    if (previous != checkpoint.shards.end() && !(previous->second == shard)) {
      Check(!result.ok(), "a different shard for a committed rank fails");
      return;
    }
    if (!result.ok()) {
      // Its chunks may be missing (never put, or collected): the model
      // cannot tell, but nothing else may refuse it.
      Check(result.status().code() == absl::StatusCode::kFailedPrecondition,
            "a valid commit fails only for missing chunks");
      return;
    }
    checkpoint.shards[rank] = shard;
    const bool complete =
        static_cast<int32_t>(checkpoint.shards.size()) == world;
    Check(result->checkpoint_committed == complete,
          "the last rank's commit, and only it, completes the checkpoint");
    if (complete) checkpoint.state = CheckpointState::kCommitted;
  }

  void Abort(int job, int64_t step) {
    last_ = absl::StrCat("Abort ", names_[job], "@", step);
    const absl::Status status =
        service().AbortCheckpoint(names_[job], step, "fuzz");
    auto it = model_.jobs[job].find(step);
    if (it == model_.jobs[job].end()) {
      Check(status.code() == absl::StatusCode::kNotFound,
            "Abort of an absent step is NOT_FOUND");
    } else if (it->second.state == CheckpointState::kCommitted) {
      Check(status.code() == absl::StatusCode::kFailedPrecondition,
            "Abort of a committed step is FAILED_PRECONDITION");
    } else {
      Check(status.ok(), "Abort of a pending or aborted step succeeds");
      it->second.state = CheckpointState::kAborted;
      it->second.shards.clear();
    }
  }

  void Delete(int job, int64_t step) {
    last_ = absl::StrCat("Delete ", names_[job], "@", step);
    const absl::Status status = service().DeleteCheckpoint(names_[job], step);
    auto it = model_.jobs[job].find(step);
    if (it == model_.jobs[job].end()) {
      Check(status.code() == absl::StatusCode::kNotFound,
            "Delete of an absent step is NOT_FOUND");
    } else if (it->second.state == CheckpointState::kPending) {
      Check(status.code() == absl::StatusCode::kFailedPrecondition,
            "Delete of a pending step is FAILED_PRECONDITION");
    } else {
      Check(status.ok(), "Delete of a committed or aborted step succeeds");
      model_.jobs[job].erase(it);
    }
  }

  void Prune(int job, int keep, bool dry_run) {
    last_ = absl::StrCat("Prune ", names_[job], " max_to_keep ", keep,
                         dry_run ? " dry run" : "");
    RetentionPolicy policy;
    policy.max_to_keep = keep;
    absl::StatusOr<std::vector<RetentionDecision>> decisions =
        service().Prune(names_[job], policy, dry_run);
    const std::vector<int64_t> committed = model_.Committed(job);
    if (!decisions.ok()) {
      Check(decisions.status().code() == absl::StatusCode::kNotFound &&
                model_.jobs[job].empty(),
            "Prune fails only for a job that never began");
      return;
    }
    Check(decisions->size() == committed.size(),
          "one decision per committed checkpoint");
    for (size_t i = 0; i < committed.size(); ++i) {
      const bool keep_it = i + keep >= committed.size();
      Check((*decisions)[i].step == committed[i] &&
                (*decisions)[i].keep == keep_it,
            "max_to_keep keeps exactly the highest steps");
      if (!keep_it && !dry_run) model_.jobs[job].erase(committed[i]);
    }
  }

  void Restore(int job, std::optional<int64_t> step) {
    last_ = absl::StrCat("Restore ", names_[job], "@",
                         step.has_value() ? absl::StrCat(*step) : "latest");
    const std::vector<int64_t> committed = model_.Committed(job);
    if (!step.has_value()) {
      absl::StatusOr<Checkpoint> latest =
          service().GetManifest(names_[job], std::nullopt);
      if (committed.empty()) {
        Check(!latest.ok(), "no latest checkpoint before a commit");
        return;
      }
      Check(latest.ok() && latest->record.step == committed.back(),
            "the latest checkpoint is the highest committed step");
      RestoreStep(job, committed.back());
      return;
    }
    if (std::find(committed.begin(), committed.end(), *step) ==
        committed.end()) {
      Check(service().GetManifest(names_[job], *step).status().code() ==
                absl::StatusCode::kNotFound,
            "an uncommitted or absent step is NOT_FOUND");
      return;
    }
    RestoreStep(job, *step);
  }

  // Restores committed step `step` whole: every rank's bytes as committed.
  void RestoreStep(int job, int64_t step) {
    const ModelCheckpoint& model = model_.jobs[job].at(step);
    absl::StatusOr<Checkpoint> checkpoint =
        service().GetManifest(names_[job], step);
    Check(checkpoint.ok(), "a committed checkpoint has its manifest");
    Check(checkpoint->record.state == CheckpointState::kCommitted &&
              checkpoint->record.world_size == model.world_size &&
              checkpoint->shards.size() == model.shards.size(),
          "the manifest is the committed checkpoint's");
    for (const ShardManifest& shard : checkpoint->shards) {
      auto expected = model.shards.find(shard.rank);
      Check(expected != model.shards.end() && expected->second == shard,
            "each shard is the one its rank committed");
      for (const TensorEntry& entry : shard.tensors) {
        for (const ChunkRef& piece : entry.pieces) {
          absl::StatusOr<std::string> bytes =
              service().ReadChunk(names_[job], piece.id);
          Check(bytes.ok() && bytes->size() == piece.size &&
                    Sha256(*bytes) == piece.id,
                "every chunk of a committed checkpoint reads back intact");
        }
      }
    }
  }

  void CollectGarbage(bool no_hold) {
    last_ = absl::StrCat("CollectGarbage", no_hold ? " hold 0" : "");
    GcOptions options;
    if (no_hold) options.hold = absl::ZeroDuration();
    absl::StatusOr<GcReport> report = service().CollectGarbage(options);
    Check(report.ok(), "GC of an intact store succeeds");
    for (int j = 0; j < kJobs; ++j) {
      for (int64_t step : model_.Committed(j)) RestoreStep(j, step);
    }
  }

  void Expire() {
    last_ = "Expire leases";
    fuzz_.clock().Advance(absl::Minutes(31));
    absl::StatusOr<int> expired = service().ExpireLeases();
    int pending = 0;
    for (auto& checkpoints : model_.jobs) {
      for (auto& [step, checkpoint] : checkpoints) {
        if (checkpoint.state != CheckpointState::kPending) continue;
        ++pending;
        checkpoint.state = CheckpointState::kAborted;
        checkpoint.shards.clear();
      }
    }
    Check(expired.ok() && *expired == pending,
          "lease expiry aborts exactly the pending checkpoints");
  }

  void Reopen() {
    last_ = "Reopen";
    fuzz_.Reopen();
  }

  // Listings show exactly the committed checkpoints.
  void CheckListings() {
    for (int j = 0; j < kJobs; ++j) {
      absl::StatusOr<std::vector<CheckpointRecord>> records =
          service().ListCheckpoints(names_[j], false);
      const std::vector<int64_t> committed = model_.Committed(j);
      if (!records.ok()) {
        Check(records.status().code() == absl::StatusCode::kNotFound &&
                  committed.empty(),
              "only a job without checkpoints may be unknown");
        continue;
      }
      std::vector<int64_t> listed;
      for (const CheckpointRecord& record : *records) {
        Check(record.state == CheckpointState::kCommitted,
              "listings show committed checkpoints only");
        listed.push_back(record.step);
      }
      Check(listed == committed, "listings show every committed checkpoint");
    }
  }

  FuzzStore& fuzz_;
  std::string names_[kJobs];
  Model model_;
  std::string last_;
};

}  // namespace
}  // namespace ckpt::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static ckpt::fuzz::FuzzStore fuzz;
  const std::vector<int64_t> threads = ckpt::fuzz::FuzzStore::ThreadIds();
  if (fuzz.Grown()) fuzz.Recreate();
  ckpt::fuzz::Program program(data, size);
  ckpt::fuzz::Run run(fuzz);
  run.Execute(program);
  // A thread started here would be a new id in LeakSanitizer's registry
  // each time, and a false leak report once ids wrap (fuzz_store.h).
  FUZZ_CHECK(ckpt::fuzz::FuzzStore::ThreadIds() == threads,
             "an input (a restart, a re-created store) leaves the process's "
             "threads as they were");
  return 0;
}
