#include "client/cli/args.h"

#include <algorithm>
#include <limits>
#include <tuple>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/cli/row_list_file.h"
#include "client/cli/row_set.h"
#include "common/quote.h"
#include "common/status_macros.h"

namespace ckpt::cli {

absl::StatusOr<int64_t> ParseStep(absl::string_view text) {
  int64_t step;
  if (!absl::SimpleAtoi(text, &step) || step < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("STEP must be a non-negative integer, got '", text, "'"));
  }
  return step;
}

absl::StatusOr<std::optional<int64_t>> ParseStepOrLatest(
    absl::string_view text) {
  if (text == "latest") return std::nullopt;
  CKPT_ASSIGN_OR_RETURN(int64_t step, ParseStep(text));
  return step;
}

absl::StatusOr<std::vector<int64_t>> ParseStepList(absl::string_view text) {
  std::vector<int64_t> steps;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    int64_t step;
    if (!absl::SimpleAtoi(item, &step) || step < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--steps takes steps (non-negative integers) separated by commas, "
          "e.g. 100,200; got '",
          text, "'"));
    }
    if (std::find(steps.begin(), steps.end(), step) == steps.end()) {
      steps.push_back(step);
    }
  }
  return steps;
}

absl::StatusOr<uint64_t> ParseByteRate(absl::string_view flag,
                                       absl::string_view text) {
  absl::StatusOr<uint64_t> rate = ParseByteSize(flag, text);
  if (rate.ok()) return rate;
  return absl::InvalidArgumentError(
      absl::StrCat(flag,
                   " takes bytes per second, a positive integer with an "
                   "optional suffix K, M or G (e.g. 500K, 20M); got '",
                   text, "'"));
}

absl::StatusOr<SubsetSpec> ParseSubsetSpec(absl::string_view text) {
  SubsetSpec spec;
  if (text.find('/') != absl::string_view::npos) {
    CKPT_ASSIGN_OR_RETURN(spec.part, ParseReadDataSubset(text));
    return spec;
  }
  if (absl::EndsWith(text, "%")) {
    const absl::string_view number = text.substr(0, text.size() - 1);
    double percent = 0;
    // Digits and one '.', nothing else: no sign, exponent, inf or nan.
    const bool plain =
        !number.empty() &&
        number.find_first_not_of("0123456789.") == absl::string_view::npos &&
        number.find('.') == number.rfind('.');
    if (!plain || !absl::SimpleAtod(number, &percent) || !(percent > 0) ||
        percent > 100) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", text,
          "' is not a percentage above 0 and at most 100 (e.g. 10%)"));
    }
    spec.percent = percent;
    return spec;
  }
  absl::StatusOr<uint64_t> bytes = ParseByteSize("--read-data-subset", text);
  if (!bytes.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", text,
        "' is neither n/t (part n of t, e.g. 1/5), x% (e.g. 10%) nor a size "
        "(e.g. 500M, 2G)"));
  }
  spec.bytes = *bytes;
  return spec;
}

ReadDataSubset ResolveSubset(const SubsetSpec& spec, uint64_t stored_bytes,
                             const std::function<uint32_t(uint32_t)>& pick) {
  if (spec.part.has_value()) return *spec.part;
  uint64_t parts = 1;
  if (spec.percent > 0) {
    parts = static_cast<uint64_t>(100.0 / spec.percent);
  } else if (spec.bytes > 0) {
    parts = stored_bytes / spec.bytes;
  }
  // A part count the proto carries; a finer split reads nearly nothing.
  parts = std::clamp<uint64_t>(parts, 1, std::numeric_limits<uint32_t>::max());
  ReadDataSubset subset;
  subset.t = static_cast<uint32_t>(parts);
  subset.n = std::clamp<uint32_t>(pick(subset.t), 1, subset.t);
  return subset;
}

absl::StatusOr<std::pair<std::string, std::string>> SplitAssignment(
    absl::string_view flag, absl::string_view text) {
  std::pair<std::string, std::string> kv =
      absl::StrSplit(text, absl::MaxSplits('=', 1));
  if (kv.first.empty() || text.find('=') == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " expects NAME=VALUE, got '", text, "'"));
  }
  return kv;
}

absl::StatusOr<CheckpointMetadata> ParseMetadata(
    const std::vector<std::string>& metrics,
    const std::vector<std::string>& tags, const std::string& time) {
  CheckpointMetadata metadata;
  for (const std::string& text : metrics) {
    CKPT_ASSIGN_OR_RETURN(auto kv, SplitAssignment("--metric", text));
    double value;
    if (!absl::SimpleAtod(kv.second, &value)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--metric ", kv.first, ": '", kv.second, "' is not a number"));
    }
    metadata.metrics[kv.first] = value;
  }
  for (const std::string& text : tags) {
    CKPT_ASSIGN_OR_RETURN(auto kv, SplitAssignment("--tag", text));
    metadata.tags[kv.first] = kv.second;
  }
  if (!time.empty()) {
    absl::Time parsed;
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, time, &parsed, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--time '", time, "' is not RFC 3339 (e.g. ",
                       "2024-05-01T12:00:00Z): ", error));
    }
    metadata.writer_time = parsed;
  }
  return metadata;
}

