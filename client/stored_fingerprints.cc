#include "client/stored_fingerprints.h"

#include <algorithm>
#include <iterator>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/fetch_plan.h"
#include "client/restore_plan.h"
#include "common/fingerprint_record.h"
#include "common/row_delta.h"
#include "common/status_macros.h"

namespace ckpt::client {
namespace {

// An entry whose "tensor" is `entry`'s fingerprint record: its fingerprint
// pieces as the pieces of a uint8 vector, so the restore plan fetches them
// as it fetches any full entry.
TensorEntry FingerprintRecordEntry(const TensorEntry& entry) {
  TensorEntry record;
  record.name = entry.name;
  record.dtype = DType::kUint8;
  const int64_t bytes = static_cast<int64_t>(entry.FingerprintBytes());
  record.global_shape = {bytes};
  record.box.offsets = {0};
  record.box.lengths = {bytes};
  record.pieces = entry.fingerprint_pieces;
  return record;
}

// The rows of `entry` a record must describe: every row (dense) for a full
// entry, the delta's rows (sparse) for a delta. Checked on the sizes the
// manifest gives before anything is allocated or fetched (the manifest
// came from the server: hostile), and on the record once fetched.
absl::Status CheckRecordSize(const TensorEntry& entry, int64_t step) {
  const uint64_t rows = static_cast<uint64_t>(entry.box.lengths[0]);
  uint64_t expected = DenseFingerprintRecordBytes(rows);
  if (entry.IsDelta()) {
    const std::optional<uint64_t> delta_rows =
        RowDeltaRowCount(rows, entry.RowBytes(), entry.StoredBytes());
    expected = delta_rows.has_value()
                   ? SparseFingerprintRecordBytes(rows, *delta_rows)
                   : 0;
  }
  // Summed without wrapping: the sizes are the server's word.
  uint64_t held = 0;
  for (const ChunkRef& piece : entry.fingerprint_pieces) {
    if (__builtin_add_overflow(held, piece.size, &held)) {
      held = std::numeric_limits<uint64_t>::max();
      break;
    }
  }
  if (expected == 0) {
    return absl::DataLossError(
        absl::StrCat("tensor '", entry.name, "' of checkpoint ", step,
                     ": its pieces are not a valid row delta of its rows"));
  }
  // A record past what a tensor of 2^62 bytes could need cannot be real
  // (and must not be allocated).
  if (held != expected || expected > (uint64_t{1} << 62)) {
    return absl::DataLossError(
        absl::StrCat("tensor '", entry.name, "' of checkpoint ", step,
                     ": its fingerprint pieces hold ", held, " bytes, not the ",
                     expected, " its rows need"));
  }
  return absl::OkStatus();
}

absl::Status CheckRecordFits(const FingerprintRecordView& record,
                             const TensorEntry& entry, int64_t step) {
  const uint64_t rows = static_cast<uint64_t>(entry.box.lengths[0]);
  std::optional<uint64_t> expected_count = rows;
  if (entry.IsDelta()) {
    expected_count =
        RowDeltaRowCount(rows, entry.RowBytes(), entry.StoredBytes());
  }
  if (record.dense() == entry.IsDelta() || record.total_rows() != rows ||
      record.row_bytes() != entry.RowBytes() || !expected_count.has_value() ||
      record.row_count() != *expected_count) {
    return absl::DataLossError(absl::StrCat(
        "tensor '", entry.name, "' of checkpoint ", step,
        ": its stored row fingerprints do not fit it (a ",
        record.dense() ? "dense" : "sparse", " record of ", record.row_count(),
        " of ", record.total_rows(), " rows of ", record.row_bytes(),
        " bytes, for a ", entry.IsDelta() ? "delta" : "full entry", " of ",
        rows, " rows of ", entry.RowBytes(), " bytes)"));
  }
  return absl::OkStatus();
}

std::vector<uint64_t> SortedUnion(const std::vector<uint64_t>& a,
                                  const FingerprintRecordView& record) {
  std::vector<uint64_t> rows;
  rows.reserve(record.row_count());
  for (uint64_t i = 0; i < record.row_count(); ++i) {
    rows.push_back(record.RowIndex(i));
  }
  std::vector<uint64_t> out;
  out.reserve(a.size() + rows.size());
  std::set_union(a.begin(), a.end(), rows.begin(), rows.end(),
                 std::back_inserter(out));
  return out;
}

// LoadStoredChain with `chains` caching the base manifests.
absl::StatusOr<StoredChain> LoadWithChains(DeltaChains& chains,
                                           Transport& transport,
                                           absl::string_view job, int64_t step,
                                           const TensorEntry& entry,
                                           std::optional<int32_t> rank) {
  if (entry.IsQuantized() || entry.box.lengths.empty() ||
      entry.ByteSize() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", entry.name,
        "': only unquantized tensors with rows have row fingerprints"));
  }
  // Oldest first: the full baseline, then the deltas up to `entry`.
  CKPT_ASSIGN_OR_RETURN(std::vector<TensorEntry> chain,
                        chains.Resolve(entry, rank));
  StoredChain stored;
  stored.chain_length = static_cast<int>(chain.size()) - 1;
  stored.baseline_step = chain.size() > 1 ? *chain[1].delta_base_step : step;
  const bool all_stored = std::all_of(
      chain.begin(), chain.end(),
      [](const TensorEntry& e) { return e.HasStoredFingerprints(); });
  if (!all_stored) return stored;

