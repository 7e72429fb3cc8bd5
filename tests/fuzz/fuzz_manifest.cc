// T23: the manifest and record decoders (common/wire_format.h) on hostile
// bytes: the persisted encodings the server reads back from its store
// (shard manifests, checkpoint, job and tenant records, events) and the
// wire manifest a client sends in CommitShard (v1::ShardManifest through
// FromProto). The first byte picks the decoder, the rest is its input.
// Whatever decodes must encode again to bytes that decode to the same
// encoding (compared as bytes, so NaN metrics compare equal); whatever is
// refused is DATA_LOSS (stored values) or INVALID_ARGUMENT (wire values).

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "ckpt/v1/ckpt.pb.h"
#include "common/wire_format.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

// Decode, encode, decode again: the two encodings agree.
template <typename Decode, typename Encode>
void RoundTrip(absl::string_view value, Decode decode, Encode encode) {
  auto decoded = decode(value);
  if (!decoded.ok()) {
    FUZZ_CHECK(decoded.status().code() == absl::StatusCode::kDataLoss,
               "a refused stored value is DATA_LOSS");
    return;
  }
  const std::string encoded = encode(*decoded);
  auto again = decode(encoded);
  FUZZ_CHECK(again.ok(), "what decoded encodes to a value that decodes");
  FUZZ_CHECK(encode(*again) == encoded, "the encoding is stable");
}

void WireShard(absl::string_view value) {
  ckpt::v1::ShardManifest proto;
  if (!proto.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return;
  }
  absl::StatusOr<ckpt::ShardManifest> shard = ckpt::FromProto(proto);
  if (!shard.ok()) {
    FUZZ_CHECK(shard.status().code() == absl::StatusCode::kInvalidArgument,
               "a refused wire manifest is INVALID_ARGUMENT");
    return;
  }
  ckpt::v1::ShardManifest out;
  ckpt::ToProto(*shard, &out);
  absl::StatusOr<ckpt::ShardManifest> again = ckpt::FromProto(out);
  FUZZ_CHECK(again.ok(), "what FromProto accepted, ToProto gives back");
  FUZZ_CHECK(ckpt::EncodeShard(*again) == ckpt::EncodeShard(*shard),
             "the wire round trip keeps the manifest");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const absl::string_view value(reinterpret_cast<const char*>(data) + 1,
                                size - 1);
  switch (data[0] % 6) {
    case 0:
      RoundTrip(value, ckpt::DecodeShard, ckpt::EncodeShard);
      break;
    case 1:
      RoundTrip(value, ckpt::DecodeCheckpointRecord,
                ckpt::EncodeCheckpointRecord);
      break;
    case 2:
      RoundTrip(value, ckpt::DecodeJobRecord, ckpt::EncodeJobRecord);
      break;
    case 3:
      RoundTrip(value, ckpt::DecodeTenantRecord, ckpt::EncodeTenantRecord);
      break;
    case 4:
      RoundTrip(value, ckpt::DecodeJobEvent, ckpt::EncodeJobEvent);
      break;
    default:
      WireShard(value);
      break;
  }
  return 0;
}
