#include "client/box_overlap.h"

#include <cstdint>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt::client {
namespace {

using ::testing::ElementsAre;
using ::testing::Optional;

using Stretch = std::tuple<uint64_t, uint64_t, uint64_t>;

std::vector<Stretch> Stretches(const OverlapRuns& runs, uint64_t begin,
                               uint64_t end) {
  std::vector<Stretch> stretches;
  runs.ForEachStretch(begin, end, [&](uint64_t s, uint64_t d, uint64_t n) {
    stretches.emplace_back(s, d, n);
  });
  return stretches;
}

TEST(BoxOverlapTest, IntersectContainAndText) {
  const Box a{{0, 2}, {4, 6}};
  const Box b{{3, 0}, {5, 4}};
  EXPECT_EQ(IntersectBoxes(a, b), (Box{{3, 2}, {1, 2}}));
  EXPECT_TRUE(BoxIsEmpty(IntersectBoxes(a, Box{{4, 0}, {1, 9}})));
  EXPECT_TRUE(BoxContains(a, Box{{1, 3}, {2, 5}}));
  EXPECT_FALSE(BoxContains(a, Box{{1, 3}, {2, 6}}));
  EXPECT_EQ(BoxElements(a), 24u);
  EXPECT_EQ(BoxElements(Box{}), 1u);
  EXPECT_EQ(BoxText(a), "[0, 2]+[4, 6]");
}

TEST(BoxOverlapTest, FindsAnElementNoBoxHolds) {
  const Box area{{0, 0}, {4, 4}};
  // Everything but [2, 3], in three disjoint boxes.
  const std::vector<Box> boxes = {Box{{0, 0}, {2, 4}}, Box{{2, 0}, {2, 3}},
                                  Box{{3, 3}, {1, 1}}};
  EXPECT_THAT(FindUncoveredElement(area, boxes), Optional(ElementsAre(2, 3)));
  std::vector<Box> all = boxes;
  all.push_back(Box{{2, 3}, {1, 1}});
  EXPECT_EQ(FindUncoveredElement(area, all), std::nullopt);
  EXPECT_THAT(FindUncoveredElement(Box{{1, 1}, {2, 2}}, {}),
              Optional(ElementsAre(1, 1)));
  EXPECT_EQ(FindUncoveredElement(Box{{1, 1}, {0, 2}}, {}), std::nullopt);
  // A scalar: one element, covered by any box of no dimensions.
  EXPECT_EQ(FindUncoveredElement(Box{}, {Box{}}), std::nullopt);
  EXPECT_THAT(FindUncoveredElement(Box{}, {}), Optional(ElementsAre()));
}

TEST(BoxOverlapTest, FindsTwoBoxesThatOverlap) {
  // A 3 x 3 grid of 2 x 2 boxes, then one that meets the middle one.
  std::vector<Box> grid;
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < 3; ++j) grid.push_back(Box{{2 * i, 2 * j}, {2, 2}});
  }
  EXPECT_EQ(FindOverlappingBoxes(grid), std::nullopt);
  std::vector<Box> more = grid;
  more.push_back(Box{{3, 3}, {1, 5}});
  EXPECT_THAT(FindOverlappingBoxes(more),
              Optional(std::make_pair(size_t{4}, size_t{9})));
  // Touching is not overlapping; empty boxes overlap nothing.
  EXPECT_EQ(FindOverlappingBoxes({Box{{0}, {4}}, Box{{4}, {4}}, Box{{2}, {0}}}),
            std::nullopt);
  EXPECT_THAT(FindOverlappingBoxes({Box{}, Box{}}),
              Optional(std::make_pair(size_t{0}, size_t{1})));
  // Many boxes split along dimension 1 (swept there), the last overlapping
  // the first.
  std::vector<Box> columns;
  for (int64_t c = 0; c < 20000; ++c) columns.push_back(Box{{0, c}, {8, 1}});
  EXPECT_EQ(FindOverlappingBoxes(columns), std::nullopt);
  columns.push_back(Box{{7, 0}, {1, 1}});
  EXPECT_THAT(FindOverlappingBoxes(columns),
              Optional(std::make_pair(size_t{0}, size_t{20000})));
}

TEST(BoxOverlapTest, ColumnsOfASavedBoxAreRunsOfTheRegion) {
  // Saved rows [0, 4) x cols [0, 6); region rows [1, 4) x cols [2, 5), 2
  // bytes per element: three runs of 6 bytes, one dest run of 18 bytes.
  const Box source{{0, 0}, {4, 6}};
  const Box region{{1, 2}, {3, 3}};
  const OverlapRuns runs(source, region, region, 2);
  EXPECT_EQ(runs.run_count(), 3u);
  EXPECT_EQ(runs.run_bytes(), 6u);
  EXPECT_EQ(runs.SourceRunStart(0), 16u);
  EXPECT_EQ(runs.SourceRunStart(2), 40u);
  EXPECT_THAT(
      Stretches(runs, 0, 48),
      ElementsAre(Stretch{16, 0, 6}, Stretch{28, 6, 6}, Stretch{40, 12, 6}));
  EXPECT_THAT(Stretches(runs, 19, 30),
              ElementsAre(Stretch{19, 3, 3}, Stretch{28, 6, 2}));
  EXPECT_FALSE(runs.Intersects(0, 16));
  EXPECT_FALSE(runs.Intersects(22, 28));
  EXPECT_TRUE(runs.Intersects(21, 29));
  EXPECT_THAT(runs.DestOffsetIfContiguous(28, 34), Optional(6u));
  EXPECT_EQ(runs.DestOffsetIfContiguous(27, 34), std::nullopt);
}

TEST(BoxOverlapTest, ARegionWiderThanTheSavedBoxCutsItsRuns) {
  // Saved rows [0, 2) x cols [0, 3) of a region of rows [0, 4) x cols
  // [0, 6), 1 byte each: the whole saved box is one source run, which the
  // region's rows of 6 bytes cut into stretches of 3.
  const Box source{{0, 0}, {2, 3}};
  const Box region{{0, 0}, {4, 6}};
  const OverlapRuns runs(source, region, source, 1);
  EXPECT_EQ(runs.run_count(), 1u);
  EXPECT_EQ(runs.run_bytes(), 6u);
  EXPECT_THAT(Stretches(runs, 0, 6),
              ElementsAre(Stretch{0, 0, 3}, Stretch{3, 6, 3}));
  EXPECT_THAT(runs.DestOffsetIfContiguous(3, 6), Optional(6u));
  EXPECT_EQ(runs.DestOffsetIfContiguous(2, 4), std::nullopt);
}

TEST(BoxOverlapTest, AScalarIsOneRun) {
  const OverlapRuns runs(Box{}, Box{}, Box{}, 8);
  EXPECT_EQ(runs.run_count(), 1u);
  EXPECT_THAT(Stretches(runs, 0, 8), ElementsAre(Stretch{0, 0, 8}));
  EXPECT_THAT(runs.DestOffsetIfContiguous(0, 8), Optional(0u));
}

}  // namespace
}  // namespace ckpt::client
