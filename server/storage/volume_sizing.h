// Volume sizing: how big the data directory's volume is (statvfs), and the
// RocksDB sizes that fit it. RocksDB's defaults assume a large disk: 128 MiB
// memtables, a write-ahead log preallocated to 1.1 write buffers (about
// 141 MB), a MANIFEST of up to 1 GiB. On a small volume those alone fill it
// before any checkpoint does.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace ckpt::server {

struct VolumeSpace {
  uint64_t total_bytes = 0;
  // Bytes an unprivileged writer may still use (statvfs f_bavail).
  uint64_t free_bytes = 0;
};

// The space of the volume holding `path`; the errno text when statvfs fails.
absl::StatusOr<VolumeSpace> GetVolumeSpace(const std::string& path);

// The smallest volume the store is sized for: below it the sizes below hit
// their floors, memtables flush every few MiB, and a single save of a few
// hundred MiB can fill the volume. ckpt-server warns at startup.
inline constexpr uint64_t kSmallestSensibleVolumeBytes = uint64_t{1} << 30;

// The most the write-ahead log may hold before RocksDB flushes the column
// families it protects; also caps its preallocation. The WAL carries only
// metadata batches (chunk bytes skip it), so this is ample.
inline constexpr uint64_t kMaxWalBytes = uint64_t{32} << 20;

// RocksDB sizes for one volume. Each is the configured value, capped by a
// fraction of the volume and kept above a floor.
struct VolumeSizes {
  // Memtable of `chunks` and `chunk_index`: at most 1/64 of the volume (so
  // their max_write_buffer_number memtables stay well under it).
  uint64_t chunk_write_buffer_size = 0;
  // Memtable of each metadata column family: at most 1/64, and 64 MiB.
  uint64_t metadata_write_buffer_size = 0;
  // One blob file: at most 1/16 of the volume.
  uint64_t blob_file_size = 0;
  // DBOptions::max_total_wal_size: kMaxWalBytes, at most 1/32 of the volume.
  uint64_t max_total_wal_size = 0;
  // A MANIFEST is rewritten from scratch past this: 64 MiB, at most 1/64.
  uint64_t max_manifest_file_size = 0;
  // The info LOG (TolerantInfoLog) and its one old copy: 8 MiB each, at
  // most 1/256 of the volume.
  uint64_t info_log_max_bytes = 0;
};

// The sizes for a volume of `total_bytes`, given the configured memtable
// and blob file sizes (RocksDbStoreOptions). Pure.
VolumeSizes SizeForVolume(uint64_t total_bytes,
                          uint64_t configured_chunk_write_buffer_size,
                          uint64_t configured_blob_file_size);

}  // namespace ckpt::server
