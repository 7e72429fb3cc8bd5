#include "server/storage/keys.h"

#include <xxhash.h>

#include <variant>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace ckpt::server {
namespace {

constexpr char kSeparator = '\0';

void AppendBigEndian(std::string* out, uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) {
    out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  }
}

uint64_t ReadBigEndian(absl::string_view bytes) {
  uint64_t value = 0;
  for (char c : bytes) value = (value << 8) | static_cast<unsigned char>(c);
  return value;
}

absl::Status ValidateKeyPart(absl::string_view what, absl::string_view part) {
  if (part.empty())
    return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  if (part.find(kSeparator) != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(what, " contains NUL"));
  }
  return absl::OkStatus();
}

absl::Status ValidateCheckpointKey(absl::string_view job, int64_t step) {
  CKPT_RETURN_IF_ERROR(ValidateKeyPart("job name", job));
  if (step < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("negative step ", step, " for job ", job));
  }
  return absl::OkStatus();
}

}  // namespace

std::string ChunkKeyPrefix(absl::string_view tenant) {
  if (tenant.empty()) return std::string();
  std::string key(tenant);
  key.push_back(kSeparator);
  return key;
}

std::string ChunkKey(absl::string_view tenant, const ChunkId& id) {
  std::string key = ChunkKeyPrefix(tenant);
  key.append(id.bytes().data(), id.bytes().size());
  return key;
}

absl::StatusOr<DecodedChunkKey> DecodeChunkKey(absl::string_view key) {
  if (key.size() < ChunkId::kSize + 2 ||
      key[key.size() - ChunkId::kSize - 1] != kSeparator) {
    return absl::DataLossError(
        absl::StrCat("malformed chunk key of ", key.size(), " bytes"));
  }
  absl::StatusOr<ChunkId> id =
      ChunkId::FromBytes(key.substr(key.size() - ChunkId::kSize));
  if (!id.ok()) return absl::DataLossError(id.status().message());
  return DecodedChunkKey{key.substr(0, key.size() - ChunkId::kSize - 1), *id};
}

std::string JobKeyPrefix(absl::string_view job) {
  std::string key(job);
  key.push_back(kSeparator);
  return key;
}

std::string CheckpointKey(absl::string_view job, int64_t step) {
  std::string key = JobKeyPrefix(job);
  AppendBigEndian(&key, static_cast<uint64_t>(step), 8);
  return key;
}

std::string ShardKey(absl::string_view job, int64_t step, int32_t rank) {
  std::string key = CheckpointKey(job, step);
  AppendBigEndian(&key, static_cast<uint32_t>(rank), 4);
  return key;
}

absl::StatusOr<DecodedShardKey> DecodeShardKey(absl::string_view key) {
  constexpr size_t kTail = 1 + 8 + 4;  // separator, step, rank
  if (key.size() < kTail + 1 || key[key.size() - kTail] != kSeparator) {
    return absl::DataLossError(
        absl::StrCat("malformed shard key of ", key.size(), " bytes"));
  }
  DecodedShardKey decoded;
  decoded.job = key.substr(0, key.size() - kTail);
  decoded.step =
      static_cast<int64_t>(ReadBigEndian(key.substr(key.size() - 12, 8)));
  decoded.rank =
      static_cast<int32_t>(ReadBigEndian(key.substr(key.size() - 4)));
  if (decoded.step < 0 || decoded.rank < 0) {
    return absl::DataLossError("shard key with a negative step or rank");
  }
  return decoded;
}

std::string EventKey(absl::string_view job, uint64_t sequence) {
  std::string key = JobKeyPrefix(job);
  AppendBigEndian(&key, sequence, 8);
  return key;
}

absl::StatusOr<uint64_t> DecodeEventSequence(absl::string_view job,
                                             absl::string_view key) {
  const std::string prefix = JobKeyPrefix(job);
  if (key.size() != prefix.size() + 8 || !absl::StartsWith(key, prefix)) {
    return absl::DataLossError(absl::StrCat(
        "malformed event key of ", key.size(), " bytes for job ", job));
  }
  return ReadBigEndian(key.substr(prefix.size()));
}

absl::StatusOr<uint64_t> EventSequencer::Next(
    absl::string_view job,
    absl::FunctionRef<absl::StatusOr<uint64_t>(absl::string_view job)>
        last_stored) {
  auto it = last_.find(job);
  if (it == last_.end()) {
    CKPT_ASSIGN_OR_RETURN(uint64_t stored, last_stored(job));
    it = last_.emplace(std::string(job), stored).first;
  }
  return ++it->second;
}

std::vector<EventSequencer::Trim> EventSequencer::Trims() const {
  std::vector<Trim> trims;
  for (const auto& [job, last] : last_) {
    // Sequences are consecutive and only the oldest are ever dropped, so the
    // kept ones are exactly the newest kMaxEventsPerJob.
    if (last > kMaxEventsPerJob) {
      trims.push_back(Trim{job, last - kMaxEventsPerJob + 1});
    }
  }
  return trims;
}

std::string PrefixSuccessor(absl::string_view prefix) {
  std::string key(prefix);
  while (!key.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(key.back());
    if (last != 0xff) {
      ++last;
      return key;
    }
    key.pop_back();
  }
  return key;
}

std::string EncodeVarint64(uint64_t value) {
  std::string out;
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
  return out;
}

