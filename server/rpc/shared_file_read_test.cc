// GetSharedFileEndpoint and ReadChunksIntoFile through a real server on
// 127.0.0.1:0: what the gRPC edge decides (request checks, the feature
// switch, the handle, the RPC named in every error) and the client's
// restores through shared memory. The placement checks and the copy are the
// service's (server/service/shared_file_reads_test.cc), the socket's
// protocol is shared_file_socket_test.cc's.

#include <fcntl.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "client/client.h"
#include "client/transport/shared_file_registration.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/rpc_test_fixture.h"
#include "tests/testing/shared_file_test_util.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::server {
namespace {

using testing::CorruptChunk;
using testing::EventuallyTrue;
using testing::GrpcServiceTest;
using ::testing::HasSubstr;
using testing::kJob;
using ::testing::Not;
using testing::RandomBytes;
using testing::Tensor;
using testing::TestMemfd;

class SharedFileReadTest : public GrpcServiceTest {
 protected:
  // Registers `file` as the client library does: the endpoint over gRPC,
  // then the memfd over the server's socket. Keep the registration alive
  // while the handle is used.
  std::unique_ptr<client::SharedFileRegistration> Register(
      const TestMemfd& file) {
    v1::GetSharedFileEndpointResponse endpoint;
    grpc::ClientContext context;
    grpc::Status status = stub_->GetSharedFileEndpoint(
        &context, v1::GetSharedFileEndpointRequest(), &endpoint);
    EXPECT_TRUE(status.ok()) << status.error_message();
    auto registration = client::RegisterAtSocket(
        SharedFileEndpoint{endpoint.socket_name(), endpoint.ticket_id(),
                           endpoint.ticket()},
        file.fd, absl::Seconds(10));
    EXPECT_TRUE(registration.ok()) << registration.status();
    return registration.ok() ? *std::move(registration) : nullptr;
  }

