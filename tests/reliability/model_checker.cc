#include "tests/reliability/model_checker.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ckpt::reliability {
namespace {

enum class Outcome { kInFlight, kOk, kFail, kUnknown };

struct RankSave {
  TensorHashes sent;
  Outcome outcome = Outcome::kInFlight;
  bool completed_checkpoint = false;  // ok, and this rank's commit was last
};

// The model of one checkpoint (job, step): what each rank sent and how its
// save ended, and whether a prune or delete removed it.
struct ModelCheckpoint {
  int32_t world_size = 0;
  std::map<int32_t, RankSave> ranks;
  bool removed = false;        // an acknowledged prune/delete named it
  bool maybe_removed = false;  // a prune/delete of unknown outcome may have

  bool Acked() const {
    if (world_size <= 0) return false;
    int ok = 0;
    for (const auto& [rank, save] : ranks) {
      if (save.outcome != Outcome::kOk) continue;
      if (save.completed_checkpoint) return true;
      ++ok;
    }
    return ok == world_size;
  }
  bool AnyRank(Outcome outcome) const {
    return std::any_of(ranks.begin(), ranks.end(), [&](const auto& entry) {
      return entry.second.outcome == outcome;
    });
  }
};

using Key = std::pair<std::string, int64_t>;

class Checker {
 public:
  CheckResult Run(absl::Span<const Record> history) {
    for (const Record& record : history) {
      switch (record.type) {
        case RecordType::kInvoke:
          OnInvoke(record);
          break;
        case RecordType::kOk:
        case RecordType::kFail:
        case RecordType::kUnknown:
          OnEnd(record);
          break;
        case RecordType::kObserve:
          OnObserve(record.observation);
          break;
      }
    }
    for (const auto& [key, model] : checkpoints_) {
      if (model.Acked()) {
        ++result_.commits_acked;
      } else if (!model.AnyRank(Outcome::kFail) &&
                 (model.AnyRank(Outcome::kUnknown) ||
                  model.AnyRank(Outcome::kInFlight))) {
        ++result_.commits_unknown;
        if (seen_.contains(key)) ++result_.unknown_seen_committed;
      }
    }
    return std::move(result_);
  }

 private:
  void OnInvoke(const Record& invoke) {
    invokes_[invoke.op_id] = invoke;
    in_flight_.insert(invoke.op_id);
    if (invoke.op == OpKind::kSave) {
      ModelCheckpoint& model = checkpoints_[{invoke.job, invoke.step}];
      model.world_size = invoke.world_size;
      model.ranks[invoke.rank].sent = invoke.sent;
    } else if (invoke.op == OpKind::kCopy) {
      // The copy holds what the source was saved with, rank by rank; a
      // source never saved leaves the copy without ranks (a phantom if
      // listed).
      auto source = checkpoints_.find({invoke.source_job, invoke.step});
      ModelCheckpoint& model = checkpoints_[{invoke.job, invoke.step}];
      if (source != checkpoints_.end()) {
        model.world_size = source->second.world_size;
        for (const auto& [rank, save] : source->second.ranks) {
          model.ranks[rank].sent = save.sent;
        }
      }
    }
  }

