#include "common/manifest.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/chunking.h"
#include "common/fingerprint_record.h"
#include "common/quantize.h"
#include "common/quote.h"
#include "common/row_delta.h"

namespace ckpt {
namespace {

struct DTypeInfo {
  DType dtype;
  size_t size;
  absl::string_view name;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kUint8, 1, "uint8"},         {DType::kInt8, 1, "int8"},
    {DType::kInt16, 2, "int16"},         {DType::kInt32, 4, "int32"},
    {DType::kInt64, 8, "int64"},         {DType::kFloat16, 2, "float16"},
    {DType::kBFloat16, 2, "bfloat16"},   {DType::kFloat32, 4, "float32"},
    {DType::kFloat64, 8, "float64"},     {DType::kBool, 1, "bool"},
    {DType::kComplex64, 8, "complex64"}, {DType::kComplex128, 16, "complex128"},
};

const DTypeInfo* FindDType(DType dtype) {
  for (const auto& info : kDTypes) {
    if (info.dtype == dtype) return &info;
  }
  return nullptr;
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

// What is wrong with `tensor`'s fingerprint pieces, if anything, given
// that its data pieces (totalling `pieces_total` bytes) are valid: each
// piece 1..kMaxChunkBytes, and together exactly the record the entry
// implies (common/fingerprint_record.h).
std::optional<std::string> FingerprintPiecesProblem(const TensorEntry& tensor,
                                                    uint64_t pieces_total) {
  if (tensor.fingerprint_pieces.empty()) return std::nullopt;
  if (tensor.IsQuantized()) {
    return "quantized, but with row fingerprints (a quantized tensor is "
           "never a delta's base)";
  }
  if (tensor.box.lengths.empty() || tensor.ByteSize() == 0) {
    return "row fingerprints for a tensor without rows";
  }
  uint64_t total = 0;
  for (const ChunkRef& piece : tensor.fingerprint_pieces) {
    if (piece.size == 0 || piece.size > kMaxChunkBytes) {
      return absl::StrCat("fingerprint piece of ", piece.size,
                          " bytes; pieces hold 1 to ", kMaxChunkBytes);
    }
    total += piece.size;
  }
  const uint64_t rows = static_cast<uint64_t>(tensor.box.lengths[0]);
  uint64_t expected = DenseFingerprintRecordBytes(rows);
  if (tensor.IsDelta()) {
    // Valid already: the data pieces are a delta of this many rows.
    const uint64_t delta_rows =
        RowDeltaRowCount(rows, tensor.RowBytes(), pieces_total).value_or(0);
    expected = SparseFingerprintRecordBytes(rows, delta_rows);
  }
  if (total != expected) {
    return absl::StrCat("fingerprint pieces hold ", total, " bytes but ",
                        tensor.IsDelta() ? "the delta's rows" : "its rows",
                        " need a record of ", expected);
  }
  return std::nullopt;
}

}  // namespace

size_t DTypeSize(DType dtype) {
  const DTypeInfo* info = FindDType(dtype);
  return info == nullptr ? 0 : info->size;
}

absl::string_view DTypeName(DType dtype) {
  const DTypeInfo* info = FindDType(dtype);
  return info == nullptr ? "invalid" : info->name;
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  for (const auto& info : kDTypes) {
    if (info.name == name) return info.dtype;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype ", QuoteTruncated(name)));
}

absl::string_view CheckpointStateName(CheckpointState state) {
  switch (state) {
    case CheckpointState::kPending:
      return "pending";
    case CheckpointState::kCommitted:
      return "committed";
    case CheckpointState::kAborted:
      return "aborted";
  }
  return "invalid";
}

absl::string_view CheckpointKindName(const CheckpointRecord& record) {
  return record.IsIncremental() ? "delta" : "full";
}

std::string TensorEntryKind(const TensorEntry& entry) {
  if (entry.IsQuantized()) {
    return absl::StrCat("quantized ", entry.quantization->bits, "b");
  }
  return entry.IsDelta() ? "delta" : "full";
}

uint64_t TensorEntry::ByteSize() const {
  uint64_t elements = 1;
  for (int64_t length : box.lengths) elements *= static_cast<uint64_t>(length);
  return elements * DTypeSize(dtype);
}

uint64_t TensorEntry::StoredBytes() const {
  uint64_t total = 0;
  for (const ChunkRef& piece : pieces) total += piece.size;
  return total;
}

uint64_t TensorEntry::FingerprintBytes() const {
  uint64_t total = 0;
  for (const ChunkRef& piece : fingerprint_pieces) total += piece.size;
  return total;
}

uint64_t TensorEntry::RowBytes() const {
  uint64_t row = DTypeSize(dtype);
  for (size_t d = 1; d < box.lengths.size(); ++d) {
    row *= static_cast<uint64_t>(box.lengths[d]);
  }
  return row;
}

uint64_t TensorEntry::QuantizedRows() const {
  return box.lengths.size() < 2 ? 1 : static_cast<uint64_t>(box.lengths[0]);
}

uint64_t TensorEntry::QuantizedCols() const {
  uint64_t cols = 1;
  for (size_t d = box.lengths.size() < 2 ? 0 : 1; d < box.lengths.size(); ++d) {
    cols *= static_cast<uint64_t>(box.lengths[d]);
  }
  return cols;
}

uint64_t ShardManifest::ByteSize() const {
  uint64_t total = 0;
  for (const auto& tensor : tensors) total += tensor.ByteSize();
  return total;
}

absl::Status ValidateTenantName(absl::string_view tenant) {
  if (tenant.empty() || tenant.size() > 64 ||
      !std::all_of(tenant.begin(), tenant.end(), IsNameChar)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid tenant name ", QuoteTruncated(tenant),
        ": must be 1-64 characters of A-Z a-z 0-9 . _ - (the part of a job "
        "name before its first '/')"));
  }
  return absl::OkStatus();
}

