// OutputTree (client/cli/output_tree.h): which tensor names become paths,
// collisions, links planted inside OUTDIR, and that an uncommitted tree
// leaves nothing behind.
#include "client/cli/output_tree.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt::cli {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string Read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Every entry below `dir`, as relative paths, links not followed.
std::vector<std::string> Listing(const fs::path& dir) {
  std::vector<std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    out.push_back(fs::relative(entry.path(), dir).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

class OutputTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/ckpt-output-tree-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    root_ = pattern;
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path root_;
};

TEST(CheckTensorPathTest, AcceptsNestedNamesAndRefusesEscapes) {
  for (const char* name : {"w", "model/0.weight", "layer.0.attn", "a/b/c",
                           ".hidden", "..x", "x..", "a b"}) {
    EXPECT_TRUE(CheckTensorPath(name).ok()) << name;
  }
  const std::pair<std::string, std::string> refused[] = {
      {"", "is empty"},
      {"/etc/passwd", "absolute path"},
      {"../x", "'..' segment"},
      {"a/../../x", "'..' segment"},
      {"..", "'..' segment"},
      {".", "'.' segment"},
      {"a/./b", "'.' segment"},
      {"a//b", "empty segment"},
      {"a/", "empty segment"},
      {std::string("a\0b", 3), "control character"},
      {"a\nb", "control character"},
      {"x/\x1b[31mred", "control character"},
      {std::string(256, 'n'), "longer than 255"},
  };
  for (const auto& [name, why] : refused) {
    absl::Status status = CheckTensorPath(name);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(status.message(), HasSubstr(why)) << name;
  }
}

TEST_F(OutputTreeTest, RefusesTwoTensorsOnOnePathOrAFileAsADirectory) {
  OutputTree tree((root_ / "out").string());
  ASSERT_TRUE(tree.Plan("model/0.weight", "model/0.weight").ok());
  EXPECT_THAT(tree.Plan("model/0.weight", "again").message(),
              HasSubstr("'model/0.weight' and 'again' would both be written"));
  EXPECT_THAT(tree.Plan("model", "model").message(),
              HasSubstr("needs as a directory"));
  EXPECT_THAT(tree.Plan("model/0.weight/x", "deeper").message(),
              HasSubstr("needs as a directory"));
  EXPECT_TRUE(tree.Plan("model/0.bias", "model/0.bias").ok());
}

TEST_F(OutputTreeTest, WritesNestedFilesOnlyAtCommit) {
  const fs::path out = root_ / "new" / "out";
  {
    OutputTree tree(out.string());
    ASSERT_TRUE(tree.Plan("model/0.weight", "model/0.weight").ok());
    ASSERT_TRUE(tree.Plan("top", "top").ok());
    ASSERT_TRUE(tree.CheckExisting().ok());
    ASSERT_TRUE(tree.Stage("model/0.weight", "weights").ok());
    ASSERT_TRUE(tree.Stage("top", "t").ok());
    EXPECT_FALSE(fs::exists(out / "top"));  // only temporary names so far
    ASSERT_TRUE(tree.Commit().ok());
  }
  EXPECT_EQ(Read(out / "model" / "0.weight"), "weights");
  EXPECT_EQ(Read(out / "top"), "t");
  EXPECT_THAT(Listing(out),
              ::testing::ElementsAre("model", "model/0.weight", "top"));
}

TEST_F(OutputTreeTest, AnUncommittedTreeLeavesNothing) {
  const fs::path out = root_ / "a" / "b";
  {
    OutputTree tree(out.string());
    ASSERT_TRUE(tree.Plan("x/y/z", "x/y/z").ok());
    ASSERT_TRUE(tree.Plan("w", "w").ok());
    ASSERT_TRUE(tree.Stage("x/y/z", "bytes").ok());
    ASSERT_TRUE(tree.Stage("w", "more").ok());
  }
  EXPECT_FALSE(fs::exists(root_ / "a"));
  // In an OUTDIR that existed, with a file of its own: only that stays.
  std::ofstream(root_ / "keep") << "mine";
  {
    OutputTree tree(root_.string());
    ASSERT_TRUE(tree.Plan("keep", "keep").ok());
    ASSERT_TRUE(tree.Plan("d/e", "d/e").ok());
    ASSERT_TRUE(tree.Stage("keep", "theirs").ok());
    ASSERT_TRUE(tree.Stage("d/e", "x").ok());
  }
  EXPECT_THAT(Listing(root_), ::testing::ElementsAre("keep"));
  EXPECT_EQ(Read(root_ / "keep"), "mine");
}

TEST_F(OutputTreeTest, NeverFollowsALinkPlantedInsideOutdir) {
  const fs::path outside = root_ / "outside";
  const fs::path out = root_ / "out";
  fs::create_directories(outside);
  fs::create_directories(out);
  fs::create_directory_symlink(outside, out / "model");
  {
    OutputTree tree(out.string());
    ASSERT_TRUE(tree.Plan("model/0.weight", "model/0.weight").ok());
    absl::Status status = tree.CheckExisting();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr("is a symbolic link"));
    // Planted after the check: staging refuses it too.
    status = tree.Stage("model/0.weight", "x");
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr("refusing to write through it"));
  }
  EXPECT_TRUE(fs::is_empty(outside));
  // A link where the file goes is replaced, not written through.
  std::ofstream(outside / "target") << "untouched";
  fs::create_symlink(outside / "target", out / "file");
  {
    OutputTree tree(out.string());
    ASSERT_TRUE(tree.Plan("file", "file").ok());
    ASSERT_TRUE(tree.CheckExisting().ok());
    ASSERT_TRUE(tree.Stage("file", "new").ok());
    ASSERT_TRUE(tree.Commit().ok());
  }
  EXPECT_EQ(Read(outside / "target"), "untouched");
  EXPECT_FALSE(fs::is_symlink(out / "file"));
  EXPECT_EQ(Read(out / "file"), "new");
}

TEST_F(OutputTreeTest, RefusesExistingFilesAndDirectoriesInTheWay) {
  fs::create_directories(root_ / "dir");
  std::ofstream(root_ / "plain") << "x";
  OutputTree tree(root_.string());
  ASSERT_TRUE(tree.Plan("dir", "dir").ok());
  EXPECT_THAT(tree.CheckExisting().message(), HasSubstr("is a directory"));
  OutputTree below(root_.string());
  ASSERT_TRUE(below.Plan("plain/x", "plain/x").ok());
  EXPECT_THAT(below.CheckExisting().message(), HasSubstr("not a directory"));
  OutputTree file_outdir((root_ / "plain").string());
  ASSERT_TRUE(file_outdir.Plan("x", "x").ok());
  EXPECT_THAT(file_outdir.CheckExisting().message(),
              HasSubstr("is not a directory"));
}

}  // namespace
}  // namespace ckpt::cli
