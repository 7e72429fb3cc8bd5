// T23: the safetensors files `ckpt import` reads from anyone
// (client/portable/safetensors.h), the input being the file. A parsed
// safetensors header must describe tensors that tile its data section exactly,
// each of its shape's byte count, and writing those tensors canonically
// (LayOutSafetensors) must give a file that parses to the same tensors and
// metadata.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "client/portable/safetensors.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

namespace portable = ckpt::client::portable;

bool SameTensors(const portable::SafetensorsHeader& a,
                 const portable::SafetensorsHeader& b) {
  if (a.tensors.size() != b.tensors.size()) return false;
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const portable::SafetensorsTensor& x = a.tensors[i];
    const portable::SafetensorsTensor& y = b.tensors[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape ||
        x.begin != y.begin || x.end != y.end) {
      return false;
    }
  }
  return a.data_bytes == b.data_bytes;
}

void Safetensors(absl::string_view file) {
  absl::StatusOr<portable::SafetensorsHeader> header =
      portable::ParseSafetensors(file, "fuzz.safetensors");
  if (!header.ok()) {
    FUZZ_CHECK(header.status().code() == absl::StatusCode::kInvalidArgument,
               "a refused file is INVALID_ARGUMENT");
    return;
  }
  FUZZ_CHECK(header->data_offset >= 8 && header->data_offset <= file.size(),
             "the data section starts inside the file");
  FUZZ_CHECK(header->data_bytes == file.size() - header->data_offset,
             "the data section is the rest of the file");
  uint64_t next = 0;
  std::vector<portable::SafetensorsSpec> specs;
  for (const portable::SafetensorsTensor& tensor : header->tensors) {
    FUZZ_CHECK(tensor.begin == next, "tensors leave no gap and no overlap");
    FUZZ_CHECK(tensor.begin <= tensor.end, "offsets in order");
    uint64_t bytes = ckpt::DTypeSize(tensor.dtype);
    for (int64_t dim : tensor.shape) {
      FUZZ_CHECK(dim >= 0, "no negative dimension");
      FUZZ_CHECK(
          !__builtin_mul_overflow(bytes, static_cast<uint64_t>(dim), &bytes),
          "a tensor's size fits");
    }
    FUZZ_CHECK(tensor.end - tensor.begin == bytes, "bytes are the shape's");
    next = tensor.end;
    specs.push_back({tensor.name, tensor.dtype, tensor.shape});
  }
  FUZZ_CHECK(next == header->data_bytes, "tensors cover the data section");

  std::map<std::string, std::string> metadata = header->metadata;
  metadata.erase(portable::kComplexMetadataKey);
  absl::StatusOr<portable::SafetensorsLayout> layout =
      portable::LayOutSafetensors(specs, metadata);
  FUZZ_CHECK(layout.ok(), "what was read can be written");
  FUZZ_CHECK(layout->file_bytes == layout->prefix.size() + header->data_bytes,
             "the written file holds the same data section");
  std::string rewritten = layout->prefix;
  rewritten.append(header->data_bytes, '\0');
  absl::StatusOr<portable::SafetensorsHeader> again =
      portable::ParseSafetensors(rewritten, "rewritten.safetensors");
  FUZZ_CHECK(again.ok(), "the canonical file parses");
  FUZZ_CHECK(SameTensors(*header, *again), "the same tensors read back");
  std::map<std::string, std::string> metadata_again = again->metadata;
  metadata_again.erase(portable::kComplexMetadataKey);
  FUZZ_CHECK(metadata_again == metadata, "the same metadata reads back");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Safetensors(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
