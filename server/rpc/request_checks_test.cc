// The gRPC edge's request checks: each refusal is INVALID_ARGUMENT naming
// the RPC and the field (by index in a list); peers are local only on
// loopback or a Unix socket.

#include "server/rpc/request_checks.h"

#include <string>

#include "absl/status/status.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/rpc/server.h"

namespace ckpt::server {
namespace {

using ::testing::HasSubstr;

void ExpectInvalid(const absl::Status& status, const std::string& message) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr(message));
}

TEST(RequestChecksTest, ErrorsNameTheRpc) {
  EXPECT_EQ(InvalidRequest("Rpc", "what").message(), "Rpc: what");
  EXPECT_TRUE(absl::IsUnavailable(ShuttingDown("Rpc")));
  EXPECT_EQ(ShuttingDown("Rpc").message(), "Rpc: the server is shutting down");
}

TEST(RequestChecksTest, JobsNeedATenantAndAName) {
  EXPECT_TRUE(CheckJob("Rpc", "team/model").ok());
  ExpectInvalid(CheckJob("Rpc", ""), "Rpc: ");
  ExpectInvalid(CheckJob("Rpc", "no-tenant"), "Rpc: ");
}

TEST(RequestChecksTest, NegativeStepsAndWorldSizesBelowOneAreRefused) {
  EXPECT_TRUE(CheckStep("Rpc", 0).ok());
  EXPECT_TRUE(CheckStep("Rpc", int64_t{1} << 40).ok());
  ExpectInvalid(CheckStep("Rpc", -1), "Rpc: step must be >= 0, got -1");
  EXPECT_TRUE(CheckWorldSize("Rpc", 1).ok());
  ExpectInvalid(CheckWorldSize("Rpc", 0),
                "Rpc: world_size must be >= 1, got 0");
  ExpectInvalid(CheckWorldSize("Rpc", -3), "got -3");
}

TEST(RequestChecksTest, HashesParseInOrderAndTheFirstBadOneIsNamed) {
  google::protobuf::RepeatedPtrField<std::string> hashes;
  *hashes.Add() = std::string(Sha256("a").bytes());
  *hashes.Add() = std::string(Sha256("b").bytes());
  auto ids = ParseHashes("Rpc", hashes, 10);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, (std::vector<ChunkId>{Sha256("a"), Sha256("b")}));

  *hashes.Add() = "short";
  *hashes.Add() = std::string(40, 'x');
  ExpectInvalid(ParseHashes("Rpc", hashes, 10).status(),
                "Rpc: sha256[2] must be 32 bytes, got 5");
  ExpectInvalid(ParseHashes("Rpc", hashes, 3).status(),
                "Rpc: at most 3 hashes per request, got 4");
  EXPECT_TRUE(ParseHashes("Rpc", {}, 0).ok());
}

TEST(RequestChecksTest, PlacementsCarryTheirFieldsAndNameABadHash) {
  google::protobuf::RepeatedPtrField<v1::ChunkPlacement> chunks;
  v1::ChunkPlacement* first = chunks.Add();
  first->set_sha256(std::string(Sha256("a").bytes()));
  first->set_size(7);
  first->add_offsets(4096);
  first->add_offsets(8192);
  v1::ChunkPlacement* second = chunks.Add();
  second->set_sha256(std::string(Sha256("b").bytes()));
  auto placements = ParsePlacements("Rpc", chunks, 10);
  ASSERT_TRUE(placements.ok()) << placements.status();
  ASSERT_EQ(placements->size(), 2u);
  EXPECT_EQ((*placements)[0].id, Sha256("a"));
  EXPECT_EQ((*placements)[0].size, 7u);
  EXPECT_EQ((*placements)[0].offsets, (std::vector<uint64_t>{4096, 8192}));
  // No offsets is the service's to refuse (it knows the file).
  EXPECT_TRUE((*placements)[1].offsets.empty());

  second->set_sha256("");
  ExpectInvalid(ParsePlacements("Rpc", chunks, 10).status(),
                "Rpc: chunks[1].sha256 must be 32 bytes, got 0");
  ExpectInvalid(ParsePlacements("Rpc", chunks, 1).status(),
                "Rpc: at most 1 chunks per request, got 2");
}

TEST(RequestChecksTest, PolicyErrorsNameTheRpc) {
  v1::RetentionPolicy policy;
  policy.set_max_to_keep(3);
  auto parsed = ParsePolicy("Rpc", policy);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->max_to_keep, 3);
  policy.mutable_keep_best()->set_mode(static_cast<v1::MetricMode>(99));
  ExpectInvalid(ParsePolicy("Rpc", policy).status(),
                "Rpc: unknown metric mode 99");
}

TEST(RequestChecksTest, LoopbackAndUnixSocketPeersAreLocal) {
  EXPECT_TRUE(IsLocalPeer("ipv4:127.0.0.1:50051"));
  EXPECT_TRUE(IsLocalPeer("ipv4:127.1.2.3:1"));
  EXPECT_TRUE(IsLocalPeer("ipv6:[::1]:50051"));
  EXPECT_TRUE(IsLocalPeer("ipv6:[::ffff:127.0.0.1]:50051"));
  EXPECT_TRUE(IsLocalPeer("unix:/tmp/ckpt.sock"));
  EXPECT_TRUE(IsLocalPeer("unix:"));
}

TEST(RequestChecksTest, RemoteAndUnknownPeersAreNot) {
  EXPECT_FALSE(IsLocalPeer("ipv4:10.0.0.7:50051"));
  EXPECT_FALSE(IsLocalPeer("ipv4:128.0.0.1:50051"));
  EXPECT_FALSE(IsLocalPeer("ipv4:1.127.0.0:50051"));
  EXPECT_FALSE(IsLocalPeer("ipv6:[2001:db8::1]:50051"));
  EXPECT_FALSE(IsLocalPeer("ipv6:[::ffff:10.0.0.7]:50051"));
  EXPECT_FALSE(IsLocalPeer("ipv6:[::10]:50051"));
  // Abstract Unix sockets are not used by the client; not trusted either.
  EXPECT_FALSE(IsLocalPeer("unix-abstract:ckpt"));
  EXPECT_FALSE(IsLocalPeer(""));
  EXPECT_FALSE(IsLocalPeer("127.0.0.1:50051"));
}

TEST(ListenAddressTest, LoopbackOnesAreThoseOfThisHostOnly) {
  for (const char* address : {"127.0.0.1:0", "127.1.2.3:7070", "[::1]:7070",
                              "localhost:7070", "unix:/tmp/ckpt.sock"}) {
    EXPECT_TRUE(IsLoopbackListenAddress(address)) << address;
  }
  for (const char* address :
       {"0.0.0.0:7070", "[::]:7070", "10.0.0.7:7070", "example.com:7070",
        "127.example.com:7070", "127.0.0:7070", "unix-abstract:ckpt",
        "127.0.0.1", ":7070", ""}) {
    EXPECT_FALSE(IsLoopbackListenAddress(address)) << address;
  }
}

}  // namespace
}  // namespace ckpt::server