  grpc::Status IntoFile(const v1::ReadChunksIntoFileRequest& request,
                        v1::ReadChunksIntoFileResponse* response) {
    grpc::ClientContext context;
    return stub_->ReadChunksIntoFile(&context, request, response);
  }
  // Asks for `bytes`' chunk at offset 4096 of the file under `handle`.
  grpc::Status IntoFileAtFirstPage(absl::string_view handle,
                                   const std::string& bytes) {
    v1::ReadChunksIntoFileRequest request;
    request.set_job(kJob);
    request.set_file_handle(std::string(handle));
    Place(&request, bytes, {4096});
    v1::ReadChunksIntoFileResponse response;
    return IntoFile(request, &response);
  }
  static void Place(v1::ReadChunksIntoFileRequest* request,
                    const std::string& bytes,
                    std::initializer_list<uint64_t> offsets) {
    v1::ChunkPlacement* chunk = request->add_chunks();
    chunk->set_sha256(std::string(Sha256(bytes).bytes()));
    chunk->set_size(bytes.size());
    for (uint64_t offset : offsets) chunk->add_offsets(offset);
  }
};

TEST_F(SharedFileReadTest, WritesVerifiedChunksAtEveryPlacement) {
  const std::string a = RandomBytes(5000, 1);
  const std::string b = RandomBytes(3000, 2);
  client::SaveOptions options;
  options.chunk_bytes = 1 << 20;
  ASSERT_TRUE(
      client_->SaveShard(kJob, 1, {Tensor("a", a), Tensor("b", b)}, options)
          .ok());
  TestMemfd file(4096 + 20000);
  auto registration = Register(file);
  ASSERT_NE(registration, nullptr);
  v1::ReadChunksIntoFileRequest request;
  request.set_job(kJob);
  request.set_file_handle(std::string(registration->handle()));
  Place(&request, a, {4096, 13000});
  Place(&request, b, {9096});
  v1::ReadChunksIntoFileResponse response;
  grpc::Status status = IntoFile(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.bytes_written(), 2 * a.size() + b.size());
  EXPECT_TRUE(file.Read(4096, a.size()) == a);
  EXPECT_TRUE(file.Read(13000, a.size()) == a);
  EXPECT_TRUE(file.Read(9096, b.size()) == b);
  EXPECT_EQ(file.Read(0, 4096), std::string(4096, '\0'));
}

// The edge's own checks, and the service's refusals reaching the client
// with their code and the RPC's name; none of them writes.
TEST_F(SharedFileReadTest, RefusalsNameTheRpcAndLeaveTheFileAlone) {
  const std::string a = RandomBytes(5000, 3);
  ASSERT_TRUE(client_->SaveShard(kJob, 1, {Tensor("a", a)}, {}).ok());
  TestMemfd file(4096 + 8192);
  auto registration = Register(file);
  ASSERT_NE(registration, nullptr);
  const std::string before = file.Read(0, 4096 + 8192);
  struct Case {
    std::string what;
    std::function<void(v1::ReadChunksIntoFileRequest*)> edit;
    grpc::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"malformed job", [](auto* r) { r->set_job("no-tenant"); },
       grpc::StatusCode::INVALID_ARGUMENT, "ReadChunksIntoFile: "},
      {"malformed hash",
       [](auto* r) { r->mutable_chunks(0)->set_sha256("short"); },
       grpc::StatusCode::INVALID_ARGUMENT,
       "ReadChunksIntoFile: chunks[0].sha256 must be 32 bytes, got 5"},
      {"guessed handle",
       [](auto* r) { r->set_file_handle(std::string(16, 'x')); },
       grpc::StatusCode::FAILED_PRECONDITION,
       "ReadChunksIntoFile: file_handle names no registered shared file"},
      {"no handle", [](auto* r) { r->clear_file_handle(); },
       grpc::StatusCode::FAILED_PRECONDITION,
       "ReadChunksIntoFile: file_handle names no registered shared file"},
      {"past the end",
       [&](auto* r) { r->mutable_chunks(0)->set_offsets(0, 4096 + 8000); },
       grpc::StatusCode::INVALID_ARGUMENT,
       "ReadChunksIntoFile: chunks[0]: placement"},
      {"no offsets", [&](auto* r) { r->mutable_chunks(0)->clear_offsets(); },
       grpc::StatusCode::INVALID_ARGUMENT,
       "ReadChunksIntoFile: chunks[0] has no offsets"},
      {"wrong size", [&](auto* r) { r->mutable_chunks(0)->set_size(4999); },
       grpc::StatusCode::DATA_LOSS, "places 4999"},
      {"unknown chunk",
       [&](auto* r) {
         r->mutable_chunks(0)->set_sha256(std::string(Sha256("x").bytes()));
       },
       grpc::StatusCode::NOT_FOUND, "ReadChunksIntoFile: "},
  };
  for (const Case& c : cases) {
    v1::ReadChunksIntoFileRequest request;
    request.set_job(kJob);
    request.set_file_handle(std::string(registration->handle()));
    Place(&request, a, {4096});
    c.edit(&request);
    v1::ReadChunksIntoFileResponse response;
    grpc::Status status = IntoFile(request, &response);
    EXPECT_EQ(status.error_code(), c.code)
        << c.what << ": " << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.message)) << c.what;
    EXPECT_TRUE(file.Read(0, before.size()) == before) << c.what;
  }
}

TEST_F(SharedFileReadTest, RequestsOverTheHashLimitAreRefused) {
  StreamLimits limits;
  limits.max_request_hashes = 2;
  server_->Shutdown(absl::Now());
  server_.reset();
  StartServer(limits);
  TestMemfd file(4096 + 8192);
  auto registration = Register(file);
  ASSERT_NE(registration, nullptr);
  v1::ReadChunksIntoFileRequest request;
  request.set_job(kJob);
  request.set_file_handle(std::string(registration->handle()));
  for (int i = 0; i < 3; ++i) Place(&request, "abc", {4096});
  v1::ReadChunksIntoFileResponse response;
  grpc::Status status = IntoFile(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr("at most 2 chunks per request, got 3"));
}

