// History: the Jepsen/etcd-style record of a reliability run. Every client
// operation is recorded when it is invoked and again when it ends (ok, fail
// or unknown), with its job, step, rank, world size, the SHA-256 of every
// tensor it sent and the time; what the server showed after each restart is
// recorded as an observation. Written as JSON lines (one record a line, in
// the order they happened) so that model_checker.h can check a history
// offline, e.g. one a failed run left behind.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace ckpt::reliability {

enum class OpKind { kSave, kPrune, kDelete, kGc, kCopy };
// Jepsen's outcomes: kFail means the operation certainly had no effect;
// kUnknown that it may or may not have (the server died during it).
enum class RecordType { kInvoke, kOk, kFail, kUnknown, kObserve };

// "save", "prune", "delete", "gc", "copy"; "invoke", "ok", "fail", "unknown",
// "observe".
const char* OpKindName(OpKind kind);
const char* RecordTypeName(RecordType type);

// Tensor name -> lowercase hex SHA-256 of its bytes.
using TensorHashes = std::map<std::string, std::string>;

// What the server showed of one committed checkpoint after a restart.
struct ObservedCheckpoint {
  int32_t world_size = 0;
  std::vector<int32_t> committed_ranks;  // as listed
  // rank -> the restored tensors' hashes; a rank whose restore failed is
  // absent and has an entry in restore_errors.
  std::map<int32_t, TensorHashes> restored;
  std::map<int32_t, std::string> restore_errors;
};

struct ObservedJob {
  std::map<int64_t, ObservedCheckpoint> committed;  // by step
  // Steps the server's event history says were pruned or deleted.
  std::vector<int64_t> removed_by_events;
};

// The server's state as seen after a restart, with nothing in flight.
struct Observation {
  int64_t cycle = 0;
  std::map<std::string, ObservedJob> jobs;
  // Referenced chunks a garbage collection found missing (its damaged
  // report) and chunks a verify with read_data found missing or corrupt.
  uint64_t gc_missing_chunks = 0;
  uint64_t verify_damaged_chunks = 0;
  uint64_t verify_damaged_checkpoints = 0;
  // An error from a call the observation needed (listing, GC, verify):
  // the checker reports it, as the state could not be seen whole.
  std::vector<std::string> errors;
};

// One line of a history.
struct Record {
  RecordType type = RecordType::kInvoke;
  uint64_t op_id = 0;   // pairs an invoke with its end; 0 for observations
  int64_t time_us = 0;  // since the history began
  // Invoke only.
  OpKind op = OpKind::kSave;
  std::string job;
  int64_t step = 0;
  int32_t rank = 0;
  int32_t world_size = 0;
  TensorHashes sent;        // save: what was sent
  std::string source_job;   // copy: (source_job, step) copied to (job, step)
  int32_t max_to_keep = 0;  // prune: the policy
  // End records.
  std::string status;                  // fail/unknown: the error
  bool checkpoint_committed = false;   // ok save: this rank completed it
  std::vector<int64_t> removed_steps;  // ok prune/delete: what went
  uint64_t gc_missing_chunks = 0;      // ok gc: referenced but missing
  // kObserve only.
  Observation observation;
};

std::string RecordToJson(const Record& record);
absl::StatusOr<Record> RecordFromJson(const std::string& line);

// Reads a whole history file (INVALID_ARGUMENT naming the line on a bad
// one).
absl::StatusOr<std::vector<Record>> ReadHistory(const std::string& path);

// Appends records, in the order the calls happen, to memory and (when
// given a path) to a JSON lines file, flushed per record so that a killed
// run leaves what it had. Thread-safe.
class HistoryRecorder {
 public:
  // Empty path: memory only.
  static absl::StatusOr<std::unique_ptr<HistoryRecorder>> Create(
      const std::string& path);

  // Records `invoke` (its type and op_id are set here) and returns its id.
  uint64_t Invoke(Record invoke);
  // Records how operation `op_id` ended; `end.type` is kOk, kFail or
  // kUnknown.
  void End(uint64_t op_id, Record end);
  void Observe(Observation observation);

  std::vector<Record> records() const;

  // Use Create.
  explicit HistoryRecorder(std::ofstream out) : out_(std::move(out)) {}

 private:
  void Append(Record record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Time start_ = absl::Now();
  mutable absl::Mutex mu_;
  uint64_t next_op_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::vector<Record> records_ ABSL_GUARDED_BY(mu_);
  std::ofstream out_ ABSL_GUARDED_BY(mu_);
};

// Whether a failed call's status leaves its effect unknown (the call may
// have been applied before the connection or the server went away) rather
// than certainly not applied.
bool OutcomeUnknown(const absl::Status& status);

}  // namespace ckpt::reliability