absl::Status ValidateJobName(absl::string_view job) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid job name ", QuoteTruncated(job), ": ", why,
                     " (expected tenant/name, e.g. 'research/resnet50')"));
  };
  if (job.size() > kMaxJobNameBytes) {
    return bad(
        absl::StrCat("longer than the ", kMaxJobNameBytes, "-byte limit"));
  }
  size_t slash = job.find('/');
  if (slash == absl::string_view::npos) return bad("no tenant/ prefix");
  if (slash == 0 || slash > 64) return bad("tenant must be 1-64 characters");
  absl::string_view rest = job.substr(slash + 1);
  if (rest.empty()) return bad("empty name after the tenant");
  bool segment_empty = true;
  for (size_t i = 0; i < job.size(); ++i) {
    char c = job[i];
    if (c == '/') {
      if (segment_empty) return bad("empty path segment");
      segment_empty = true;
    } else if (IsNameChar(c)) {
      segment_empty = false;
    } else {
      return bad(absl::StrCat("character ", QuoteTruncated(std::string(1, c)),
                              " not allowed (use A-Z a-z 0-9 . _ -)"));
    }
  }
  if (segment_empty) return bad("ends with '/'");
  return absl::OkStatus();
}

absl::string_view TenantOf(absl::string_view job) {
  return job.substr(0, job.find('/'));
}

absl::Status ValidateCopyPeer(const CopyPeer& peer) {
  if (peer.server.empty() || peer.server.size() > kMaxCopyServerBytes ||
      !IsPrintableUtf8(peer.server)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "server must be 1-", kMaxCopyServerBytes,
        " bytes of printable UTF-8 without control characters, got ",
        QuoteTruncated(peer.server)));
  }
  if (absl::Status job = ValidateJobName(peer.job); !job.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("job: ", job.message()));
  }
  if (peer.step < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("step must be >= 0, got ", peer.step));
  }
  return absl::OkStatus();
}

std::string CopyPeerText(const CopyPeer& peer) {
  return absl::StrCat(peer.server, " ", peer.job, "@", peer.step);
}

