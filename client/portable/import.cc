#include "client/portable/import.h"

namespace ckpt::client::portable {

absl::StatusOr<ImportReport> ImportDirectory(Client&, const std::string&,
                                             absl::string_view, int64_t,
                                             const ImportOptions&) {
  return absl::UnimplementedError("ckpt import: not implemented yet");
}

}  // namespace ckpt::client::portable