TEST_F(SharedFileReadTest, CorruptChunkIsDataLossThroughSharedMemory) {
  const std::string weights = RandomBytes(4 << 10, 5);
  ASSERT_TRUE(client_->SaveShard(kJob, 1, {Tensor("w", weights)}, {}).ok());
  CorruptChunk(store_, "team", weights);
  TestMemfd file(4096 + 8192);
  auto registration = Register(file);
  ASSERT_NE(registration, nullptr);
  grpc::Status status = IntoFileAtFirstPage(registration->handle(), weights);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS);
  // Nothing written, not even the damaged bytes.
  EXPECT_TRUE(file.Read(4096, weights.size()) ==
              std::string(weights.size(), '\0'));
}

// The name of the mapping holding `address` in /proc/self/maps ("" when
// anonymous).
std::string MappingOf(const void* address) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  const auto target = reinterpret_cast<uintptr_t>(address);
  while (std::getline(maps, line)) {
    uintptr_t begin = 0, end = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx", &begin, &end) != 2) continue;
    if (target < begin || target >= end) continue;
    const size_t slash = line.find('/');
    return slash == std::string::npos ? "" : line.substr(slash);
  }
  return "";
}

// The client restores byte-identically whichever way the bytes travel:
// shared memory, streaming by choice, or streaming because the server
// refuses shared memory (the fallback).
TEST_F(SharedFileReadTest, ClientRestoresIdenticallyWithAndWithoutIt) {
  std::vector<std::string> tensors;
  std::vector<client::TensorData> data;
  tensors.reserve(6);  // five, then one repeated
  for (int i = 0; i < 5; ++i) {
    tensors.push_back(RandomBytes(1000 + 300000 * i, 10 + i));
  }
  tensors.push_back(tensors[1]);  // a repeated chunk fills two places
  for (size_t i = 0; i < tensors.size(); ++i) {
    data.push_back(Tensor(absl::StrCat("t", i), tensors[i]));
  }
  client::SaveOptions options;
  options.chunk_bytes = 64 << 10;
  ASSERT_TRUE(client_->SaveShard(kJob, 1, data, options).ok());
  // `registered`: whether the server held the client's memfd while the
  // chunks arrived (the shared-memory path), seen from the progress calls.
  auto check = [&](client::Client& client, const std::string& how,
                   bool in_memfd, bool registered = false) {
    auto manifest = client.GetManifest(kJob, 1);
    ASSERT_TRUE(manifest.ok()) << manifest.status();
    size_t files_seen = 0;
    auto restored = client.RestoreShard(*manifest, 0, [&](uint64_t, uint64_t) {
      files_seen = std::max(files_seen, server_->shared_files_registered());
    });
    ASSERT_TRUE(restored.ok()) << how << ": " << restored.status();
    EXPECT_EQ(files_seen, registered ? 1u : 0u) << how;
    ASSERT_EQ(restored->size(), tensors.size()) << how;
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& tensor = (*restored)[i];
      EXPECT_TRUE(absl::string_view(tensor.bytes.data(), tensor.bytes.size()) ==
                  tensors[i])
          << how << " tensor " << i;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(tensor.bytes.data()) % 4096, 0u)
          << how;
      // Writable memory, owned by `storage`.
      if (!tensor.bytes.empty()) tensor.bytes[0] ^= 1;
      EXPECT_NE(tensor.storage, nullptr);
      EXPECT_EQ(absl::StartsWith(MappingOf(tensor.bytes.data()),
                                 "/memfd:ckpt-restore"),
                in_memfd)
          << how << ": " << MappingOf(tensor.bytes.data());
    }
  };
  check(*client_, "shared memory", true, /*registered=*/true);
  // The restore's registration ended with it.
  EXPECT_TRUE(
      EventuallyTrue([&] { return server_->shared_files_registered() == 0; }));
  client::ConnectOptions no_shared_memory;
  no_shared_memory.shared_memory_restore = false;
  auto streaming = client::Client::Connect(address_, no_shared_memory);
  ASSERT_TRUE(streaming.ok());
  check(**streaming, "streaming", false);

  StreamLimits no_sharing;
  no_sharing.shared_file_reads = false;
  server_->Shutdown(absl::Now());
  server_.reset();
  StartServer(no_sharing);
  check(*client_, "fallback after refusal", true);
  for (bool endpoint : {true, false}) {
    grpc::ClientContext context;
    v1::GetSharedFileEndpointResponse response;
    grpc::Status status =
        endpoint ? stub_->GetSharedFileEndpoint(
                       &context, v1::GetSharedFileEndpointRequest(), &response)
                 : IntoFileAtFirstPage(std::string(16, 'h'), tensors[0]);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(status.error_message(), HasSubstr("turned off"));
  }
}

