#include "server/rpc/chunk_answer_encoding.h"

#include <grpcpp/support/slice.h>

#include <cstdint>
#include <memory>
#include <utility>

#include "ckpt/v1/ckpt.pb.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"

namespace ckpt::server {
namespace {

using google::protobuf::internal::WireFormatLite;

// Appends the tag of length-delimited field `number` and `length`.
void AppendFieldHead(int number, uint64_t length, std::string* out) {
  uint8_t bytes[2 * 10];
  uint8_t* end = google::protobuf::io::CodedOutputStream::WriteVarint32ToArray(
      WireFormatLite::MakeTag(number,
                              WireFormatLite::WIRETYPE_LENGTH_DELIMITED),
      bytes);
  end = google::protobuf::io::CodedOutputStream::WriteVarint64ToArray(length,
                                                                      end);
  out->append(reinterpret_cast<const char*>(bytes), end - bytes);
}

// A grpc::Slice's destroy callback for bytes owned by a std::string.
void DeleteString(void* owned) { delete static_cast<std::string*>(owned); }

}  // namespace

grpc::ByteBuffer EncodeChunkAnswer(const ChunkId& id, std::string data) {
  const absl::string_view digest = id.bytes();
  std::string chunk_head;
  AppendFieldHead(v1::ChunkData::kSha256FieldNumber, digest.size(),
                  &chunk_head);
  chunk_head.append(digest.data(), digest.size());
  if (!data.empty()) {
    AppendFieldHead(v1::ChunkData::kDataFieldNumber, data.size(), &chunk_head);
  }
  std::string head;
  AppendFieldHead(v1::ReadChunksResponse::kChunkFieldNumber,
                  chunk_head.size() + data.size(), &head);
  head += chunk_head;
  if (data.empty()) {
    grpc::Slice only(head);
    return grpc::ByteBuffer(&only, 1);
  }
  auto owned = std::make_unique<std::string>(std::move(data));
  const grpc::Slice slices[2] = {
      grpc::Slice(head),
      grpc::Slice(owned->data(), owned->size(), &DeleteString, owned.get())};
  owned.release();  // NOLINT(bugprone-unused-return-value): the slice owns it
  return grpc::ByteBuffer(slices, 2);
}

}  // namespace ckpt::server
