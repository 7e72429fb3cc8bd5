// Request checks of the gRPC edge. Each error is INVALID_ARGUMENT naming
// the RPC and the offending field (by index in a list), so a caller can tell
// which of its calls was malformed and why. Pure: no service calls, no
// gRPC call state (peers arrive as gRPC's peer strings).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ckpt/v1/ckpt.pb.h"
#include "common/chunk_id.h"
#include "common/manifest.h"
#include "common/retention_policy.h"
#include "server/service/shared_file_reads.h"

namespace ckpt::server {

// INVALID_ARGUMENT "<rpc>: <what>".
absl::Status InvalidRequest(absl::string_view rpc, absl::string_view what);
// UNAVAILABLE "<rpc>: the server is shutting down".
absl::Status ShuttingDown(absl::string_view rpc);

// A job name the service accepts (ValidateJobName).
absl::Status CheckJob(absl::string_view rpc, absl::string_view job);
// A request naming a tenant (its default policy) instead of a job: `job`
// must then be empty and `tenant` a valid tenant name.
absl::Status CheckTenantTarget(absl::string_view rpc, absl::string_view job,
                               absl::string_view tenant);
// SetRetentionPolicy's `clear` takes no policy.
absl::Status CheckClear(absl::string_view rpc, bool clear, bool has_policy);
// step >= 0.
absl::Status CheckStep(absl::string_view rpc, int64_t step);
// world_size >= 1 (the service checks the upper bound, its option).
absl::Status CheckWorldSize(absl::string_view rpc, int32_t world_size);

// The proto's peer of a copy (BeginCheckpoint's copied_from, ReportCopy's
// destination; `field` names it), as ValidateCopyPeer accepts it:
// "<rpc>: <field>.server must be ...".
absl::StatusOr<CopyPeer> ParseCopyPeer(absl::string_view rpc,
                                       absl::string_view field,
                                       const v1::CopyPeer& proto);

// Raw SHA-256 digests, at most `max_hashes` of them; names the first bad
// one as sha256[i].
absl::StatusOr<std::vector<ChunkId>> ParseHashes(
    absl::string_view rpc,
    const google::protobuf::RepeatedPtrField<std::string>& hashes,
    size_t max_hashes);

// The proto's policy (wire_format's FromProto); its values are the
// service's to validate.
absl::StatusOr<RetentionPolicy> ParsePolicy(absl::string_view rpc,
                                            const v1::RetentionPolicy& proto);

// INVALID_ARGUMENT naming the limit when a request lists more than
// `max_chunks` chunks.
absl::Status CheckChunkCount(absl::string_view rpc, int count,
                             size_t max_chunks);

// ReadChunksIntoFile's placements, at most `max_chunks`; names a bad hash
// as chunks[i].sha256. Offsets and sizes are the service's to check against
// the file (ReadChunksIntoSharedFile).
absl::StatusOr<std::vector<ChunkPlacement>> ParsePlacements(
    absl::string_view rpc,
    const google::protobuf::RepeatedPtrField<v1::ChunkPlacement>& chunks,
    size_t max_chunks);

// Whether a gRPC peer string ("ipv4:127.0.0.1:5000", "ipv6:[::1]:5000",
// "unix:/path") is on this host: loopback TCP (IPv4, IPv6, or IPv4-mapped
// IPv6) or a Unix socket. Anything else, unknown forms included, is remote.
bool IsLocalPeer(absl::string_view peer);

}  // namespace ckpt::server