absl::StatusOr<uint64_t> DecodeVarint64(absl::string_view value) {
  uint64_t result = 0;
  for (size_t i = 0; i < value.size() && i < 10; ++i) {
    const auto byte = static_cast<uint8_t>(value[i]);
    result |= static_cast<uint64_t>(byte & 0x7f) << (7 * i);
    if ((byte & 0x80) == 0) {
      if (i + 1 != value.size()) break;
      return result;
    }
  }
  return absl::DataLossError("malformed varint");
}

ChunkChecksum ComputeChunkChecksum(absl::string_view bytes) {
  const XXH128_hash_t hash = XXH3_128bits(bytes.data(), bytes.size());
  return ChunkChecksum{hash.low64, hash.high64};
}

namespace {

void AppendFixed64(uint64_t value, std::string* out) {
  for (int i = 0; i < 8; ++i) {
    out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  }
}

uint64_t ReadFixed64(absl::string_view bytes) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) {
    value |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
  }
  return value;
}

}  // namespace

std::string EncodeChunkChecksum(const ChunkChecksum& checksum) {
  std::string out;
  AppendFixed64(checksum.low, &out);
  AppendFixed64(checksum.high, &out);
  return out;
}

absl::StatusOr<ChunkChecksum> DecodeChunkChecksum(absl::string_view value) {
  if (value.size() != 16) {
    return absl::DataLossError(absl::StrCat(
        "corrupt chunk checksum: ", value.size(), " bytes, expected 16"));
  }
  return ChunkChecksum{ReadFixed64(value), ReadFixed64(value.substr(8))};
}

std::string EncodeChunkIndexValue(uint64_t size, const ChunkChecksum& checksum,
                                  std::optional<uint64_t> file_number) {
  std::string value = EncodeVarint64(size) + EncodeChunkChecksum(checksum);
  if (file_number.has_value()) value += EncodeVarint64(*file_number);
  return value;
}

namespace {

// The length of the varint at the start of `value` (up to 10 bytes), or
// nullopt when it does not end within them.
std::optional<size_t> VarintLength(absl::string_view value) {
  size_t end = 0;
  while (end < value.size() && end < 10 &&
         (static_cast<uint8_t>(value[end]) & 0x80) != 0) {
    ++end;
  }
  ++end;  // the last byte of the varint
  if (end > value.size()) return std::nullopt;
  return end;
}

}  // namespace

absl::StatusOr<ChunkIndexValue> DecodeChunkIndexValue(absl::string_view value) {
  const std::optional<size_t> varint_end = VarintLength(value);
  if (!varint_end.has_value()) {
    return absl::DataLossError("corrupt chunk index value: malformed varint");
  }
  ChunkIndexValue decoded;
  absl::StatusOr<uint64_t> size = DecodeVarint64(value.substr(0, *varint_end));
  if (!size.ok()) {
    return absl::DataLossError(absl::StrCat("corrupt chunk index value: size: ",
                                            size.status().message()));
  }
  decoded.size = *size;
  absl::string_view rest = value.substr(*varint_end);
  if (rest.empty()) return decoded;
  if (rest.size() < 16) {
    return absl::DataLossError(absl::StrCat(
        "corrupt chunk index value: ", rest.size(),
        " bytes after the size, expected none or a 16-byte checksum"));
  }
  CKPT_ASSIGN_OR_RETURN(decoded.checksum,
                        DecodeChunkChecksum(rest.substr(0, 16)));
  rest.remove_prefix(16);
  if (rest.empty()) return decoded;
  absl::StatusOr<uint64_t> number = DecodeVarint64(rest);
  if (!number.ok()) {
    return absl::DataLossError(absl::StrCat(
        "corrupt chunk index value: file number: ", number.status().message()));
  }
  decoded.file_number = *number;
  return decoded;
}

absl::Status ValidateTenant(absl::string_view tenant) {
  return ValidateKeyPart("tenant", tenant);
}

absl::Status ValidateBatch(const MetadataBatch& batch) {
  for (const MetadataBatch::Op& op : batch.ops()) {
    CKPT_RETURN_IF_ERROR(std::visit(
        [](const auto& o) -> absl::Status {
          using T = std::decay_t<decltype(o)>;
          if constexpr (std::is_same_v<T, MetadataBatch::PutJobOp>) {
            return ValidateKeyPart("job name", o.job.name);
          } else if constexpr (std::is_same_v<T,
                                              MetadataBatch::PutCheckpointOp>) {
            return ValidateCheckpointKey(o.record.job, o.record.step);
          } else if constexpr (std::is_same_v<
                                   T, MetadataBatch::DeleteCheckpointOp>) {
            return ValidateCheckpointKey(o.job, o.step);
          } else if constexpr (std::is_same_v<T,
                                              MetadataBatch::AppendEventOp>) {
            return ValidateKeyPart("job name", o.event.job);
          } else if constexpr (std::is_same_v<T, MetadataBatch::PutTenantOp>) {
            return ValidateKeyPart("tenant name", o.tenant.name);
          } else {
            if (o.shard.rank < 0) {
              return absl::InvalidArgumentError(
                  absl::StrCat("negative rank ", o.shard.rank));
            }
            return ValidateCheckpointKey(o.job, o.step);
          }
        },
        op));
  }
  return absl::OkStatus();
}

absl::Status ChunkNotFound(absl::string_view tenant, const ChunkId& id) {
  return absl::NotFoundError(
      absl::StrCat("chunk ", id.ShortHex(), " not found for tenant ", tenant));
}

absl::Status CheckpointNotFound(absl::string_view job, int64_t step) {
  return absl::NotFoundError(
      absl::StrCat("checkpoint ", job, "@", step, " not found"));
}

}  // namespace ckpt::server