// The old attack: a request naming another process's pid and descriptor
// (field 2, SharedFile{pid, fd, token}) made the server open
// /proc/<pid>/fd/<fd> and echo the link target. The field is gone from the
// proto; sent anyway (as raw bytes), it is ignored: without a registered
// handle nothing is opened or written, and no error names a file.
TEST_F(SharedFileReadTest, NamingAProcessDescriptorCannotReachAFile) {
  EXPECT_EQ(v1::ReadChunksIntoFileRequest::descriptor()->FindFieldByNumber(2),
            nullptr);
  EXPECT_EQ(
      v1::ReadChunksIntoFileRequest::descriptor()->FindFieldByName("file"),
      nullptr);
  const std::string weights = RandomBytes(5000, 7);
  ASSERT_TRUE(client_->SaveShard(kJob, 1, {Tensor("w", weights)}, {}).ok());
  auto dir = ckpt::testing::TempDir::Create("ckpt-shm-victim");
  ASSERT_TRUE(dir.ok());
  const std::string path = (*dir)->path() + "/victim-file-name.bin";
  const int victim = open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(victim, 0);
  ASSERT_EQ(ftruncate(victim, 4096 + 8192), 0);
  TestMemfd named(4096 + 8192, /*sealed=*/true, "victim-memfd-name");
  // Another registered file, which a guessed handle must not reach either.
  TestMemfd registered_file(4096 + 8192);
  auto registration = Register(registered_file);
  ASSERT_NE(registration, nullptr);
  for (int fd : {victim, named.fd}) {
    for (const std::string& handle :
         {std::string(), std::string(16, '\x01'),
          std::string(registration->handle()).substr(1)}) {
      v1::ReadChunksIntoFileRequest request;
      request.set_job(kJob);
      request.set_file_handle(handle);
      Place(&request, weights, {4096});
      // Field 2 as the old clients sent it: pid 1, fd 2, token 3.
      std::string old_file;
      google::protobuf::io::StringOutputStream raw(&old_file);
      {
        google::protobuf::io::CodedOutputStream out(&raw);
        out.WriteTag(1 << 3);
        out.WriteVarint32(static_cast<uint32_t>(getpid()));
        out.WriteTag(2 << 3);
        out.WriteVarint32(static_cast<uint32_t>(fd));
        out.WriteTag((3 << 3) | 2);
        out.WriteVarint32(32);
        out.WriteString(std::string(32, 't'));
      }
      request.GetReflection()
          ->MutableUnknownFields(&request)
          ->AddLengthDelimited(2, old_file);
      v1::ReadChunksIntoFileResponse response;
      grpc::Status status = IntoFile(request, &response);
      EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
          << status.error_message();
      for (const char* leak : {"victim", "/proc", "memfd:", "/"}) {
        EXPECT_THAT(status.error_message(), Not(HasSubstr(leak)))
            << status.error_message();
      }
    }
  }
  char first = 1;
  EXPECT_EQ(pread(victim, &first, 1, 4096), 1);
  EXPECT_EQ(first, 0);
  close(victim);
  EXPECT_EQ(named.Read(4096, 16), std::string(16, '\0'));
  EXPECT_EQ(registered_file.Read(4096, 16), std::string(16, '\0'));
}

}  // namespace
}  // namespace ckpt::server
