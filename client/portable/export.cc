#include "client/portable/export.h"

namespace ckpt::client::portable {

absl::StatusOr<ExportReport> ExportCheckpoint(Client&, const Checkpoint&,
                                              const std::string&,
                                              const ExportOptions&,
                                              const RestoreProgressFn&) {
  return absl::UnimplementedError("ckpt export: not implemented yet");
}

}  // namespace ckpt::client::portable
