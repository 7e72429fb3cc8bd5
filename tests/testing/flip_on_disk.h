// Damage on disk for verify tests (header-only): one byte flipped in the
// only stored copy of some bytes, under a stopped server's data directory.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/real_server_test.h"

namespace ckpt::testing {

// Flips one byte of the single stored copy of `needle` under `dir`; fails
// the test unless exactly one file holds it exactly once (so the flip is
// the only copy of these bytes, not a stale one), in a BlobDB file or a
// chunk file (chunk_files/, for chunks of 1 MiB or more).
inline void FlipTheOnlyCopy(const std::string& dir, const std::string& needle) {
  std::vector<std::pair<std::filesystem::path, size_t>> hits;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const std::string content = ReadWholeFile(entry.path());
    for (size_t at = content.find(needle); at != std::string::npos;
         at = content.find(needle, at + 1)) {
      hits.emplace_back(entry.path(), at);
    }
  }
  ASSERT_EQ(hits.size(), 1u) << "the chunk's bytes should be stored once";
  const bool chunk_file =
      hits[0].first.parent_path().parent_path().filename() == "chunk_files";
  EXPECT_TRUE(hits[0].first.extension() == ".blob" || chunk_file)
      << hits[0].first;
  std::fstream file(hits[0].first,
                    std::ios::in | std::ios::out | std::ios::binary);
  file.seekp(static_cast<std::streamoff>(hits[0].second + needle.size() / 2));
  file.put(static_cast<char>(needle[needle.size() / 2] ^ 0x5a));
  ASSERT_TRUE(file.good());
}

}  // namespace ckpt::testing
