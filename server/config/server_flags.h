// ServerFlags: ckpt-server's command line, made from ServerSettingTable
// (one flag per setting, parsed exactly as the config file's value is) plus
// --config FILE. The effective settings are the table's defaults, then the
// config file's values, then the flags given, each overriding the one
// before.
#pragma once

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "server/config/server_settings.h"

namespace ckpt::server {

class ServerFlags {
 public:
  // Adds the flags to `app`, which must outlive this object.
  explicit ServerFlags(CLI::App* app);

  ServerFlags(const ServerFlags&) = delete;
  ServerFlags& operator=(const ServerFlags&) = delete;

  // After app->parse: the effective settings. INVALID_ARGUMENT naming the
  // flag (or the config file, line and key) whose value is wrong.
  absl::StatusOr<ServerSettings> Resolve() const;

 private:
  std::vector<std::string> values_;  // by table row, as given
  std::vector<CLI::Option*> options_;
  std::string config_file_;
};

}  // namespace ckpt::server
