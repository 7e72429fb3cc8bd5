#include "common/small_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace ckpt {
namespace {

class ReadSmallRegularFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "ckpt-small-file-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  std::string dir_;
};

TEST_F(ReadSmallRegularFileTest, ReadsARegularFileWhole) {
  const std::string text(40000, 'x');  // more than one read
  auto read = ReadSmallRegularFile(Write("f", text), 40000);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, text);
  read = ReadSmallRegularFile(Write("empty", ""), 10);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, "");
}

TEST_F(ReadSmallRegularFileTest, RefusesWhatIsNotASmallRegularFile) {
  auto missing = ReadSmallRegularFile(dir_ + "/none", 10);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "no such file");

  // std::ifstream made libstdc++ throw here, which aborted the process.
  auto directory = ReadSmallRegularFile(dir_, 10);
  EXPECT_EQ(directory.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(directory.status().message(), "is a directory");

  // Without a writer, opening a FIFO for reading would block forever.
  const std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto pipe = ReadSmallRegularFile(fifo, 10);
  EXPECT_EQ(pipe.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(pipe.status().message(), "is not a regular file");

  auto big = ReadSmallRegularFile(Write("big", std::string(11, 'x')), 10);
  EXPECT_EQ(big.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(big.status().message(), "larger than 10 bytes");
}

TEST_F(ReadSmallRegularFileTest, NamesAPermissionProblem) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads any file";
  const std::string path = Write("secret", "x");
  ASSERT_EQ(::chmod(path.c_str(), 0), 0);
  auto read = ReadSmallRegularFile(path, 10);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(read.status().message(), "permission denied");
}

}  // namespace
}  // namespace ckpt
