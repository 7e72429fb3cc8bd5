#include "server/config/server_flags.h"

#include "absl/strings/str_cat.h"
#include "server/config/config_file.h"

namespace ckpt::server {
namespace {

const char* TypeName(SettingType type) {
  switch (type) {
    case SettingType::kString:
      return "TEXT";
    case SettingType::kBool:
      return "[true|false]";
    case SettingType::kInt:
      return "INT";
    case SettingType::kSeconds:
      return "SECONDS";
    case SettingType::kBytes:
      return "BYTES";
  }
  return "VALUE";
}

}  // namespace

ServerFlags::ServerFlags(CLI::App* app) {
  app->add_option(
      "--config", config_file_,
      "YAML file of settings: each flag's config key (named in its help) "
      "with its value, e.g. 'listen: 0.0.0.0:7070'. Flags given as well "
      "override the file's values. --print-config shows every key");
  const auto table = ServerSettingTable();
  values_.resize(table.size());
  for (size_t i = 0; i < table.size(); ++i) {
    const ServerSetting& setting = table[i];
    std::string help =
        absl::StrCat(setting.help, ". Config key: ", setting.key);
    if (setting.type == SettingType::kBytes) {
      absl::StrAppend(&help,
                      "; units K, M, G, T, P (powers of 1024, e.g. 64GiB)");
    }
    CLI::Option* option =
        app->add_option(setting.flag, values_[i], std::move(help))
            ->type_name(TypeName(setting.type));
    if (setting.type == SettingType::kBool) {
      // A bare boolean flag means true: --insecure-allow-unauthenticated.
      // (CLI11 would take a default_str as the value of a bare flag.)
      option->expected(0, 1);
      option->description(absl::StrCat(option->get_description(), " (default: ",
                                       setting.default_value, ")"));
    } else if (setting.default_value[0] != '\0') {
      option->default_str(setting.default_value);
    }
    options_.push_back(option);
  }
}

absl::StatusOr<ServerSettings> ServerFlags::Resolve() const {
  ServerSettings settings;
  if (!config_file_.empty()) {
    if (absl::Status status = ApplyConfigFile(config_file_, &settings);
        !status.ok()) {
      return status;
    }
  }
  const auto table = ServerSettingTable();
  for (size_t i = 0; i < table.size(); ++i) {
    if (options_[i]->count() == 0) continue;
    absl::string_view value = values_[i];
    if (table[i].type == SettingType::kBool && value.empty()) value = "true";
    if (absl::Status status = ParseServerSetting(table[i], value, &settings);
        !status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(table[i].flag, ": ", status.message()));
    }
  }
  return settings;
}

}  // namespace ckpt::server
