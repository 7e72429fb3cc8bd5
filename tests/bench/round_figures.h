// RoundFigures: one figure per round, by name, and the median and spread
// (fastest and slowest) a benchmark's summary gives of each. Header-only.
#pragma once

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "tests/bench/bench_util.h"

namespace ckpt::bench {

class RoundFigures {
 public:
  void Add(const std::string& name, double value) {
    values_[name].push_back(value);
  }

  // REQUIRES: Add(name, ...) was called.
  double Median(const std::string& name) const {
    return bench::Median(values_.at(name));
  }
  double Min(const std::string& name) const {
    const std::vector<double>& v = values_.at(name);
    return *std::min_element(v.begin(), v.end());
  }
  double Max(const std::string& name) const {
    const std::vector<double>& v = values_.at(name);
    return *std::max_element(v.begin(), v.end());
  }

  // The latest round's.
  double Last(const std::string& name) const { return values_.at(name).back(); }

  // "0.123 [0.101-0.150]": median [min-max], each `scale`d and printed
  // with `precision` decimals.
  std::string Text(const std::string& name, int precision = 3,
                   double scale = 1) const {
    return absl::StrFormat("%.*f [%.*f-%.*f]", precision, Median(name) * scale,
                           precision, Min(name) * scale, precision,
                           Max(name) * scale);
  }

  // {name: {"median": m, "min": a, "max": b, "rounds": [...]}, ...}
  nlohmann::json Json() const {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [name, values] : values_) {
      out[name] = {{"median", Median(name)},
                   {"min", Min(name)},
                   {"max", Max(name)},
                   {"rounds", values}};
    }
    return out;
  }

 private:
  std::map<std::string, std::vector<double>> values_;
};

}  // namespace ckpt::bench
