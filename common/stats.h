// Stats: usage figures of a server (or of one job), as the service computes
// them and the client and CLI show them: logical bytes (what committed
// checkpoints hold) against stored bytes (what their deduplicated chunks
// take). Chunks are stored, and deduplicated, per tenant.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ckpt {

struct JobStats {
  std::string job;
  int64_t checkpoint_count = 0;  // committed
  uint64_t logical_bytes = 0;    // over committed checkpoints
};

struct TenantStats {
  std::string tenant;
  int64_t job_count = 0;
  int64_t checkpoint_count = 0;
  uint64_t logical_bytes = 0;  // over all its jobs
  uint64_t stored_bytes = 0;   // its chunks
  uint64_t chunk_count = 0;
};

// The chunks one job's committed checkpoints reference, each distinct chunk
// once; `shared_*` is the part another job of the tenant (a committed or
// pending checkpoint of it) references too, which deleting the job would
// not free.
struct JobStoredBytes {
  uint64_t stored_bytes = 0;
  uint64_t chunk_count = 0;
  uint64_t shared_bytes = 0;  // <= stored_bytes
  uint64_t shared_chunk_count = 0;
};

struct Stats {
  uint64_t logical_bytes = 0;  // over committed checkpoints in scope
  uint64_t stored_bytes = 0;   // chunk bytes held (the job's tenant's)
  uint64_t chunk_count = 0;
  int64_t job_count = 0;
  int64_t checkpoint_count = 0;
  std::vector<JobStats> jobs;        // ascending name
  std::vector<TenantStats> tenants;  // ascending name
  // With a job only; nullopt from a server that does not compute it.
  std::optional<JobStoredBytes> job_stored;
};

}  // namespace ckpt
