#include "server/storage/metadata_store.h"

namespace ckpt::server {

absl::StatusOr<std::unique_ptr<MetadataStore::Lease>> MetadataStore::LockJob(
    absl::string_view /*job*/) {
  return std::make_unique<Lease>();
}

absl::StatusOr<std::unique_ptr<MetadataStore::Lease>> MetadataStore::LockTenant(
    absl::string_view /*tenant*/) {
  return std::make_unique<Lease>();
}

absl::StatusOr<std::unique_ptr<MetadataStore::Lease>>
MetadataStore::LockCollection() {
  return std::make_unique<Lease>();
}

}  // namespace ckpt::server
