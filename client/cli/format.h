// Output helpers of the ckpt CLI: sizes, times and tables for people.
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/manifest.h"

namespace ckpt::cli {

// "0 B", "512 B", "1.5 KiB", "12.0 MiB", "1.5 GiB" (binary units).
std::string HumanBytes(uint64_t bytes);
// RFC 3339 in UTC with seconds, e.g. "2024-05-01T12:00:00Z".
std::string FormatTimestamp(absl::Time time);
// The time shown for a checkpoint: the writer's, else the commit's; a
// pending or aborted one has no commit time, so its creation time is shown.
absl::Time DisplayTime(const CheckpointRecord& record);
// "[4, 1024]".
std::string FormatShape(const std::vector<int64_t>& shape);
// "[0:+4, 512:+512]": offset and length per dimension.
std::string FormatBox(const Box& box);
// "4" or "2, 4" (delta base steps); "-" when empty.
std::string FormatSteps(const std::vector<int64_t>& steps);
// "loss=0.25 epoch=3"; "-" when empty.
std::string FormatMetrics(const std::map<std::string, double>& metrics);
std::string FormatTags(const std::map<std::string, std::string>& tags);
// "max 0.0050 L2 0.37%": a quantized tensor's maximum absolute error and its
// L2 error relative to the tensor's norm.
std::string FormatQuantizationError(const Quantization& quantization);

// Prints rows under a header with columns padded to their widest cell.
void PrintTable(std::ostream& out, const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows);

}  // namespace ckpt::cli
