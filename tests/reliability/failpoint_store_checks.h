// What the failpoint crash tests (failpoint_crash_test) save on a real
// ckpt-server and what they check on it after a crash: one job's
// checkpoints of a deterministic pattern per step (so any restore can be
// compared with what was sent), and the invariants a server restarted on
// the crashed one's RocksDB directory must show. Failures are gtest
// failures of the calling test.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/client.h"

namespace ckpt::testing {

inline constexpr char kFailpointJob[] = "fp/model";
inline constexpr size_t kFailpointChunkBytes = 16 << 10;
// A step's own tensor is this many chunks: a save of a new step hits
// chunk_put this often.
inline constexpr int kOwnChunks = 6;

// The tensors of one checkpoint of kFailpointJob, by name: one of its own
// (kOwnChunks chunks) and one every step shares (deduplicated).
using Tensors = std::map<std::string, std::string>;
Tensors TensorsOf(int64_t step);

// SaveShard of TensorsOf(step) as `rank` of `world_size` (lease: the
// server's default when zero).
absl::StatusOr<client::SaveResult> SaveStep(client::Client& client,
                                            int64_t step,
                                            int32_t world_size = 1,
                                            int32_t rank = 0,
                                            absl::Duration lease = {});

// Committed steps of kFailpointJob, ascending.
using Steps = std::vector<int64_t>;
// `steps` with `step` (once), ascending.
Steps With(Steps steps, int64_t step);

// Every committed checkpoint of the job: its steps, each restored (rank 0)
// and compared with TensorsOf(step).
Steps CommittedRestoringExactly(client::Client& client);

// The invariants on a server restarted after a crash: the committed steps
// are one of `allowed` and each restores exactly; VerifyCheckpoints
// --read-data finds nothing; a GC with no hold finds no damage and removes
// nothing referenced (all restore and verify again). Returns the committed
// steps.
Steps CheckAfterRestart(client::Client& client,
                        const std::vector<Steps>& allowed);

// With nothing pending on the server: a GC with no hold must sweep (skip
// no tenant), find no damage, and leave `committed` restoring exactly and
// verify clean. (CheckAfterRestart's GC sweeps nothing while the crash's
// pending checkpoint holds its tenant back.)
void CollectAndRecheck(client::Client& client, const Steps& committed);

// Checkpoints CommittedRestoringExactly restored in this process.
int64_t CheckpointsRestored();

// The record of `step`, uncommitted ones included; nullopt when absent.
std::optional<CheckpointRecord> RecordOf(client::Client& client, int64_t step);

// Aborts every pending checkpoint of the job (what a crash left pending).
void AbortPending(client::Client& client);

}  // namespace ckpt::testing
