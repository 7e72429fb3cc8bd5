// RowSetBuilder and ParseRowRange (client/cli/row_set.h): ranges added in
// any order, overlapping, adjacent or repeated, come back as exactly the
// rows a plain set of them holds.
#include "client/cli/row_set.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(ParseRowRangeTest, TakesAnIndexOrAnAscendingRangeOfDigitsOnly) {
  EXPECT_EQ(ParseRowRange("7")->first, 7u);
  EXPECT_EQ(ParseRowRange("7")->last, 7u);
  EXPECT_EQ(ParseRowRange("3-9")->first, 3u);
  EXPECT_EQ(ParseRowRange("3-9")->last, 9u);
  EXPECT_EQ(ParseRowRange("18446744073709551615")->last, UINT64_MAX);
  for (const char* bad : {"", "-", "x", "-1", "1-", "9-3", " 1", "1 ", "+1",
                          "1-2-3", "0x1", "1,2", "18446744073709551616"}) {
    EXPECT_FALSE(ParseRowRange(bad).has_value()) << bad;
  }
}

TEST(RowSetBuilderTest, NothingAddedIsNoRows) {
  EXPECT_THAT(RowSetBuilder().TakeRows(), IsEmpty());
}

TEST(RowSetBuilderTest, JoinsOverlappingAndAdjacentRangesInAnyOrder) {
  RowSetBuilder rows;
  for (const RowRange range :
       {RowRange{10, 12}, RowRange{5, 5}, RowRange{13, 13}, RowRange{0, 1},
        RowRange{11, 20}, RowRange{2, 2}}) {
    rows.Add(range);
  }
  EXPECT_THAT(
      std::move(rows).TakeRows(),
      ElementsAre(0, 1, 2, 5, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20));
  // The largest row does not wrap around.
  RowSetBuilder top;
  top.Add({UINT64_MAX - 1, UINT64_MAX});
  top.Add({UINT64_MAX, UINT64_MAX});
  top.Add({UINT64_MAX - 2, UINT64_MAX - 2});
  EXPECT_THAT(std::move(top).TakeRows(),
              ElementsAre(UINT64_MAX - 2, UINT64_MAX - 1, UINT64_MAX));
}

// Enough random ranges to merge many times over, against std::set.
TEST(RowSetBuilderTest, GivesWhatASetOfTheRowsHolds) {
  std::mt19937_64 random(20);
  for (const uint64_t span : {50u, 5000u, 200000u}) {
    RowSetBuilder rows;
    std::set<uint64_t> expected;
    for (int i = 0; i < 30000; ++i) {
      const uint64_t first = random() % span;
      const uint64_t last = std::min(span - 1, first + random() % 8);
      rows.Add({first, last});
      for (uint64_t row = first; row <= last; ++row) expected.insert(row);
    }
    EXPECT_EQ(std::move(rows).TakeRows(),
              std::vector<uint64_t>(expected.begin(), expected.end()))
        << span;
  }
}

}  // namespace
}  // namespace ckpt::cli