  // The step link i was saved at: the next link's base, or `step`.
  auto link_step = [&](size_t i) {
    return i + 1 < chain.size() ? *chain[i + 1].delta_base_step : step;
  };
  std::vector<TensorEntry> records;
  std::vector<std::string> bytes;
  for (size_t i = 0; i < chain.size(); ++i) {
    const TensorEntry& link = chain[i];
    CKPT_RETURN_IF_ERROR(CheckRecordSize(link, link_step(i)));
    records.push_back(FingerprintRecordEntry(link));
    bytes.emplace_back(link.FingerprintBytes(), '\0');
    stored.bytes_read += link.FingerprintBytes();
  }
  std::vector<absl::Span<char>> outs;
  for (std::string& out : bytes) outs.push_back(absl::MakeSpan(out));
  // A record chunk missing or damaged in a committed checkpoint is data
  // lost, whichever the store reports; say which tensor and chain it is.
  absl::Status read = ReadTensors(transport, job, records, outs);
  if (absl::IsNotFound(read) || absl::IsDataLoss(read)) {
    return absl::DataLossError(absl::StrCat(
        "tensor '", entry.name, "' of checkpoint ", step,
        ": its stored row fingerprints (down to step ", stored.baseline_step,
        ") cannot be read: ", read.message()));
  }
  CKPT_RETURN_IF_ERROR(read);

  StoredChain::Fingerprints& fingerprints = stored.fingerprints.emplace();
  const uint64_t rows = static_cast<uint64_t>(entry.box.lengths[0]);
  fingerprints.at_baseline.resize(rows);
  for (size_t i = 0; i < chain.size(); ++i) {
    absl::StatusOr<FingerprintRecordView> record =
        DecodeFingerprintRecord(bytes[i]);
    if (!record.ok()) {
      return absl::DataLossError(absl::StrCat("tensor '", entry.name,
                                              "' of checkpoint ", link_step(i),
                                              ": ", record.status().message()));
    }
    CKPT_RETURN_IF_ERROR(CheckRecordFits(*record, chain[i], link_step(i)));
    if (i == 0) {
      CKPT_RETURN_IF_ERROR(OverlayFingerprints(
          *record, absl::MakeSpan(fingerprints.at_baseline)));
      fingerprints.at_checkpoint = fingerprints.at_baseline;
      continue;
    }
    CKPT_RETURN_IF_ERROR(OverlayFingerprints(
        *record, absl::MakeSpan(fingerprints.at_checkpoint)));
    fingerprints.changed_since_baseline =
        SortedUnion(fingerprints.changed_since_baseline, *record);
  }
  return stored;
}

}  // namespace

absl::StatusOr<StoredChain> LoadStoredChain(Transport& transport,
                                            absl::string_view job, int64_t step,
                                            const TensorEntry& entry,
                                            std::optional<int32_t> rank) {
  DeltaChains chains(transport, job);
  return LoadWithChains(chains, transport, job, step, entry, rank);
}

std::vector<absl::StatusOr<StoredChain>> LoadStoredChains(
    Transport& transport, absl::string_view job, int64_t step,
    absl::Span<const TensorEntry> entries, std::optional<int32_t> rank) {
  DeltaChains chains(transport, job);
  std::vector<absl::StatusOr<StoredChain>> out;
  out.reserve(entries.size());
  for (const TensorEntry& entry : entries) {
    out.push_back(LoadWithChains(chains, transport, job, step, entry, rank));
  }
  return out;
}

}  // namespace ckpt::client
