#include "server/rpc/request_checks.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/manifest.h"
#include "common/status_macros.h"
#include "common/wire_format.h"

namespace ckpt::server {

absl::Status InvalidRequest(absl::string_view rpc, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(rpc, ": ", what));
}

absl::Status ShuttingDown(absl::string_view rpc) {
  return absl::UnavailableError(
      absl::StrCat(rpc, ": the server is shutting down"));
}

absl::Status CheckJob(absl::string_view rpc, absl::string_view job) {
  absl::Status status = ValidateJobName(job);
  if (!status.ok()) return InvalidRequest(rpc, status.message());
  return absl::OkStatus();
}

absl::Status CheckTenantTarget(absl::string_view rpc, absl::string_view job,
                               absl::string_view tenant) {
  if (!job.empty()) {
    return InvalidRequest(rpc,
                          "name a job or a tenant (its default policy), not "
                          "both");
  }
  absl::Status status = ValidateTenantName(tenant);
  if (!status.ok()) return InvalidRequest(rpc, status.message());
  return absl::OkStatus();
}

absl::Status CheckClear(absl::string_view rpc, bool clear, bool has_policy) {
  if (clear && has_policy) {
    return InvalidRequest(rpc, "clear removes the policy; send it without one");
  }
  return absl::OkStatus();
}

absl::Status CheckStep(absl::string_view rpc, int64_t step) {
  if (step < 0) {
    return InvalidRequest(rpc, absl::StrCat("step must be >= 0, got ", step));
  }
  return absl::OkStatus();
}

absl::Status CheckWorldSize(absl::string_view rpc, int32_t world_size) {
  if (world_size < 1) {
    return InvalidRequest(
        rpc, absl::StrCat("world_size must be >= 1, got ", world_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<CopyPeer> ParseCopyPeer(absl::string_view rpc,
                                       absl::string_view field,
                                       const v1::CopyPeer& proto) {
  CopyPeer peer = FromProto(proto);
  if (absl::Status status = ValidateCopyPeer(peer); !status.ok()) {
    return InvalidRequest(rpc, absl::StrCat(field, ".", status.message()));
  }
  return peer;
}

absl::StatusOr<std::vector<ChunkId>> ParseHashes(
    absl::string_view rpc,
    const google::protobuf::RepeatedPtrField<std::string>& hashes,
    size_t max_hashes) {
  if (static_cast<size_t>(hashes.size()) > max_hashes) {
    return InvalidRequest(
        rpc, absl::StrCat("at most ", max_hashes, " hashes per request, got ",
                          hashes.size()));
  }
  std::vector<ChunkId> ids;
  ids.reserve(hashes.size());
  for (int i = 0; i < hashes.size(); ++i) {
    absl::StatusOr<ChunkId> id = ChunkId::FromBytes(hashes.Get(i));
    if (!id.ok()) {
      return InvalidRequest(
          rpc, absl::StrCat("sha256[", i, "] must be ", ChunkId::kSize,
                            " bytes, got ", hashes.Get(i).size()));
    }
    ids.push_back(*id);
  }
  return ids;
}

absl::StatusOr<RetentionPolicy> ParsePolicy(absl::string_view rpc,
                                            const v1::RetentionPolicy& proto) {
  absl::StatusOr<RetentionPolicy> policy = FromProto(proto);
  if (!policy.ok()) return InvalidRequest(rpc, policy.status().message());
  return policy;
}

absl::Status CheckChunkCount(absl::string_view rpc, int count,
                             size_t max_chunks) {
  if (static_cast<size_t>(count) > max_chunks) {
    return InvalidRequest(
        rpc, absl::StrCat("at most ", max_chunks, " chunks per request, got ",
                          count));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ChunkPlacement>> ParsePlacements(
    absl::string_view rpc,
    const google::protobuf::RepeatedPtrField<v1::ChunkPlacement>& chunks,
    size_t max_chunks) {
  CKPT_RETURN_IF_ERROR(CheckChunkCount(rpc, chunks.size(), max_chunks));
  std::vector<ChunkPlacement> placements;
  placements.reserve(chunks.size());
  for (int i = 0; i < chunks.size(); ++i) {
    absl::StatusOr<ChunkPlacement> placement = FromProto(chunks.Get(i));
    if (!placement.ok()) {
      return InvalidRequest(
          rpc, absl::StrCat("chunks[", i, "].sha256 must be ", ChunkId::kSize,
                            " bytes, got ", chunks.Get(i).sha256().size()));
    }
    placements.push_back(*std::move(placement));
  }
  return placements;
}

bool IsLocalPeer(absl::string_view peer) {
  return absl::StartsWith(peer, "ipv4:127.") ||
         absl::StartsWith(peer, "ipv6:[::1]:") ||
         absl::StartsWith(peer, "ipv6:[::ffff:127.") ||
         absl::StartsWith(peer, "unix:");
}

}  // namespace ckpt::server
