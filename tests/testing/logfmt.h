// A strict parser of the server's logfmt lines (common/logging.h), for
// tests that read what ckpt-server logged: it refuses anything the writer
// never produces, so a forged or broken line fails the test. Header-only.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace ckpt::testing {

using LogLine = std::map<std::string, std::string>;

// The fields of one line (no newline), values unescaped; nullopt when it is
// not logfmt as written by common/logging.cc, or a key repeats.
inline std::optional<LogLine> ParseLogfmt(absl::string_view line) {
  LogLine fields;
  size_t i = 0;
  while (i < line.size()) {
    size_t eq = line.find('=', i);
    if (eq == absl::string_view::npos || eq == i) return std::nullopt;
    std::string key(line.substr(i, eq - i));
    for (char c : key) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
        return std::nullopt;
      }
    }
    i = eq + 1;
    std::string value;
    if (i < line.size() && line[i] == '"') {
      ++i;
      bool closed = false;
      while (i < line.size()) {
        char c = line[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (static_cast<unsigned char>(c) < 0x20) return std::nullopt;
        if (c != '\\') {
          value.push_back(c);
          continue;
        }
        if (i >= line.size()) return std::nullopt;
        char e = line[i++];
        if (e == 'n') {
          value.push_back('\n');
        } else if (e == 'r') {
          value.push_back('\r');
        } else if (e == 't') {
          value.push_back('\t');
        } else if (e == '"' || e == '\\') {
          value.push_back(e);
        } else if (e == 'x' && i + 2 <= line.size()) {
          value.push_back(static_cast<char>(
              std::stoi(std::string(line.substr(i, 2)), nullptr, 16)));
          i += 2;
        } else {
          return std::nullopt;
        }
      }
      if (!closed) return std::nullopt;
    } else {
      while (i < line.size() && line[i] != ' ') {
        char c = line[i++];
        if (c == '"' || c == '=' || c == '\\' ||
            static_cast<unsigned char>(c) < 0x21 ||
            static_cast<unsigned char>(c) > 0x7e) {
          return std::nullopt;
        }
        value.push_back(c);
      }
      if (value.empty()) return std::nullopt;
    }
    if (!fields.emplace(std::move(key), std::move(value)).second) {
      return std::nullopt;
    }
    if (i < line.size()) {
      if (line[i] != ' ') return std::nullopt;
      ++i;
    }
  }
  return fields;
}

// Every line of `log` parsed; a line that does not parse is returned as
// {"unparsed": line}, so a test can insist there is none.
inline std::vector<LogLine> ParseLog(absl::string_view log) {
  std::vector<LogLine> lines;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    std::optional<LogLine> parsed = ParseLogfmt(line);
    lines.push_back(parsed.has_value()
                        ? *std::move(parsed)
                        : LogLine{{"unparsed", std::string(line)}});
  }
  return lines;
}

}  // namespace ckpt::testing
