// ServerSettings: everything ckpt-server can be told, and the one table
// (ServerSettingTable) that names each setting once: its config-file key,
// its flag, its help, its type, its default and its range. The flags
// (server_flags.h) and the config file (config_file.h) are both made from
// the table, so a setting is spelt, parsed and checked the same way in
// both, and --print-config shows them all.
//
// To add a setting: a field in ServerSettings and a row in kRows
// (server_settings.cc). Nothing else.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <variant>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace ckpt::server {

// One tenant's exceptions to the default quotas (config file only:
// quotas.tenants.NAME); a field left unset keeps the default. Same ranges
// as quotas.defaults.*.
struct TenantQuotaSetting {
  std::optional<int64_t> max_stored_bytes;
  std::optional<int64_t> max_upload_streams;

  bool operator==(const TenantQuotaSetting&) const = default;
};

// The config key of the per-tenant quotas: a map of tenant name to
// TenantQuotaSetting, not a row of the table (it has no flag).
inline constexpr char kTenantQuotasKey[] = "quotas.tenants";

// Defaults are those of the table (the constructor applies them); see
// `ckpt-server --print-config` or server_settings.cc.
struct ServerSettings {
  ServerSettings();

  std::string data_dir;
  std::string chunk_store;
  std::string ceph_conf;
  std::string ceph_user;
  std::string ceph_keyring;
  double rados_lock_lease_seconds;
  double rados_min_hold_seconds;
  double rados_op_timeout_seconds;
  std::string listen;
  std::string auth_tokens;
  bool insecure_allow_unauthenticated;
  double lease_check_interval_seconds;
  int64_t default_lease_seconds;
  int64_t max_lease_seconds;
  double gc_interval_seconds;
  double health_check_interval_seconds;
  int64_t max_background_flushes;
  int64_t chunk_hold_seconds;
  bool direct_io;
  int64_t file_chunk_min_bytes;
  bool shared_memory_reads;
  int64_t request_threads;
  int64_t maintenance_threads;
  int64_t verify_threads;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  double shutdown_grace_seconds;
  std::string metrics_listen;
  // Limits and quotas (docs/operations.md, "Limits and quotas").
  double upload_idle_timeout_seconds;
  int64_t max_upload_stream_bytes;
  int64_t upload_buffer_bytes;
  int64_t max_concurrent_streams;
  int64_t grpc_memory_quota_bytes;
  bool grpc_bdp_probe;
  double max_connection_idle_seconds;
  int64_t quota_max_stored_bytes;
  int64_t quota_max_upload_streams;
  // quotas.tenants in the config file; tenant names are valid
  // (ValidateTenantName). Default: none.
  std::map<std::string, TenantQuotaSetting> quota_tenants;
  std::string log_level;
  // How `ckpt-server --health-probe` reaches a TLS server.
  std::string probe_tls_ca;
  std::string probe_tls_cert;
  std::string probe_tls_key;
  std::string probe_tls_server_name;

  bool operator==(const ServerSettings&) const = default;
};

// How a setting's text is read (the same for a flag and a config value).
enum class SettingType {
  kString,   // any text
  kBool,     // true or false
  kInt,      // a whole number within [min, max]
  kSeconds,  // a number of seconds, fractions allowed, within [min, max]
  kBytes,    // a byte size (ParseByteCount, common/byte_size.h: a unit in
             // powers of 1024), within [min, max]
};

// One row of the table. `field` has the C++ type of `type` (a string, a
// bool, an int64_t for kInt and kBytes, a double for kSeconds).
struct ServerSetting {
  using Field =
      std::variant<std::string ServerSettings::*, bool ServerSettings::*,
                   int64_t ServerSettings::*, double ServerSettings::*>;

  const char* key;   // in the config file; '.' nests: "a.b" is a: {b: ...}
  const char* flag;  // "--name"
  SettingType type;
  Field field;
  const char* default_value;  // as text, parsed like a flag's
  double min = 0;             // numbers only, inclusive
  double max = 0;
  const char* help = "";
};

// Every setting, in the order --help and --print-config show them.
std::span<const ServerSetting> ServerSettingTable();

// The row whose key is `key`, or null.
const ServerSetting* FindServerSetting(absl::string_view key);

// Parses `text` as `setting`'s type and range into `settings`.
// INVALID_ARGUMENT saying what is wrong with the value (the caller adds
// where it came from: the flag, or the file, line and key).
absl::Status ParseServerSetting(const ServerSetting& setting,
                                absl::string_view text,
                                ServerSettings* settings);

// `setting`'s value in `settings` as text that ParseServerSetting reads
// back to the same value.
std::string FormatServerSetting(const ServerSetting& setting,
                                const ServerSettings& settings);

}  // namespace ckpt::server
