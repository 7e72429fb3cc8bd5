// Test helper (test code only): a client's restore memfd as the client
// library makes one (sealed against shrinking and growing), for tests of
// shared-memory reads at the service, the socket and the RPC layer.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "gtest/gtest.h"
#include "server/service/shared_file.h"

namespace ckpt::server::testing {

// A memfd named `name` of `size` zero bytes, sealed as RestoreBuffer seals
// it unless `sealed` is false.
struct TestMemfd {
  explicit TestMemfd(uint64_t size, bool sealed = true,
                     const char* name = "ckpt-restore")
      : fd(memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)) {
    EXPECT_GE(fd, 0);
    EXPECT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0);
    if (sealed) {
      EXPECT_EQ(
          fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
    }
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
  // A writer over a duplicate of the descriptor, as the server holds one.
  SharedFileWriter Writer() const {
    absl::StatusOr<SharedFileWriter> writer =
        SharedFileWriter::Adopt(UniqueFd(dup(fd)));
    EXPECT_TRUE(writer.ok()) << writer.status();
    return *std::move(writer);
  }

  int fd;
};

// Descriptors a server must refuse to write into, for the refusal tests: a
// file on disk named `secret-name.bin` in `dir`, a pipe, and a read-only
// descriptor of a sealed memfd.
struct NotWritableMemfds {
  explicit NotWritableMemfds(const std::string& dir)
      : disk_file(open((dir + "/secret-name.bin").c_str(),
                       O_CREAT | O_RDWR | O_CLOEXEC, 0600)),
        memfd(8192),
        read_only(open(("/proc/self/fd/" + std::to_string(memfd.fd)).c_str(),
                       O_RDONLY | O_CLOEXEC)) {
    EXPECT_EQ(ftruncate(disk_file.get(), 8192), 0);
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
    pipe_read.Reset(fds[0]);
    pipe_write.Reset(fds[1]);
    EXPECT_TRUE(read_only.valid());
  }
  UniqueFd disk_file;
  TestMemfd memfd;
  UniqueFd read_only;
  UniqueFd pipe_read;
  UniqueFd pipe_write;
};

// Polls `done` every 5 ms for up to 10 s; whether it came true. For state
// another thread changes asynchronously (a socket closed by the kernel).
inline bool EventuallyTrue(const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

}  // namespace ckpt::server::testing
