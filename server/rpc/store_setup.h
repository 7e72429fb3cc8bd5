// OpenStores: the stores a ckpt-server runs on, as --chunk-store says: the
// embedded RocksDB database in --data-dir (the default), or a Ceph pool that
// several servers share (rados:POOL, docs/scaling.md).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/clock.h"
#include "server/config/server_settings.h"
#include "server/service/tenant_quotas.h"
#include "server/storage/chunk_store.h"
#include "server/storage/metadata_store.h"

namespace ckpt::server {

class RocksDbStore;
class RadosCluster;
class StoredBytesQuota;
struct StoreHealth;

// --chunk-store parsed.
struct ChunkStoreChoice {
  enum class Kind { kRocksDb, kRados } kind = Kind::kRocksDb;
  std::string pool;  // kRados only
};
// INVALID_ARGUMENT naming the accepted forms for anything but "rocksdb" and
// "rados:POOL" with a non-empty POOL.
absl::StatusOr<ChunkStoreChoice> ParseChunkStore(absl::string_view text);

class OpenedStores {
 public:
  OpenedStores() = default;  // empty; OpenStores fills one
  ~OpenedStores();  // closes in dependency order (the quota wrapper first)

  ChunkStore* chunks() const { return chunks_; }
  MetadataStore* metadata() const { return metadata_; }
  // "rocksdb:DIR" or "rados:POOL (client.USER of CONF)", for the log.
  const std::string& description() const { return description_; }
  // Whether the store can take writes now (RocksDbStore::Health; a RADOS
  // pool is reported writable: its OSDs' state is Ceph's to report).
  StoreHealth Health() const;
  // RocksDB's integer properties for the metrics; nullopt on RADOS.
  std::optional<uint64_t> IntProperty(const std::string& name) const;
  // The directory whose free space the metrics export; empty on RADOS.
  const std::string& data_dir() const { return data_dir_; }

 private:
  friend absl::StatusOr<std::unique_ptr<OpenedStores>> OpenStores(
      const ServerSettings&, const TenantQuotas&, Clock*);

  std::unique_ptr<RocksDbStore> rocksdb_;
  std::unique_ptr<RadosCluster> cluster_;
  std::unique_ptr<ChunkStore> rados_chunks_;
  std::unique_ptr<MetadataStore> rados_metadata_;
  std::unique_ptr<StoredBytesQuota> quota_;
  ChunkStore* chunks_ = nullptr;
  MetadataStore* metadata_ = nullptr;
  std::string description_;
  std::string data_dir_;
};

// Opens what `settings` choose. The stored bytes quota wraps the chunk
// store when some tenant has one (a scan of the chunks at startup).
absl::StatusOr<std::unique_ptr<OpenedStores>> OpenStores(
    const ServerSettings& settings, const TenantQuotas& quotas, Clock* clock);

}  // namespace ckpt::server
