// ObserveServer: what the crash tests record of a restarted server before
// any new traffic (history.h's Observation): every committed checkpoint of
// the given jobs with its ranks restored and hashed, the steps the job
// histories say were pruned or deleted, and what a garbage collection and
// a verify with --read-data find missing or corrupt.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "client/client.h"
#include "tests/reliability/history.h"

namespace ckpt::reliability {

struct ObserveStats {
  uint64_t bytes_restored = 0;
  int64_t ranks_restored = 0;
};

// Errors of calls go into Observation::errors (a restore's into its
// checkpoint's restore_errors): the checker reports them.
Observation ObserveServer(client::Client& client,
                          const std::vector<std::string>& jobs, int64_t cycle,
                          ObserveStats& stats);

}  // namespace ckpt::reliability
