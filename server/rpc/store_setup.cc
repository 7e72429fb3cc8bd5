#include "server/rpc/store_setup.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/service/stored_bytes_quota.h"
#include "server/storage/rados_chunk_store.h"
#include "server/storage/rados_cluster.h"
#include "server/storage/rados_metadata_store.h"
#include "server/storage/rocksdb_store.h"

namespace ckpt::server {

absl::StatusOr<ChunkStoreChoice> ParseChunkStore(absl::string_view text) {
  if (text == "rocksdb") return ChunkStoreChoice{};
  constexpr absl::string_view kRados = "rados:";
  if (absl::StartsWith(text, kRados) && text.size() > kRados.size()) {
    return ChunkStoreChoice{ChunkStoreChoice::Kind::kRados,
                            std::string(text.substr(kRados.size()))};
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--chunk-store must be rocksdb or rados:POOL, got '", text, "'"));
}

OpenedStores::~OpenedStores() {
  quota_.reset();
  rados_metadata_.reset();  // stops its lease renewals
  rados_chunks_.reset();
  cluster_.reset();
  rocksdb_.reset();  // flushes and closes the database
}

StoreHealth OpenedStores::Health() const {
  if (rocksdb_ != nullptr) return rocksdb_->Health();
  return StoreHealth{};
}

std::optional<uint64_t> OpenedStores::IntProperty(
    const std::string& name) const {
  if (rocksdb_ == nullptr) return std::nullopt;
  return rocksdb_->IntProperty(name);
}

namespace {

// librados opens a pool the user has no rights on, and a server would then
// fail every call. Taking the collection lock is a cls_lock call on the
// pool, which needs osd 'rwx' there: refused, the server does not start.
// Another server collecting at the moment (FAILED_PRECONDITION) shows the
// rights as well; the lock is released at once.
absl::Status ProbePoolRights(MetadataStore& metadata,
                             const ServerSettings& settings,
                             absl::string_view pool) {
  absl::StatusOr<std::unique_ptr<MetadataStore::Lease>> probe =
      metadata.LockCollection();
  if (probe.ok() || absl::IsFailedPrecondition(probe.status())) {
    return absl::OkStatus();
  }
  return absl::Status(
      probe.status().code(),
      absl::StrCat("client.", settings.ceph_user, " cannot use pool ", pool,
                   " (it needs mon 'allow r' and osd 'allow rwx pool=", pool,
                   "'): ", probe.status().message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<OpenedStores>> OpenStores(
    const ServerSettings& settings, const TenantQuotas& quotas, Clock* clock) {
  CKPT_ASSIGN_OR_RETURN(ChunkStoreChoice choice,
                        ParseChunkStore(settings.chunk_store));
  auto stores = std::make_unique<OpenedStores>();
  if (choice.kind == ChunkStoreChoice::Kind::kRocksDb) {
    RocksDbStoreOptions options;
    options.direct_io = settings.direct_io;
    options.file_chunk_min_bytes =
        static_cast<uint64_t>(settings.file_chunk_min_bytes);
    options.max_background_flushes =
        static_cast<int>(settings.max_background_flushes);
    CKPT_ASSIGN_OR_RETURN(stores->rocksdb_,
                          RocksDbStore::Open(settings.data_dir, options));
    stores->chunks_ = stores->rocksdb_.get();
    stores->metadata_ = stores->rocksdb_.get();
    stores->description_ = absl::StrCat("rocksdb:", settings.data_dir);
    stores->data_dir_ = settings.data_dir;
  } else {
    const absl::Duration lease =
        absl::Seconds(settings.rados_lock_lease_seconds);
    if (absl::Seconds(settings.rados_min_hold_seconds) < 2 * lease) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--rados-min-hold-seconds (", settings.rados_min_hold_seconds,
          ") must be at least twice --rados-lock-lease-seconds (",
          settings.rados_lock_lease_seconds,
          "): a commit's write may come up to a lease after it marked its "
          "chunks used"));
    }
    RadosOptions options;
    options.conf_path = settings.ceph_conf;
    options.user = settings.ceph_user;
    options.keyring = settings.ceph_keyring;
    options.pool = choice.pool;
    options.op_timeout = absl::Seconds(settings.rados_op_timeout_seconds);
    options.connect_timeout = options.op_timeout;
    CKPT_ASSIGN_OR_RETURN(stores->cluster_, RadosCluster::Connect(options));
    stores->rados_chunks_ =
        std::make_unique<RadosChunkStore>(stores->cluster_.get(), clock);
    RadosMetadataStore::Options metadata_options;
    metadata_options.clock = clock;
    metadata_options.lock_lease = lease;
    // A crashed holder's lock is taken over once its lease ends.
    metadata_options.lock_wait = lease + absl::Seconds(5);
    stores->rados_metadata_ = std::make_unique<RadosMetadataStore>(
        stores->cluster_.get(), metadata_options);
    CKPT_RETURN_IF_ERROR(
        ProbePoolRights(*stores->rados_metadata_, settings, choice.pool));
    stores->chunks_ = stores->rados_chunks_.get();
    stores->metadata_ = stores->rados_metadata_.get();
    stores->description_ = absl::StrCat(
        "rados:", choice.pool, " (client.", settings.ceph_user, " of ",
        settings.ceph_conf, ", as ", stores->cluster_->ClientName(), ")");
  }
  // Stored bytes are counted only when some tenant has a quota on them:
  // otherwise the count (a scan of the chunks at startup) is not needed. On
  // a shared pool each server counts what it saw at startup plus its own
  // writes, so the quota is per server there (docs/scaling.md).
  if (quotas.LimitsStoredBytes()) {
    const absl::Time counting = absl::Now();
    CKPT_ASSIGN_OR_RETURN(stores->quota_,
                          StoredBytesQuota::Open(stores->chunks_, quotas));
    stores->chunks_ = stores->quota_.get();
    CKPT_LOG(Info, "stored bytes quota on: every tenant may store ",
             quotas.defaults.max_stored_bytes, " bytes (0: unlimited), ",
             quotas.tenants.size(),
             " tenant(s) have their own quotas; usage counted from the store "
             "in ",
             absl::FormatDuration(absl::Now() - counting));
  }
  return stores;
}

}  // namespace ckpt::server
