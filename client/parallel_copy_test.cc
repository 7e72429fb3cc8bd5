// ParallelCopy: every byte of every span lands at its destination, whatever
// the thread count, across piece boundaries and for empty spans, and no
// byte outside the destinations is written.
#include "client/parallel_copy.h"

#include <cstdint>
#include <random>
#include <vector>

#include "common/thread_group.h"
#include "gtest/gtest.h"

namespace ckpt::client {
namespace {

// Sizes around the piece size (and none), copied from one random source
// into one destination buffer laid out with guard gaps between spans.
void CheckCopies(int threads, uint32_t seed) {
  SCOPED_TRACE(testing::Message()
               << "seed " << seed << ", threads " << threads);
  const std::vector<size_t> sizes = {0,
                                     1,
                                     4093,
                                     kCopyPieceBytes - 1,
                                     kCopyPieceBytes,
                                     kCopyPieceBytes + 1,
                                     3 * kCopyPieceBytes + 17};
  constexpr size_t kGap = 64;
  size_t total = 0;
  for (size_t size : sizes) total += size + kGap;
  std::mt19937 random(seed);
  std::vector<char> source(total);
  for (char& byte : source) byte = static_cast<char>(random());
  std::vector<char> destination(total, '\x5a');
  std::vector<CopySpan> spans;
  size_t offset = 0;
  for (size_t size : sizes) {
    spans.push_back(
        {destination.data() + offset, source.data() + offset, size});
    offset += size + kGap;
  }
  ParallelCopy(spans, threads);
  offset = 0;
  for (size_t size : sizes) {
    for (size_t i = 0; i < size; ++i) {
      ASSERT_EQ(destination[offset + i], source[offset + i])
          << "span of " << size << " bytes, byte " << i;
    }
    for (size_t i = size; i < size + kGap; ++i) {
      ASSERT_EQ(destination[offset + i], '\x5a')
          << "a byte past the span of " << size << " bytes was written";
    }
    offset += size + kGap;
  }
}

TEST(ParallelCopyTest, CopiesEverySpanOnOneThread) { CheckCopies(1, 1); }

TEST(ParallelCopyTest, CopiesEverySpanOnSeveralThreads) {
  CheckCopies(3, 2);
  CheckCopies(8, 3);
}

// Threads the system will not create (none, or fewer than asked): the
// ones that did start, the caller's among them, copy every byte, and the
// process goes on (an uncaught std::system_error would end it).
TEST(ParallelCopyTest, CopiesEverythingWhenThreadsCannotStart) {
  for (int allowed : {0, 1, 2}) {
    ckpt::ScopedSpawnLimitForTesting limit(allowed);
    CheckCopies(8, 10 + allowed);
  }
}

TEST(ParallelCopyTest, DefaultThreadsAreTheMachinesAtMostEight) {
  CheckCopies(0, 4);
  EXPECT_GE(CopyThreads(0), 1);
  EXPECT_LE(CopyThreads(0), 8);
  EXPECT_EQ(CopyThreads(5), 5);
}

TEST(ParallelCopyTest, NothingToCopyIsFine) {
  ParallelCopy({}, 4);
  char byte = 'a';
  const CopySpan empty{&byte, &byte, 0};
  ParallelCopy({&empty, 1}, 4);
  EXPECT_EQ(byte, 'a');
}

}  // namespace
}  // namespace ckpt::client
