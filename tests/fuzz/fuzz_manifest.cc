// T23: the manifest and record decoders (common/wire_format.h) on hostile
// bytes: the persisted encodings the server reads back from its store
// (shard manifests, checkpoint, job and tenant records, events) and the
// wire manifest a client sends in CommitShard (v1::ShardManifest through
// FromProto). The first byte picks the decoder, the rest is its input.
// Whatever decodes must encode again to bytes that decode to the same
// value (compared as deterministic protobuf bytes, so that NaN metrics
// compare equal and map order does not matter: protobuf does not promise
// the order of a map's entries in its default serialization); whatever is
// refused is DATA_LOSS (stored values) or INVALID_ARGUMENT (wire values).

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "ckpt/v1/ckpt.pb.h"
#include "common/wire_format.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

// `value` as `Proto`, serialized deterministically (map entries sorted).
template <typename Proto, typename T>
std::string Canonical(const T& value) {
  Proto proto;
  ckpt::ToProto(value, &proto);
  std::string bytes;
  google::protobuf::io::StringOutputStream stream(&bytes);
  google::protobuf::io::CodedOutputStream out(&stream);
  out.SetSerializationDeterministic(true);
  proto.SerializeToCodedStream(&out);
  out.Trim();
  return bytes;
}

// Whether two decoded values are the same, as Canonical bytes.
template <typename Proto>
struct SameAs {
  template <typename T>
  bool operator()(const T& a, const T& b) const {
    return Canonical<Proto>(a) == Canonical<Proto>(b);
  }
};
// A job record has neither maps nor doubles: operator== will do (its
// ToProto is not public).
struct Equal {
  template <typename T>
  bool operator()(const T& a, const T& b) const {
    return a == b;
  }
};

// Decode, encode, decode again: the two values agree.
template <typename Same, typename Decode, typename Encode>
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
  FUZZ_CHECK(Same()(*again, *decoded),
             "decoding what was encoded gives the same value");
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
  FUZZ_CHECK(Canonical<ckpt::v1::ShardManifest>(*again) ==
                 Canonical<ckpt::v1::ShardManifest>(*shard),
             "the wire round trip keeps the manifest");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const absl::string_view value(reinterpret_cast<const char*>(data) + 1,
                                size - 1);
  switch (data[0] % 6) {
    case 0:
      RoundTrip<SameAs<ckpt::v1::ShardManifest>>(value, ckpt::DecodeShard,
                                                 ckpt::EncodeShard);
      break;
    case 1:
      RoundTrip<SameAs<ckpt::v1::CheckpointInfo>>(
          value, ckpt::DecodeCheckpointRecord, ckpt::EncodeCheckpointRecord);
      break;
    case 2:
      RoundTrip<Equal>(value, ckpt::DecodeJobRecord, ckpt::EncodeJobRecord);
      break;
    case 3:
      RoundTrip<SameAs<ckpt::v1::TenantInfo>>(value, ckpt::DecodeTenantRecord,
                                              ckpt::EncodeTenantRecord);
      break;
    case 4:
      RoundTrip<SameAs<ckpt::v1::JobEvent>>(value, ckpt::DecodeJobEvent,
                                            ckpt::EncodeJobEvent);
      break;
    default:
      WireShard(value);
      break;
  }
  return 0;
}