bool AnyPolicyFlag(const PolicyFlags& flags) {
  return !flags.max_to_keep.empty() || !flags.keep_every.empty() ||
         !flags.keep_within.empty() || !flags.keep_hourly.empty() ||
         !flags.keep_daily.empty() || !flags.keep_weekly.empty() ||
         !flags.keep_monthly.empty() || !flags.keep_tags.empty() ||
         !flags.keep_best.empty() || !flags.metric.empty() ||
         !flags.mode.empty();
}

absl::StatusOr<int> ParseCount(absl::string_view flag, absl::string_view text) {
  int value;
  if (!absl::SimpleAtoi(text, &value) || value < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " must be a positive integer, got '", text, "'"));
  }
  return value;
}

absl::StatusOr<MetricMode> ParseMetricMode(absl::string_view flag,
                                           absl::string_view text) {
  if (text.empty() || text == "auto") return MetricMode::kAuto;
  if (text == "min") return MetricMode::kMin;
  if (text == "max") return MetricMode::kMax;
  return absl::InvalidArgumentError(
      absl::StrCat(flag, " must be min, max or auto, got '", text, "'"));
}

absl::StatusOr<RetentionPolicy> ParsePolicyFlags(const PolicyFlags& flags) {
  RetentionPolicy policy;
  if (!flags.max_to_keep.empty()) {
    CKPT_ASSIGN_OR_RETURN(policy.max_to_keep,
                          ParseCount("--keep-last", flags.max_to_keep));
  }
  if (!flags.keep_every.empty()) {
    CKPT_ASSIGN_OR_RETURN(
        policy.keep_every,
        ParseDurationFlag("--keep-every", flags.keep_every, absl::Hours(1)));
  }
  if (!flags.keep_within.empty()) {
    CKPT_ASSIGN_OR_RETURN(
        policy.keep_within,
        ParseDurationFlag("--keep-within", flags.keep_within));
  }
  for (auto [flag, text, count] :
       {std::tuple("--keep-hourly", &flags.keep_hourly, &policy.keep_hourly),
        std::tuple("--keep-daily", &flags.keep_daily, &policy.keep_daily),
        std::tuple("--keep-weekly", &flags.keep_weekly, &policy.keep_weekly),
        std::tuple("--keep-monthly", &flags.keep_monthly,
                   &policy.keep_monthly)}) {
    if (!text->empty()) {
      CKPT_ASSIGN_OR_RETURN(*count, ParseCount(flag, *text));
    }
  }
  policy.keep_tags = flags.keep_tags;
  if (flags.keep_best.empty()) {
    if (!flags.metric.empty() || !flags.mode.empty()) {
      return absl::InvalidArgumentError(
          "--metric and --mode go with --keep-best K");
    }
    return policy;
  }
  RetentionPolicy::KeepBest best;
  CKPT_ASSIGN_OR_RETURN(best.k, ParseCount("--keep-best", flags.keep_best));
  if (flags.metric.empty()) {
    return absl::InvalidArgumentError("--keep-best needs --metric NAME");
  }
  best.metric = flags.metric;
  CKPT_ASSIGN_OR_RETURN(best.mode, ParseMetricMode("--mode", flags.mode));
  policy.keep_best = std::move(best);
  return policy;
}

absl::StatusOr<std::vector<uint64_t>> ParseRowList(absl::string_view name,
                                                   absl::string_view list,
                                                   uint64_t rows) {
  if (list.empty()) return std::vector<uint64_t>();
  RowSetBuilder parsed;
  for (absl::string_view item : absl::StrSplit(list, ',')) {
    std::optional<RowRange> range = ParseRowRange(item);
    if (!range.has_value()) {
      // Quoted cut short: a list may be most of a 128 KiB argument.
      return absl::InvalidArgumentError(
          absl::StrCat("--dirty-rows ", name, ": ", QuoteTruncated(item),
                       " is not a row index or an ascending range A-B in ",
                       QuoteTruncated(list)));
    }
    if (range->last >= rows) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--dirty-rows ", name, ": ", PastLastRow(range->last, rows)));
    }
    parsed.Add(*range);
  }
  return std::move(parsed).TakeRows();
}

absl::StatusOr<GivenRows> ParseDirtyRows(
    const std::vector<std::string>& flags,
    const std::vector<client::TensorData>& tensors) {
  GivenRows given(tensors.size());
  for (const std::string& text : flags) {
    CKPT_ASSIGN_OR_RETURN(auto kv, SplitAssignment("--dirty-rows", text));
    auto tensor = std::find_if(
        tensors.begin(), tensors.end(),
        [&](const client::TensorData& t) { return t.name == kv.first; });
    if (tensor == tensors.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--dirty-rows ", kv.first, ": no FILE is put as tensor '", kv.first,
          "' (a tensor is named after its file's base name)"));
    }
    std::optional<std::vector<uint64_t>>& rows =
        given[static_cast<size_t>(tensor - tensors.begin())];
    if (rows.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--dirty-rows names '", kv.first, "' twice; list its rows once"));
    }
    const auto tensor_rows = static_cast<uint64_t>(tensor->global_shape[0]);
    if (absl::StartsWith(kv.second, "@")) {
      CKPT_ASSIGN_OR_RETURN(
          rows,
          ReadRowListFile(kv.first, absl::string_view(kv.second).substr(1),
                          tensor_rows));
    } else {
      CKPT_ASSIGN_OR_RETURN(rows,
                            ParseRowList(kv.first, kv.second, tensor_rows));
    }
  }
  return given;
}

}  // namespace ckpt::cli
