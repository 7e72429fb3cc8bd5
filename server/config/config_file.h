// The ckpt-server config file (--config FILE): YAML whose keys are those of
// ServerSettingTable, read strictly, and the effective settings written back
// as YAML (--print-config) that reads back to the same settings.
//
// Every byte of the file is treated as hostile: a setting is refused, with
// the file, the line and the key, when its key is unknown or repeated, its
// value has the wrong type or is out of range; anchors and aliases (and so
// merge keys and "billion laughs" expansions), explicit tags, more than one
// document, nesting deeper than kMaxConfigDepth and files over
// kMaxConfigBytes are refused outright.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/config/server_settings.h"

namespace ckpt::server {

inline constexpr size_t kMaxConfigBytes = 1 << 20;
inline constexpr int kMaxConfigDepth = 8;

// Applies the settings in the YAML `text` onto `settings` (keys it does not
// name keep their value). `file_name` is for messages only. On error
// (INVALID_ARGUMENT "FILE:LINE: KEY: what is wrong") `settings` may be
// partly changed.
absl::Status ApplyConfigText(absl::string_view text,
                             absl::string_view file_name,
                             ServerSettings* settings);

// ApplyConfigText of the file at `path` (a regular file of at most
// kMaxConfigBytes).
absl::Status ApplyConfigFile(const std::string& path, ServerSettings* settings);

// Every setting of `settings`, as YAML that ApplyConfigText reads back to
// the same settings.
std::string ConfigYaml(const ServerSettings& settings);

}  // namespace ckpt::server
