#include "server/rpc/grpc_core_log.h"

#include <grpc/support/log.h>

#include <atomic>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/logging.h"

namespace ckpt::server {
namespace {

std::atomic<int> quiet_scopes{0};

void LogGrpcCore(gpr_log_func_args* args) {
  LogLevel level = LogLevel::kDebug;
  if (args->severity == GPR_LOG_SEVERITY_ERROR) {
    level = quiet_scopes.load(std::memory_order_relaxed) > 0 ? LogLevel::kDebug
                                                             : LogLevel::kError;
  } else if (args->severity == GPR_LOG_SEVERITY_INFO) {
    level = LogLevel::kInfo;
  }
  absl::string_view file = args->file != nullptr ? args->file : "";
  if (size_t slash = file.rfind('/'); slash != absl::string_view::npos) {
    file = file.substr(slash + 1);
  }
  LogEvent(level, "grpc_core",
           {{"src", absl::StrCat(file, ":", args->line)},
            {"msg", args->message != nullptr ? args->message : ""}});
}

}  // namespace

void RouteGrpcCoreLogs() {
  static std::once_flag once;
  std::call_once(once, [] { gpr_set_log_function(&LogGrpcCore); });
}

QuietGrpcCoreErrors::QuietGrpcCoreErrors() {
  quiet_scopes.fetch_add(1, std::memory_order_relaxed);
}

QuietGrpcCoreErrors::~QuietGrpcCoreErrors() {
  quiet_scopes.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace ckpt::server
