#include "server/storage/volume_sizing.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace ckpt::server {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

// `configured`, at most `total / divisor`, at least `floor`.
uint64_t Fit(uint64_t configured, uint64_t total, uint64_t divisor,
             uint64_t floor) {
  return std::max(floor, std::min(configured, total / divisor));
}

}  // namespace

absl::StatusOr<VolumeSpace> GetVolumeSpace(const std::string& path) {
  struct statvfs stats {};
  if (::statvfs(path.c_str(), &stats) != 0) {
    const int error = errno;
    return absl::UnavailableError(absl::StrCat(
        "cannot measure the volume of ", path, ": ", std::strerror(error)));
  }
  const uint64_t block = stats.f_frsize != 0 ? stats.f_frsize : stats.f_bsize;
  return VolumeSpace{.total_bytes = uint64_t{stats.f_blocks} * block,
                     .free_bytes = uint64_t{stats.f_bavail} * block};
}

VolumeSizes SizeForVolume(uint64_t total_bytes,
                          uint64_t configured_chunk_write_buffer_size,
                          uint64_t configured_blob_file_size) {
  VolumeSizes sizes;
  sizes.chunk_write_buffer_size =
      Fit(configured_chunk_write_buffer_size, total_bytes, 64, kMiB);
  sizes.metadata_write_buffer_size = Fit(64 * kMiB, total_bytes, 64, kMiB);
  sizes.blob_file_size = Fit(configured_blob_file_size, total_bytes, 16, kMiB);
  sizes.max_total_wal_size = Fit(kMaxWalBytes, total_bytes, 32, kMiB);
  sizes.max_manifest_file_size = Fit(64 * kMiB, total_bytes, 64, kMiB);
  sizes.info_log_max_bytes = Fit(8 * kMiB, total_bytes, 256, 256 << 10);
  return sizes;
}

}  // namespace ckpt::server