absl::Status ValidateShardManifest(const ShardManifest& shard,
                                   int32_t world_size) {
  if (world_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("world_size must be >= 1, got ", world_size));
  }
  if (shard.rank < 0 || shard.rank >= world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", shard.rank, " is outside world_size ", world_size));
  }
  absl::flat_hash_set<absl::string_view> names;
  for (const auto& tensor : shard.tensors) {
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", QuoteTruncated(tensor.name), " of rank ",
                       shard.rank, ": ", why));
    };
    if (tensor.name.empty()) return bad("empty tensor name");
    if (tensor.name.size() > kMaxTensorNameBytes) {
      return bad(absl::StrCat("name longer than the ", kMaxTensorNameBytes,
                              "-byte limit"));
    }
    if (!names.insert(tensor.name).second) return bad("duplicate tensor name");
    if (DTypeSize(tensor.dtype) == 0) return bad("unknown dtype");
    size_t rank = tensor.global_shape.size();
    if (tensor.box.offsets.size() != rank ||
        tensor.box.lengths.size() != rank) {
      return bad(absl::StrCat("box has ", tensor.box.offsets.size(),
                              " offsets and ", tensor.box.lengths.size(),
                              " lengths for a tensor of ", rank,
                              " dimensions"));
    }
    // Overflow-safe: every extent fits in kMaxDimension elements.
    for (size_t d = 0; d < rank; ++d) {
      int64_t dim = tensor.global_shape[d];
      int64_t off = tensor.box.offsets[d];
      int64_t len = tensor.box.lengths[d];
      if (dim < 0 || dim > kMaxDimension) {
        return bad(absl::StrCat("dimension ", d, " has size ", dim));
      }
      if (off < 0 || len < 0 || off > dim || len > dim - off) {
        return bad(absl::StrCat("box [", off, ", +", len,
                                ") exceeds dimension ", d, " of size ", dim));
      }
    }
    // Bytes must fit in 2^62, checked without overflowing.
    uint64_t bytes = DTypeSize(tensor.dtype);
    for (int64_t len : tensor.box.lengths) {
      if (len != 0 &&
          bytes > (uint64_t{1} << 62) / static_cast<uint64_t>(len)) {
        return bad("box too large");
      }
      bytes *= static_cast<uint64_t>(len);
    }
    uint64_t pieces_total = 0;
    for (const auto& piece : tensor.pieces) {
      // Bounding each piece also keeps the sum below from wrapping around.
      if (piece.size == 0 || piece.size > kMaxChunkBytes) {
        return bad(absl::StrCat("piece of ", piece.size,
                                " bytes; pieces hold 1 to ", kMaxChunkBytes));
      }
      pieces_total += piece.size;
    }
    if (tensor.IsDelta() && tensor.IsQuantized()) {
      return bad(
          "both a row delta and quantized; a quantized tensor is "
          "always saved in full");
    }
    if (tensor.IsDelta()) {
      // A row delta of k rows has RowDeltaBytes(rows, row_bytes, k) bytes.
      if (*tensor.delta_base_step < 0) {
        return bad(absl::StrCat("delta base step ", *tensor.delta_base_step,
                                " is negative"));
      }
      if (tensor.box.lengths.empty() || tensor.ByteSize() == 0) {
        return bad("a row delta needs a tensor with rows");
      }
      const uint64_t rows = static_cast<uint64_t>(tensor.box.lengths[0]);
      const uint64_t row_bytes = tensor.RowBytes();
      if (!RowDeltaRowCount(rows, row_bytes, pieces_total).has_value()) {
        return bad(absl::StrCat("pieces hold ", pieces_total,
                                " bytes, which is no row delta of ", rows,
                                " rows of ", row_bytes, " bytes"));
      }
    } else if (tensor.IsQuantized()) {
      const Quantization& q = *tensor.quantization;
      if (q.bits != 2 && q.bits != 3 && q.bits != 4 && q.bits != 8) {
        return bad(absl::StrCat("quantized to ", q.bits,
                                " bits; the widths are 2, 3, 4 and 8"));
      }
      if (tensor.dtype != DType::kFloat32) {
        return bad(absl::StrCat("quantized but of dtype ",
                                DTypeName(tensor.dtype),
                                "; only float32 tensors are quantized"));
      }
      if (!(std::isfinite(q.max_abs_error) && q.max_abs_error >= 0 &&
            std::isfinite(q.relative_l2_error) && q.relative_l2_error >= 0)) {
        return bad(absl::StrCat("quantization errors ", q.max_abs_error,
                                " and ", q.relative_l2_error,
                                " are not finite and non-negative"));
      }
      if (tensor.ByteSize() == 0) return bad("quantized but empty");
      const uint64_t expected = QuantizedBytes(tensor.QuantizedRows(),
                                               tensor.QuantizedCols(), q.bits);
      if (pieces_total != expected) {
        return bad(absl::StrCat("pieces hold ", pieces_total, " bytes but a ",
                                tensor.QuantizedRows(), " x ",
                                tensor.QuantizedCols(), " matrix quantized to ",
                                q.bits, " bits takes ", expected));
      }
    } else if (pieces_total != tensor.ByteSize()) {
      return bad(absl::StrCat("pieces hold ", pieces_total,
                              " bytes but the box needs ", tensor.ByteSize()));
    }
    if (std::optional<std::string> problem =
            FingerprintPiecesProblem(tensor, pieces_total)) {
      return bad(*problem);
    }
  }
  return absl::OkStatus();
}

std::vector<ChunkRef> ReferencedChunks(const ShardManifest& shard) {
  absl::flat_hash_set<std::pair<ChunkId, uint64_t>> seen;
  std::vector<ChunkRef> refs;
  for (const auto& tensor : shard.tensors) {
    for (const auto& piece : tensor.pieces) {
      if (seen.insert({piece.id, piece.size}).second) refs.push_back(piece);
    }
    for (const auto& piece : tensor.fingerprint_pieces) {
      if (seen.insert({piece.id, piece.size}).second) refs.push_back(piece);
    }
  }
  return refs;
}

}  // namespace ckpt
