#include "client/client.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/client_tensors.h"
#include "tests/testing/fake_transport.h"

namespace ckpt::client {
namespace {

using ::ckpt::testing::FakeTransport;
using ::ckpt::testing::PatternBytes;
using ::ckpt::testing::Uint8Tensor;

// The facade over an injected transport: it delegates saves, restores and
// listings, and passes shared_memory_restore on.
TEST(ClientTest, SavesAndRestoresThroughAnInjectedTransport) {
  auto owned = std::make_unique<FakeTransport>();
  FakeTransport& fake = *owned;
  std::unique_ptr<Client> client =
      Client::WithTransport(std::move(owned), {.shared_memory_restore = false});
  const std::string bytes = PatternBytes(1000, 1);
  SaveOptions options;
  options.chunk_bytes = 100;

  absl::StatusOr<SaveResult> saved =
      client->SaveShard("team/model", 7, {Uint8Tensor("a", bytes)}, options);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->chunks_sent, 10u);

  absl::StatusOr<std::vector<RestoredTensor>> restored =
      client->RestoreShard("team/model", std::nullopt, 0);
  ASSERT_TRUE(restored.ok()) << restored.status();
  ASSERT_EQ(restored->size(), 1u);
  EXPECT_EQ(absl::string_view((*restored)[0].bytes.data(),
                              (*restored)[0].bytes.size()),
            bytes);
  // Reported after the restore, not named to GetManifest.
  EXPECT_TRUE(fake.restoring_ranks().empty());
  EXPECT_EQ(
      fake.reported_restores(),
      (std::vector<FakeTransport::ReportedRestore>{{"team/model", 7, 0}}));
  EXPECT_EQ(fake.into_file_calls(), 0);

  absl::StatusOr<std::vector<CheckpointRecord>> listed =
      client->ListCheckpoints("team/model");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].step, 7);

  EXPECT_TRUE(absl::IsUnimplemented(client->CollectGarbage(true).status()));
}

}  // namespace
}  // namespace ckpt::client
