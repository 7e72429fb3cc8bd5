#include "client/transport/chunk_answer.h"

#include <grpcpp/support/proto_buffer_reader.h>

#include <climits>
#include <cstdint>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "ckpt/v1/ckpt.pb.h"
#include "common/grpc_status.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"

namespace ckpt::client {
namespace {

using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedInputStream;

constexpr uint32_t LengthDelimitedTag(int field_number) {
  return (static_cast<uint32_t>(field_number) << 3) |
         WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
}
constexpr uint32_t kChunkTag =
    LengthDelimitedTag(v1::ReadChunksResponse::kChunkFieldNumber);
constexpr uint32_t kIdTag =
    LengthDelimitedTag(v1::ChunkData::kSha256FieldNumber);
constexpr uint32_t kDataTag =
    LengthDelimitedTag(v1::ChunkData::kDataFieldNumber);
// Longer than any digest ckpt uses; a longer id is refused unread.
constexpr uint32_t kMaxIdBytes = 64;

absl::Status Malformed(size_t index, absl::string_view what) {
  return absl::DataLossError(
      absl::StrCat("ReadChunks: answer ", index, " is malformed: ", what));
}

absl::Status NotTheSink(const ChunkSink& sink, size_t index, uint64_t size) {
  return absl::DataLossError(
      absl::StrCat("ReadChunks: answer ", index, " is ", size,
                   " bytes of another chunk than the requested ",
                   sink.id.ShortHex(), " (", sink.size, " bytes)"));
}

// Reads a length prefix that must fit an int (CodedInputStream's limits);
// read as 64 bits, since ReadVarint32 would keep a longer one's low bits.
bool ReadLength(CodedInputStream* in, uint32_t* length) {
  uint64_t value = 0;
  if (!in->ReadVarint64(&value) || value > static_cast<uint64_t>(INT_MAX)) {
    return false;
  }
  *length = static_cast<uint32_t>(value);
  return true;
}

// The ChunkData inside the current limit: its id into `id`, its bytes into
// the sink's first destination once their length is the sink's size.
absl::Status DecodeChunkData(CodedInputStream* in, const ChunkSink& sink,
                             size_t index, std::string* id,
                             uint64_t* data_size) {
  bool id_seen = false;
  bool data_seen = false;
  while (const uint32_t tag = in->ReadTag()) {
    uint32_t length = 0;
    if (tag == kIdTag) {
      if (id_seen) return Malformed(index, "its chunk has two ids");
      id_seen = true;
      if (!ReadLength(in, &length)) return Malformed(index, "truncated id");
      if (length > kMaxIdBytes) {
        return Malformed(index, absl::StrCat("a ", length, "-byte chunk id"));
      }
      if (!in->ReadString(id, static_cast<int>(length))) {
        return Malformed(index, "truncated id");
      }
    } else if (tag == kDataTag) {
      if (data_seen) return Malformed(index, "its chunk has two data fields");
      data_seen = true;
      if (!ReadLength(in, &length)) {
        return Malformed(index, "truncated chunk length");
      }
      *data_size = length;
      if (length != sink.size) return NotTheSink(sink, index, length);
      const bool read = length == 0 || sink.destinations.empty()
                            ? in->Skip(static_cast<int>(length))
                            : in->ReadRaw(sink.destinations.front(),
                                          static_cast<int>(length));
      if (!read) {
        return Malformed(
            index, absl::StrCat("its ", length, "-byte chunk is truncated"));
      }
    } else if (!WireFormatLite::SkipField(in, tag)) {
      return Malformed(index, "a truncated field in its chunk");
    }
  }
  // Ended early (the stream ran out inside it) or on a bad tag.
  if (!in->ConsumedEntireMessage() || in->BytesUntilLimit() != 0) {
    return Malformed(index, "its chunk does not end where its length says");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status DecodeChunkAnswer(
    google::protobuf::io::ZeroCopyInputStream* stream, const ChunkSink& sink,
    size_t index) {
  CodedInputStream in(stream);
  bool chunk_seen = false;
  std::string id;
  uint64_t data_size = 0;
  while (const uint32_t tag = in.ReadTag()) {
    if (tag != kChunkTag) {
      if (!WireFormatLite::SkipField(&in, tag)) {
        return Malformed(index, "a truncated field");
      }
      continue;
    }
    if (chunk_seen) return Malformed(index, "it holds two chunks");
    chunk_seen = true;
    uint32_t length = 0;
    if (!ReadLength(&in, &length)) return Malformed(index, "truncated");
    const CodedInputStream::Limit limit =
        in.PushLimit(static_cast<int>(length));
    absl::Status chunk = DecodeChunkData(&in, sink, index, &id, &data_size);
    if (!chunk.ok()) return chunk;
    in.PopLimit(limit);
  }
  if (!in.ConsumedEntireMessage()) {
    return Malformed(index, "it does not end where a field ends");
  }
  if (!chunk_seen) return Malformed(index, "it holds no chunk");
  if (id != sink.id.bytes() || data_size != sink.size) {
    return NotTheSink(sink, index, data_size);
  }
  for (size_t i = 1; sink.size > 0 && i < sink.destinations.size(); ++i) {
    std::memcpy(sink.destinations[i], sink.destinations.front(), sink.size);
  }
  return absl::OkStatus();
}

}  // namespace ckpt::client

namespace grpc {

Status SerializationTraits<ckpt::client::ChunkAnswer, void>::Serialize(
    const ckpt::client::ChunkAnswer& /*answer*/, ByteBuffer* /*buffer*/,
    bool* /*own_buffer*/) {
  return Status(StatusCode::INTERNAL, "a ChunkAnswer is never sent");
}

Status SerializationTraits<ckpt::client::ChunkAnswer, void>::Deserialize(
    ByteBuffer* buffer, ckpt::client::ChunkAnswer* answer) {
  if (buffer == nullptr) return Status(StatusCode::INTERNAL, "No payload");
  {
    ProtoBufferReader reader(buffer);
    answer->status = reader.status().ok()
                         ? ckpt::client::DecodeChunkAnswer(
                               &reader, *answer->sink, answer->index)
                         : ckpt::FromGrpcStatus(reader.status());
  }
  buffer->Clear();
  return Status::OK;
}

}  // namespace grpc
