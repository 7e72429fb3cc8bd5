// Test helper (test code only): a client's restore memfd as the client
// library makes one, for tests of shared-memory reads at the service and
// the RPC layer.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "gtest/gtest.h"
#include "server/service/shared_file_reads.h"

namespace ckpt::server::testing {

// A memfd named `name` (the client's "ckpt-restore" unless a test wants
// another) of `size` bytes, starting with a 32-byte token.
struct TestMemfd {
  explicit TestMemfd(uint64_t size, const char* name = "ckpt-restore")
      : fd(memfd_create(name, MFD_CLOEXEC)), token(32, 't') {
    EXPECT_GE(fd, 0);
    EXPECT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0);
    EXPECT_EQ(pwrite(fd, token.data(), token.size(), 0),
              static_cast<ssize_t>(token.size()));
  }
  ~TestMemfd() { close(fd); }
  TestMemfd(const TestMemfd&) = delete;
  TestMemfd& operator=(const TestMemfd&) = delete;

  std::string Read(uint64_t offset, uint64_t size) const {
    std::string bytes(size, '\0');
    EXPECT_EQ(pread(fd, bytes.data(), size, static_cast<off_t>(offset)),
              static_cast<ssize_t>(size));
    return bytes;
  }
  // How this process names the file to the server.
  SharedFileTarget Target() const {
    return SharedFileTarget{static_cast<int32_t>(getpid()), fd, token};
  }

  int fd;
  std::string token;
};

}  // namespace ckpt::server::testing
