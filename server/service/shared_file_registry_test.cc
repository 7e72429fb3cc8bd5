// SharedFileRegistry and SharedFileWriter::Adopt: which descriptors the
// server takes (only writable memfds sealed against resizing), the limits,
// and that a dropped connection's files go while writes in flight finish.

#include "server/service/shared_file_registry.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/shared_file_protocol.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/shared_file_test_util.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::TestMemfd;

UniqueFd Dup(int fd) { return UniqueFd(dup(fd)); }

TEST(SharedFileRegistryTest, RegistersASealedMemfdUnderARandomHandle) {
  SharedFileRegistry registry;
  TestMemfd a(8192), b(8192);
  auto first = registry.Register(1, Dup(a.fd), {});
  auto second = registry.Register(1, Dup(b.fd), {});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(first->size(), shared_file_protocol::kHandleBytes);
  EXPECT_NE(*first, *second);
  EXPECT_EQ(registry.size(), 2u);
  auto found = registry.Find(*first);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ((*found)->size(), 8192u);
  ASSERT_TRUE((*found)->Write(100, "hello").ok());
  EXPECT_EQ(a.Read(100, 5), "hello");
  EXPECT_EQ(b.Read(100, 5), std::string(5, '\0'));
}

// The old path opened whatever /proc/<pid>/fd/<fd> named; now only a
// descriptor its owner passed, and only a writable, sealed memfd.
TEST(SharedFileRegistryTest, RefusesEverythingButAWritableSealedMemfd) {
  auto dir = ckpt::testing::TempDir::Create("ckpt-shm-registry");
  ASSERT_TRUE(dir.ok());
  testing::NotWritableMemfds refused((*dir)->path());
  TestMemfd unsealed(8192, /*sealed=*/false);
  UniqueFd write_sealed(memfd_create("w", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_EQ(ftruncate(write_sealed.get(), 8192), 0);
  ASSERT_EQ(fcntl(write_sealed.get(), F_ADD_SEALS,
                  F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE),
            0);
  UniqueFd empty(memfd_create("e", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_EQ(fcntl(empty.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
  struct Case {
    std::string what;
    int fd;
    std::string message;
  };
  const std::vector<Case> cases = {
      // "cannot carry seals" on disk, "not sealed" on tmpfs.
      {"a file on disk", refused.disk_file.get(), "not a memfd"},
      {"a pipe", refused.pipe_write.get(), "not a regular file"},
      {"a read-only memfd", refused.read_only.get(), "read-only"},
      {"an unsealed memfd", unsealed.fd,
       "not a memfd sealed with F_SEAL_SHRINK"},
      {"a memfd sealed against writes", write_sealed.get(), "read-only"},
      {"an empty memfd", empty.get(), "empty"},
      {"a closed descriptor", -1, "not a regular file"},
  };
  SharedFileRegistry registry;
  for (const Case& c : cases) {
    auto handle = registry.Register(1, c.fd >= 0 ? Dup(c.fd) : UniqueFd(),
                                    PeerCredentials{});
    EXPECT_TRUE(absl::IsFailedPrecondition(handle.status()))
        << c.what << ": " << handle.status();
    EXPECT_THAT(handle.status().message(), HasSubstr(c.message)) << c.what;
    EXPECT_THAT(handle.status().message(), Not(HasSubstr("secret-name")));
    EXPECT_THAT(handle.status().message(), Not(HasSubstr("/")));
  }
  EXPECT_EQ(registry.size(), 0u);
  char byte = 0;
  EXPECT_EQ(pread(refused.disk_file.get(), &byte, 1, 0), 1);
  EXPECT_EQ(byte, 0);
}

TEST(SharedFileRegistryTest, UnknownHandlesAreFailedPreconditionAlike) {
  SharedFileRegistry registry;
  TestMemfd file(8192);
  auto handle = registry.Register(1, Dup(file.fd), {});
  ASSERT_TRUE(handle.ok());
  std::string near_miss = *handle;
  near_miss.back() ^= 1;
  const auto empty = registry.Find("");
  for (const std::string& guess :
       {std::string(), near_miss, std::string(16, '\0'), std::string("x")}) {
    auto found = registry.Find(guess);
    EXPECT_TRUE(absl::IsFailedPrecondition(found.status()));
    // The same words whatever the guess: nothing about existing handles.
    EXPECT_EQ(found.status(), empty.status());
  }
}

TEST(SharedFileRegistryTest, DroppingAConnectionDropsItsFilesOnly) {
  SharedFileRegistry registry;
  TestMemfd a(8192), b(8192);
  auto mine = registry.Register(1, Dup(a.fd), {});
  auto theirs = registry.Register(2, Dup(b.fd), {});
  ASSERT_TRUE(mine.ok() && theirs.ok());
  // A write in flight holds its file past the drop, and finishes.
  auto in_flight = registry.Find(*mine);
  ASSERT_TRUE(in_flight.ok());
  registry.DropConnection(1);
  EXPECT_EQ(registry.size(), 1u);
  EXPECT_TRUE(absl::IsFailedPrecondition(registry.Find(*mine).status()));
  EXPECT_TRUE(registry.Find(*theirs).ok());
  EXPECT_TRUE((*in_flight)->Write(0, "late").ok());
  EXPECT_EQ(a.Read(0, 4), "late");
  registry.DropConnection(2);
  registry.DropConnection(3);  // never registered anything
  EXPECT_EQ(registry.size(), 0u);
}

TEST(SharedFileRegistryTest, LimitsPerConnectionAndInAll) {
  SharedFileRegistry registry({.max_files_per_connection = 2, .max_files = 3});
  TestMemfd file(4096);
  EXPECT_TRUE(registry.Register(1, Dup(file.fd), {}).ok());
  EXPECT_TRUE(registry.Register(1, Dup(file.fd), {}).ok());
  auto third = registry.Register(1, Dup(file.fd), {});
  EXPECT_TRUE(absl::IsResourceExhausted(third.status())) << third.status();
  EXPECT_TRUE(registry.Register(2, Dup(file.fd), {}).ok());
  auto over = registry.Register(3, Dup(file.fd), {});
  EXPECT_TRUE(absl::IsResourceExhausted(over.status())) << over.status();
  registry.DropConnection(1);
  EXPECT_TRUE(registry.Register(3, Dup(file.fd), {}).ok());
}

}  // namespace
}  // namespace ckpt::server
