#include "client/cli/format.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/quote.h"

namespace ckpt::cli {

std::string HumanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB",
                                           "TiB", "PiB", "EiB"};
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  double value = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

std::string FormatTimestamp(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", time, absl::UTCTimeZone());
}

absl::Time DisplayTime(const CheckpointRecord& record) {
  if (record.state == CheckpointState::kCommitted) {
    return record.EffectiveTime();
  }
  return record.metadata.writer_time.value_or(record.create_time);
}

std::string FormatShape(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

std::string FormatSteps(const std::vector<int64_t>& steps) {
  if (steps.empty()) return "-";
  return absl::StrJoin(steps, ", ");
}

std::string FormatBox(const Box& box) {
  std::vector<std::string> dims;
  for (size_t d = 0; d < box.offsets.size() && d < box.lengths.size(); ++d) {
    dims.push_back(absl::StrCat(box.offsets[d], ":+", box.lengths[d]));
  }
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

std::string FormatMetrics(const std::map<std::string, double>& metrics) {
  if (metrics.empty()) return "-";
  // Names come from writers: control bytes are escaped, never sent to the
  // terminal as they are.
  return absl::StrJoin(metrics, " ", [](std::string* out, const auto& metric) {
    absl::StrAppend(out, EscapeControlBytes(metric.first), "=",
                    absl::StrFormat("%g", metric.second));
  });
}

std::string FormatTags(const std::map<std::string, std::string>& tags) {
  if (tags.empty()) return "-";
  // As metric names; also tags stored before the server refused them. A
  // bare tag (an empty value) reads as the CLI takes it: KEY.
  return absl::StrJoin(tags, " ", [](std::string* out, const auto& tag) {
    out->append(EscapeControlBytes(tag.first));
    if (!tag.second.empty()) {
      absl::StrAppend(out, "=", EscapeControlBytes(tag.second));
    }
  });
}

std::string FormatQuantizationError(const Quantization& quantization) {
  return absl::StrFormat("max %.2g L2 %.2g%%", quantization.max_abs_error,
                         100 * quantization.relative_l2_error);
}

void PrintTable(std::ostream& out, const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(header.size());
  for (size_t c = 0; c < header.size(); ++c) widths[c] = header[c].size();
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c) {
      widths[c] = std::max(widths[c], row[c].size());
    }
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c) {
      absl::StrAppend(&line, row[c]);
      // No trailing blanks after the last column.
      if (c + 1 < row.size()) line.append(widths[c] - row[c].size() + 2, ' ');
    }
    out << line << "\n";
  };
  print_row(header);
  for (const auto& row : rows) print_row(row);
}

}  // namespace ckpt::cli
