// How RocksDB is sized to the data directory's volume: large volumes keep
// the configured sizes (the WAL always capped), small ones scale down, tiny
// ones stop at floors; and the volume is measured with statvfs.
#include "server/storage/volume_sizing.h"

#include "gtest/gtest.h"
#include "tests/testing/tmpfs_volume.h"

namespace ckpt::server {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

TEST(VolumeSizingTest, LargeVolumeKeepsConfiguredSizesAndCapsTheWal) {
  const VolumeSizes sizes = SizeForVolume(1024 * kGiB, 128 * kMiB, 256 * kMiB);
  EXPECT_EQ(sizes.chunk_write_buffer_size, 128 * kMiB);
  EXPECT_EQ(sizes.blob_file_size, 256 * kMiB);
  EXPECT_EQ(sizes.metadata_write_buffer_size, 64 * kMiB);
  EXPECT_EQ(sizes.max_total_wal_size, 32 * kMiB);
  EXPECT_EQ(sizes.max_manifest_file_size, 64 * kMiB);
  EXPECT_EQ(sizes.info_log_max_bytes, 8 * kMiB);
}

TEST(VolumeSizingTest, SmallestSensibleVolumeScalesEverythingDown) {
  const VolumeSizes sizes =
      SizeForVolume(kSmallestSensibleVolumeBytes, 128 * kMiB, 256 * kMiB);
  EXPECT_EQ(sizes.chunk_write_buffer_size, 16 * kMiB);
  EXPECT_EQ(sizes.metadata_write_buffer_size, 16 * kMiB);
  EXPECT_EQ(sizes.blob_file_size, 64 * kMiB);
  EXPECT_EQ(sizes.max_total_wal_size, 32 * kMiB);
  EXPECT_EQ(sizes.max_manifest_file_size, 16 * kMiB);
  EXPECT_EQ(sizes.info_log_max_bytes, 4 * kMiB);
  // Two families' full memtable queues (4 each) stay under a quarter of it.
  EXPECT_LE(2 * 4 * sizes.chunk_write_buffer_size,
            kSmallestSensibleVolumeBytes / 4);
}

TEST(VolumeSizingTest, TinyVolumeStopsAtFloors) {
  const VolumeSizes sizes = SizeForVolume(16 * kMiB, 128 * kMiB, 256 * kMiB);
  EXPECT_EQ(sizes.chunk_write_buffer_size, kMiB);
  EXPECT_EQ(sizes.metadata_write_buffer_size, kMiB);
  EXPECT_EQ(sizes.blob_file_size, kMiB);
  EXPECT_EQ(sizes.max_total_wal_size, kMiB);
  EXPECT_EQ(sizes.max_manifest_file_size, kMiB);
  EXPECT_EQ(sizes.info_log_max_bytes, uint64_t{256} << 10);
}

TEST(VolumeSizingTest, SmallerConfiguredSizesAreKept) {
  const VolumeSizes sizes = SizeForVolume(1024 * kGiB, 4 * kMiB, 8 * kMiB);
  EXPECT_EQ(sizes.chunk_write_buffer_size, 4 * kMiB);
  EXPECT_EQ(sizes.blob_file_size, 8 * kMiB);
}

TEST(VolumeSizingTest, MeasuresAMountedVolume) {
  auto volume = testing::TmpfsVolume::Mount(48 * kMiB);
  if (!volume.ok()) GTEST_SKIP() << volume.status().message();
  auto space = GetVolumeSpace((*volume)->path());
  ASSERT_TRUE(space.ok()) << space.status();
  EXPECT_EQ(space->total_bytes, 48 * kMiB);
  EXPECT_EQ(space->free_bytes, 48 * kMiB);
  ASSERT_TRUE((*volume)->Fill().ok());
  space = GetVolumeSpace((*volume)->path());
  ASSERT_TRUE(space.ok()) << space.status();
  EXPECT_LT(space->free_bytes, 64 * 1024u);
}

TEST(VolumeSizingTest, MissingPathIsAnError) {
  EXPECT_FALSE(GetVolumeSpace("/nonexistent/ckpt/volume").ok());
}

}  // namespace
}  // namespace ckpt::server