  void OnEnd(const Record& end) {
    auto found = invokes_.find(end.op_id);
    if (found == invokes_.end()) {
      Report("observation_error", "", 0,
             absl::StrCat("end of operation ", end.op_id,
                          " that was never invoked"));
      return;
    }
    const Record& invoke = found->second;
    const Outcome outcome = end.type == RecordType::kOk     ? Outcome::kOk
                            : end.type == RecordType::kFail ? Outcome::kFail
                                                            : Outcome::kUnknown;
    switch (invoke.op) {
      case OpKind::kSave: {
        RankSave& save =
            checkpoints_[{invoke.job, invoke.step}].ranks[invoke.rank];
        save.outcome = outcome;
        save.completed_checkpoint =
            outcome == Outcome::kOk && end.checkpoint_committed;
        break;
      }
      case OpKind::kPrune:
      case OpKind::kDelete:
        if (outcome == Outcome::kOk) {
          for (int64_t step : end.removed_steps) {
            checkpoints_[{invoke.job, step}].removed = true;
          }
        } else if (outcome == Outcome::kUnknown) {
          MarkMaybeRemoved(invoke);
        }
        break;
      case OpKind::kCopy:
        // One call commits every rank of the copy, or none.
        for (auto& [rank, save] :
             checkpoints_[{invoke.job, invoke.step}].ranks) {
          save.outcome = outcome;
        }
        break;
      case OpKind::kGc:
        if (outcome == Outcome::kOk && end.gc_missing_chunks > 0) {
          Report(
              "missing_chunks", "", 0,
              absl::StrCat("a garbage collection found ", end.gc_missing_chunks,
                           " referenced chunks missing"));
        }
        break;
    }
    in_flight_.erase(end.op_id);
  }

  // A prune may have removed any checkpoint of its job, a delete its step.
  void MarkMaybeRemoved(const Record& invoke) {
    for (auto& [key, model] : checkpoints_) {
      if (key.first != invoke.job) continue;
      if (invoke.op == OpKind::kDelete && key.second != invoke.step) continue;
      model.maybe_removed = true;
    }
    if (invoke.op == OpKind::kDelete) {
      checkpoints_[{invoke.job, invoke.step}].maybe_removed = true;
    }
  }

  // Whether the model allows (job, step) to be absent from `observation`.
  // A removal the event history showed once stays one: the server keeps
  // only the newest events of a job, so a later observation may no longer
  // see it.
  bool MayBeAbsent(const Key& key, ModelCheckpoint& model,
                   const Observation& observation) {
    if (model.removed) return true;
    if (!model.maybe_removed) return false;
    auto job = observation.jobs.find(key.first);
    if (job == observation.jobs.end()) return false;
    const std::vector<int64_t>& events = job->second.removed_by_events;
    if (std::find(events.begin(), events.end(), key.second) == events.end()) {
      return false;
    }
    model.removed = true;
    return true;
  }

  void OnObserve(const Observation& observation) {
    ++result_.observations;
    cycle_ = observation.cycle;
    // Operations still in flight at an observation ended without a reply.
    const std::set<uint64_t> in_flight = in_flight_;
    for (uint64_t op_id : in_flight) {
      Record end;
      end.type = RecordType::kUnknown;
      end.op_id = op_id;
      OnEnd(end);
    }
    for (const std::string& error : observation.errors) {
      Report("observation_error", "", 0, error);
    }
    if (observation.gc_missing_chunks > 0) {
      Report("missing_chunks", "", 0,
             absl::StrCat("garbage collection: ", observation.gc_missing_chunks,
                          " referenced chunks missing"));
    }
    if (observation.verify_damaged_chunks > 0 ||
        observation.verify_damaged_checkpoints > 0) {
      Report(
          "missing_chunks", "", 0,
          absl::StrCat("verify: ", observation.verify_damaged_chunks,
                       " chunks and ", observation.verify_damaged_checkpoints,
                       " checkpoints damaged"));
    }

    std::set<Key> listed;
    for (const auto& [job, observed_job] : observation.jobs) {
      for (const auto& [step, observed] : observed_job.committed) {
        listed.insert({job, step});
        CheckListed({job, step}, observed);
      }
    }
    for (auto& [key, model] : checkpoints_) {
      if (listed.contains(key) || MayBeAbsent(key, model, observation)) {
        continue;
      }
      if (model.Acked()) {
        Report("lost_ack", key.first, key.second,
               "acknowledged, not listed, and no logged prune or delete "
               "removed it");
      } else if (seen_.contains(key)) {
        Report("vanished", key.first, key.second,
               "listed before, not now, and no logged prune or delete "
               "removed it");
      }
    }
    seen_.insert(listed.begin(), listed.end());
  }

  void CheckListed(const Key& key, const ObservedCheckpoint& observed) {
    ++result_.checkpoints_checked;
    const auto& [job, step] = key;
    auto found = checkpoints_.find(key);
    if (found == checkpoints_.end() || found->second.ranks.empty()) {
      Report("phantom", job, step, "listed, but no save of it was invoked");
      return;
    }
    const ModelCheckpoint& model = found->second;
    if (model.removed) {
      Report("removed_visible", job, step,
             "listed after an acknowledged prune or delete removed it");
    }
    if (model.AnyRank(Outcome::kFail)) {
      Report("failed_visible", job, step,
             "listed, though a rank's save certainly failed");
    }
    std::vector<int32_t> all_ranks(model.world_size);
    for (int32_t rank = 0; rank < model.world_size; ++rank) {
      all_ranks[rank] = rank;
    }
    if (observed.world_size != model.world_size ||
        observed.committed_ranks != all_ranks) {
      Report("partial_visible", job, step,
             absl::StrCat("listed with world size ", observed.world_size,
                          " and committed ranks [",
                          absl::StrJoin(observed.committed_ranks, ","),
                          "]; saved with world size ", model.world_size));
    }
    for (int32_t rank = 0; rank < model.world_size; ++rank) {
      auto save = model.ranks.find(rank);
      if (save == model.ranks.end()) {
        Report("partial_visible", job, step,
               absl::StrCat("listed, but rank ", rank, " never saved"));
        continue;
      }
      if (auto error = observed.restore_errors.find(rank);
          error != observed.restore_errors.end()) {
        Report("restore_failed", job, step,
               absl::StrCat("rank ", rank, ": ", error->second));
        continue;
      }
      auto restored = observed.restored.find(rank);
      if (restored == observed.restored.end()) {
        Report("restore_failed", job, step,
               absl::StrCat("rank ", rank, " was not restored"));
        continue;
      }
      CompareBytes(key, rank, save->second.sent, restored->second);
    }
  }

  void CompareBytes(const Key& key, int32_t rank, const TensorHashes& sent,
                    const TensorHashes& restored) {
    for (const auto& [name, hash] : sent) {
      auto got = restored.find(name);
      if (got == restored.end()) {
        Report("wrong_bytes", key.first, key.second,
               absl::StrCat("rank ", rank, " tensor ", name,
                            " missing from the restore"));
      } else if (got->second != hash) {
        Report("wrong_bytes", key.first, key.second,
               absl::StrCat("rank ", rank, " tensor ", name, " restored as ",
                            got->second, ", sent ", hash));
      }
    }
    for (const auto& [name, hash] : restored) {
      if (!sent.contains(name)) {
        Report("wrong_bytes", key.first, key.second,
               absl::StrCat("rank ", rank, " restored tensor ", name,
                            " that was never sent"));
      }
    }
  }

  void Report(std::string kind, std::string job, int64_t step,
              std::string detail) {
    result_.violations.push_back({.kind = std::move(kind),
                                  .cycle = cycle_,
                                  .job = std::move(job),
                                  .step = step,
                                  .detail = std::move(detail)});
  }

  CheckResult result_;
  int64_t cycle_ = 0;
  std::map<uint64_t, Record> invokes_;
  std::set<uint64_t> in_flight_;
  std::map<Key, ModelCheckpoint> checkpoints_;
  std::set<Key> seen_;  // listed by some observation so far
};

}  // namespace

CheckResult CheckHistory(absl::Span<const Record> history) {
  return Checker().Run(history);
}

std::string ViolationText(const Violation& violation) {
  return absl::StrCat(violation.kind, " cycle ", violation.cycle, " ",
                      violation.job, "@", violation.step, ": ",
                      violation.detail);
}

}  // namespace ckpt::reliability
